import type { EncryptedReadableFile } from '../env/readable-file.js';
import { Block, BlockIterator } from './block.js';
import { bloomHash, bloomMayContain, bloomMayContainHash } from './bloom.js';
import { compareInternalKeys, ValueKind, TRAILER_BYTES, trailerSeq } from './internal-key.js';
import { EXHAUSTS, type BlockEdges, type InternalIterator, type SeekTarget, type StepRead } from './iterator.js';
import type { BlockCache } from './block-cache.js';
import type { ReadLatency } from './read-latency.js';
import {
  decodeBlockHandle,
  decodeFooter,
  decodeProperties,
  tableCorrupted,
  tableLayout,
  verifyBlock,
  type BlockHandle,
  type Footer,
  type TableLayout,
  type TableProperties,
} from './table-format.js';

/** What a read from caches alone answers when it would have to read from the disk. */
export const NOT_CACHED: unique symbol = Symbol('not cached');

export interface TableGetResult {
  kind: ValueKind;
  value: Buffer;
  seq: number;
}

/** An empty block (one restart point at 0, no entries): what a table cursor holds between blocks. */
const EMPTY_BLOCK = new Block(Buffer.from([0, 0, 0, 0, 1, 0, 0, 0]), '(none)', 0);

/**
 * An open SSTable. The footer, index, filter and properties are read and verified once at
 * open and kept; data blocks are read on demand through the shared block cache. Reads are
 * synchronous preads of page-cached files (see EncryptedReadableFile.readSync): a get
 * costs a bloom probe, two binary searches and at most one block read.
 */
/** The encryption scan reads a table in pieces of about this size (see dataBlocks). */
const PIECE_BYTES = 1 << 20;
/**
 * An iterator's reads on the thread pool (see TableIterator.readBeforeStep) take in this
 * much at first, then twice as much each time, up to the maximum: as RocksDB's iterator
 * read-ahead, one thread-pool round trip per 4 KiB block made a cold scan half as fast as
 * synchronous preads, which the kernel's own read-ahead serves.
 */
const MIN_READ_AHEAD_BYTES = 16 * 1024;
const MAX_READ_AHEAD_BYTES = 256 * 1024;

export class TableReader {
  readonly file: EncryptedReadableFile;
  readonly fileNumber: number;
  readonly properties: TableProperties;
  readonly #layout: TableLayout;
  readonly #footer: Footer;
  readonly #index: Block;
  readonly #filter: Buffer | undefined;
  readonly #blockCache: BlockCache;
  /** Where data blocks must end: a handle past it is damage, not a read past the data. */
  readonly #dataLimit: number;
  /** Cursors reused by get(), which is synchronous and so never re-entered. */
  readonly #indexCursor: BlockIterator;
  readonly #dataCursor: BlockIterator;

  /** Times the synchronous data block reads (the engine's tables; undefined for tools and the worker). */
  readonly #latency: ReadLatency | undefined;

  private constructor(file: EncryptedReadableFile, fileNumber: number, blockCache: BlockCache, layout: TableLayout, footer: Footer, index: Block, filter: Buffer | undefined, properties: TableProperties, latency: ReadLatency | undefined) {
    this.file = file;
    this.#latency = latency;
    this.#layout = layout;
    this.fileNumber = fileNumber;
    this.#blockCache = blockCache;
    this.#footer = footer;
    this.#index = index;
    this.#filter = filter;
    this.properties = properties;
    this.#dataLimit = file.size - layout.footerBytes;
    this.#indexCursor = index.iterator();
    this.#dataCursor = EMPTY_BLOCK.iterator();
  }

  /** Opens a table; takes ownership of `file` (closed here if the table cannot be opened). */
  static open(file: EncryptedReadableFile, fileNumber: number, blockCache: BlockCache, latency?: ReadLatency): TableReader {
    try {
      const layout = tableLayout(file.auth);
      const footer = readFooter(file, layout);
      const read = (handle: BlockHandle): Buffer => readVerified(file, handle, layout);
      return TableReader.#build(file, fileNumber, blockCache, layout, footer, read(footer.index), footer.filter.size > 0 ? read(footer.filter) : undefined, read(footer.properties), latency);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  /** open(), with the footer, index, filter and properties read on the thread pool. */
  static async openAsync(file: EncryptedReadableFile, fileNumber: number, blockCache: BlockCache, latency?: ReadLatency): Promise<TableReader> {
    try {
      const layout = tableLayout(file.auth);
      const n = layout.footerBytes;
      if (file.size < n) throw footerMissing(file, n);
      const footer = decodeFooter(await file.read(file.size - n, n), file.size, file.path, layout);
      const read = async (handle: BlockHandle): Promise<Buffer> => verifyBlock(await file.read(handle.offset, handle.size + layout.trailerBytes), handle, file.path, layout);
      // All settled before anything is thrown: the file is closed below, never under a read.
      const [index, filter, properties] = await Promise.allSettled([read(footer.index), footer.filter.size > 0 ? read(footer.filter) : undefined, read(footer.properties)]);
      for (const r of [index, filter, properties]) if (r.status === 'rejected') throw r.reason;
      const value = <T>(r: PromiseSettledResult<T>): T => (r as PromiseFulfilledResult<T>).value;
      return TableReader.#build(file, fileNumber, blockCache, layout, footer, value(index), value(filter), value(properties), latency);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  static #build(file: EncryptedReadableFile, fileNumber: number, blockCache: BlockCache, layout: TableLayout, footer: Footer, index: Buffer, filter: Buffer | undefined, properties: Buffer, latency: ReadLatency | undefined): TableReader {
    const stored = decodeProperties(properties, file.path);
    return new TableReader(file, fileNumber, blockCache, layout, footer, new Block(index, file.path, footer.index.offset), filter, { ...stored, fileSize: file.size }, latency);
  }

  get path(): string {
    return this.file.path;
  }

  /** False: the table certainly has no entry for `userKey`. */
  mayContain(userKey: Uint8Array): boolean {
    return this.#filter === undefined || bloomMayContain(this.#filter, userKey);
  }

  /**
   * The newest entry for `userKey` with sequence <= seq, deletions included (a deletion
   * here hides older versions in deeper levels).
   */
  get(userKey: Uint8Array, seq: number, hash?: number): TableGetResult | undefined {
    return this.#get(userKey, seq, hash, false) as TableGetResult | undefined;
  }

  /** get() from the block cache alone: NOT_CACHED when it would have to read a block. */
  getCached(userKey: Uint8Array, seq: number, hash?: number): TableGetResult | undefined | typeof NOT_CACHED {
    return this.#get(userKey, seq, hash, true);
  }

  #get(userKey: Uint8Array, seq: number, hash: number | undefined, cachedOnly: boolean): TableGetResult | undefined | typeof NOT_CACHED {
    if (this.#filter !== undefined && !bloomMayContainHash(this.#filter, hash ?? bloomHash(userKey))) return undefined;
    const idx = this.#indexCursor;
    idx.seek(userKey, seq);
    if (!idx.valid()) return undefined;
    const handle = this.handleAt(idx);
    const block = cachedOnly ? this.cachedBlock(handle) : this.readBlock(handle);
    if (block === undefined) return NOT_CACHED;
    const it = this.#dataCursor;
    it.reset(block);
    it.seek(userKey, seq);
    if (!it.valid() || it.compareUserKey(userKey) !== 0) return undefined;
    return { kind: it.kind(), value: it.value(), seq: it.seq() };
  }

  /**
   * get() for Engine.get: on a block-cache miss the block is read on the thread pool (the
   * env's async read) instead of a pread on the event loop. Its own cursors, not the shared
   * ones: another get may run while this one waits. The caller keeps the table open
   * (TableCache.acquire) until it returns.
   */
  async getAsync(userKey: Uint8Array, seq: number, hash?: number): Promise<TableGetResult | undefined> {
    if (this.#filter !== undefined && !bloomMayContainHash(this.#filter, hash ?? bloomHash(userKey))) return undefined;
    const idx = this.#index.iterator();
    idx.seek(userKey, seq);
    if (!idx.valid()) return undefined;
    const handle = this.handleAt(idx);
    const block = this.#blockCache.get(this.fileNumber, handle.offset) ?? (await this.readBlocksAsync([handle]))[0]!;
    const it = block.iterator();
    it.seek(userKey, seq);
    if (!it.valid() || it.compareUserKey(userKey) !== 0) return undefined;
    return { kind: it.kind(), value: it.value(), seq: it.seq() };
  }

  /** The data block at `handle` if the block cache holds it. */
  cachedBlock(handle: BlockHandle): Block | undefined {
    return this.#blockCache.get(this.fileNumber, handle.offset);
  }

  /**
   * The data blocks at `handles` (in file order, each after the one before), read on the
   * thread pool in one read, verified and cached (see readBlock).
   */
  async readBlocksAsync(handles: readonly BlockHandle[]): Promise<Block[]> {
    const trailer = this.#layout.trailerBytes;
    let end = 0;
    for (const handle of handles) {
      this.#checkInside(handle);
      if (handle.offset < end) throw tableCorrupted(this.file.path, `the index points at blocks out of file order (offset ${handle.offset} after ${end})`);
      end = handle.offset + handle.size + trailer;
    }
    const start = handles[0]!.offset;
    this.#latency?.noteAsyncRead(end - start);
    const region = await this.file.read(start, end - start);
    return handles.map((handle) => {
      // Each block its own copy (when there are several): a cached block must not keep the whole region alive.
      const raw = handles.length === 1 ? region : Buffer.from(region.subarray(handle.offset - start, handle.offset + handle.size + trailer - start));
      const block = new Block(verifyBlock(raw, handle, this.file.path, this.#layout), this.file.path, handle.offset);
      this.#blockCache.set(this.fileNumber, handle.offset, block, block.size);
      return block;
    });
  }

  /** A fresh cursor over the index block (a table cursor looks ahead with one). */
  indexCursor(): BlockIterator {
    return this.#index.iterator();
  }

  /** A data block, from the block cache or read, verified and cached. */
  readBlock(handle: BlockHandle): Block {
    const cached = this.#blockCache.get(this.fileNumber, handle.offset);
    if (cached !== undefined) return cached;
    const block = this.#readDataBlock(handle);
    this.#blockCache.set(this.fileNumber, handle.offset, block, block.size);
    return block;
  }

  /** The data block handle held by an index cursor's current entry. */
  handleAt(indexCursor: BlockIterator): BlockHandle {
    const start = indexCursor.valueOffset;
    return this.handleIn(indexCursor.block, start, start + indexCursor.valueLength);
  }

  /** The data block handle encoded in index block bytes [start, end). */
  handleIn(index: Block, start: number, end: number): BlockHandle {
    return decodeBlockHandle(index.data, start, end, this.file.path, `the index entry at offset ${start} of the index block`);
  }

  /**
   * The data blocks in file order, each with its index key, its offset and its verified
   * contents (tags or checksums checked with this file's key): what the encryption scan copies
   * into a table under the new key without decoding entries (table-rewrite.ts). Past the block
   * cache. Read on the thread pool in pieces of about a megabyte, the next piece already being
   * read while the caller works on this one, so a cold disk and the copy's CPU overlap.
   */
  async *dataBlocks(): AsyncGenerator<{ indexKey: Buffer; contents: Buffer; offset: number }> {
    const trailer = this.#layout.trailerBytes;
    const pieces: Array<{ start: number; end: number; blocks: Array<{ indexKey: Buffer; handle: BlockHandle }> }> = [];
    const idx = this.#index.iterator();
    for (idx.seekToFirst(); idx.valid(); idx.next()) {
      const handle = this.handleAt(idx);
      const end = handle.offset + handle.size + trailer;
      if (end > this.#dataLimit) {
        throw tableCorrupted(this.file.path, `the index points at a block (offset ${handle.offset}, ${handle.size} bytes) past the data`);
      }
      const last = pieces.at(-1);
      const block = { indexKey: Buffer.from(idx.internalKeyView()), handle };
      if (last && handle.offset >= last.start && end - last.start <= PIECE_BYTES) {
        last.end = Math.max(last.end, end);
        last.blocks.push(block);
      } else {
        pieces.push({ start: handle.offset, end, blocks: [block] });
      }
    }
    const readPiece = (i: number): Promise<Buffer> | undefined => (i < pieces.length ? this.file.read(pieces[i]!.start, pieces[i]!.end - pieces[i]!.start) : undefined);
    let next = readPiece(0);
    for (let i = 0; i < pieces.length; i++) {
      const region = await next!;
      next = readPiece(i + 1);
      // A read still in flight when the caller stops early must not reject unobserved.
      next?.catch(() => undefined);
      const piece = pieces[i]!;
      for (const { indexKey, handle } of piece.blocks) {
        const raw = region.subarray(handle.offset - piece.start, handle.offset + handle.size + trailer - piece.start);
        yield { indexKey, contents: verifyBlock(raw, handle, this.file.path, this.#layout), offset: handle.offset };
      }
    }
  }

  /** The bloom filter block's contents, undefined when the table has none. */
  get filterContents(): Buffer | undefined {
    return this.#filter;
  }

  /**
   * A two-level cursor: index entries select data blocks. `onClose` runs once, at close();
   * `edges`, if given, counts this cursor while it sits on a block's first or last entry.
   */
  iterator(onClose?: () => void, edges?: BlockEdges): InternalIterator {
    return new TableIterator(this, this.#index.iterator(), onClose, edges);
  }

  /**
   * Reads every block past the cache and checks checksums, key order (within and across
   * blocks), index keys, the filter and the properties: for `tdekv ctl verify`.
   */
  verifyAll(): { blocks: number; entries: number } {
    const path = this.file.path;
    const layout = this.#layout;
    const footer = readFooter(this.file, layout);
    const index = new Block(readVerified(this.file, footer.index, layout), path, footer.index.offset);
    const filter = footer.filter.size > 0 ? readVerified(this.file, footer.filter, layout) : undefined;
    const props = decodeProperties(readVerified(this.file, footer.properties, layout), path);
    const metaBlocks = filter ? 3 : 2;
    let dataBlocks = 0;
    let entries = 0;
    let deletions = 0;
    let expectedOffset = 0;
    let prevKey: Buffer | undefined;
    let prevIndexKey: Buffer | undefined;
    let smallest: Buffer | undefined;
    const idx = index.iterator();
    for (idx.seekToFirst(); idx.valid(); idx.next()) {
      const indexKey = Buffer.from(idx.internalKeyView());
      if (prevIndexKey && compareInternalKeys(prevIndexKey, indexKey) >= 0) throw tableCorrupted(path, `index entries are out of order at data block ${dataBlocks}`);
      const handle = this.handleAt(idx);
      if (handle.offset !== expectedOffset) throw tableCorrupted(path, `the index points at a block at offset ${handle.offset} where the next data block is at ${expectedOffset}`);
      const block = this.#readDataBlock(handle);
      expectedOffset = handle.offset + handle.size + layout.trailerBytes;
      const it = block.iterator();
      let inBlock = 0;
      for (it.seekToFirst(); it.valid(); it.next()) {
        const key = Buffer.from(it.internalKeyView());
        const kind = it.kind();
        if (kind !== ValueKind.Value && kind !== ValueKind.Deletion) throw tableCorrupted(path, `block at offset ${handle.offset} holds an entry of unknown kind ${kind}`);
        if (prevKey && compareInternalKeys(prevKey, key) >= 0) throw tableCorrupted(path, `block at offset ${handle.offset}: keys are out of order`);
        if (prevIndexKey && inBlock === 0 && compareInternalKeys(prevIndexKey, key) >= 0) throw tableCorrupted(path, `block at offset ${handle.offset} starts before its index entry's predecessor`);
        if (filter && !bloomMayContain(filter, key.subarray(0, key.length - TRAILER_BYTES))) throw tableCorrupted(path, `the filter misses a key of block at offset ${handle.offset}`);
        smallest ??= key;
        prevKey = key;
        if (kind === ValueKind.Deletion) deletions++;
        inBlock++;
        entries++;
      }
      if (inBlock === 0) throw tableCorrupted(path, `block at offset ${handle.offset} is empty`);
      if (compareInternalKeys(prevKey!, indexKey) > 0) throw tableCorrupted(path, `block at offset ${handle.offset} holds keys past its index entry`);
      prevIndexKey = indexKey;
      dataBlocks++;
    }
    // Keys are user data: messages name what differs, never the bytes.
    const mismatch = (what: string): never => {
      throw tableCorrupted(path, `its properties disagree with its blocks about ${what}`);
    };
    if (props.entries !== entries) mismatch(`the entry count (${props.entries} stored, ${entries} found)`);
    if (props.deletions !== deletions) mismatch(`the deletion count (${props.deletions} stored, ${deletions} found)`);
    if (props.dataBytes !== expectedOffset) mismatch(`the data size (${props.dataBytes} stored, ${expectedOffset} found)`);
    if (!props.smallest.equals(smallest ?? Buffer.alloc(0))) mismatch('the smallest key');
    if (!props.largest.equals(prevKey ?? Buffer.alloc(0))) mismatch('the largest key');
    return { blocks: metaBlocks + dataBlocks, entries };
  }

  close(): void {
    this.file.close();
  }

  /** Whether the table's blocks carry authentication tags (format 2) or only checksums. */
  get authenticated(): boolean {
    return this.#layout.auth !== undefined;
  }

  /** Handles of the metadata blocks (for tools). */
  get footer(): Footer {
    return this.#footer;
  }

  #readDataBlock(handle: BlockHandle): Block {
    this.#checkInside(handle);
    const latency = this.#latency;
    if (latency === undefined) return new Block(readVerified(this.file, handle, this.#layout), this.file.path, handle.offset);
    const started = performance.now();
    const data = readVerified(this.file, handle, this.#layout);
    latency.note(performance.now() - started);
    return new Block(data, this.file.path, handle.offset);
  }

  #checkInside(handle: BlockHandle): void {
    if (handle.offset + handle.size + this.#layout.trailerBytes > this.#dataLimit) {
      throw tableCorrupted(this.file.path, `the index points at a block (offset ${handle.offset}, ${handle.size} bytes) outside the file`);
    }
  }
}

function readFooter(file: EncryptedReadableFile, layout: TableLayout): Footer {
  const n = layout.footerBytes;
  if (file.size < n) throw footerMissing(file, n);
  return decodeFooter(file.readSync(file.size - n, n), file.size, file.path, layout);
}

function footerMissing(file: EncryptedReadableFile, footerBytes: number): Error {
  return tableCorrupted(file.path, `it is ${file.size} bytes, too small to be a table (the footer alone is ${footerBytes})`);
}

function readVerified(file: EncryptedReadableFile, handle: BlockHandle, layout: TableLayout): Buffer {
  // readSync returns a fresh buffer (decryption writes a new one), so the block may keep it.
  return verifyBlock(file.readSync(handle.offset, handle.size + layout.trailerBytes), handle, file.path, layout);
}

/**
 * Index entries select data blocks; one block cursor is re-pointed from block to block.
 * Invariant after every move: the data cursor is valid, or the index cursor is not.
 */
class TableIterator implements InternalIterator {
  readonly #table: TableReader;
  readonly #index: BlockIterator;
  readonly #data: BlockIterator;
  #blockOffset = -1;
  #onClose: (() => void) | undefined;
  /**
   * Blocks a read ahead (readBeforeStep, readBeforeSeek) brought in, by offset, each kept
   * here until the move that needs it: the block cache may be too small to hold them, or
   * may evict them first.
   */
  #readAhead = new Map<number, Block>();
  /** Bytes the next read ahead of a move takes in (see readBeforeStep). */
  #readAheadBytes = MIN_READ_AHEAD_BYTES;
  /** A second index cursor: where a seek would land, and which blocks follow, without moving. */
  #seekIndex: BlockIterator | undefined;

  readonly #edges: BlockEdges | undefined;
  /** Whether this cursor is counted in #edges. */
  #atEdge = false;

  constructor(table: TableReader, index: BlockIterator, onClose: (() => void) | undefined, edges: BlockEdges | undefined) {
    this.#table = table;
    this.#index = index;
    this.#data = EMPTY_BLOCK.iterator();
    this.#onClose = onClose;
    this.#edges = edges;
  }

  /** Keeps #edges right after a move: on a block's first or last entry, or not. */
  #noteEdge(): void {
    const edges = this.#edges;
    if (edges === undefined) return;
    const data = this.#data;
    const atEdge = data.atLast || data.atFirst;
    if (atEdge !== this.#atEdge) {
      this.#atEdge = atEdge;
      edges.count += atEdge ? 1 : -1;
    }
  }

  valid(): boolean {
    return this.#data.valid();
  }

  seekToFirst(): void {
    this.#index.seekToFirst();
    if (this.#load()) this.#data.seekToFirst();
    this.#skipForward();
    this.#noteEdge();
  }

  seekToLast(): void {
    this.#index.seekToLast();
    if (this.#load()) this.#data.seekToLast();
    this.#skipBackward();
    this.#noteEdge();
  }

  seek(userKey: Uint8Array, seq: number): void {
    this.#index.seek(userKey, seq);
    if (this.#load()) this.#data.seek(userKey, seq);
    this.#skipForward();
    this.#noteEdge();
  }

  seekForPrev(userKey: Uint8Array, seq: number): void {
    // The first block whose last key is >= the target holds the answer, or its predecessor does.
    this.#index.seek(userKey, seq);
    if (!this.#index.valid()) this.#index.seekToLast();
    if (this.#load()) this.#data.seekForPrev(userKey, seq);
    this.#skipBackward();
    this.#noteEdge();
  }

  next(): void {
    this.#data.next();
    this.#skipForward();
    this.#noteEdge();
  }

  prev(): void {
    this.#data.prev();
    this.#skipBackward();
    this.#noteEdge();
  }

  userKey(): Buffer {
    return this.#data.userKey();
  }

  seq(): number {
    return this.#data.seq();
  }

  kind(): ValueKind {
    return this.#data.kind();
  }

  value(): Buffer {
    return this.#data.value();
  }

  readBeforeStep(forward: boolean): StepRead {
    const data = this.#data;
    if (forward ? !data.atLast : !data.atFirst) return undefined;
    const index = this.#index;
    let handle: BlockHandle;
    if (forward) {
      const at = index.peekNextValue();
      if (at === undefined) return EXHAUSTS;
      handle = this.#table.handleIn(index.block, at[0], at[1]);
    } else {
      if (index.atFirst) return EXHAUSTS;
      // A block cursor cannot look back without moving: step back and return (next() after
      // prev() parses the same entry again). Once per data block.
      index.prev();
      handle = this.#table.handleAt(index);
      index.next();
    }
    if (this.#inMemory(handle)) return undefined;
    // The blocks after this one (before it, in reverse) come in the same read, up to the
    // read-ahead size, which grows while the cursor keeps moving through the table.
    const cursor = this.#lookahead();
    const ik = index.internalKeyView();
    const n = ik.length - TRAILER_BYTES;
    cursor.seek(ik.subarray(0, n), trailerSeq(ik, n));
    if (forward) cursor.next();
    else cursor.prev();
    const read = this.#readRun(cursor, forward, this.#readAheadBytes);
    this.#readAheadBytes = Math.min(this.#readAheadBytes * 2, MAX_READ_AHEAD_BYTES);
    return read;
  }

  readBeforeSeek(target: SeekTarget): Promise<void> | undefined {
    const cursor = this.#lookahead();
    let forward = true;
    switch (target.to) {
      case 'first':
        cursor.seekToFirst();
        break;
      case 'last':
        cursor.seekToLast();
        forward = false;
        break;
      case 'at-or-after':
        cursor.seek(target.userKey, target.seq);
        break;
      case 'at-or-before':
        cursor.seek(target.userKey, target.seq);
        if (!cursor.valid()) cursor.seekToLast();
        forward = false;
        break;
    }
    // A seek may be a lookup that reads one entry: its block, and the one beside it, where the
    // seek lands when the target falls between the block's keys and its index key (going
    // forward) or before the block's first key (in reverse, which is common). Read-ahead
    // proper starts with the moves after it.
    this.#readAheadBytes = MIN_READ_AHEAD_BYTES;
    if (!cursor.valid() || this.#inMemory(this.#table.handleAt(cursor))) return undefined;
    return this.#readRun(cursor, forward, 0, 2);
  }

  #lookahead(): BlockIterator {
    return (this.#seekIndex ??= this.#table.indexCursor());
  }

  /** Whether the block at `handle` can be had without a read. */
  #inMemory(handle: BlockHandle): boolean {
    return handle.offset === this.#blockOffset || this.#readAhead.has(handle.offset) || this.#table.cachedBlock(handle) !== undefined;
  }

  /**
   * Reads, in one read on the thread pool, the block at `cursor` (an index cursor) and the
   * ones after it (before it, in reverse) that are not in memory, while they total at most
   * `bytes` or number fewer than `minBlocks`; they then replace what was read ahead before.
   */
  #readRun(cursor: BlockIterator, forward: boolean, bytes: number, minBlocks = 1): Promise<void> {
    const run = [this.#table.handleAt(cursor)];
    let total = run[0]!.size;
    for (;;) {
      if (forward) cursor.next();
      else cursor.prev();
      if (!cursor.valid()) break;
      const handle = this.#table.handleAt(cursor);
      if ((run.length >= minBlocks && total + handle.size > bytes) || this.#inMemory(handle)) break;
      run.push(handle);
      total += handle.size;
    }
    if (!forward) run.reverse();
    return this.#table.readBlocksAsync(run).then((blocks) => {
      const ahead = new Map<number, Block>();
      for (const block of blocks) ahead.set(block.offset, block);
      this.#readAhead = ahead;
    });
  }

  close(): void {
    this.#index.close();
    this.#data.reset(EMPTY_BLOCK);
    this.#blockOffset = -1;
    this.#readAhead = new Map();
    this.#noteEdge();
    const onClose = this.#onClose;
    this.#onClose = undefined;
    onClose?.();
  }

  /** Points the data cursor at the index cursor's block; false when the index cursor is done. */
  #load(): boolean {
    if (!this.#index.valid()) {
      this.#data.reset(EMPTY_BLOCK);
      this.#blockOffset = -1;
      return false;
    }
    const handle = this.#table.handleAt(this.#index);
    if (handle.offset !== this.#blockOffset) {
      let block = this.#readAhead.get(handle.offset);
      if (block !== undefined) this.#readAhead.delete(handle.offset);
      else block = this.#table.readBlock(handle);
      this.#data.reset(block);
      this.#blockOffset = handle.offset;
    }
    return true;
  }

  #skipForward(): void {
    while (!this.#data.valid() && this.#index.valid()) {
      this.#index.next();
      if (this.#load()) this.#data.seekToFirst();
    }
  }

  #skipBackward(): void {
    while (!this.#data.valid() && this.#index.valid()) {
      this.#index.prev();
      if (this.#load()) this.#data.seekToLast();
    }
  }
}
