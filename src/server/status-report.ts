import type { Engine, EngineStats } from '../engine/engine.js';
import type { EncryptedEnv } from '../env/encrypted-env.js';
import { encryptionStatus, masterKeyStatus, type EncryptionStatus } from '../env/encryption-status.js';
import type { ServerStats } from './server-stats.js';
import type { LifecycleStatus } from '../lifecycle/lifecycle-status.js';

/**
 * The `/status` document: what an operator needs to judge encryption, the engine and the
 * server at a glance. Built from metadata only (ids, methods, ages, counts, sizes), so it
 * cannot carry key material; the test scans it for the master key and every data key.
 */
export interface StatusReport {
  /** When this report was made (ISO 8601). */
  time: string;
  /**
   * The encryption status (src/env/encryption-status.ts), as `ctl encryption-meta status
   * --json` prints it: method, master key (type, description, kms key id, region, endpoint),
   * current data key and its age, data keys, files per method and key, metadata file sizes,
   * and tamper evidence (`integrity`: dictionary generations — record keyDictGeneration
   * outside the data dir, going down is a rollback — legacy dictionaries, files without tags,
   * key.dict copy state).
   */
  encryption: EncryptionStatus;
  /** The online encryption lifecycle (src/lifecycle/): SQL Server's encryption_state, the scan's state and progress. */
  lifecycle?: LifecycleStatus;
  /**
   * engine.stats(); `backgroundError` is set while writes are refused: until a reopen, or, with
   * `backgroundErrorRecoverable` (a full disk), until space is freed and a retry succeeds.
   * `compactionPaused`: a compaction not started for lack of room (writes go on).
   * `backgroundThread`: `[engine] background-thread` — whether flushes and compactions run on
   * a worker thread, and, when it runs, its thread id and the jobs it has run.
   */
  engine?: EngineStats & { backgroundThread: { enabled: boolean; threadId?: number; flushes?: number; compactions?: number } };
  server?: {
    startedAt: string;
    uptimeSeconds: number;
    connectedClients: number;
    totalConnections: number;
    rejectedConnections: number;
    totalCommands: number;
    keys: number;
    expiringKeys: number;
  };
}

export async function statusReport(env: EncryptedEnv, engine?: Engine, server?: ServerStats, nowMs = Date.now(), lifecycle?: LifecycleStatus): Promise<StatusReport> {
  const report: StatusReport = {
    time: new Date(nowMs).toISOString(),
    encryption: await encryptionStatus(env, nowMs),
  };
  if (lifecycle) report.lifecycle = lifecycle;
  if (engine) {
    // Listed field by field: a field added to EngineStats later is not published unreviewed.
    const e = engine.stats();
    report.engine = {
      levels: e.levels.map((l) => ({ level: l.level, files: l.files, bytes: l.bytes })),
      memtableBytes: e.memtableBytes,
      immutableMemtable: e.immutableMemtable,
      lastSequence: e.lastSequence,
      liveSnapshots: e.liveSnapshots,
      blockCache: { usage: e.blockCache.usage, capacity: e.blockCache.capacity },
      flushes: e.flushes,
      compactions: e.compactions,
      compactionBytesRead: e.compactionBytesRead,
      compactionBytesWritten: e.compactionBytesWritten,
      writeSlowdowns: e.writeSlowdowns,
      writeStops: e.writeStops,
      ...(e.backgroundError !== undefined ? { backgroundError: e.backgroundError } : {}),
      ...(e.backgroundErrorRecoverable !== undefined ? { backgroundErrorRecoverable: e.backgroundErrorRecoverable } : {}),
      ...(e.noSpaceNextRetryMs !== undefined ? { noSpaceNextRetryMs: e.noSpaceNextRetryMs } : {}),
      noSpaceRetries: e.noSpaceRetries,
      noSpaceRecoveries: e.noSpaceRecoveries,
      ...(e.compactionPaused !== undefined ? { compactionPaused: { needBytes: e.compactionPaused.needBytes, freeBytes: e.compactionPaused.freeBytes, since: e.compactionPaused.since } } : {}),
      compactionsPaused: e.compactionsPaused,
      backgroundThread: backgroundThreadStatus(engine),
    };
  }
  if (server) {
    report.server = {
      startedAt: new Date(server.startedAt).toISOString(),
      uptimeSeconds: Math.max(0, nowMs - server.startedAt) / 1000,
      connectedClients: server.connectedClients,
      totalConnections: server.totalConnections,
      rejectedConnections: server.rejectedConnections,
      totalCommands: server.totalCommands,
      keys: server.keys(),
      expiringKeys: server.expires(),
    };
  }
  return report;
}

function backgroundThreadStatus(engine: Engine): { enabled: boolean; threadId?: number; flushes?: number; compactions?: number } {
  const t = engine.backgroundThread();
  if (!t) return { enabled: false };
  return { enabled: true, ...(t.threadId !== undefined ? { threadId: t.threadId } : {}), flushes: t.flushes, compactions: t.compactions };
}

/** Kept here for callers of the /status module; the projection is in src/env/encryption-status.ts. */
export { masterKeyStatus };
