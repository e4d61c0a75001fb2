import type { EncryptionMethod } from '../crypto/method.js';
import type { Engine, EngineStats } from '../engine/engine.js';
import type { EncryptedEnv } from '../env/encrypted-env.js';
import { encryptionStatus, type IntegrityStatus } from '../env/encryption-status.js';
import type { MasterKeyType } from '../masterkey/master-key.js';
import type { ServerStats } from './server-stats.js';

/**
 * The `/status` document: what an operator needs to judge encryption, the engine and the
 * server at a glance. Built from metadata only (ids, methods, ages, counts, sizes), so it
 * cannot carry key material; the test scans it for the master key and every data key.
 */
export interface StatusReport {
  /** When this report was made (ISO 8601). */
  time: string;
  encryption: {
    dataDir: string;
    /** Method for new files. */
    method: EncryptionMethod;
    /** As tdekv_encryption_is_initialized: new files are encrypted under a current data key. */
    initialized: boolean;
    masterKey: {
      type: MasterKeyType;
      /** Where the key lives ("file /run/tdekv/master.key", "kms key-id=… region=…"). */
      description: string;
      /** False for `plaintext`: data keys are stored unprotected. */
      protectsKeys: boolean;
      /** kms only. */
      keyId?: string;
      region?: string;
      endpoint?: string;
    };
    currentDataKey: { id: number; method: EncryptionMethod; createdAt: string; ageSeconds: number; exposed: boolean } | null;
    dataKeyCount: number;
    dataKeys: Array<{ id: number; method: EncryptionMethod; createdAt: string; exposed: boolean; files: number }>;
    files: { total: number; byMethod: Partial<Record<EncryptionMethod, number>>; byKeyId: Record<string, number> };
    /** File name → bytes: key.dict, file.dict, file.dict.log. */
    metaFileSizes: Record<string, number>;
    /**
     * Tamper evidence: dictionary generations (record keyDictGeneration outside the data dir:
     * going down is a rollback), legacy dictionaries, files without tags, key.dict copy state.
     */
    integrity: IntegrityStatus;
  };
  /**
   * engine.stats(); `backgroundError` is set while writes are refused: until a reopen, or, with
   * `backgroundErrorRecoverable` (a full disk), until space is freed and a retry succeeds.
   * `compactionPaused`: a compaction not started for lack of room (writes go on).
   */
  engine?: EngineStats;
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

export async function statusReport(env: EncryptedEnv, engine?: Engine, server?: ServerStats, nowMs = Date.now()): Promise<StatusReport> {
  const s = await encryptionStatus(env, nowMs);
  const current = env.currentDataKey();
  const byKeyId: Record<string, number> = { ...env.stats().byKeyId };
  const report: StatusReport = {
    time: new Date(nowMs).toISOString(),
    encryption: {
      dataDir: s.dataDir,
      method: s.method,
      initialized: s.encrypted && current !== undefined,
      masterKey: masterKeyStatus(s.masterKey),
      currentDataKey: current
        ? {
            id: current.id,
            method: current.method,
            createdAt: new Date(current.createdAtMs).toISOString(),
            ageSeconds: Math.max(0, nowMs - current.createdAtMs) / 1000,
            exposed: current.exposed,
          }
        : null,
      dataKeyCount: s.dataKeys.length,
      dataKeys: s.dataKeys,
      files: { total: s.files.total, byMethod: s.files.byMethod, byKeyId },
      metaFileSizes: s.metaFileSizes,
      integrity: s.integrity,
    },
  };
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

/**
 * The KMS backend keeps its key id and region private and shows them only in its
 * description, so they are read back from there. Credentials in an endpoint URL
 * (user:password@host) are cut out.
 */
export function masterKeyStatus({ type, description, protectsKeys }: { type: MasterKeyType; description: string; protectsKeys: boolean }): StatusReport['encryption']['masterKey'] {
  const safe = description.replace(/\/\/[^/@\s]*@/g, '//');
  const out: StatusReport['encryption']['masterKey'] = { type, description: safe, protectsKeys };
  if (type === 'kms') {
    const field = (name: string) => new RegExp(`(?:^|\\s)${name}=(\\S+)`).exec(safe)?.[1];
    const [keyId, region, endpoint] = [field('key-id'), field('region'), field('endpoint')];
    if (keyId !== undefined) out.keyId = keyId;
    if (region !== undefined) out.region = region;
    // "default": the SDK's endpoint for the region, not a URL.
    if (endpoint !== undefined && endpoint !== 'default') out.endpoint = endpoint;
  }
  return out;
}
