import type { AppendSink } from '../env/writable-file.js';
import type { EngineFs } from './engine-fs.js';
import { tableName } from './file-names.js';
import type { EngineTuning } from './options.js';
import { TableBuilder } from './table-builder.js';
import type { FileMeta } from './version-edit.js';
import type { ValueKind } from './internal-key.js';
import type { EntryLocation } from './skip-list.js';

export interface TableOutputContext {
  /** Where tables are created (unless newTable is given) and where failed outputs are removed. */
  env: Pick<EngineFs, 'create' | 'remove'>;
  tuning: EngineTuning;
  newFileNumber(): number;
  /** Numbers being written: obsolete-file collection must not remove them. */
  pendingOutputs: Set<number>;
  /**
   * When set, how a new table is numbered and created instead of newFileNumber, pendingOutputs
   * and env.create: on a worker thread the number and the file's grant come from the main
   * thread, which registers the pending output itself (src/engine/background/); the worker's
   * flush warm-up gives a sink that keeps nothing (flush-warm-up.ts).
   */
  newTable?(): Promise<{ number: number; file: AppendSink }>;
}

/** A new table file, numbered and kept from obsolete-file removal (or granted by the main thread, on the worker). */
export async function createTableFile(ctx: TableOutputContext): Promise<{ number: number; file: AppendSink }> {
  if (ctx.newTable) return ctx.newTable();
  const number = ctx.newFileNumber();
  ctx.pendingOutputs.add(number);
  return { number, file: await ctx.env.create(tableName(number)) };
}

/** On failure: the file closed and removed, its number released. */
export async function discardTableFile(ctx: TableOutputContext, number: number, file: AppendSink | undefined): Promise<void> {
  await file?.close().catch(() => undefined);
  await ctx.env.remove(tableName(number)).catch(() => undefined);
  ctx.pendingOutputs.delete(number);
}

/**
 * Writes a sorted stream of entries into one or more new tables (created through the env,
 * so under the current data key and method), cutting a new file at `targetSize` but never
 * between two versions of one user key.
 */
export class TableOutput {
  readonly #ctx: TableOutputContext;
  readonly #targetSize: number;
  #builder: TableBuilder | undefined;
  #number = 0;
  #lastKey: Buffer | undefined;
  readonly files: FileMeta[] = [];

  constructor(ctx: TableOutputContext, targetSize: number) {
    this.#ctx = ctx;
    this.#targetSize = targetSize;
  }

  /** Whether the next add() must be preceded by `await open()` (no file, or the current one is full at a key boundary). */
  needsOpen(userKey: Buffer): boolean {
    if (!this.#builder) return true;
    return this.#builder.approximateSize >= this.#targetSize && this.#lastKey !== undefined && !userKey.equals(this.#lastKey);
  }

  /** A file is open: add() may be called. */
  get opened(): boolean {
    return this.#builder !== undefined;
  }

  async open(): Promise<void> {
    if (this.#builder) await this.#finishCurrent();
    const created = await createTableFile(this.#ctx);
    this.#number = created.number;
    const file = created.file;
    const t = this.#ctx.tuning;
    this.#builder = new TableBuilder(file, { blockSize: t.blockSize, blockRestartInterval: t.blockRestartInterval, bloomFilterBitsPerKey: t.bloomFilterBitsPerKey });
  }

  add(userKey: Buffer, seq: number, kind: ValueKind, value: Buffer): void {
    this.#builder!.add(userKey, seq, kind, value);
    this.#lastKey = userKey;
  }

  /** add() of an entry read where it lies (see EntryLocation). */
  addAt(e: EntryLocation, seq: number, kind: ValueKind): void {
    const builder = this.#builder!;
    builder.addAt(e.keys, e.keyStart, e.keyEnd, seq, kind, e.values, e.valueStart, e.valueEnd, e.hash);
    // needsOpen compares with the last key only once the file is full: copy it only then.
    this.#lastKey = builder.approximateSize >= this.#targetSize ? Buffer.from(e.keys.subarray(e.keyStart, e.keyEnd)) : undefined;
  }

  /** Backpressure: waits for the current file's queued writes. */
  async drain(): Promise<void> {
    await this.#builder?.drain();
  }

  async finish(): Promise<FileMeta[]> {
    if (this.#builder) await this.#finishCurrent();
    return this.files;
  }

  /** On failure: closes and removes what was written. */
  async abandon(): Promise<void> {
    const numbers = [...this.files.map((f) => f.number), ...(this.#builder ? [this.#number] : [])];
    await this.#builder?.abandon().catch(() => undefined);
    this.#builder = undefined;
    for (const n of numbers) {
      await this.#ctx.env.remove(tableName(n)).catch(() => undefined);
      this.#ctx.pendingOutputs.delete(n);
    }
  }

  /** Numbers of the files written, to release from pendingOutputs once installed. */
  numbers(): number[] {
    return this.files.map((f) => f.number);
  }

  async #finishCurrent(): Promise<void> {
    const b = this.#builder!;
    // Cleared only once finished: after a failed finish (disk full) abandon() must still close and remove the file.
    const props = await b.finish();
    this.#builder = undefined;
    this.#lastKey = undefined;
    if (props.entries > 0) {
      this.files.push({ number: this.#number, size: props.fileSize, smallest: props.smallest, largest: props.largest, entries: props.entries });
    } else {
      await this.#ctx.env.remove(tableName(this.#number));
      this.#ctx.pendingOutputs.delete(this.#number);
    }
  }
}
