import type { Engine } from '../../engine/engine.js';
import { WriteBatchBuilder } from '../../engine/write-batch.js';
import { RowCache, bufferAt, type ValueLocation } from './row-cache.js';

/** A pending write: the value, or null for a delete, and the batch that carries it. */
interface Pending {
  value: Buffer | null;
  batch: number;
}

export interface StoreRange {
  gte: Buffer;
  lt: Buffer;
}

/** Called when a batch has been applied (or has failed); batches settle in id order. */
export type BatchListener = (batch: number, error?: unknown) => void;

/**
 * The server's view of the engine: every command runs synchronously against it, and its
 * writes are gathered into one engine batch per turn of the event loop.
 *
 * A write is visible to the next command at once (through the overlay of pending writes)
 * even though the engine applies it only when its WAL record is written. The server holds
 * replies until the batch that a reply may depend on has been applied, so nothing is
 * acknowledged before it is in the WAL (and fsynced, with `sync`).
 */
export class BatchingStore {
  readonly #engine: Engine;
  readonly #sync: boolean;
  /** latin1(key) → newest pending write; latin1 keeps byte order under string comparison. */
  readonly #overlay = new Map<string, Pending>();
  /** This turn's writes, encoded as they are made. */
  readonly #batch = new WriteBatchBuilder();
  /** Overlay keys written by each batch not yet settled, so settling costs its own size. */
  #keys: string[] = [];
  readonly #inFlightKeys = new Map<number, string[]>();
  /** Id of the batch being gathered; lower ids are in flight or applied. */
  #current = 1;
  #lastApplied = 0;
  /** While a flush of everything is in flight, the engine's older contents are hidden. */
  #hideEngineUntil = 0;
  #failure: unknown;
  #listener: BatchListener = () => undefined;
  readonly #idle: Array<() => void> = [];

  readonly cache: RowCache;

  constructor(engine: Engine, options: { sync: boolean; rowCacheBytes?: number }) {
    this.#engine = engine;
    this.#sync = options.sync;
    this.cache = new RowCache(options.rowCacheBytes ?? 0);
  }

  onBatchSettled(listener: BatchListener): void {
    this.#listener = listener;
  }

  /**
   * Set after a batch failed to apply, while the engine still refuses writes; cleared once it
   * accepts them again (it recovers from a full disk by itself).
   */
  get failure(): unknown {
    if (this.#failure !== undefined && this.#engine.writeFailure() === undefined) this.#failure = undefined;
    return this.#failure;
  }

  get(key: Buffer): Buffer | undefined {
    const at = this.#at;
    const n = this.locate(key, at);
    return n < 0 ? undefined : bufferAt(at, n);
  }

  readonly #at: ValueLocation = { buf: Buffer.alloc(0), start: 0 };

  /**
   * get(key) without a Buffer for a cached value: where the value's bytes lie, into `at`
   * (read them before the next write to the store). The value's length, or -1 when the key
   * is absent. A cached small value is read beside its key in the row cache.
   */
  locate(key: Buffer, at: ValueLocation): number {
    if (this.#overlay.size > 0) {
      const p = this.#overlay.get(this.#mapKey(key));
      if (p !== undefined) return locateBuffer(p.value, at);
    }
    if (this.cache.enabled) {
      const n = this.cache.locate(key, at);
      if (n !== -2) return n;
    }
    const value = this.#fromEngine(key);
    if (this.cache.enabled) this.cache.set(key, value ?? null);
    return locateBuffer(value ?? null, at);
  }

  /** latin1(key), remembered for the last Buffer: a read and a write of one record share it. */
  #mapKey(key: Buffer): string {
    if (key !== this.#lastKey) {
      this.#lastKey = key;
      this.#lastMapKey = key.toString('latin1');
    }
    return this.#lastMapKey;
  }

  #lastKey: Buffer | undefined;
  #lastMapKey = '';

  #fromEngine(key: Buffer): Buffer | undefined {
    if (this.#hideEngineUntil > this.#lastApplied) return undefined;
    return this.#engine.getSync(key);
  }

  put(key: Buffer, value: Buffer): void {
    this.#batch.put(key, value);
    this.#remember(key, value);
  }

  del(key: Buffer): void {
    this.#batch.del(key);
    this.#remember(key, null);
  }

  #remember(key: Buffer, value: Buffer | null): void {
    const k = this.#mapKey(key);
    this.#overlay.set(k, { value, batch: this.#current });
    this.#keys.push(k);
    // Write-through: the cache then never holds a value older than the engine's.
    this.cache.set(key, value);
  }

  /** Deletes every key in the store, atomically with the rest of the current batch. */
  clear(range: StoreRange): void {
    for (const [key] of this.entries(range)) this.#batch.del(key);
    this.#overlay.clear();
    this.cache.clear();
    this.#hideEngineUntil = this.#current;
  }

  /** Entries with gte <= key < lt in key order, pending writes included. Synchronous. */
  *entries(range: StoreRange): Generator<[Buffer, Buffer]> {
    const lo = range.gte.toString('latin1');
    const hi = range.lt.toString('latin1');
    const pending: Array<[string, Pending]> = [];
    for (const e of this.#overlay) if (e[0] >= lo && e[0] < hi) pending.push(e);
    pending.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const it = this.#hideEngineUntil > this.#lastApplied ? undefined : this.#engine.iterator({ gte: range.gte, lt: range.lt });
    try {
      let e = it?.next();
      let i = 0;
      for (;;) {
        const p = pending[i];
        if (e === undefined && p === undefined) return;
        const pk = p === undefined ? undefined : Buffer.from(p[0], 'latin1');
        const c = e === undefined ? 1 : pk === undefined ? -1 : Buffer.compare(e[0], pk);
        if (c < 0) {
          yield e!;
          e = it!.next();
          continue;
        }
        if (c === 0) e = it!.next();
        i++;
        if (p![1].value !== null) yield [pk!, p![1].value];
      }
    } finally {
      it?.close();
    }
  }

  /** Operations gathered for the next batch. */
  get pendingOps(): number {
    return this.#batch.count;
  }

  /** Writes pending in the overlay (gathered or in flight). */
  get pendingKeys(): number {
    return this.#overlay.size;
  }

  /** The batch a reply produced now depends on, or 0 when everything is applied. */
  get dependency(): number {
    if (this.#batch.count > 0) return this.#current;
    return this.#current - 1 > this.#lastApplied ? this.#current - 1 : 0;
  }

  /** Sends the gathered operations to the engine as one atomic batch. */
  commit(): void {
    if (this.#batch.count === 0) return;
    const id = this.#current++;
    this.#inFlightKeys.set(id, this.#keys);
    this.#keys = [];
    this.#engine.writeBatch(this.#batch, { sync: this.#sync }).then(
      () => this.#settle(id),
      (err: unknown) => {
        this.#failure ??= err;
        // The cache may hold values of the failed batch, which the engine does not have.
        this.cache.clear();
        this.#settle(id, err);
      },
    );
  }

  /** Resolves when every batch committed so far has settled. */
  async drain(): Promise<void> {
    this.commit();
    if (this.#lastApplied >= this.#current - 1) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  #settle(id: number, err?: unknown): void {
    this.#lastApplied = id;
    if (id === this.#current - 1 && this.#batch.count === 0) {
      // Nothing was written since this batch was committed (the usual case: the engine applied
      // it in the same turn), so every pending write is this batch's or an older one's.
      this.#overlay.clear();
    } else {
      for (const k of this.#inFlightKeys.get(id) ?? []) if (this.#overlay.get(k)?.batch === id) this.#overlay.delete(k);
    }
    this.#inFlightKeys.delete(id);
    this.#listener(id, err);
    if (id === this.#current - 1) for (const resolve of this.#idle.splice(0)) resolve();
  }
}

function locateBuffer(value: Buffer | null, at: ValueLocation): number {
  if (value === null) return -1;
  at.buf = value;
  at.start = 0;
  return value.length;
}
