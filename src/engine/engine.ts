import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises';
import { TdekvError, isTdekvError } from '../errors.js';
import { engineFsOf, type EngineFs } from './engine-fs.js';
import type { EncryptedWritableFile } from '../env/writable-file.js';
import { silentLogger, type Logger } from '../log/logger.js';
import { Mutex } from '../util/mutex.js';
import { BlockCache } from './block-cache.js';
import { bloomHash } from './bloom.js';
import { isBottommostFor, planFor, pickSizeCompaction, type CompactionPlan } from './compaction-picker.js';
import { ConcatIterator } from './concat-iterator.js';
import { asBuffer, DbIterator, toUserRange } from './db-iterator.js';
import { manifestName, parseFileName, tableName, walName } from './file-names.js';
import { MAX_SEQUENCE, ValueKind } from './internal-key.js';
import { compareBytes } from './compare-bytes.js';
import type { InternalIterator } from './iterator.js';
import { readLog, type LogRecord } from './log-reader.js';
import { LogWriter } from './log-writer.js';
import { Memtable } from './memtable.js';
import { MergingIterator } from './merging-iterator.js';
import { CompactionPauses, formatBytes, isNoSpaceError, NoSpaceRetry, noRoomError, spaceMargin } from './no-space-recovery.js';
import { resolveTuning, WAL_RECOVERY_MODES, type EngineOptions, type EngineTuning, type WalRecoveryMode } from './options.js';
import { SnapshotList } from './snapshot-list.js';
import { TableCache } from './table-cache.js';
import { TableOutput, type TableOutputContext } from './table-output.js';
import type { BatchOp, EngineIterator, IteratorOptions, ReadOptions, Snapshot, WriteOptions } from './types.js';
import { compareUserKeyOf, type Version } from './version.js';
import { emptyEdit, type FileMeta, type VersionEdit } from './version-edit.js';
import { VersionSet } from './version-set.js';
import { batchCount, concatBatches, decodeBatch, encodeBatch, setBatchSequence } from './write-batch.js';

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

/** Why the engine refuses writes, and whether it clears by itself (a full disk) or only by a reopen. */
export interface WriteFailure {
  error: TdekvError;
  recoverable: boolean;
}

type QueueItem =
  | { kind: 'write'; batch: Buffer; sync: boolean; resolve: () => void; reject: (e: unknown) => void }
  | { kind: 'flush'; resolve: (p: { done: Promise<void> }) => void; reject: (e: unknown) => void }
  | { kind: 'sync'; resolve: () => void; reject: (e: unknown) => void }
  | { kind: 'recover'; resolve: () => void; reject: (e: unknown) => void };

/**
 * Room kept beyond a flush's output: its manifest edit, file dictionary and CURRENT records,
 * a few KiB. Small on purpose: a flush is what lets the WAL go, and failing one midway costs
 * no more than a refused start (its partial table is removed, the retry flushes again).
 */
function flushMargin(totalBytes: number): number {
  return Math.min(64 * 1024, Math.max(16 * 1024, spaceMargin(totalBytes) >> 6));
}

/** Writers merged into one WAL record at most (LevelDB caps its groups the same way). */
const MAX_GROUP_OPS = 64 * 1024;
/** Entries between looks at the clock in flush and compaction loops. */
const SLICE_CHECK_EVERY = 64;
/** Background work runs in slices of this many ms between turns of the event loop... */
const SLICE_MS = 1;
/**
 * ...and a flush in longer ones while the new memtable is past half full: otherwise, under a
 * steady write load, the flush falls behind, the memtable fills, and writes stop until it ends.
 */
const URGENT_FLUSH_SLICE_MS = 4;

/** Decides when a background loop should give the event loop a turn. */
class WorkSlice {
  #start = performance.now();
  #n = 0;

  constructor(private readonly budgetMs: () => number) {}

  /** Call once per entry; true when the slice's time is up. */
  due(): boolean {
    if (++this.#n % SLICE_CHECK_EVERY !== 0) return false;
    return performance.now() - this.#start >= this.budgetMs();
  }

  restart(): void {
    this.#start = performance.now();
  }
}

/**
 * An LSM tree on the encrypted env: a write-ahead log and memtable in front, sorted tables
 * in levels behind, merged by background compaction. Every file goes through the env, so
 * it is encrypted under the current data key when written; compaction rewrites old files
 * and so moves data to the current key over time.
 */
export class Engine {
  readonly env: EngineFs;
  readonly tuning: EngineTuning;
  readonly #logger: Logger;
  readonly #versions: VersionSet;
  readonly #blockCache: BlockCache;
  readonly #tables: TableCache;
  readonly #snapshots = new SnapshotList();
  readonly #compactionMutex = new Mutex();
  readonly #pendingOutputs = new Set<number>();
  readonly #compactPointers = new Map<number, Buffer>();
  #mem = new Memtable();
  #imm: Memtable | undefined;
  #wal!: { number: number; file: EncryptedWritableFile; writer: LogWriter };
  #lastSeq = 0;
  #queue: QueueItem[] = [];
  #writing = false;
  #bg: Promise<void> | undefined;
  #bgError: unknown;
  readonly #noSpace: NoSpaceRetry;
  readonly #pauses: CompactionPauses;
  /** Outputs of a flush or compaction whose manifest edit failed: kept until a later edit supersedes it. */
  readonly #orphanOutputs = new Set<number>();
  #bgWaiters: Array<() => void> = [];
  #flushing: Promise<void> | undefined;
  #closing = false;
  #closed = false;
  #closePromise: Promise<void> | undefined;
  readonly #stats = { flushes: 0, compactions: 0, compactionBytesRead: 0, compactionBytesWritten: 0, writeSlowdowns: 0, writeStops: 0 };

  private constructor(env: EngineFs, logger: Logger, tuning: EngineTuning, versions: VersionSet) {
    this.env = env;
    this.#logger = logger;
    this.tuning = tuning;
    this.#versions = versions;
    this.#blockCache = new BlockCache(tuning.blockCacheSize);
    this.#tables = new TableCache((n) => env.openReadSync(tableName(n)), { maxOpenFiles: tuning.maxOpenFiles, blockCache: this.#blockCache });
    const policy = { initialMs: tuning.noSpaceRetryIntervalMs, maxMs: tuning.noSpaceRetryMaxIntervalMs };
    this.#noSpace = new NoSpaceRetry(policy);
    this.#pauses = new CompactionPauses(policy);
  }

  static async open(options: EngineOptions): Promise<Engine> {
    const { env: given, logger: givenLogger, walRecoveryMode = 'absolute-consistency', ...partial } = options;
    // Only the file operations: the engine never holds what can export or rotate keys.
    const env = engineFsOf(given);
    const tuning = resolveTuning(partial);
    if (!(WAL_RECOVERY_MODES as readonly string[]).includes(walRecoveryMode)) {
      throw new TdekvError('CONFIG_INVALID', `engine option walRecoveryMode must be one of ${WAL_RECOVERY_MODES.join(', ')} (got ${JSON.stringify(walRecoveryMode)})`);
    }
    const logger = givenLogger ?? silentLogger();
    const { versions, existed } = await VersionSet.recover(env, tuning.numLevels, logger);
    const engine = new Engine(env, logger, tuning, versions);
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
    this.#checkOpen();
    const k = asBuffer(key);
    const seq = options?.snapshot?.sequence ?? this.#lastSeq;
    // One hash serves the memtables' filters and every table's bloom filter.
    const hash = bloomHash(k);
    let r = this.#mem.mayContainHash(hash) ? this.#mem.get(k, seq, hash) : undefined;
    if (!r && this.#imm?.mayContainHash(hash)) r = this.#imm.get(k, seq, hash);
    if (!r) {
      const v = this.#versions.current;
      for (const f of v.levels[0]!) {
        if (compareUserKeyOf(f.smallest, k) > 0 || compareUserKeyOf(f.largest, k) < 0) continue;
        r = this.#tables.get(f.number).get(k, seq, hash);
        if (r) break;
      }
      for (let level = 1; !r && level < v.levels.length; level++) {
        const f = v.fileFor(level, k);
        if (f) r = this.#tables.get(f.number).get(k, seq, hash);
      }
    }
    return r && r.kind === ValueKind.Value ? Buffer.from(r.value) : undefined;
  }

  async get(key: Uint8Array, options?: ReadOptions): Promise<Buffer | undefined> {
    return this.getSync(key, options);
  }

  snapshot(): Snapshot {
    this.#checkOpen();
    return this.#snapshots.create(this.#lastSeq);
  }

  iterator(options: IteratorOptions = {}): EngineIterator {
    this.#checkOpen();
    const seq = options.snapshot?.sequence ?? this.#lastSeq;
    const version = this.#versions.acquire();
    let children: InternalIterator[];
    try {
      children = this.#internalIterators(version);
    } catch (err) {
      // A table that cannot be opened (damaged, missing): do not leave its version pinned.
      this.#versions.release(version);
      throw err;
    }
    return new DbIterator(new MergingIterator(children), seq, toUserRange(options), options.reverse ?? false, options.limit ?? -1, () => this.#versions.release(version));
  }

  // ---------------------------------------------------------------- writes

  /** Applies the operations atomically, in order; later operations on a key win. */
  write(ops: readonly BatchOp[], options: WriteOptions = {}): Promise<void> {
    try {
      this.#checkOpen();
      for (const op of ops) {
        if (!(op.key instanceof Uint8Array)) throw new TdekvError('INVALID_ARGUMENT', `batch operation key must be a Buffer or Uint8Array (got ${typeof op.key})`);
        if (op.type === 'put' && !(op.value instanceof Uint8Array)) throw new TdekvError('INVALID_ARGUMENT', `put value must be a Buffer or Uint8Array (got ${typeof op.value})`);
        if (op.type !== 'put' && op.type !== 'del') throw new TdekvError('INVALID_ARGUMENT', `batch operation type must be "put" or "del" (got ${JSON.stringify((op as { type: unknown }).type)})`);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    if (ops.length === 0) return Promise.resolve();
    // Encoded now: the caller may reuse its buffers as soon as write() returns.
    const batch = encodeBatch(ops, 0);
    return new Promise((resolve, reject) => {
      this.#queue.push({ kind: 'write', batch, sync: options.sync === true, resolve, reject });
      if (!this.#writing) void this.#drainQueue();
    });
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
    return new Promise((resolve, reject) => {
      this.#queue.push({ kind: 'sync', resolve, reject });
      if (!this.#writing) void this.#drainQueue();
    });
  }

  /** Writes the memtable out to a level-0 table (waits for it). */
  async flush(): Promise<void> {
    this.#checkOpen();
    // The switch is queued behind earlier writes; the flush itself is awaited outside the queue.
    const { done } = await new Promise<{ done: Promise<void> }>((resolve, reject) => {
      this.#queue.push({ kind: 'flush', resolve, reject });
      if (!this.#writing) void this.#drainQueue();
    });
    await done;
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

  /** Waits until no flush or compaction is pending (for tests and benchmarks). */
  async waitForBackgroundWork(): Promise<void> {
    while (this.#bg) await this.#bg;
    this.#throwIfBackgroundFailed();
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
      noSpaceRetries: this.#noSpace.retries,
      noSpaceRecoveries: this.#noSpace.recoveries,
      compactionsPaused: this.#pauses.count,
    };
    if (this.#bgError) {
      s.backgroundError = String(this.#bgError);
    } else if (this.#noSpace.active) {
      s.backgroundError = String(this.#noSpace.error);
      s.backgroundErrorRecoverable = true;
      const next = this.#noSpace.nextRetryInMs;
      if (next !== undefined) s.noSpaceNextRetryMs = next;
    }
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
    if (!this.#bgError && !this.#noSpace.active) return undefined;
    try {
      this.#throwIfBackgroundFailed();
    } catch (err) {
      return { error: err as TdekvError, recoverable: !this.#bgError };
    }
    return undefined;
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
    if (this.#noSpace.active && !this.#bgError) await this.#queueRecovery();
    try {
      if (!this.#bgError && !this.#noSpace.active && this.#mem.entries > 0) await this.flush();
    } catch (err) {
      this.#logger.warn({ err }, 'flushing the memtable at close failed; its writes stay in the write-ahead log');
    }
    this.#closing = true;
    this.#noSpace.cancel();
    this.#pauses.cancel();
    while (this.#writing) await sleep(1);
    while (this.#bg) await this.#bg.catch(() => undefined);
    await this.#compactionMutex.run(async () => undefined);
    this.#closed = true;
    await this.#releaseResources();
  }

  // ---------------------------------------------------------------- recovery

  async #recover(existed: boolean, walRecoveryMode: WalRecoveryMode): Promise<void> {
    const names = await this.env.list('');
    const engineFiles = names.map((n) => ({ name: n, parsed: parseFileName(n) })).filter((f) => f.parsed !== undefined);
    if (!existed) {
      // A first open that crashed before CURRENT was written leaves only a manifest; data files without CURRENT are a damaged dir.
      const data = engineFiles.filter((f) => f.parsed!.kind !== 'manifest');
      if (data.length > 0) {
        throw new TdekvError(
          'DATA_CORRUPTED',
          `${this.env.dataDir} holds database files (${data.slice(0, 3).map((f) => f.name).join(', ')}${data.length > 3 ? ', …' : ''}) but no CURRENT file naming its manifest: the data dir is damaged; restore it from a backup`,
        );
      }
    }
    for (const f of engineFiles) this.#versions.markFileNumberUsed(f.parsed!.number);
    if (existed) this.#checkRecoveredFilesExist(engineFiles.map((f) => f.name));
    const wals = engineFiles
      .filter((f) => f.parsed!.kind === 'wal' && f.parsed!.number >= this.#versions.logNumber)
      .sort((a, b) => a.parsed!.number - b.parsed!.number);
    // Every log is read and checked before anything is written (invariant 11): a refused
    // open must leave the data dir as it was, so restoring a damaged byte recovers it.
    const logs: Array<{ name: string; records: LogRecord[] }> = [];
    for (const wal of wals) {
      const file = this.env.openReadSync(wal.name);
      let contents;
      try {
        contents = readLog(file, this.#logger, { onDamage: walRecoveryMode === 'point-in-time' ? 'stop' : 'throw' });
      } finally {
        file.close();
      }
      for (const r of contents.records) {
        try {
          decodeBatch(r.payload, () => undefined);
        } catch (err) {
          throw new TdekvError('DATA_CORRUPTED', `${wal.name} in ${this.env.dataDir}: the record at offset ${r.offset} passes its checksum but is not a valid write batch; the write-ahead log is damaged: restore the data dir from a backup`, { cause: err });
        }
      }
      logs.push({ name: wal.name, records: contents.records });
      if (contents.damagedAt !== undefined) {
        const skipped = wals.slice(wals.indexOf(wal) + 1).map((w) => w.name);
        this.#logger.error({ wal: wal.name, offset: contents.damagedAt, skippedLogs: skipped }, 'wal-recovery-mode = "point-in-time": replaying up to the damaged record; it and every later write are dropped');
        break;
      }
    }
    const edit = emptyEdit();
    let lastSeq = this.#versions.lastSequence;
    const ctx = this.#outputContext();
    for (const { name, records } of logs) {
      let mem = new Memtable();
      for (const r of records) {
        const info = decodeBatch(r.payload, (seq, kind, key, value) => mem.add(seq, kind, key, value));
        if (info.count > 0) lastSeq = Math.max(lastSeq, info.firstSeq + info.count - 1);
        if (mem.approximateBytes >= this.tuning.writeBufferSize) {
          edit.newFiles.push(...(await writeMemtable(ctx, mem, MAX_SEQUENCE)).map((file) => ({ level: 0, file })));
          mem = new Memtable();
        }
      }
      if (mem.entries > 0) edit.newFiles.push(...(await writeMemtable(ctx, mem, MAX_SEQUENCE)).map((file) => ({ level: 0, file })));
      if (records.length > 0) this.#logger.info({ wal: name, records: records.length }, 'replayed write-ahead log');
    }
    this.#lastSeq = lastSeq;
    await this.#openNewWal();
    edit.logNumber = this.#wal.number;
    edit.lastSequence = lastSeq;
    await this.#versions.logAndApply(edit);
    this.#pendingOutputs.clear();
    await this.#deleteObsoleteFiles();
  }

  /**
   * The WAL the manifest names as current always exists in a consistent data dir (it is
   * removed only after a later edit names a newer one), and so does every table of the
   * version. Either missing means edits or files were lost — for example a damaged last
   * manifest record read as a torn tail — and opening would silently drop data.
   */
  #checkRecoveredFilesExist(names: readonly string[]): void {
    const present = new Set(names);
    const manifest = `${manifestName(this.#versions.manifestNumber)} (the manifest CURRENT names in ${this.env.dataDir})`;
    const logNumber = this.#versions.logNumber;
    if (logNumber > 0 && !present.has(walName(logNumber))) {
      throw new TdekvError('DATA_CORRUPTED', `${manifest} names write-ahead log ${walName(logNumber)}, which is gone: the manifest lost edits or the log was removed; restore the data dir from a backup`);
    }
    const missing = this.#versions.current.allFiles().filter((f) => !present.has(tableName(f.number)));
    if (missing.length > 0) {
      throw new TdekvError('DATA_CORRUPTED', `${manifest} lists table ${tableName(missing[0]!.number)}${missing.length > 1 ? ` and ${missing.length - 1} more` : ''}, which is not in the data dir: restore the data dir from a backup`);
    }
  }

  async #openNewWal(): Promise<void> {
    const number = this.#versions.newFileNumber();
    const file = await this.env.create(walName(number));
    this.#wal = { number, file, writer: new LogWriter(file) };
  }

  // ---------------------------------------------------------------- write queue

  async #drainQueue(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0) {
        const head = this.#queue[0]!;
        if (head.kind === 'flush') {
          this.#queue.shift();
          try {
            head.resolve(await this.#switchForFlush());
          } catch (err) {
            head.reject(err);
          }
          continue;
        }
        if (head.kind === 'recover') {
          this.#queue.shift();
          try {
            await this.#attemptRecovery();
            head.resolve();
          } catch (err) {
            head.reject(err);
          }
          continue;
        }
        if (head.kind === 'sync') {
          this.#queue.shift();
          try {
            await this.#syncWal();
            head.resolve();
          } catch (err) {
            head.reject(err);
          }
          continue;
        }
        const group: Array<Extract<QueueItem, { kind: 'write' }>> = [];
        let ops = 0;
        while (this.#queue.length > 0 && this.#queue[0]!.kind === 'write' && (group.length === 0 || ops < MAX_GROUP_OPS)) {
          const w = this.#queue.shift() as Extract<QueueItem, { kind: 'write' }>;
          group.push(w);
          ops += batchCount(w.batch);
        }
        try {
          await this.#writeGroup(group);
          for (const w of group) w.resolve();
        } catch (err) {
          this.#writeFailed(err, false);
          for (const w of group) w.reject(err);
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  async #writeGroup(group: ReadonlyArray<Extract<QueueItem, { kind: 'write' }>>): Promise<void> {
    if (this.#closed) throw new TdekvError('CLOSED', 'the database is closed');
    await this.#makeRoomForWrite();
    const batch = group.length === 1 ? group[0]!.batch : concatBatches(group.map((w) => w.batch));
    const first = this.#lastSeq + 1;
    setBatchSequence(batch, first);
    const sync = group.some((w) => w.sync);
    // Acknowledged writes survive a process crash (the OS has them); sync ones also a power loss.
    try {
      this.#wal.writer.addRecordSync(batch);
    } catch (err) {
      this.#writeFailed(err, true);
      throw err;
    }
    if (sync) await this.#syncWal();
    const mem = this.#mem;
    const { count } = decodeBatch(batch, (seq, kind, key, value) => mem.add(seq, kind, key, value));
    this.#lastSeq = first + count - 1;
  }

  /** LevelDB's MakeRoomForWrite: slow down, then stop, rather than let memory or level 0 grow without bound. */
  async #makeRoomForWrite(): Promise<void> {
    let delayed = false;
    for (;;) {
      this.#throwIfBackgroundFailed();
      const l0 = this.#versions.current.fileCount(0);
      if (!delayed && l0 >= this.tuning.level0SlowdownWritesTrigger) {
        this.#stats.writeSlowdowns++;
        delayed = true;
        await sleep(1);
        continue;
      }
      if (this.#mem.approximateBytes < this.tuning.writeBufferSize) return;
      // Waiting on level 0 helps only when the background will compact it: from the compaction
      // trigger on, and not once close() has begun (otherwise the wait loop never ends).
      const l0Stop = !this.#closing && l0 >= Math.max(this.tuning.level0StopWritesTrigger, this.tuning.level0FileNumCompactionTrigger);
      const paused = this.#pauses.current;
      if (l0Stop && paused) {
        // Only a compaction would let writes go on, and it has no room: refuse them (with the
        // reason) until space is freed, rather than hold every client with no reply.
        const err = noRoomError('compaction', paused.needBytes, paused.freeBytes, this.env.dataDir);
        this.#writeFailed(err, false);
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
        this.#throwIfBackgroundFailed();
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
      this.#throwIfBackgroundFailed();
      await this.#waitForBackgroundProgress();
    }
    this.#throwIfBackgroundFailed();
  }

  /**
   * After a failed fsync the state of the log on disk is unknown (the kernel may have
   * dropped the dirty pages): refuse further writes until the database is reopened rather
   * than acknowledge writes that may follow a hole.
   */
  async #syncWal(): Promise<void> {
    // A WAL whose append failed is retired by the recovery, not synced: its records are in the memtable.
    if (this.#noSpace.walDamaged) this.#throwIfBackgroundFailed();
    try {
      await this.#wal.writer.sync();
    } catch (err) {
      this.#bgError ??= new TdekvError('IO_FAILED', `fsync of the write-ahead log ${this.#wal.writer.path} failed (${String(err)}); writes are refused until the database is reopened`, { cause: err });
      throw err;
    }
  }

  /** A new WAL for a new memtable; the full one becomes immutable and is flushed in the background. */
  async #switchMemtable(): Promise<void> {
    const old = this.#wal;
    // Synced before it is closed, so a later sync write never survives a power loss that
    // loses earlier, unsynced writes of the previous log (RocksDB does the same).
    await this.#syncWal();
    await this.#openNewWal();
    this.#imm = this.#mem;
    this.#mem = new Memtable();
    await old.writer.close();
    this.#scheduleBackgroundWork();
  }

  // ---------------------------------------------------------------- background work

  #scheduleBackgroundWork(): void {
    if (this.#bg || this.#closed || this.#bgError || this.#noSpace.active) return;
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
      this.#writeFailed(err, false);
    }
  }

  /**
   * Puts the engine in the state a failed write, flush or compaction calls for: a full disk
   * is retried with backoff (writes refused meanwhile); anything else refuses writes until
   * a reopen. `walDamaged`: the WAL append itself failed, so its tail may be torn.
   */
  #writeFailed(err: unknown, walDamaged: boolean): void {
    // CLOSED while closing is the close itself; otherwise (the env closed under the engine) it is final.
    if (this.#bgError || (this.#closing && isTdekvError(err, 'CLOSED'))) return;
    // A refusal thrown because the state is already set is not a new failure.
    if (this.#noSpace.active && !walDamaged && (err === this.#noSpace.error || (err as { cause?: unknown })?.cause === this.#noSpace.error)) return;
    if (isNoSpaceError(err)) {
      const first = !this.#noSpace.active;
      this.#noSpace.fail(err, walDamaged, () => void this.#queueRecovery());
      if (first) this.#logger.warn({ err: String(err), dataDir: this.env.dataDir }, 'the data dir is out of space: writes are refused and retried with backoff; they resume by themselves once space is freed');
      return;
    }
    this.#bgError = err;
    this.#noSpace.cancel();
    this.#logger.error({ err }, 'a write, flush or compaction failed; writes are refused until the database is reopened');
  }

  /** Queues a recovery attempt behind the writes already queued (it must not race a WAL append). */
  #queueRecovery(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#queue.push({ kind: 'recover', resolve, reject });
      if (!this.#writing) void this.#drainQueue();
    });
  }

  /**
   * One try at leaving the no-space state: every acknowledged write is in the memtables, so
   * they are flushed to tables; a WAL whose append failed is retired first (never appended
   * to again: its tail may be torn) by switching to a new one, which the flush then makes the
   * only live log. Writes resume only when all of that is durable. Runs in the write queue.
   */
  async #attemptRecovery(): Promise<void> {
    if (!this.#noSpace.active || this.#bgError || this.#closed) return;
    try {
      // A compaction started before the failure may still be running.
      while (this.#bg) await this.#bg;
      // Not even the room of a flush: the disk is still full, no need to try writing.
      await this.#checkRoom('write', 0, flushMargin);
      if (this.#noSpace.walDamaged) {
        if (this.#imm) await this.#flushImmutable();
        const damaged = this.#wal;
        await this.#openNewWal();
        this.#imm = this.#mem;
        this.#mem = new Memtable();
        this.#noSpace.walDamaged = false;
        await damaged.writer.close().catch(() => undefined);
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
      if (this.#bgError) return;
      this.#writeFailed(err, false);
      if (this.#noSpace.active) this.#logger.info({ err: String(err), retryInMs: this.#noSpace.nextRetryInMs }, 'the data dir is still out of space; writes stay refused');
      return;
    }
    const since = this.#noSpace.since;
    this.#noSpace.recovered();
    this.#logger.warn({ dataDir: this.env.dataDir, refusedForMs: Date.now() - since }, 'space is available again: writes resume');
    this.#scheduleBackgroundWork();
    this.#notifyBackgroundProgress();
  }

  #notifyBackgroundProgress(): void {
    const waiters = this.#bgWaiters;
    this.#bgWaiters = [];
    for (const w of waiters) w();
  }

  #waitForBackgroundProgress(): Promise<void> {
    this.#throwIfBackgroundFailed();
    const p = new Promise<void>((resolve) => this.#bgWaiters.push(resolve));
    this.#scheduleBackgroundWork();
    if (!this.#bg) this.#notifyBackgroundProgress();
    return p;
  }

  #throwIfBackgroundFailed(): void {
    if (!this.#bgError && this.#noSpace.active) {
      const e = this.#noSpace.error;
      const why = e instanceof Error ? e.message : String(e);
      throw new TdekvError('IO_FAILED', `writes are refused: the data dir ${this.env.dataDir} is out of space (${why}); they resume by themselves once space is freed (retried with backoff)`, { cause: e });
    }
    if (this.#bgError) {
      const e = this.#bgError;
      if (e instanceof TdekvError) throw new TdekvError(e.code, `an earlier write, flush or compaction failed: ${e.message}. Reopen the database after fixing the cause; acknowledged writes are in the write-ahead log.`, { cause: e });
      throw new TdekvError('IO_FAILED', `an earlier write, flush or compaction failed (${String(e)}); reopen the database after fixing the cause`, { cause: e });
    }
  }

  #flushImmutable(): Promise<void> {
    this.#flushing ??= (async () => {
      const imm = this.#imm!;
      await this.#checkRoom('flush', imm.approximateBytes, flushMargin);
      const files = await writeMemtable(this.#outputContext(), imm, this.#snapshots.oldest(this.#lastSeq), () =>
        this.#mem.approximateBytes * 2 > this.tuning.writeBufferSize ? URGENT_FLUSH_SLICE_MS : SLICE_MS,
      );
      const edit = emptyEdit();
      edit.newFiles = files.map((file) => ({ level: 0, file }));
      // Everything in WALs older than the current one is now in tables.
      edit.logNumber = this.#wal.number;
      edit.lastSequence = this.#lastSeq;
      await this.#logAndApply(edit, files);
      this.#imm = undefined;
      this.#stats.flushes++;
      this.#notifyBackgroundProgress();
      await this.#deleteObsoleteFiles();
    })().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  /**
   * Runs one compaction chosen by `pick` against the current version; false if there was
   * none, or if it was not started for lack of room (`noRoom` 'pause': retried later; 'throw':
   * a no-space error for the caller).
   */
  #compactOnce(pick: (v: Version) => CompactionPlan | undefined, noRoom: 'pause' | 'throw' = 'throw'): Promise<boolean> {
    return this.#compactionMutex.run(async () => {
      if (this.#closed) return false;
      const plan = pick(this.#versions.current);
      if (!plan) {
        this.#pauses.resume();
        return false;
      }
      if (!this.#isTrivialMove(plan)) {
        // The output is at most the inputs (it only drops entries; blocks are rewritten at the
        // same sizes), and the inputs are removed only after it is installed. Flushes go first:
        // the room of the next one is kept too.
        const inputs = [...plan.inputs[0], ...plan.inputs[1]].reduce((n, f) => n + f.size, 0);
        const room = await this.#freeSpace();
        const need = inputs + this.tuning.writeBufferSize + (room ? spaceMargin(room.total) : 0);
        if (room && room.free < need) {
          if (noRoom === 'throw') throw noRoomError('compaction', need, room.free, this.env.dataDir);
          if (!this.#pauses.current) this.#logger.warn({ needBytes: need, freeBytes: room.free, dataDir: this.env.dataDir }, `compaction paused: needs ${formatBytes(need)}, ${formatBytes(room.free)} free; retried with backoff`);
          this.#pauses.pause(need, room.free, () => this.#scheduleBackgroundWork());
          return false;
        }
      }
      if (this.#pauses.current) this.#logger.info({ dataDir: this.env.dataDir }, 'compaction resumed: there is room again');
      this.#pauses.resume();
      await this.#runCompaction(plan);
      return true;
    });
  }

  #isTrivialMove(plan: CompactionPlan): boolean {
    const [first, second] = plan.inputs;
    return plan.reason === 'size' && first.length === 1 && second.length === 0 && plan.level > 0 && this.#onCurrentKey(first[0]!.number);
  }

  /** Free space of the data dir, or undefined when it cannot be told (the work then goes ahead). */
  async #freeSpace(): Promise<{ free: number; total: number } | undefined> {
    try {
      return await this.env.freeSpace();
    } catch (err) {
      this.#logger.debug({ err: String(err) }, 'could not read the free space of the data dir');
      return undefined;
    }
  }

  /** Throws a no-space error before `work` starts when its output and its margin would not fit. */
  async #checkRoom(work: string, bytes: number, margin: (totalBytes: number) => number): Promise<void> {
    const room = await this.#freeSpace();
    if (room && room.free < bytes + margin(room.total)) throw noRoomError(work, bytes + margin(room.total), room.free, this.env.dataDir);
  }

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

  async #runCompaction(plan: CompactionPlan): Promise<void> {
    const [first, second] = plan.inputs;
    const edit = emptyEdit();
    for (const f of first) edit.deletedFiles.push({ level: plan.level, number: f.number });
    for (const f of second) edit.deletedFiles.push({ level: plan.outputLevel, number: f.number });
    const last = first[first.length - 1]!;
    if (this.#isTrivialMove(plan)) {
      // Nothing to merge with: move the file down without rewriting it.
      edit.newFiles.push({ level: plan.outputLevel, file: last });
      await this.#logAndApply(edit, []);
      this.#compactPointers.set(plan.level, last.largest);
      return;
    }
    const version = this.#versions.acquire();
    const ctx = this.#outputContext();
    const out = new TableOutput(ctx, this.tuning.targetFileSizeBase);
    const input = new MergingIterator([
      ...(plan.level === 0 ? first.map((f) => this.#tables.iterator(f.number)) : [this.#levelIterator(first)]),
      ...(second.length > 0 ? [this.#levelIterator(second)] : []),
    ]);
    let applying = false;
    try {
      const smallestSnapshot = this.#snapshots.oldest(this.#lastSeq);
      let current: Buffer | undefined;
      let lastSeqForKey = MAX_SEQUENCE;
      const slice = new WorkSlice(() => SLICE_MS);
      for (input.seekToFirst(); input.valid(); input.next()) {
        if (slice.due()) {
          await out.drain();
          if (this.#imm) await this.#flushImmutable();
          await yieldToEventLoop();
          slice.restart();
          // Closing abandons a compaction in progress (its inputs stay live), so close() is prompt.
          if (this.#closing) throw new TdekvError('CLOSED', 'the database was closed during a compaction; the compaction was abandoned and its input files stay in use');
        }
        const key = input.userKey();
        const seq = input.seq();
        const kind = input.kind();
        if (current === undefined || !key.equals(current)) {
          current = key;
          lastSeqForKey = MAX_SEQUENCE;
        }
        // A newer version of this key is visible to every snapshot: this one can never be read.
        let drop = lastSeqForKey <= smallestSnapshot;
        // A tombstone with nothing older left below it hides nothing.
        if (!drop && kind === ValueKind.Deletion && seq <= smallestSnapshot && isBottommostFor(version, plan.outputLevel, key)) drop = true;
        lastSeqForKey = seq;
        if (drop) continue;
        if (out.needsOpen(key)) await out.open();
        out.add(key, seq, kind, input.value());
      }
      const files = await out.finish();
      for (const file of files) edit.newFiles.push({ level: plan.outputLevel, file });
      // From here the edit may reach the manifest even if logAndApply fails: keep the
      // outputs (unreferenced ones are removed as obsolete later), never delete them.
      applying = true;
      await this.#logAndApply(edit, files);
      this.#compactPointers.set(plan.level, last.largest);
      this.#stats.compactions++;
      this.#stats.compactionBytesRead += [...first, ...second].reduce((s, f) => s + f.size, 0);
      this.#stats.compactionBytesWritten += files.reduce((s, f) => s + f.size, 0);
      this.#logger.debug({ level: plan.level, outputLevel: plan.outputLevel, inputs: first.length + second.length, outputs: files.length, reason: plan.reason }, 'compaction done');
    } catch (err) {
      if (!applying) await out.abandon();
      throw err;
    } finally {
      input.close();
      this.#versions.release(version);
    }
    await this.#deleteObsoleteFiles();
  }

  #onCurrentKey(tableNumber: number): boolean {
    return !this.env.needsRewrite(tableName(tableNumber));
  }

  /** Removes WALs, manifests and tables no live version needs, and leftovers of interrupted writes. */
  async #deleteObsoleteFiles(): Promise<void> {
    const names = await this.env.list('');
    // Live set taken after the listing: a table listed was registered as a pending output before it was created.
    const live = this.#versions.liveTableNumbers();
    for (const n of this.#pendingOutputs) live.add(n);
    for (const name of names) {
      const p = parseFileName(name);
      let obsolete = false;
      if (p?.kind === 'wal') obsolete = p.number < this.#versions.logNumber && p.number !== this.#wal.number;
      else if (p?.kind === 'table') obsolete = !live.has(p.number);
      // A newer manifest may be being written by a concurrent edit, before CURRENT names it.
      else if (p?.kind === 'manifest') obsolete = p.number < this.#versions.manifestNumber;
      if (!obsolete) continue;
      if (p?.kind === 'table') this.#tables.evict(p.number);
      await this.env.remove(name).catch((err: unknown) => this.#logger.warn({ err, file: name }, 'could not remove an obsolete file; it will be retried'));
    }
  }

  // ---------------------------------------------------------------- helpers

  #internalIterators(version: Version): InternalIterator[] {
    const children: InternalIterator[] = [this.#mem.iterator()];
    if (this.#imm) children.push(this.#imm.iterator());
    for (const f of version.levels[0]!) children.push(this.#tables.iterator(f.number));
    for (let level = 1; level < version.levels.length; level++) {
      const files = version.levels[level]!;
      if (files.length > 0) children.push(this.#levelIterator(files));
    }
    return children;
  }

  #levelIterator(files: readonly FileMeta[]): InternalIterator {
    return new ConcatIterator(files, (i) => this.#tables.iterator(files[i]!.number));
  }

  #outputContext(): TableOutputContext {
    return {
      env: this.env,
      tuning: this.tuning,
      newFileNumber: () => this.#versions.newFileNumber(),
      pendingOutputs: this.#pendingOutputs,
    };
  }

  #checkOpen(): void {
    if (this.#closed || this.#closing) throw new TdekvError('CLOSED', 'the database is closed');
  }

  async #releaseResources(): Promise<void> {
    await this.#wal?.writer.close().catch(() => undefined);
    await this.#versions.close().catch(() => undefined);
    this.#tables.close();
  }
}


/** Writes a memtable's entries, in order, into one level-0 table. */
/**
 * Writes a memtable to level-0 tables. Versions that a newer version of the same key hides
 * from every snapshot are left out (RocksDB's flush does the same): a key overwritten many
 * times between flushes is written once, not once per write.
 */
async function writeMemtable(ctx: TableOutputContext, mem: Memtable, smallestSnapshot: number, sliceMs: () => number = () => SLICE_MS): Promise<FileMeta[]> {
  const out = new TableOutput(ctx, Infinity);
  const it = mem.iterator();
  const slice = new WorkSlice(sliceMs);
  try {
    let previous: Buffer | undefined;
    let previousSeq = MAX_SEQUENCE;
    for (it.seekToFirst(); it.valid(); it.next()) {
      const key = it.userKey();
      const seq = it.seq();
      const sameKey = previous !== undefined && key.length === previous.length && compareBytes(key, 0, key.length, previous) === 0;
      const hidden = sameKey && previousSeq <= smallestSnapshot;
      if (!sameKey) previous = key;
      previousSeq = seq;
      if (hidden) continue;
      if (out.needsOpen(key)) await out.open();
      out.add(key, seq, it.kind(), it.value());
      if (slice.due()) {
        await out.drain();
        await yieldToEventLoop();
        slice.restart();
      }
    }
    return await out.finish();
  } catch (err) {
    await out.abandon();
    throw err;
  } finally {
    it.close();
  }
}

