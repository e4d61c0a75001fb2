import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises';
import { TdekvError, isTdekvError } from '../errors.js';
import { engineFsOf, type EngineFs } from './engine-fs.js';
import { silentLogger, type Logger } from '../log/logger.js';
import { Mutex } from '../util/mutex.js';
import { SLICE_MS, URGENT_FLUSH_SLICE_MS, type JobContext } from './background-job.js';
import { BackgroundWorker, type BackgroundThreadInfo } from './background/worker-host.js';
import { BlockCache } from './block-cache.js';
import { EngineCheckpoint } from './checkpoint.js';
import { ExportPool } from './export/export-pool.js';
import { bloomHash } from './bloom.js';
import { CommitQueue } from './commit.js';
import { Compaction } from './compaction/compaction.js';
import { planFor, pickSizeCompaction, type CompactionPlan } from './compaction/picker.js';
import { runCompaction, type CompactionContext } from './compaction/runner.js';
import { ConcatIterator } from './concat-iterator.js';
import { asBuffer, DbIterator, toUserRange } from './db-iterator.js';
import { CURRENT, manifestName, tableName } from './file-names.js';
import { writeMemtable } from './flush.js';
import { ValueKind } from './internal-key.js';
import { allReads, type BlockEdges, type InternalIterator } from './iterator.js';
import { firstMemtableSizes, Memtable, STAGED_LINK_BOUND, type MemtableSizes } from './memtable.js';
import type { MemtableMemory } from './memtable-memory.js';
import { MergingIterator } from './merging-iterator.js';
import { CompactionPauses, DiskRoom, flushMargin, formatBytes, noRoomError, spaceMargin } from './no-space-recovery.js';
import { ErrorHandler, type WriteFailure } from './error-handler.js';
import { deleteObsoleteFiles } from './obsolete-files.js';
import { DEFAULT_BACKGROUND_THREAD, DEFAULT_WAL_SYNC, resolveTuning, WAL_RECOVERY_MODES, WAL_SYNC_MODES, type EngineOptions, type EngineTuning, type WalRecoveryMode, type WalSyncMode } from './options.js';
import { recover } from './recovery.js';
import { SnapshotList } from './snapshot-list.js';
import { TableCache } from './table-cache.js';
import { NOT_CACHED, type TableGetResult } from './table-reader.js';
import { ReadLatency } from './read-latency.js';
import { discardTableFile, type TableOutputContext } from './table-output.js';
import type { BatchOp, EngineIterator, IteratorOptions, ReadOptions, Snapshot, WriteOptions } from './types.js';
import { compareUserKeyOf, type Version } from './version.js';
import { pickEncryptionCompaction, offKeyTables } from './encryption-scan.js';
import { emptyEdit, type FileMeta, type VersionEdit } from './version-edit.js';
import { VersionSet } from './version-set.js';
import { WalManager } from './wal.js';
import { WritePacer } from './write-pacing.js';
import { decodeBatchAt, encodeBatch, setBatchSequence, type WriteBatchBuilder } from './write-batch.js';

export interface EngineStats {
  levels: Array<{ level: number; files: number; bytes: number }>;
  memtableBytes: number;
  immutableMemtable: boolean;
  lastSequence: number;
  liveSnapshots: number;
  blockCache: { usage: number; capacity: number };
  flushes: number;
  compactions: number;
  compactionBytesRead: number;
  compactionBytesWritten: number;
  writeSlowdowns: number;
  writeStops: number;
  /** Why writes are refused; set until a reopen, or until space is freed when backgroundErrorRecoverable. */
  backgroundError?: string;
  /** Set with backgroundError for a full disk (ENOSPC, EDQUOT): the engine retries and resumes writes by itself. */
  backgroundErrorRecoverable?: boolean;
  /** While writes are refused for a full disk: ms until the next retry. */
  noSpaceNextRetryMs?: number;
  /** Retries after a full disk that found it still full, and recoveries (writes resumed), since open. */
  noSpaceRetries: number;
  noSpaceRecoveries: number;
  /** A background compaction not started for lack of room: what it needs, what is free, since when (ISO 8601). */
  compactionPaused?: { needBytes: number; freeBytes: number; since: string };
  /** Compactions not started for lack of room, since open. */
  compactionsPaused: number;
}

export type { WriteFailure } from './error-handler.js';

/**
 * How far past write-buffer-size a memtable may grow while the previous one is still being
 * flushed. Either memtable may be that big, so together they hold at most
 * 2 × (1 + FLUSH_GRACE) × write-buffer-size.
 */
const FLUSH_GRACE = 0.5;

/**
 * The worker thread starts loading when the first memtable is this fraction of
 * write-buffer-size full (an eighth: 2 MiB by default), so that engines that write little
 * never start one. At half full (until the ninth session) a bulk load's first flush came
 * before the worker had loaded (~150 ms here) and ran on the main thread.
 */
const WORKER_WARM_UP_FILL = 8;

/**
 * An LSM tree on the encrypted env: a write-ahead log and memtable in front, sorted tables
 * in levels behind, merged by background compaction. Every file goes through the env, so
 * it is encrypted under the current data key when written; compaction rewrites old files
 * and so moves data to the current key over time.
 *
 * This class is the façade: it holds the state and wires the paths together. The paths live
 * in their own modules: the write queue and group commit (commit.ts), the WAL (wal.ts),
 * recovery at open (recovery.ts), the flush runner (flush.ts), compaction (compaction/: the
 * picker, the Compaction and its rules, the runner), obsolete-file removal
 * (obsolete-files.ts) and the no-space policy (no-space-recovery.ts). The flush and
 * compaction runners see only table metadata and an output context; installing what they
 * return (the version edit) stays here.
 */
export class Engine {
  // Set at open, read by every path. The env is used only through #env* call sites below.
  readonly env: EngineFs;
  readonly tuning: EngineTuning;
  /** For messages and logs. */
  readonly #dataDir: string;
  readonly #logger: Logger;
  readonly #blockCache: BlockCache;
  /** How long the tables' synchronous reads take: whether the disk, not the page cache, serves them. */
  readonly #readLatency = new ReadLatency();
  readonly #tables: TableCache;
  // The version set: installed by recovery, flush and compaction (#logAndApply); read by reads and the picker.
  readonly #versions: VersionSet;
  // Commit path (commit.ts, wal.ts): the queue, the current WAL, the memtable writes go to, the last sequence.
  readonly #commits: CommitQueue;
  readonly #wal: WalManager;
  #mem: Memtable;
  #lastSeq = 0;
  /** The fsync of syncAppendedWal() in progress, which runs beside the queue; close() waits for it. */
  #appendedSync: Promise<void> | undefined;
  // Reads: snapshots pin sequence numbers (flush and compaction keep what they may read); get()s waiting on the thread pool, which close() waits for.
  readonly #snapshots = new SnapshotList();
  readonly #asyncReads = new Set<Promise<unknown>>();
  /** Commit path (commit.ts, wal.ts): where a sync write's fsync runs (EngineSettings.walSync, as opened). */
  readonly walSync: WalSyncMode;
  // Flush path (flush.ts): the memtable being flushed, and the flush in progress.
  #imm: Memtable | undefined;
  #flushing: Promise<void> | undefined;
  // Compaction path (compaction/): one compaction at a time, and where each level's next size compaction starts.
  readonly #compactionMutex = new Mutex();
  readonly #compactPointers = new Map<number, Buffer>();
  // Table outputs of flush, compaction and recovery: kept from obsolete-file removal until installed.
  readonly #pendingOutputs = new Set<number>();
  /** Outputs of a flush or compaction whose manifest edit failed: kept until a later edit supersedes it. */
  readonly #orphanOutputs = new Set<number>();
  // Background work (the scheduler below): the loop and its waiters.
  #bg: Promise<void> | undefined;
  #bgWaiters: Array<() => void> = [];
  // Where flushes and compactions run (background/): the worker thread, or this thread when undefined (backgroundThread false).
  readonly #worker: BackgroundWorker | undefined;
  /** Worker threads for an unthrottled encryption scan's table copies (export/export-pool.ts); started at the first. */
  #tablePool: ExportPool | undefined;
  /** A compaction runs on the worker: a memtable switch then starts its flush alongside (in-process, the compaction's slices do). */
  #compactingOnWorker = false;
  /** How long writes wait while the memtable is past write-buffer-size and the last one is still flushing (flush path: its speed; commit path: the waits). */
  readonly #pacer = new WritePacer();
  // Failures and a full disk (error-handler.ts, no-space-recovery.ts): why writes are refused, paused compactions, free space.
  readonly #errors: ErrorHandler;
  readonly #pauses: CompactionPauses;
  readonly #room: DiskRoom;
  // Lifecycle (close()).
  #closing = false;
  #closed = false;
  #closePromise: Promise<void> | undefined;
  // Counters for stats(), bumped by the path each names.
  readonly #stats = { flushes: 0, compactions: 0, compactionBytesRead: 0, compactionBytesWritten: 0, writeSlowdowns: 0, writeStops: 0 };

  private constructor(env: EngineFs, logger: Logger, tuning: EngineTuning, versions: VersionSet, backgroundThread: boolean, walSync: WalSyncMode) {
    this.env = env;
    this.#dataDir = env.dataDir;
    this.#logger = logger;
    this.tuning = tuning;
    this.#mem = this.#newMemtable(firstMemtableSizes(tuning.writeBufferSize));
    this.#versions = versions;
    this.#blockCache = new BlockCache(tuning.blockCacheSize);
    this.#tables = new TableCache((n) => env.openReadSync(tableName(n)), { maxOpenFiles: tuning.maxOpenFiles, blockCache: this.#blockCache, openFileAsync: (n) => env.openRead(tableName(n)), readLatency: this.#readLatency });
    this.#wal = new WalManager((name) => env.create(name), () => versions.newFileNumber());
    this.walSync = walSync;
    this.#commits = new CommitQueue(
      (batch, sync) => this.#commitGroup(batch, sync),
      (err) => this.#errors.failed(err, false),
      // An inline fsync blocks this thread, so sync writers arriving meanwhile cannot queue
      // behind it: the queue waits for the rest of the turn's writers before it commits.
      { gatherSyncWriters: walSync === 'inline', commitNow: (batch) => this.#commitNow(batch) },
    );
    const policy = { initialMs: tuning.noSpaceRetryIntervalMs, maxMs: tuning.noSpaceRetryMaxIntervalMs };
    this.#errors = new ErrorHandler(policy, this.#dataDir, logger, { closing: () => this.#closing, retry: () => void this.#queueRecovery() });
    this.#pauses = new CompactionPauses(policy);
    this.#room = new DiskRoom(() => env.freeSpace(), this.#dataDir, logger);
    this.#worker = backgroundThread
      ? new BackgroundWorker({
          fs: env,
          newFileNumber: () => versions.newFileNumber(),
          pendingOutputs: this.#pendingOutputs,
          tuning,
          logger,
          onCrash: (err) => {
            this.#errors.failed(err, false);
            this.#notifyBackgroundProgress();
          },
        })
      : undefined;
  }

  static async open(options: EngineOptions): Promise<Engine> {
    const { env: given, logger: givenLogger, walRecoveryMode = 'absolute-consistency', backgroundThread = DEFAULT_BACKGROUND_THREAD, walSync = DEFAULT_WAL_SYNC, ...partial } = options;
    if (typeof backgroundThread !== 'boolean') throw new TdekvError('CONFIG_INVALID', `engine option backgroundThread must be true or false (got ${JSON.stringify(backgroundThread)})`);
    if (!(WAL_SYNC_MODES as readonly string[]).includes(walSync)) {
      throw new TdekvError('CONFIG_INVALID', `engine option walSync must be one of ${WAL_SYNC_MODES.join(', ')} (got ${JSON.stringify(walSync)})`);
    }
    // Only the file operations: the engine never holds what can export or rotate keys.
    const env = engineFsOf(given);
    const tuning = resolveTuning(partial);
    if (!(WAL_RECOVERY_MODES as readonly string[]).includes(walRecoveryMode)) {
      throw new TdekvError('CONFIG_INVALID', `engine option walRecoveryMode must be one of ${WAL_RECOVERY_MODES.join(', ')} (got ${JSON.stringify(walRecoveryMode)})`);
    }
    const logger = givenLogger ?? silentLogger();
    const { versions, existed } = await VersionSet.recover(env, tuning.numLevels, logger);
    const engine = new Engine(env, logger, tuning, versions, backgroundThread, walSync);
    try {
      await engine.#recover(existed, walRecoveryMode);
    } catch (err) {
      await engine.#releaseResources();
      throw err;
    }
    engine.#scheduleBackgroundWork();
    return engine;
  }

  // ---------------------------------------------------------------- reads

  getSync(key: Uint8Array, options?: ReadOptions): Buffer | undefined {
    return this.#lookup(key, options, false) as Buffer | undefined;
  }

  /**
   * getSync from what is in memory alone (memtables, open tables, the block cache): NOT_CACHED
   * when it would have to open a table or read a block. No promise, no read: callers that may
   * wait call get() only then.
   */
  getCached(key: Uint8Array, options?: ReadOptions): Buffer | undefined | typeof NOT_CACHED {
    return this.#lookup(key, options, true);
  }

  #lookup(key: Uint8Array, options: ReadOptions | undefined, cachedOnly: boolean): Buffer | undefined | typeof NOT_CACHED {
    this.#checkOpen();
    const k = asBuffer(key);
    const seq = options?.snapshot?.sequence ?? this.#lastSeq;
    // One hash serves the memtables' filters and every table's bloom filter.
    const hash = bloomHash(k);
    let r = this.#mem.mayContainHash(hash) ? this.#mem.get(k, seq) : undefined;
    if (!r && this.#imm?.mayContainHash(hash)) r = this.#imm.get(k, seq);
    if (!r) {
      const found = this.#tablesGet(k, seq, hash, cachedOnly);
      if (found === NOT_CACHED) return NOT_CACHED;
      r = found;
    }
    return r && r.kind === ValueKind.Value ? Buffer.from(r.value) : undefined;
  }

  /**
   * The newest entry of `k` at `seq` in the current version's tables, looked up as getSync
   * does; with `cachedOnly`, NOT_CACHED as soon as a table is not open or a block is not in
   * the block cache (get() then reads on the thread pool).
   */
  #tablesGet(k: Buffer, seq: number, hash: number, cachedOnly: boolean): TableGetResult | undefined | typeof NOT_CACHED {
    const v = this.#versions.current;
    for (const f of v.levels[0]!) {
      if (compareUserKeyOf(f.smallest, k) > 0 || compareUserKeyOf(f.largest, k) < 0) continue;
      const r = this.#tableLookup(f.number, k, seq, hash, cachedOnly);
      if (r) return r;
    }
    for (let level = 1; level < v.levels.length; level++) {
      const f = v.fileFor(level, k);
      const r = f && this.#tableLookup(f.number, k, seq, hash, cachedOnly);
      if (r) return r;
    }
    return undefined;
  }

  #tableLookup(fileNumber: number, k: Buffer, seq: number, hash: number, cachedOnly: boolean): TableGetResult | undefined | typeof NOT_CACHED {
    if (!cachedOnly) return this.#tables.get(fileNumber).get(k, seq, hash);
    const reader = this.#tables.cached(fileNumber);
    return reader === undefined ? NOT_CACHED : reader.getCached(k, seq, hash);
  }

  /**
   * Whether the synchronous table reads lately were slow: the disk, not the page cache, served
   * a good share of them (read-latency.ts). A caller that can wait then does better to read
   * on the thread pool (get(), an iterator's nextBatch()) than on this thread.
   */
  readsAreSlow(): boolean {
    return this.#readLatency.slow;
  }

  /**
   * As getSync, but a table block that is not in the block cache is read on the thread pool
   * rather than with a pread on the event loop (a cold disk then stalls only this get). It
   * reads at the point in time of the call: the memtables are looked at then, and the
   * version of that moment is pinned, with its tables, until the reads are done.
   */
  async get(key: Uint8Array, options?: ReadOptions): Promise<Buffer | undefined> {
    // From memory when everything the lookup needs is there: no read, no await.
    const cached = this.getCached(key, options);
    if (cached !== NOT_CACHED) return cached;
    // Not in the memtables, and a table to open or a block to read: the tables of this moment's version.
    const k = asBuffer(key);
    const seq = options?.snapshot?.sequence ?? this.#lastSeq;
    const hash = bloomHash(k);
    const v = this.#versions.acquire();
    const reading = this.#trackRead((async () => {
      for (const f of v.levels[0]!) {
        if (compareUserKeyOf(f.smallest, k) > 0 || compareUserKeyOf(f.largest, k) < 0) continue;
        const found = await this.#tableGet(f.number, k, seq, hash);
        if (found) return found;
      }
      for (let level = 1; level < v.levels.length; level++) {
        const f = v.fileFor(level, k);
        const found = f && (await this.#tableGet(f.number, k, seq, hash));
        if (found) return found;
      }
      return undefined;
    })().finally(() => this.#versions.release(v)));
    const r = await reading;
    return r && r.kind === ValueKind.Value ? Buffer.from(r.value) : undefined;
  }

  /** A read on the thread pool that close() must wait for before it closes the tables. */
  #trackRead<T>(read: Promise<T>): Promise<T> {
    const tracked = read.finally(() => this.#asyncReads.delete(tracked));
    this.#asyncReads.add(tracked);
    return tracked;
  }

  async #tableGet(tableNumber: number, key: Buffer, seq: number, hash: number): Promise<TableGetResult | undefined> {
    // A table not open yet is opened with its metadata read on the thread pool too.
    const opening = this.#tables.prepare(tableNumber);
    if (opening !== undefined) await opening;
    const { reader, release } = this.#tables.acquire(tableNumber);
    try {
      return await reader.getAsync(key, seq, hash);
    } finally {
      release();
    }
  }

  snapshot(): Snapshot {
    this.#checkOpen();
    return this.#snapshots.create(this.#lastSeq);
  }

  /**
   * Opens on the thread pool the level-0 tables an iterator made now would open synchronously
   * (level-0 files are all opened when an iterator is made; deeper levels' files as it reaches
   * them, ahead of it). Undefined when every one is open. The version is pinned meanwhile.
   */
  prepareIterator(): Promise<void> | undefined {
    this.#checkOpen();
    const version = this.#versions.acquire();
    const opening = allReads(version.levels[0]!.map((f) => this.#tables.prepare(f.number)));
    if (opening === undefined) {
      this.#versions.release(version);
      return undefined;
    }
    return this.#trackRead(opening.finally(() => this.#versions.release(version)));
  }

  iterator(options: IteratorOptions = {}): EngineIterator {
    this.#checkOpen();
    const seq = options.snapshot?.sequence ?? this.#lastSeq;
    const version = this.#versions.acquire();
    const edges: BlockEdges = { count: 0 };
    let children: InternalIterator[];
    try {
      children = this.#internalIterators(version, edges);
    } catch (err) {
      // A table that cannot be opened (damaged, missing): do not leave its version pinned.
      this.#versions.release(version);
      throw err;
    }
    return new DbIterator(new MergingIterator(children), seq, toUserRange(options), options.reverse ?? false, options.limit ?? -1, () => this.#versions.release(version), (read) => this.#trackRead(read), edges);
  }

  // ---------------------------------------------------------------- writes

  /** Applies the operations atomically, in order; later operations on a key win. */
  write(ops: readonly BatchOp[], options: WriteOptions = {}): Promise<void> {
    let batch: Buffer;
    try {
      this.#checkOpen();
      // Encoded now (and checked: a bad op refuses the whole write): the caller may reuse its
      // buffers as soon as write() returns.
      batch = encodeBatch(ops, 0);
    } catch (err) {
      return Promise.reject(err);
    }
    if (ops.length === 0) return Promise.resolve();
    return this.#commits.write(batch, options.sync === true);
  }

  /**
   * Applies the ops of `batch` atomically, in order, and empties it (it may be refilled at
   * once): write() without an array of op objects.
   */
  writeBatch(batch: WriteBatchBuilder, options: WriteOptions = {}): Promise<void> {
    // Taken first: a refused write leaves the builder empty too, as a failed write() leaves its caller's array behind.
    const encoded = batch.count === 0 ? undefined : batch.take();
    try {
      this.#checkOpen();
    } catch (err) {
      return Promise.reject(err);
    }
    if (encoded === undefined) return Promise.resolve();
    return this.#commits.write(encoded, options.sync === true);
  }

  /**
   * writeBatch() without sync, done on the spot when it can be: when no write or task is
   * queued or running and the memtable has room, `batch` is committed (in the WAL and the
   * memtable, visible) before this returns true, and emptied. False: nothing was done and
   * `batch` is as it was; call writeBatch(). Throws what a refused or failed writeBatch()
   * rejects with, and then the batch is gone as it is after those (emptied: a caller that
   * goes on filling it must not commit the refused ops with the next ones). The server
   * commits its turn's batch this way, so the replies that wait for it go out in the same pass.
   */
  writeBatchNow(batch: WriteBatchBuilder): boolean {
    if (batch.count === 0) return true;
    let room: boolean;
    try {
      this.#checkOpen();
      room = !this.#commits.busy && this.#roomNow();
    } catch (err) {
      batch.take();
      throw err;
    }
    if (!room) return false;
    const encoded = batch.take();
    try {
      this.#applyNow(encoded);
    } catch (err) {
      this.#errors.failed(err, false);
      throw err;
    }
    return true;
  }

  put(key: Uint8Array, value: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.write([{ type: 'put', key, value }], options);
  }

  del(key: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.write([{ type: 'del', key }], options);
  }

  /**
   * Fsyncs the WAL, making every write acknowledged so far survive a power loss. Queued behind
   * earlier writes, so it never races a memtable switch closing the log (the server's
   * `sync-writes = "everysec"` calls it once a second).
   */
  syncWal(): Promise<void> {
    try {
      this.#checkOpen();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#commits.run(() => this.#syncWal());
  }

  /**
   * syncWal() beside the write queue rather than in it: fsyncs what the current WAL holds now
   * (every write applied so far) while later writes go on, as Redis's `appendfsync everysec`
   * fsyncs on a background thread. In the queue, writes waited for each fsync: the server's
   * once-a-second sync cost `SET` about a tenth of its throughput. A call while one is in
   * progress returns that one (like Redis, which postpones an fsync while one runs); it
   * covers what was applied before it began. A switch to a new WAL meanwhile is safe: the old
   * log is closed only after its pending fsync, and is synced before it is closed anyway.
   */
  syncAppendedWal(): Promise<void> {
    try {
      this.#checkOpen();
    } catch (err) {
      return Promise.reject(err);
    }
    this.#appendedSync ??= this.#syncWal().finally(() => {
      this.#appendedSync = undefined;
    });
    return this.#appendedSync;
  }

  /** Writes the memtable out to a level-0 table (waits for it). */
  async flush(): Promise<void> {
    this.#checkOpen();
    // The switch is queued behind earlier writes; the flush itself is awaited outside the queue.
    const { done } = await this.#commits.run(() => this.#switchForFlush());
    await done;
  }

  /**
   * A consistent version for a backup: the memtable is flushed, then the version is pinned
   * (its tables survive compaction until release()). Writes go on meanwhile; they are not in it.
   */
  async checkpoint(): Promise<EngineCheckpoint> {
    await this.flush();
    this.#checkOpen();
    const v = this.#versions.acquire();
    const counters = { nextFileNumber: this.#versions.nextFileNumber, lastSequence: this.#lastSeq };
    return new EngineCheckpoint(this.env, v, counters, () => this.#pool(), () => {
      this.#versions.release(v);
      // Tables compacted away while pinned can go now; a failure here only leaves them for the next pass.
      if (!this.#closing && !this.#closed) void this.#deleteObsoleteFiles().catch((err: unknown) => this.#logger.warn({ err }, 'could not remove obsolete files after a checkpoint'));
    });
  }

  /**
   * Rewrites every table overlapping [start, end] (inclusive; undefined = unbounded) down
   * the levels, dropping deleted and overwritten data. Output goes under the current data
   * key and method, so compacting everything moves the whole database to the current key.
   */
  async compactRange(start?: Uint8Array, end?: Uint8Array): Promise<void> {
    await this.flush();
    const lo = start && asBuffer(start);
    const hi = end && asBuffer(end);
    const v = this.#versions.current;
    let maxLevel = 0;
    for (let l = 0; l < v.levels.length; l++) if (v.overlapping(l, lo, hi).length > 0) maxLevel = l;
    for (let level = 0; level <= maxLevel; level++) {
      this.#checkOpen();
      const outputLevel = Math.min(level + 1, this.tuning.numLevels - 1);
      await this.#compactOnce((cur) => {
        // Level 0 files overlap each other: moving some but not older ones down would let a stale value shadow a newer one.
        const first = level === 0 ? (cur.overlapping(0, lo, hi).length > 0 ? [...cur.levels[0]!] : []) : cur.overlapping(level, lo, hi);
        return first.length > 0 ? planFor(cur, level, outputLevel, first, 'manual') : undefined;
      });
    }
  }

  // ---------------------------------------------------------------- the encryption scan (encryption-scan.ts)

  /**
   * "Log zeroing" (SQL Server): the WAL, the manifest and CURRENT move to the current method
   * and data key now, so nothing new is written in the old form. A memtable with entries is
   * flushed (its WAL then starts under the new key); an empty one only switches its WAL, which
   * is safe because no entry depends on the old log. Either way a version edit follows, which
   * starts a new manifest (VersionSet replaces one under an old key) and swings CURRENT.
   */
  async rollLogsToCurrentKey(): Promise<void> {
    this.#checkOpen();
    for (let attempt = 0; attempt < 8; attempt++) {
      const need = await this.#commits.run(async (): Promise<'flush' | 'done'> => {
        if (!this.env.needsRewrite(this.#wal.path)) return 'done';
        // Entries in the memtable (or one being flushed) live only in the old log until flushed.
        if (this.#mem.entries > 0 || this.#imm) return 'flush';
        await this.#syncWal();
        const old = await this.#wal.switch();
        await old!.close();
        return 'done';
      });
      if (need === 'done') break;
      await this.flush();
    }
    await this.#waitForImmFlushed();
    if (this.env.needsRewrite(manifestName(this.#versions.manifestNumber)) || this.env.needsRewrite(CURRENT) || this.#versions.logNumber < this.#wal.number) {
      // An empty edit: what it records is the new log number; what it causes is a new manifest.
      await this.#commits.run(async () => {
        if (this.#imm) return;
        const edit = emptyEdit();
        edit.logNumber = this.#wal.number;
        edit.lastSequence = this.#lastSeq;
        await this.#logAndApply(edit, []);
      });
    }
    await this.#deleteObsoleteFiles();
  }

  /**
   * Rewrites the next table(s) not under the current method and data key (one scan step; see
   * encryption-scan.ts), through the same runner, thread and rules as every compaction.
   * Undefined when no table is left off the current key.
   */
  async rewriteNextOffKeyTable(pace?: (bytes: number) => Promise<void>): Promise<{ inputBytes: number; offKeyBytes: number; outputBytes: number; pacedBytes: number } | undefined> {
    this.#checkOpen();
    const offKey = (f: FileMeta): boolean => this.#envNeedsRewrite(f.number);
    let result: { inputBytes: number; offKeyBytes: number; outputBytes: number; pacedBytes: number } | undefined;
    const before = this.#stats.compactionBytesWritten;
    let pacedBytes = 0;
    const counted = pace && ((bytes: number): Promise<void> => ((pacedBytes += bytes), pace(bytes)));
    await this.#compactOnce((v) => {
      const plan = pickEncryptionCompaction(v, this.tuning, offKey, () => this.#level0OutputNumbers(v.levels[0]!.length));
      if (plan) {
        const inputs = [...plan.inputs[0], ...plan.inputs[1]];
        result = { inputBytes: inputs.reduce((n, f) => n + f.size, 0), offKeyBytes: inputs.filter(offKey).reduce((n, f) => n + f.size, 0), outputBytes: 0, pacedBytes: 0 };
      }
      return plan;
    }, 'throw', counted);
    if (result) {
      result.outputBytes = this.#stats.compactionBytesWritten - before;
      result.pacedBytes = pacedBytes;
    }
    this.#errors.throwIfRefused();
    return result;
  }

  /**
   * Numbers for an in-place copy of level 0 (see encryption-scan.ts), taken now, ascending and
   * kept from obsolete-file removal; undefined when the copy could be outranked: a flush in
   * flight already holds a smaller number for newer data. (The copy runs on this thread, see
   * #runsOnWorker: on the background thread a job's outputs are numbered while it runs.)
   */
  #level0OutputNumbers(count: number): number[] | undefined {
    if (this.#imm || this.#flushing) return undefined;
    const numbers: number[] = [];
    for (let i = 0; i < count; i++) {
      const n = this.#versions.newFileNumber();
      this.#pendingOutputs.add(n);
      numbers.push(n);
    }
    return numbers;
  }

  #releaseOutputNumbers(numbers: readonly number[], err: unknown): never {
    for (const n of numbers) this.#pendingOutputs.delete(n);
    throw err;
  }

  /** Tables not under the current method and data key, and their bytes. */
  offKeyTables(): { count: number; bytes: number } {
    return offKeyTables(this.#versions.current, (f) => this.#envNeedsRewrite(f.number));
  }

  /** Waits until no flush or compaction is pending (for tests and benchmarks). */
  async waitForBackgroundWork(): Promise<void> {
    while (this.#bg) await this.#bg;
    this.#errors.throwIfRefused();
  }

  stats(): EngineStats {
    const v = this.#versions.current;
    const s: EngineStats = {
      levels: v.levels.map((files, level) => ({ level, files: files.length, bytes: v.levelBytes(level) })),
      memtableBytes: this.#mem.approximateBytes + (this.#imm?.approximateBytes ?? 0),
      immutableMemtable: this.#imm !== undefined,
      lastSequence: this.#lastSeq,
      liveSnapshots: this.#snapshots.size,
      blockCache: { usage: this.#blockCache.usage, capacity: this.#blockCache.capacity },
      ...this.#stats,
      noSpaceRetries: this.#errors.noSpace.retries,
      noSpaceRecoveries: this.#errors.noSpace.recoveries,
      compactionsPaused: this.#pauses.count,
    };
    Object.assign(s, this.#errors.describe());
    const p = this.#pauses.current;
    if (p) s.compactionPaused = { needBytes: p.needBytes, freeBytes: p.freeBytes, since: new Date(p.since).toISOString() };
    return s;
  }

  /**
   * Why writes are refused now, or undefined when they are accepted. `recoverable`: the disk
   * was full, and writes resume by themselves once space is freed (the engine retries with
   * backoff); otherwise only a reopen clears it.
   */
  writeFailure(): WriteFailure | undefined {
    return this.#errors.failure();
  }

  /**
   * The background worker thread (undefined with backgroundThread false): its thread id while it
   * runs, and the flushes and compactions that ran on it.
   */
  backgroundThread(): BackgroundThreadInfo | undefined {
    return this.#worker && { ...this.#worker.info };
  }

  /**
   * Starts the background worker thread now and resolves once it takes jobs (otherwise it
   * starts when the first memtable is an eighth full, and jobs run in-process until it has
   * loaded). Resolves at once with backgroundThread false.
   *
   * `warmUpFlush`: the thread then runs the flush code once on made-up entries, in the
   * background and only until its first job, so that the first real flush runs compiled code
   * (background/flush-warm-up.ts): for a long-running process, such as the server. It costs
   * about 0.3 s of that thread's CPU, once, and writes nothing to disk. No effect if the thread
   * runs already.
   */
  async startBackgroundThread(options: { warmUpFlush?: boolean } = {}): Promise<void> {
    this.#checkOpen();
    await this.#worker?.whenReady(options.warmUpFlush === true);
  }

  /**
   * Tests only: makes the background worker thread die as a crash would ('throw': an uncaught
   * error; 'exit': process.exit), now, or mid-job: when a job asks for its atTable-th output table from now.
   */
  crashBackgroundThreadForTest(how: 'throw' | 'exit', atTable?: number): void {
    this.#worker?.crashForTest(how, atTable);
  }

  /** Table files of the current version per level: for verification and tests. */
  liveTables(): Array<{ level: number; number: number; name: string; size: number }> {
    return this.#versions.current.levels.flatMap((files, level) => files.map((f) => ({ level, number: f.number, name: tableName(f.number), size: f.size })));
  }

  /** Waits for queued writes, flushes the memtable, stops background work and closes files. The env stays open. */
  close(): Promise<void> {
    // Concurrent calls share one close.
    this.#closePromise ??= this.#close();
    return this.#closePromise;
  }

  async #close(): Promise<void> {
    // Space may have come back since the last retry: one more try lets the flush below succeed.
    if (this.#errors.noSpace.active && !this.#errors.sticky) await this.#queueRecovery();
    try {
      if (!this.#errors.refusing && this.#mem.entries > 0) await this.flush();
    } catch (err) {
      this.#logger.warn({ err }, 'flushing the memtable at close failed; its writes stay in the write-ahead log');
    }
    this.#closing = true;
    // A compaction on the worker gives up at its next slice, as one in-process does.
    this.#worker?.cancelCompactions();
    this.#errors.noSpace.cancel();
    this.#pauses.cancel();
    while (this.#commits.busy) await sleep(1);
    while (this.#appendedSync) await this.#appendedSync.catch(() => undefined);
    while (this.#bg) await this.#bg.catch(() => undefined);
    await this.#compactionMutex.run(async () => undefined);
    // A flush started alongside a compaction on the worker is not the loop's: wait for it too.
    while (this.#flushing) await this.#flushing.catch(() => undefined);
    // Tables are closed below: not under a get() reading on the thread pool.
    while (this.#asyncReads.size > 0) await Promise.allSettled([...this.#asyncReads]);
    this.#closed = true;
    await this.#releaseResources();
  }

  // ---------------------------------------------------------------- recovery (recovery.ts)

  async #recover(existed: boolean, walRecoveryMode: WalRecoveryMode): Promise<void> {
    const job: JobContext = { output: this.#outputContext(), sliceMs: () => SLICE_MS, yieldSlice: () => yieldToEventLoop() };
    const ctx = { list: (dir: string) => this.env.list(dir), openReadSync: (name: string) => this.env.openReadSync(name), dataDir: this.#dataDir };
    this.#lastSeq = await recover({ ...ctx, versions: this.#versions, wal: this.#wal, job, tuning: this.tuning, logger: this.#logger }, existed, walRecoveryMode);
    this.#pendingOutputs.clear();
    await this.#deleteObsoleteFiles();
  }

  // ---------------------------------------------------------------- commit path (commit.ts, wal.ts)

  /** Commits one write group from the queue: sequence numbers, WAL record, memtable. */
  async #commitGroup(batch: Buffer, sync: boolean): Promise<void> {
    if (this.#closed) throw new TdekvError('CLOSED', 'the database is closed');
    await this.#makeRoomForWrite(batch.length);
    const first = this.#appendToWal(batch);
    if (sync) await this.#syncWal(this.walSync === 'inline');
    this.#insert(batch, first);
  }

  /**
   * #commitGroup for a non-sync batch that needs nothing to wait for, on the spot: false
   * (nothing done) when #makeRoomForWrite would slow it down, yield to a pending flush or
   * switch the memtable.
   */
  #commitNow(batch: Buffer): boolean {
    if (!this.#roomNow()) return false;
    this.#applyNow(batch);
    return true;
  }

  /** Whether a write may be committed without waiting (see #commitNow); throws when writes are refused. */
  #roomNow(): boolean {
    if (this.#closed) throw new TdekvError('CLOSED', 'the database is closed');
    this.#errors.throwIfRefused();
    return !this.#imm && this.#mem.approximateBytes < this.tuning.writeBufferSize && this.#versions.current.fileCount(0) < this.tuning.level0SlowdownWritesTrigger;
  }

  #applyNow(batch: Buffer): void {
    this.#insert(batch, this.#appendToWal(batch));
  }

  /** Numbers the batch's ops from the next sequence number and appends it to the WAL; returns the first number. */
  #appendToWal(batch: Buffer): number {
    const first = this.#lastSeq + 1;
    setBatchSequence(batch, first);
    // Acknowledged writes survive a process crash (the OS has them); sync ones also a power loss.
    try {
      this.#wal.appendSync(batch);
    } catch (err) {
      this.#errors.failed(err, true);
      throw err;
    }
    return first;
  }

  /** Adds a batch appended to the WAL to the memtable, which makes it visible. */
  #insert(batch: Buffer, first: number): void {
    const mem = this.#mem;
    const { count } = decodeBatchAt(batch, (seq, kind, keyOff, keyLen, valueOff, valueLen) => mem.addAt(seq, kind, batch, keyOff, keyLen, batch, valueOff, valueLen));
    this.#lastSeq = first + count - 1;
    // The worker loads while the memtable fills; jobs before it is ready run in-process.
    if (this.#worker && !this.#worker.ready && mem.approximateBytes * WORKER_WARM_UP_FILL > this.tuning.writeBufferSize) this.#worker.warmUp();
  }

  /** LevelDB's MakeRoomForWrite: slow down, then stop, rather than let memory or level 0 grow without bound. */
  async #makeRoomForWrite(writeBytes: number): Promise<void> {
    let delayed = false;
    for (;;) {
      this.#errors.throwIfRefused();
      const l0 = this.#versions.current.fileCount(0);
      if (!delayed && l0 >= this.tuning.level0SlowdownWritesTrigger) {
        this.#stats.writeSlowdowns++;
        delayed = true;
        await sleep(1);
        continue;
      }
      const bytes = this.#mem.approximateBytes;
      if (bytes < this.tuning.writeBufferSize) {
        // A flush is pending: give it a turn now, while the memtable still has room (in-process
        // its next slice; with the worker, its messages), so that a writer who never leaves the
        // microtask queue (a loop of awaited batches) slows down a little per write instead of
        // stopping for the whole flush when the memtable fills.
        // A yield costs microseconds: not counted as a slowdown (those wait 1 ms).
        if (this.#imm) await yieldToEventLoop();
        return;
      }
      // Full while the previous memtable is still being flushed: a flush on the worker takes
      // about as long as filling a memtable, so rather than stop writes for the rest of it
      // (a bulk load stopped at one flush in five), this one grows by up to FLUSH_GRACE more,
      // each write late by its share of the flush's remaining time (write-pacing.ts) so the
      // flush gains on it (a bigger memtable makes a slower flush).
      const limit = this.tuning.writeBufferSize * (1 + FLUSH_GRACE);
      if (this.#imm && bytes < limit) {
        // One delay per write at most: a write already slowed for level 0 goes on.
        if (!delayed) {
          const ms = this.#pacer.waitMs(writeBytes, bytes, limit, performance.now()) ?? 1;
          if (ms > 0) {
            this.#stats.writeSlowdowns++;
            await sleep(ms);
          } else {
            // Its share is under a millisecond: still a turn, for the worker's requests (a table grant, its result).
            await yieldToEventLoop();
          }
        }
        return;
      }
      // Waiting on level 0 helps only when the background will compact it: from the compaction
      // trigger on, and not once close() has begun (otherwise the wait loop never ends).
      const l0Stop = !this.#closing && l0 >= Math.max(this.tuning.level0StopWritesTrigger, this.tuning.level0FileNumCompactionTrigger);
      const paused = this.#pauses.current;
      if (l0Stop && paused) {
        // Only a compaction would let writes go on, and it has no room: refuse them (with the
        // reason) until space is freed, rather than hold every client with no reply.
        const err = noRoomError('compaction', paused.needBytes, paused.freeBytes, this.#dataDir);
        this.#errors.failed(err, false);
        throw err;
      }
      if (this.#imm || l0Stop) {
        this.#stats.writeStops++;
        await this.#waitForBackgroundProgress();
        continue;
      }
      await this.#switchMemtable();
    }
  }

  async #switchForFlush(): Promise<{ done: Promise<void> }> {
    if (this.#mem.entries > 0) {
      while (this.#imm) {
        this.#errors.throwIfRefused();
        await this.#waitForBackgroundProgress();
      }
      await this.#switchMemtable();
    }
    const done = this.#waitForImmFlushed();
    done.catch(() => undefined);
    return { done };
  }

  async #waitForImmFlushed(): Promise<void> {
    while (this.#imm) {
      this.#errors.throwIfRefused();
      await this.#waitForBackgroundProgress();
    }
    this.#errors.throwIfRefused();
  }

  /**
   * After a failed fsync the state of the log on disk is unknown (the kernel may have
   * dropped the dirty pages): refuse further writes until the database is reopened rather
   * than acknowledge writes that may follow a hole.
   */
  async #syncWal(inline = false): Promise<void> {
    // A WAL whose append failed is retired by the recovery, not synced: its records are in the memtable.
    if (this.#errors.noSpace.walDamaged) this.#errors.throwIfRefused();
    try {
      await this.#wal.sync({ inline });
    } catch (err) {
      this.#errors.failSticky(new TdekvError('IO_FAILED', `fsync of the write-ahead log ${this.#wal.path} failed (${String(err)}); writes are refused until the database is reopened`, { cause: err }));
      throw err;
    }
  }

  /** A new WAL for a new memtable; the full one becomes immutable and is flushed in the background. */
  async #switchMemtable(): Promise<void> {
    // Synced before it is closed, so a later sync write never survives a power loss that
    // loses earlier, unsynced writes of the previous log (RocksDB does the same).
    await this.#syncWal();
    const old = await this.#wal.switch();
    this.#imm = this.#mem;
    this.#mem = this.#newMemtable(this.#imm.sizes);
    await old!.close();
    this.#scheduleBackgroundWork();
    if (this.#compactingOnWorker) this.#flushAlongside();
  }

  // ---------------------------------------------------------------- background work

  #scheduleBackgroundWork(): void {
    if (this.#bg || this.#closed || this.#errors.refusing) return;
    this.#bg = this.#backgroundLoop().finally(() => {
      this.#bg = undefined;
      this.#notifyBackgroundProgress();
    });
  }

  async #backgroundLoop(): Promise<void> {
    try {
      for (;;) {
        if (this.#imm) {
          await this.#flushImmutable();
          continue;
        }
        if (this.#closing) return;
        // A paused compaction waits for its timer rather than ask for free space on every flush.
        if (this.#pauses.waiting) return;
        const did = await this.#compactOnce((v) => pickSizeCompaction(v, this.tuning, this.#compactPointers), 'pause');
        if (!did) return;
      }
    } catch (err) {
      if (this.#closing && isTdekvError(err, 'CLOSED')) return;
      this.#errors.failed(err, false);
    }
  }

  #notifyBackgroundProgress(): void {
    const waiters = this.#bgWaiters;
    this.#bgWaiters = [];
    for (const w of waiters) w();
  }

  #waitForBackgroundProgress(): Promise<void> {
    this.#errors.throwIfRefused();
    const p = new Promise<void>((resolve) => this.#bgWaiters.push(resolve));
    this.#scheduleBackgroundWork();
    if (!this.#bg) this.#notifyBackgroundProgress();
    return p;
  }

  // ---------------------------------------------------------------- flush path (flush.ts)

  #flushImmutable(): Promise<void> {
    this.#flushing ??= (async () => {
      const imm = this.#imm!;
      const onWorker = this.#onWorker();
      // Writes past write-buffer-size are paced by the speed of flushes on the worker (write-pacing.ts).
      if (onWorker) this.#pacer.flushStarted(imm.approximateBytes, performance.now());
      await this.#room.check('flush', imm.approximateBytes, flushMargin);
      const smallestSnapshot = this.#snapshots.oldest(this.#lastSeq);
      let files: FileMeta[];
      if (onWorker) {
        // The worker reads the immutable memtable's skip list in place (shared memory): no copy.
        files = await this.#worker!.flush(imm.shared(), smallestSnapshot);
      } else {
        const job: JobContext = {
          output: this.#outputContext(),
          sliceMs: () => (this.#mem.approximateBytes * 2 > this.tuning.writeBufferSize ? URGENT_FLUSH_SLICE_MS : SLICE_MS),
          yieldSlice: () => yieldToEventLoop(),
        };
        files = await writeMemtable(job, imm, smallestSnapshot);
      }
      const edit = emptyEdit();
      edit.newFiles = files.map((file) => ({ level: 0, file }));
      // Everything in WALs older than the current one is now in tables.
      edit.logNumber = this.#wal.number;
      edit.lastSequence = this.#lastSeq;
      await this.#logAndApply(edit, files);
      this.#imm = undefined;
      if (onWorker) this.#pacer.flushEnded(performance.now());
      // Nothing reads it any more unless an iterator over it is open (then retire() declines).
      this.#spareMemory = imm.retire() ?? this.#spareMemory;
      this.#stats.flushes++;
      this.#notifyBackgroundProgress();
      await this.#deleteObsoleteFiles();
    })().finally(() => {
      this.#flushing = undefined;
      // A flush that failed is not measured (after a success this finds nothing left to clear).
      this.#pacer.flushAbandoned();
    });
    return this.#flushing;
  }

  /** Starts the flush of a new immutable memtable while a compaction holds the background loop on the worker. */
  #flushAlongside(): void {
    if (!this.#imm || this.#errors.refusing) return;
    this.#flushImmutable()
      .catch((err: unknown) => {
        if (!(this.#closing && isTdekvError(err, 'CLOSED'))) this.#errors.failed(err, false);
      })
      .finally(() => this.#notifyBackgroundProgress());
  }

  // ---------------------------------------------------------------- compaction path (compaction/)

  /**
   * Runs one compaction chosen by `pick` against the current version; false if there was
   * none, or if it was not started for lack of room (`noRoom` 'pause': retried later; 'throw':
   * a no-space error for the caller).
   */
  #compactOnce(pick: (v: Version) => CompactionPlan | undefined, noRoom: 'pause' | 'throw' = 'throw', pace?: (bytes: number) => Promise<void>): Promise<boolean> {
    return this.#compactionMutex.run(async () => {
      if (this.#closed) return false;
      const plan = pick(this.#versions.current);
      if (!plan) {
        this.#pauses.resume();
        return false;
      }
      const compaction = new Compaction(plan, (n) => this.#envNeedsRewrite(n));
      const release = (): void => plan.outputNumbers?.forEach((n) => this.#pendingOutputs.delete(n));
      if (!compaction.isTrivialMove()) {
        // The output is at most the inputs (it only drops entries; blocks are rewritten at the
        // same sizes), and the inputs are removed only after it is installed. Flushes go first:
        // the room of the next one is kept too.
        const room = await this.#room.read();
        const need = compaction.inputBytes + this.tuning.writeBufferSize + (room ? spaceMargin(room.total) : 0);
        if (room && room.free < need) {
          release();
          if (noRoom === 'throw') throw noRoomError('compaction', need, room.free, this.#dataDir);
          if (!this.#pauses.current) this.#logger.warn({ needBytes: need, freeBytes: room.free, dataDir: this.#dataDir }, `compaction paused: needs ${formatBytes(need)}, ${formatBytes(room.free)} free; retried with backoff`);
          this.#pauses.pause(need, room.free, () => this.#scheduleBackgroundWork());
          return false;
        }
      }
      if (this.#pauses.current) this.#logger.info({ dataDir: this.#dataDir }, 'compaction resumed: there is room again');
      this.#pauses.resume();
      await this.#runCompaction(compaction, pace);
      return true;
    });
  }

  /** Runs a compaction (or moves its file) and installs the result. */
  async #runCompaction(compaction: Compaction, pace?: (bytes: number) => Promise<void>): Promise<void> {
    if (compaction.isTrivialMove()) {
      // Nothing to merge with: move the file down without rewriting it.
      await this.#logAndApply(compaction.edit(compaction.plan.inputs[0]), []);
      this.#compactPointers.set(compaction.level, compaction.pointer);
      return;
    }
    const version = this.#versions.acquire();
    try {
      const files = this.#runsOnWorker(compaction, pace) ? await this.#compactOnWorker(this.#worker!, compaction, version) : await this.#compactInProcess(compaction, version, pace);
      // From here the edit may reach the manifest even if logAndApply fails: keep the
      // outputs (unreferenced ones are removed as obsolete later), never delete them.
      await this.#logAndApply(compaction.edit(files), files);
      this.#compactPointers.set(compaction.level, compaction.pointer);
      this.#stats.compactions++;
      this.#stats.compactionBytesRead += compaction.inputBytes;
      this.#stats.compactionBytesWritten += files.reduce((s, f) => s + f.size, 0);
      this.#logger.debug({ level: compaction.level, outputLevel: compaction.outputLevel, inputs: compaction.inputFiles.length, outputs: files.length, reason: compaction.plan.reason }, 'compaction done');
    } finally {
      this.#versions.release(version);
    }
    await this.#deleteObsoleteFiles();
  }

  /**
   * Whether the next job goes to the worker: yes once it has loaded. Until then (it starts when
   * the first memtable is an eighth full and takes ~150 ms to load) jobs run in-process, so the
   * first flush never waits for a thread to start. A crashed worker fails the job instead.
   */
  #onWorker(): boolean {
    if (!this.#worker) return false;
    if (this.#worker.ready) return true;
    this.#worker.warmUp();
    return false;
  }

  /** The compaction runner on the worker thread; the version pins its inputs until it returns. */
  async #compactOnWorker(worker: BackgroundWorker, compaction: Compaction, version: Version): Promise<FileMeta[]> {
    if (this.#closing) throw new TdekvError('CLOSED', 'the database is closing; the compaction was not started');
    this.#compactingOnWorker = true;
    try {
      // A memtable switched before this compaction took the loop is flushed alongside it.
      this.#flushAlongside();
      return await worker.compact(compaction.job(version, this.#snapshots.oldest(this.#lastSeq)));
    } finally {
      this.#compactingOnWorker = false;
    }
  }

  /**
   * Whether a compaction goes to the worker thread. A rate-limited encryption scan's step stays
   * here: it is paced every 256 KiB as it copies (the worker could only be paced between
   * steps, letting a whole step burst past the limit), and so does a level-0 copy in place,
   * which needs the output numbers its plan took (unthrottled, its tables are copied on the
   * export pool's threads, not on this one).
   */
  #runsOnWorker(compaction: Compaction, pace: ((bytes: number) => Promise<void>) | undefined): boolean {
    return this.#onWorker() && pace === undefined && compaction.plan.outputNumbers === undefined;
  }

  /** The compaction runner on this thread, in slices between which foreground work and a pending flush run. */
  #compactInProcess(compaction: Compaction, version: Version, pace?: (bytes: number) => Promise<void>): Promise<FileMeta[]> {
    const numbers = compaction.plan.outputNumbers;
    const output = this.#outputContext();
    if (numbers) {
      // Taken (and kept from removal) when the plan was made, in order.
      const queue = [...numbers];
      output.newFileNumber = () => {
        const n = queue.shift();
        if (n === undefined) throw new TdekvError('INVALID_ARGUMENT', 'an in-place rewrite of level 0 ran out of the output numbers taken for it');
        return n;
      };
    }
    const ctx: CompactionContext = {
      output,
      // An unthrottled scan copies tables on worker threads, one per core; a rate-limited one
      // copies here, paced every 256 KiB (a whole table at once would burst past the limit).
      ...(compaction.plan.reason === 'encryption' && pace === undefined ? { copyTable: (input: FileMeta) => this.#copyTableOffThread(input, output) } : {}),
      sliceMs: () => SLICE_MS,
      yieldSlice: async () => {
        if (this.#imm) await this.#flushImmutable();
        await yieldToEventLoop();
        // Closing abandons a compaction in progress (its inputs stay live), so close() is prompt.
        if (this.#closing) throw new TdekvError('CLOSED', 'the database was closed during a compaction; the compaction was abandoned and its input files stay in use');
      },
      openTable: (n) => this.#tables.iterator(n),
      openTableReader: (n) => this.#tables.acquire(n),
      ...(pace ? { pace } : {}),
      blockMoved: (fromTable, fromOffset, toTable, toOffset) => {
        const block = this.#blockCache.get(fromTable, fromOffset);
        if (block) this.#blockCache.set(toTable, toOffset, block, block.size);
      },
    };
    const run = runCompaction(compaction.job(version, this.#snapshots.oldest(this.#lastSeq)), ctx);
    // Numbers taken for outputs that were never written (the job failed first) are released.
    return numbers ? run.catch((err: unknown) => this.#releaseOutputNumbers(numbers, err)) : run;
  }

  // ---------------------------------------------------------------- installing results

  /**
   * logAndApply for an edit installing `outputs`. When it fails the edit may still be in the
   * manifest, so the outputs stay; the next edit that succeeds starts a new manifest from
   * the versions in memory (see VersionSet), after which they are unreferenced for good.
   */
  async #logAndApply(edit: VersionEdit, outputs: readonly FileMeta[]): Promise<void> {
    try {
      await this.#versions.logAndApply(edit);
    } catch (err) {
      for (const f of outputs) this.#orphanOutputs.add(f.number);
      throw err;
    }
    for (const f of outputs) this.#pendingOutputs.delete(f.number);
    for (const n of this.#orphanOutputs) this.#pendingOutputs.delete(n);
    this.#orphanOutputs.clear();
  }

  /** Where flush, compaction and recovery write their tables. */
  #outputContext(): TableOutputContext {
    return {
      env: this.env,
      tuning: this.tuning,
      newFileNumber: () => this.#versions.newFileNumber(),
      pendingOutputs: this.#pendingOutputs,
    };
  }

  // ---------------------------------------------------------------- obsolete files (obsolete-files.ts)

  #deleteObsoleteFiles(): Promise<void> {
    return deleteObsoleteFiles({
      list: (dir) => this.env.list(dir),
      remove: (name) => this.env.remove(name),
      versions: this.#versions,
      wal: this.#wal,
      pendingOutputs: this.#pendingOutputs,
      evictTable: (n) => this.#tables.evict(n),
      logger: this.#logger,
    });
  }

  // ---------------------------------------------------------------- a full disk (no-space-recovery.ts)

  /** Queues a recovery attempt behind the writes already queued (it must not race a WAL append). */
  #queueRecovery(): Promise<void> {
    // Once close() has begun (after its own last try), a retry armed by a late failure must not switch WALs under it.
    if (this.#closed || this.#closing) return Promise.resolve();
    return this.#commits.run(() => this.#attemptRecovery());
  }

  /**
   * One try at leaving the no-space state: every acknowledged write is in the memtables, so
   * they are flushed to tables; a WAL whose append failed is retired first (never appended
   * to again: its tail may be torn) by switching to a new one, which the flush then makes the
   * only live log. Writes resume only when all of that is durable. Runs in the write queue.
   */
  async #attemptRecovery(): Promise<void> {
    if (!this.#errors.noSpace.active || this.#errors.sticky || this.#closed || this.#closing) return;
    try {
      // A compaction started before the failure may still be running.
      while (this.#bg) await this.#bg;
      // Not even the room of a flush: the disk is still full, no need to try writing.
      await this.#room.check('write', 0, flushMargin);
      if (this.#errors.noSpace.walDamaged) {
        if (this.#imm) await this.#flushImmutable();
        const damaged = await this.#wal.switch();
        this.#imm = this.#mem;
        this.#mem = this.#newMemtable(this.#imm.sizes);
        this.#errors.noSpace.walDamaged = false;
        await damaged!.close().catch(() => undefined);
      } else if (this.#mem.approximateBytes >= this.tuning.writeBufferSize) {
        // The failure was the switch to a new memtable (creating its WAL): do it now.
        if (this.#imm) await this.#flushImmutable();
        await this.#switchMemtable();
      }
      if (this.#imm) await this.#flushImmutable();
      // Writes were refused for level 0 at the stop trigger: only a compaction lets them go on.
      const stop = Math.max(this.tuning.level0StopWritesTrigger, this.tuning.level0FileNumCompactionTrigger);
      while (this.#versions.current.fileCount(0) >= stop) {
        if (!(await this.#compactOnce((v) => pickSizeCompaction(v, this.tuning, this.#compactPointers), 'throw'))) break;
      }
    } catch (err) {
      if (this.#errors.sticky) return;
      this.#errors.failed(err, false);
      if (this.#errors.noSpace.active) this.#logger.info({ err: String(err), retryInMs: this.#errors.noSpace.nextRetryInMs }, 'the data dir is still out of space; writes stay refused');
      return;
    }
    const since = this.#errors.noSpace.since;
    this.#errors.noSpace.recovered();
    this.#logger.warn({ dataDir: this.#dataDir, refusedForMs: Date.now() - since }, 'space is available again: writes resume');
    this.#scheduleBackgroundWork();
    this.#notifyBackgroundProgress();
  }

  // ---------------------------------------------------------------- helpers

  /** Whether a table is under an old data key or method: compaction then rewrites it rather than move it. */
  #envNeedsRewrite(tableNumber: number): boolean {
    return this.env.needsRewrite(tableName(tableNumber));
  }

  #internalIterators(version: Version, edges?: BlockEdges): InternalIterator[] {
    // Iterated: from now on new keys are not left unlinked in bulk (see Memtable.linkThreshold).
    this.#iterated = true;
    this.#mem.linkThreshold = STAGED_LINK_BOUND;
    const children: InternalIterator[] = [this.#mem.iterator()];
    if (this.#imm) children.push(this.#imm.iterator());
    for (const f of version.levels[0]!) children.push(this.#tables.iterator(f.number, edges));
    for (let level = 1; level < version.levels.length; level++) {
      const files = version.levels[level]!;
      if (files.length > 0) children.push(new ConcatIterator(files, (i) => this.#tables.iterator(files[i]!.number, edges), (i) => this.#tables.prepare(files[i]!.number)));
    }
    return children;
  }

  /**
   * Whether an iterator was ever made: until then new keys stay staged until a flush (a
   * write-only load never pays for their order), after it they are linked in bounded batches.
   */
  #iterated = false;

  /**
   * The arrays of the last memtable flushed, for the next one: memory already faulted in
   * (see MemtableMemory). Held from a flush to the next memtable switch.
   */
  #spareMemory: MemtableMemory | undefined;
  #reusedMemtables = 0;

  #newMemtable(like: MemtableSizes): Memtable {
    const memory = this.#spareMemory;
    this.#spareMemory = undefined;
    if (memory !== undefined) this.#reusedMemtables++;
    const mem = new Memtable({ like, memory });
    if (this.#iterated) mem.linkThreshold = STAGED_LINK_BOUND;
    return mem;
  }

  /** Tests only: memtables built on a flushed one's memory (see #spareMemory). */
  reusedMemtablesForTests(): number {
    return this.#reusedMemtables;
  }

  /** Tests only: nodes staged and not linked in the mutable memtable. */
  stagedEntriesForTests(): number {
    return this.#mem.stagedEntries;
  }

  #checkOpen(): void {
    if (this.#closed || this.#closing) throw new TdekvError('CLOSED', 'the database is closed');
  }

  /** The encryption scan's copy of one table on the table pool (a new table, same level, same entries, under the current key). */
  async #copyTableOffThread(input: FileMeta, output: TableOutputContext): Promise<FileMeta[]> {
    const number = output.newFileNumber();
    output.pendingOutputs.add(number);
    try {
      const grant = await this.env.grantCreate(tableName(number));
      const size = await this.#pool().copyTable(this.env.grantRead(tableName(input.number)), grant, input.number);
      return [{ number, size, smallest: input.smallest, largest: input.largest, entries: input.entries }];
    } catch (err) {
      await discardTableFile(output, number, undefined);
      throw err;
    }
  }

  /** The worker pool for table copies and backup exports, started at the first job. */
  #pool(): ExportPool {
    if (this.#closed) throw new TdekvError('CLOSED', 'the database is closed');
    this.#tablePool ??= new ExportPool();
    return this.#tablePool;
  }

  async #releaseResources(): Promise<void> {
    await this.#tablePool?.close();
    await this.#worker?.terminate();
    await this.#wal.close();
    await this.#versions.close().catch(() => undefined);
    this.#tables.close();
  }
}
