import { TdekvError } from '../errors.js';
import type { EncryptedReadableFile } from '../env/readable-file.js';
import type { BlockEdges, InternalIterator } from './iterator.js';
import { LruCache } from './lru-cache.js';
import { TableReader } from './table-reader.js';
import type { BlockCache } from './block-cache.js';
import type { ReadLatency } from './read-latency.js';

/**
 * Opens a table file synchronously. The engine supplies it: gets and iterators are
 * synchronous, so a table that is not open yet must be opened without awaiting.
 */
export type TableOpener = (fileNumber: number) => EncryptedReadableFile;
/** Opens a table file for prepare(), which reads the table's metadata on the thread pool. */
export type AsyncTableOpener = (fileNumber: number) => Promise<EncryptedReadableFile>;

export interface TableCacheOptions {
  /** Open tables kept (at least 1 is always kept: the one just opened is in use). */
  maxOpenFiles: number;
  blockCache: BlockCache;
  /** For prepare(); without it prepare() opens nothing ahead. */
  openFileAsync?: AsyncTableOpener;
  /** Times the tables' synchronous data block reads. */
  readLatency?: ReadLatency;
}

/**
 * Bounds the number of open tables (each holds a descriptor, its index and its filter).
 * Iterators pin their table: a table evicted while an iterator reads it is closed when the
 * last such iterator closes, not under it.
 */
export class TableCache {
  readonly #openFile: TableOpener;
  readonly #openFileAsync: AsyncTableOpener | undefined;
  /** Tables being opened by prepare(). */
  readonly #opening = new Map<number, Promise<void>>();
  readonly #blockCache: BlockCache;
  readonly #readLatency: ReadLatency | undefined;
  readonly #tables: LruCache<TableReader, number>;
  /** Open iterators per table. */
  readonly #pins = new Map<TableReader, number>();
  /** Tables dropped from the cache while pinned: closed at their last unpin. */
  readonly #retired = new Set<TableReader>();
  #closed = false;

  constructor(openFile: TableOpener, options: TableCacheOptions) {
    this.#openFile = openFile;
    this.#openFileAsync = options.openFileAsync;
    this.#blockCache = options.blockCache;
    this.#readLatency = options.readLatency;
    this.#tables = new LruCache<TableReader, number>(Math.max(1, options.maxOpenFiles), (_key, reader) => this.#dropped(reader));
  }

  /** Tables held open by the cache (pinned tables already evicted not included). */
  get openTables(): number {
    return this.#tables.size;
  }

  /**
   * The open table, opening it on a miss. Use the reader synchronously: a later call may
   * evict and close it. For reads that span awaits, use iterator().
   */
  get(fileNumber: number): TableReader {
    this.#check();
    const cached = this.#tables.get(fileNumber);
    if (cached !== undefined) return cached;
    const reader = TableReader.open(this.#openFile(fileNumber), fileNumber, this.#blockCache, this.#readLatency);
    this.#tables.set(fileNumber, reader, 1);
    return reader;
  }

  /**
   * Opens the table with its metadata read on the thread pool, unless it is open already
   * (undefined): a get(), acquire() or iterator() of it after this settles reads nothing
   * synchronously. The caller must keep the file from deletion meanwhile (a pinned version).
   */
  prepare(fileNumber: number): Promise<void> | undefined {
    this.#check();
    const openFileAsync = this.#openFileAsync;
    if (openFileAsync === undefined || this.#tables.has(fileNumber)) return undefined;
    let opening = this.#opening.get(fileNumber);
    if (opening === undefined) {
      opening = (async () => {
        const reader = await TableReader.openAsync(await openFileAsync(fileNumber), fileNumber, this.#blockCache, this.#readLatency);
        // Closed meanwhile, or opened by a synchronous get(): this copy is not needed.
        if (this.#closed || this.#tables.has(fileNumber)) reader.close();
        else this.#tables.set(fileNumber, reader, 1);
      })().finally(() => this.#opening.delete(fileNumber));
      this.#opening.set(fileNumber, opening);
    }
    return opening;
  }

  /** The table if it is open (it is not opened here). Use it synchronously, as get()'s. */
  cached(fileNumber: number): TableReader | undefined {
    this.#check();
    return this.#tables.get(fileNumber);
  }

  /** The open table, kept open (even if evicted) until release(): for reads that span awaits. */
  acquire(fileNumber: number): { reader: TableReader; release(): void } {
    const reader = this.get(fileNumber);
    this.#pins.set(reader, (this.#pins.get(reader) ?? 0) + 1);
    let released = false;
    return {
      reader,
      release: () => {
        if (released) return;
        released = true;
        this.#unpin(reader);
      },
    };
  }

  /** A cursor over the table that keeps it open until the cursor is closed. */
  iterator(fileNumber: number, edges?: BlockEdges): InternalIterator {
    const reader = this.get(fileNumber);
    this.#pins.set(reader, (this.#pins.get(reader) ?? 0) + 1);
    return reader.iterator(() => this.#unpin(reader), edges);
  }

  /**
   * Forgets a table whose file is being deleted: closes it (once unpinned) and drops its
   * blocks from the block cache. Scans the block cache, so call it per deleted file, not
   * per read.
   */
  evict(fileNumber: number): void {
    this.#tables.delete(fileNumber);
    this.#blockCache.evictFile(fileNumber);
  }

  /** Closes every table, pinned or not: close iterators first. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#tables.clear();
    for (const reader of this.#retired) reader.close();
    this.#retired.clear();
    this.#pins.clear();
  }

  #dropped(reader: TableReader): void {
    if (this.#pins.has(reader)) this.#retired.add(reader);
    else reader.close();
  }

  #unpin(reader: TableReader): void {
    const n = (this.#pins.get(reader) ?? 1) - 1;
    if (n > 0) {
      this.#pins.set(reader, n);
      return;
    }
    this.#pins.delete(reader);
    if (this.#retired.delete(reader)) reader.close();
  }

  #check(): void {
    if (this.#closed) throw new TdekvError('CLOSED', 'the table cache is closed');
  }
}
