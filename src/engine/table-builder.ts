import { TdekvError } from '../errors.js';
import type { AppendSink } from '../env/writable-file.js';
import { BlockBuilder } from './block-builder.js';
import { compareBytes, copyBytes } from './compare-bytes.js';
import { BloomHashCollector, bloomHash, buildBloom } from './bloom.js';
import { MAX_SEQUENCE, TRAILER_BYTES, ValueKind, writeTrailer } from './internal-key.js';
import { blockWithTrailer, encodeFooter, encodeProperties, putBlockHandle, tableLayout, type BlockHandle, type TableLayout, type TableProperties } from './table-format.js';

export interface TableBuilderOptions {
  blockSize: number;
  blockRestartInterval: number;
  /** 0: no filter block. */
  bloomFilterBitsPerKey: number;
}

/** Queued blocks are handed to the file in appends of up to this many bytes. */
const APPEND_BATCH_BYTES = 1 << 20;
/** Past this many bytes not yet handed to the file, needsDrain asks the caller to await drain(). */
const HIGH_WATER_BYTES = 4 << 20;

/**
 * Writes one SSTable (layout in table-format.ts) from entries given in internal-key order.
 *
 * add() is synchronous because flush and compaction call it once per entry. Finished blocks
 * go to a queue that one pump feeds to file.append(), awaiting each append, so at most one
 * append is ever parked in the file's backpressure (many concurrent un-awaited appends each
 * re-race the file's in-flight writes, which costs quadratic time once the disk falls
 * behind). The pump starts when the caller yields; its failure is remembered and thrown by
 * the next add(), drain() or finish(), so no promise is ever left rejected and unhandled.
 */
export class TableBuilder {
  readonly #file: AppendSink;
  readonly #layout: TableLayout;
  readonly #blockSize: number;
  readonly #bitsPerKey: number;
  readonly #data: BlockBuilder;
  /** One entry per data block, so a seek lands on its block by binary search alone. */
  readonly #index = new BlockBuilder(1);
  readonly #hashes: BloomHashCollector | undefined;
  /** Blocks (with trailers) not yet handed to the file, in file order. */
  #queue: Buffer[] = [];
  #queuedBytes = 0;
  #pump: Promise<void> | undefined;
  #error: unknown;
  #offset = 0;
  #dataBytes = 0;
  #entries = 0;
  #deletions = 0;
  /** The key being added and the previous one; swapped after each add, so neither is copied. */
  #key: Buffer = Buffer.allocUnsafe(256);
  #prev: Buffer = Buffer.allocUnsafe(256);
  #prevLength = 0;
  #prevSeq = 0;
  #smallest: Buffer | undefined;
  readonly #handleScratch = Buffer.allocUnsafe(20);
  /**
   * A finished data block's index entry waits for the next block's first key (its handle is
   * in #handleScratch meanwhile): the entry's key is then the shortest separator between the
   * two blocks, not the whole last key, as LevelDB and RocksDB write their index.
   */
  #pendingIndex = false;
  #pendingHandleEnd = 0;
  #separator: Buffer = Buffer.allocUnsafe(64);
  #state: 'open' | 'finishing' | 'done' = 'open';

  constructor(file: AppendSink, options: TableBuilderOptions) {
    if (!(options.blockSize > 0)) throw new TdekvError('INVALID_ARGUMENT', `blockSize must be positive (got ${options.blockSize})`);
    if (!Number.isInteger(options.blockRestartInterval) || options.blockRestartInterval < 1) {
      throw new TdekvError('INVALID_ARGUMENT', `blockRestartInterval must be a positive integer (got ${options.blockRestartInterval})`);
    }
    if (!(options.bloomFilterBitsPerKey >= 0)) throw new TdekvError('INVALID_ARGUMENT', `bloomFilterBitsPerKey must be 0 or more (got ${options.bloomFilterBitsPerKey})`);
    this.#file = file;
    this.#layout = tableLayout(file.auth);
    this.#blockSize = options.blockSize;
    this.#bitsPerKey = options.bloomFilterBitsPerKey;
    this.#data = new BlockBuilder(options.blockRestartInterval, options.blockSize + 1024);
    this.#hashes = options.bloomFilterBitsPerKey > 0 ? new BloomHashCollector() : undefined;
  }

  get entries(): number {
    return this.#entries;
  }

  get path(): string {
    return this.#file.path;
  }

  /** Bytes handed to the file so far plus the block being built: where compaction cuts files. */
  get approximateSize(): number {
    return this.#offset + this.#data.currentSizeEstimate();
  }

  add(userKey: Buffer, seq: number, kind: ValueKind, value: Buffer): void {
    this.addAt(userKey, 0, userKey.length, seq, kind, value, 0, value.length, -1);
  }

  /**
   * add() of key[keyStart, keyEnd) and value[valueStart, valueEnd), read where they lie (a
   * flush reads a memtable's arena and slabs this way, making no Buffer per entry). `hash`:
   * the key's bloomHash if the caller has it, else -1.
   */
  addAt(key: Buffer, keyStart: number, keyEnd: number, seq: number, kind: ValueKind, value: Uint8Array, valueStart: number, valueEnd: number, hash: number): void {
    if (this.#state !== 'open') throw new TdekvError('INVALID_ARGUMENT', `table ${this.#file.path}: add() after finish() or abandon()`);
    if (this.#error !== undefined) throw this.#error;
    if (!(seq >= 0 && seq <= MAX_SEQUENCE) || (kind !== ValueKind.Value && kind !== ValueKind.Deletion)) {
      throw new TdekvError('INVALID_ARGUMENT', `table ${this.#file.path}: invalid entry (seq ${seq}, kind ${kind})`);
    }
    const n = keyEnd - keyStart;
    let newUserKey = true;
    if (this.#entries > 0) {
      const c = -compareBytes(this.#prev, 0, this.#prevLength - TRAILER_BYTES, key, keyStart, keyEnd);
      if (c < 0 || (c === 0 && seq >= this.#prevSeq)) {
        throw new TdekvError('INVALID_ARGUMENT', `table ${this.#file.path}: entries must be added in internal-key order (user key ascending, sequence descending); entry ${this.#entries} (seq ${seq}) is not after the previous one (seq ${this.#prevSeq})`);
      }
      newUserKey = c !== 0;
    }
    if (this.#pendingIndex) this.#addIndexEntry(key, keyStart, keyEnd);
    if (this.#key.length < n + TRAILER_BYTES) this.#key = Buffer.allocUnsafe(Math.max(n + TRAILER_BYTES, this.#key.length * 2));
    copyBytes(key, keyStart, keyEnd, this.#key, 0);
    writeTrailer(this.#key, n, seq, kind);
    if (this.#entries === 0) this.#smallest = Buffer.from(this.#key.subarray(0, n + TRAILER_BYTES));
    // Versions of one key share a filter entry: the filter answers for user keys.
    if (newUserKey && this.#hashes) this.#hashes.addHash(hash >= 0 ? hash : bloomHash(key, keyStart, keyEnd));
    this.#data.addEntry(this.#key, n + TRAILER_BYTES, value, valueStart, valueEnd);
    this.#entries++;
    if (kind === ValueKind.Deletion) this.#deletions++;

    const swap = this.#prev;
    this.#prev = this.#key;
    this.#key = swap;
    this.#prevLength = n + TRAILER_BYTES;
    this.#prevSeq = seq;

    if (this.#data.currentSizeEstimate() >= this.#blockSize) this.#flushDataBlock();
  }

  /** Bytes of finished blocks the file has not accepted yet (memory held by the queue). */
  get pendingBytes(): number {
    return this.#queuedBytes;
  }

  /** True when the caller should `await drain()` before adding more (the queue holds over 4 MiB). */
  get needsDrain(): boolean {
    return this.#queuedBytes >= HIGH_WATER_BYTES;
  }

  /**
   * Waits until the file has accepted every finished block (its own write-behind and
   * backpressure apply from there). Long flushes and compactions await it whenever
   * needsDrain is true: until the caller yields, finished blocks only queue in memory.
   */
  async drain(): Promise<void> {
    while (this.#pump !== undefined) await this.#pump;
    if (this.#error !== undefined) throw this.#error;
  }

  /** Writes the rest of the table, makes it durable and closes the file. */
  async finish(): Promise<TableProperties> {
    if (this.#state !== 'open') throw new TdekvError('INVALID_ARGUMENT', `table ${this.#file.path}: finish() called twice or after abandon()`);
    if (this.#error !== undefined) throw this.#error;
    this.#state = 'finishing';
    if (!this.#data.empty) this.#flushDataBlock();
    if (this.#pendingIndex) this.#addIndexEntry(undefined, 0, 0);
    this.#dataBytes = this.#offset;

    let filter: BlockHandle = { offset: 0, size: 0 };
    if (this.#hashes) filter = this.#writeBlock(buildBloom(this.#hashes.hashes(), this.#bitsPerKey));
    const smallest = this.#smallest ?? Buffer.alloc(0);
    const largest = this.#entries > 0 ? Buffer.from(this.#prev.subarray(0, this.#prevLength)) : Buffer.alloc(0);
    const stored = { entries: this.#entries, deletions: this.#deletions, dataBytes: this.#dataBytes, smallest, largest };
    const properties = this.#writeBlock(encodeProperties(stored));
    const index = this.#writeBlock(this.#index.finish());
    this.#append(encodeFooter({ filter, index, properties }, this.#layout, this.#offset));

    await this.drain();
    await this.#file.sync();
    await this.#file.close();
    this.#state = 'done';
    return { ...stored, fileSize: this.#offset };
  }

  /** Closes the file without completing the table; the caller removes it. */
  async abandon(): Promise<void> {
    this.#state = 'done';
    // Blocks not handed to the file yet are dropped rather than written for nothing.
    this.#queue = [];
    this.#queuedBytes = 0;
    while (this.#pump !== undefined) await this.#pump;
    try {
      await this.#file.close();
    } catch {
      // The file is being thrown away: a failed write in it changes nothing.
    }
  }

  #flushDataBlock(): void {
    const handle = this.#writeBlock(this.#data.finish());
    this.#data.reset();
    this.#pendingHandleEnd = putBlockHandle(this.#handleScratch, 0, handle);
    this.#pendingIndex = true;
  }

  /**
   * The pending index entry, keyed by a key k with (the block's last key) <= k < (the next
   * block's first key, `limit`; none after the last block): the first block whose index key
   * is >= a target holds it. k is the last user key cut just after the first byte where it
   * differs from `limit`'s, that byte raised by one, or, when raising it would reach limit's
   * byte, cut after the next byte below 0xff, raised (the last block: after its first byte
   * below 0xff, raised), with the highest sequence number; or the whole last key when no
   * shorter user key fits. Fewer bytes per entry make a smaller index block to keep in memory
   * and to search.
   */
  #addIndexEntry(limit: Buffer | undefined, limitStart: number, limitEnd: number): void {
    this.#pendingIndex = false;
    const last = this.#prev;
    const lastUserLength = this.#prevLength - TRAILER_BYTES;
    let cut = -1;
    if (limit !== undefined) {
      const common = Math.min(lastUserLength, limitEnd - limitStart);
      let d = 0;
      while (d < common && last[d] === limit[limitStart + d]) d++;
      if (d < common) {
        if (last[d]! + 1 < limit[limitStart + d]!) {
          cut = d + 1;
        } else {
          // The next byte up is limit's own: keep that byte and raise a later one instead
          // (the first below 0xff), as RocksDB does; the key stays below limit at byte d.
          for (let j = d + 1; j < lastUserLength; j++) {
            if (last[j] !== 0xff) {
              cut = j + 1;
              break;
            }
          }
        }
      }
    } else {
      for (let i = 0; i < lastUserLength; i++) {
        if (last[i] !== 0xff) {
          cut = i + 1;
          break;
        }
      }
    }
    const handle = this.#handleScratch.subarray(0, this.#pendingHandleEnd);
    if (cut < 0 || cut >= lastUserLength) {
      this.#index.add(last.subarray(0, this.#prevLength), handle);
      return;
    }
    if (this.#separator.length < cut + TRAILER_BYTES) this.#separator = Buffer.allocUnsafe(cut + TRAILER_BYTES);
    const sep = this.#separator;
    last.copy(sep, 0, 0, cut);
    sep[cut - 1] = sep[cut - 1]! + 1;
    writeTrailer(sep, cut, MAX_SEQUENCE, ValueKind.Value);
    this.#index.add(sep.subarray(0, cut + TRAILER_BYTES), handle);
  }

  #writeBlock(contents: Buffer): BlockHandle {
    const handle = { offset: this.#offset, size: contents.length };
    this.#append(blockWithTrailer(contents, this.#layout, this.#offset));
    return handle;
  }

  #append(bytes: Buffer): void {
    this.#offset += bytes.length;
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    this.#pump ??= this.#runPump();
  }

  /** Never rejects: a failure is kept in #error for the caller's next call. */
  async #runPump(): Promise<void> {
    // Starts after the synchronous caller yields, so many small blocks make one append.
    await undefined;
    try {
      while (this.#queue.length > 0 && this.#error === undefined) await this.#file.append(this.#takeBatch());
    } catch (err) {
      this.#error ??= err;
      this.#queue = [];
      this.#queuedBytes = 0;
    } finally {
      this.#pump = undefined;
    }
  }

  #takeBatch(): Buffer {
    let n = 0;
    let bytes = 0;
    while (n < this.#queue.length && (n === 0 || bytes + this.#queue[n]!.length <= APPEND_BATCH_BYTES)) bytes += this.#queue[n++]!.length;
    const parts = this.#queue.splice(0, n);
    this.#queuedBytes -= bytes;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
  }
}
