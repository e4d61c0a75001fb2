/**
 * A reference model of the engine's public surface, in memory: every version of every key,
 * reads at a sequence. Slow and simple on purpose, so TdekvLevel can be checked on its own
 * and the real engine compared against it.
 */
import type { LevelEngine } from '../../src/level/tdekv-level.js';
import type { BatchOp, EngineIterator, IteratorOptions, ReadOptions, Snapshot } from '../../src/engine/types.js';
import { decodeBatch, type WriteBatchBuilder } from '../../src/engine/write-batch.js';
import { ValueKind } from '../../src/engine/internal-key.js';

interface Version {
  seq: number;
  value: Buffer | undefined;
}

/** What survives a close, so a reopen (a new MemoryEngine on the same state) sees the data. */
export interface MemoryState {
  versions: Map<string, Version[]>;
  seq: number;
}

export class MemoryEngine implements LevelEngine {
  readonly #state: MemoryState;
  readonly #versions: Map<string, Version[]>;
  #closed = false;
  liveSnapshots = 0;
  openIterators = 0;

  constructor(state: MemoryState = { versions: new Map(), seq: 0 }) {
    this.#state = state;
    this.#versions = state.versions;
  }

  get #seq(): number {
    return this.#state.seq;
  }

  async get(key: Uint8Array, options?: ReadOptions): Promise<Buffer | undefined> {
    return this.getSync(key, options);
  }

  /** Everything is in memory here. */
  getCached(key: Uint8Array, options?: ReadOptions): Buffer | undefined {
    return this.getSync(key, options);
  }

  getSync(key: Uint8Array, options?: ReadOptions): Buffer | undefined {
    this.#check();
    const v = this.#at(Buffer.from(key).toString('latin1'), options?.snapshot?.sequence ?? this.#seq);
    return v === undefined ? undefined : Buffer.from(v);
  }

  async write(ops: readonly BatchOp[]): Promise<void> {
    this.#check();
    const seq = ++this.#state.seq;
    for (const op of ops) {
      const k = Buffer.from(op.key).toString('latin1');
      const list = this.#versions.get(k) ?? [];
      list.push({ seq, value: op.type === 'put' ? Buffer.from(op.value) : undefined });
      this.#versions.set(k, list);
    }
  }

  /** Decodes the builder's bytes (as the real engine's log replay would) into write(). */
  async writeBatch(batch: WriteBatchBuilder): Promise<void> {
    this.#check();
    if (batch.count === 0) return;
    const ops: BatchOp[] = [];
    decodeBatch(batch.take(), (_seq, kind, key, value) => ops.push(kind === ValueKind.Value ? { type: 'put', key: Buffer.from(key), value: Buffer.from(value) } : { type: 'del', key: Buffer.from(key) }));
    await this.write(ops);
  }

  snapshot(): Snapshot {
    this.#check();
    this.liveSnapshots++;
    let released = false;
    return {
      sequence: this.#seq,
      release: () => {
        if (released) throw new Error('snapshot released twice');
        released = true;
        this.liveSnapshots--;
      },
    };
  }

  iterator(options: IteratorOptions = {}): EngineIterator {
    this.#check();
    const seq = options.snapshot?.sequence ?? this.#seq;
    const inRange = (k: Buffer) =>
      (options.gt === undefined || Buffer.compare(k, options.gt) > 0) &&
      (options.gte === undefined || Buffer.compare(k, options.gte) >= 0) &&
      (options.lt === undefined || Buffer.compare(k, options.lt) < 0) &&
      (options.lte === undefined || Buffer.compare(k, options.lte) <= 0);
    const entries: Array<[Buffer, Buffer]> = [];
    for (const k of this.#versions.keys()) {
      const v = this.#at(k, seq);
      const key = Buffer.from(k, 'latin1');
      if (v !== undefined && inRange(key)) entries.push([key, v]);
    }
    entries.sort((a, b) => Buffer.compare(a[0], b[0]));
    const reverse = options.reverse === true;
    if (reverse) entries.reverse();
    const limit = options.limit === undefined || options.limit < 0 ? Infinity : options.limit;
    let i = 0;
    let returned = 0;
    let closed = false;
    this.openIterators++;
    const next = (): [Buffer, Buffer] | undefined => {
      if (closed || returned >= limit || i >= entries.length) return undefined;
      returned++;
      const [k, v] = entries[i++]!;
      return [Buffer.from(k), Buffer.from(v)];
    };
    return {
      next,
      nextBatch: async (max) => {
        const out: Array<[Buffer, Buffer]> = [];
        for (let e; out.length < max && (e = next()) !== undefined; ) out.push(e);
        return out;
      },
      seek: (target) => {
        const t = Buffer.from(target);
        i = entries.findIndex(([k]) => (reverse ? Buffer.compare(k, t) <= 0 : Buffer.compare(k, t) >= 0));
        if (i < 0) i = entries.length;
      },
      close: () => {
        if (!closed) this.openIterators--;
        closed = true;
      },
    };
  }

  /** Nothing to merge in memory: the model's data is always compact. */
  async compactRange(): Promise<void> {}

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    this.#closed = true;
  }

  #at(k: string, seq: number): Buffer | undefined {
    const list = this.#versions.get(k);
    if (list === undefined) return undefined;
    for (let j = list.length - 1; j >= 0; j--) if (list[j]!.seq <= seq) return list[j]!.value;
    return undefined;
  }

  #check(): void {
    if (this.#closed) throw new Error('MemoryEngine is closed');
  }
}
