import { TdekvError } from '../errors.js';
import type { EngineFs } from './engine-fs.js';
import type { Logger } from '../log/logger.js';

/**
 * Tuning of the LSM tree. Names follow TiKV's RocksDB settings (camelCase here, kebab-case
 * in TOML's [engine] section). Memory is bounded by these numbers, not by data size:
 * memtables (writeBufferSize × 3: two, each up to 1.5× while the other is flushed), block
 * cache, open tables.
 */
export interface EngineTuning {
  /** Memtable size that triggers a flush to a level-0 table (bytes). */
  writeBufferSize: number;
  /** Uncompressed data block size target (bytes). */
  blockSize: number;
  /** Keys between restart points in a block (prefix compression resets there). */
  blockRestartInterval: number;
  /** Bloom filter bits per key; 0 turns filters off. */
  bloomFilterBitsPerKey: number;
  /** Decrypted, checksum-verified blocks kept in memory (bytes). */
  blockCacheSize: number;
  /** Open SSTables kept (each holds a descriptor, its index and its filter). */
  maxOpenFiles: number;
  /** Level-1 size limit (bytes); each deeper level is maxBytesForLevelMultiplier times bigger. */
  maxBytesForLevelBase: number;
  maxBytesForLevelMultiplier: number;
  /** Compaction output files are cut at this size (bytes). */
  targetFileSizeBase: number;
  level0FileNumCompactionTrigger: number;
  /** Writes are delayed 1 ms each once level 0 has this many files... */
  level0SlowdownWritesTrigger: number;
  /** ...and wait for compaction at this many. */
  level0StopWritesTrigger: number;
  numLevels: number;
  /**
   * After a write, flush or compaction finds the disk full (ENOSPC, EDQUOT), writes are
   * refused and retried after this many ms, doubling up to noSpaceRetryMaxIntervalMs; they
   * resume by themselves once space is freed (RocksDB's bgerror_resume_retry_interval).
   */
  noSpaceRetryIntervalMs: number;
  noSpaceRetryMaxIntervalMs: number;
}

export const DEFAULT_ENGINE_TUNING: EngineTuning = {
  writeBufferSize: 16 * 1024 * 1024,
  blockSize: 4096,
  blockRestartInterval: 16,
  bloomFilterBitsPerKey: 10,
  blockCacheSize: 64 * 1024 * 1024,
  maxOpenFiles: 1000,
  maxBytesForLevelBase: 64 * 1024 * 1024,
  maxBytesForLevelMultiplier: 10,
  targetFileSizeBase: 8 * 1024 * 1024,
  level0FileNumCompactionTrigger: 4,
  level0SlowdownWritesTrigger: 20,
  level0StopWritesTrigger: 36,
  numLevels: 7,
  noSpaceRetryIntervalMs: 1000,
  noSpaceRetryMaxIntervalMs: 30_000,
};

/**
 * What opening does with a write-ahead log record that is complete but fails its checksum or
 * tag (RocksDB's WAL recovery modes). A record cut short by a crash is always dropped.
 * - 'absolute-consistency' (default): refuse to open, naming the file and offset: with
 *   sync-writes the record may hold an acknowledged write.
 * - 'point-in-time': replay up to the damaged record and drop it and everything after it
 *   (later logs too), with an error in the log: the database opens at an earlier point.
 */
export const WAL_RECOVERY_MODES = ['absolute-consistency', 'point-in-time'] as const;
export type WalRecoveryMode = (typeof WAL_RECOVERY_MODES)[number];

/** What a config file's [engine] section and the embedded options set: the tuning, and where background work runs. */
export interface EngineSettings extends Partial<EngineTuning> {
  /**
   * Flushes and compactions run on a worker thread (the default), reading and writing exactly
   * the files the engine grants them; false runs the same runners on the main thread in slices.
   */
  backgroundThread?: boolean;
  /** How a sync write's WAL fsync runs: see WAL_SYNC_MODES. */
  walSync?: WalSyncMode;
}

/**
 * Where the fsync of a sync write's WAL record runs.
 * - 'inline' (default): fdatasync on the main thread, as SQLite, lmdb and Redis
 *   (appendfsync always) do. No thread-pool round trip (measured here: 200 µs against 270 µs
 *   per fsynced append), but nothing else runs on the main thread for the fsync's duration.
 *   Sync writers queued in the same turn of the event loop still share one fsync.
 * - 'thread-pool': fdatasync on libuv's thread pool, so reads and other work go on meanwhile:
 *   the server's default (src/server/server.ts), where the next clients' requests run during
 *   the fsync.
 */
export const WAL_SYNC_MODES = ['inline', 'thread-pool'] as const;
export type WalSyncMode = (typeof WAL_SYNC_MODES)[number];
export const DEFAULT_WAL_SYNC: WalSyncMode = 'inline';

export interface EngineOptions extends EngineSettings {
  /**
   * The file system every engine file goes through (the encrypted env). The engine keeps a
   * narrow facade of it (engineFsOf), never the object itself, and does not close it.
   */
  env: EngineFs;
  logger?: Logger;
  walRecoveryMode?: WalRecoveryMode;
}

/**
 * On by default since the worker reads a flushed memtable in shared memory instead of a copy
 * (docs/benchmarks.md, "The background thread: on or off"): on 2 cores it gains 21–33 % on
 * batched puts, 19 % on the fsynced mix and 6× foreground reads during a compaction, and costs
 * 3–4 % on random gets.
 */
export const DEFAULT_BACKGROUND_THREAD = true;

/** Defaults filled in and every number checked, naming the option at fault. */
export function resolveTuning(partial: Partial<EngineTuning>): EngineTuning {
  const t: EngineTuning = { ...DEFAULT_ENGINE_TUNING };
  for (const name of Object.keys(DEFAULT_ENGINE_TUNING) as Array<keyof EngineTuning>) {
    const v = partial[name];
    if (v === undefined) continue;
    const min = ENGINE_MINIMUMS[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      throw new TdekvError('CONFIG_INVALID', `engine option ${name} must be an integer >= ${min} (got ${JSON.stringify(v)})`);
    }
    t[name] = v;
  }
  const problem = tuningProblem(t);
  if (problem !== undefined) throw new TdekvError('CONFIG_INVALID', `engine option ${problem}`);
  return t;
}

/**
 * The tuning's rules across settings: writes slow down before they stop; no-space retries back off up to their cap. Every door that
 * takes tuning (the engine, the TOML file, the embedded options) asks here, naming the
 * settings its own way, so the rule cannot drift between them.
 */
export function tuningProblem(t: EngineTuning, name: (setting: keyof EngineTuning) => string = (s) => s): string | undefined {
  if (t.level0SlowdownWritesTrigger > t.level0StopWritesTrigger) {
    const d = DEFAULT_ENGINE_TUNING;
    return `${name('level0SlowdownWritesTrigger')} (${t.level0SlowdownWritesTrigger}) must not exceed ${name('level0StopWritesTrigger')} (${t.level0StopWritesTrigger}); defaults ${d.level0SlowdownWritesTrigger} and ${d.level0StopWritesTrigger}`;
  }
  if (t.noSpaceRetryIntervalMs > t.noSpaceRetryMaxIntervalMs) {
    const d = DEFAULT_ENGINE_TUNING;
    return `${name('noSpaceRetryIntervalMs')} (${t.noSpaceRetryIntervalMs} ms) must not exceed ${name('noSpaceRetryMaxIntervalMs')} (${t.noSpaceRetryMaxIntervalMs} ms); defaults ${d.noSpaceRetryIntervalMs} and ${d.noSpaceRetryMaxIntervalMs} ms`;
  }
  return undefined;
}

/** Smallest accepted value of each setting (the config schema checks the same bounds). */
export const ENGINE_MINIMUMS: Readonly<Record<keyof EngineTuning, number>> = {
  writeBufferSize: 4096,
  blockSize: 256,
  blockRestartInterval: 1,
  bloomFilterBitsPerKey: 0,
  blockCacheSize: 0,
  maxOpenFiles: 8,
  maxBytesForLevelBase: 4096,
  maxBytesForLevelMultiplier: 2,
  targetFileSizeBase: 4096,
  level0FileNumCompactionTrigger: 1,
  level0SlowdownWritesTrigger: 1,
  level0StopWritesTrigger: 1,
  numLevels: 2,
  noSpaceRetryIntervalMs: 1,
  noSpaceRetryMaxIntervalMs: 1,
};
