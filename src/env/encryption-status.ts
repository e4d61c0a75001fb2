import type { EncryptionMethod } from '../crypto/method.js';
import type { MasterKeyType } from '../masterkey/master-key.js';
import type { EncryptedEnv } from './encrypted-env.js';

/**
 * What an operator needs to see about encryption, and nothing secret: the CLI prints it,
 * the server's /status will serve it.
 */
export interface EncryptionStatus {
  dataDir: string;
  method: EncryptionMethod;
  encrypted: boolean;
  masterKey: { type: MasterKeyType; description: string; protectsKeys: boolean };
  currentDataKey: { id: number; method: EncryptionMethod; ageMs: number; exposed: boolean } | null;
  dataKeys: Array<{ id: number; method: EncryptionMethod; createdAt: string; exposed: boolean; files: number }>;
  files: { total: number; byMethod: Partial<Record<EncryptionMethod, number>> };
  metaFileSizes: Record<string, number>;
  integrity: IntegrityStatus;
}

/**
 * Tamper evidence, for monitoring: the generations an outside anchor records (a key.dict
 * generation that goes down between two looks is a rollback no check inside the data dir
 * can see), and what is not yet covered by tags.
 */
export interface IntegrityStatus {
  keyDictGeneration: number;
  fileDictGeneration: number;
  /** key.dict or the file dictionary is still in the version 1, unauthenticated format (migrated at the next writable open). */
  legacyDictionaries: boolean;
  /** Encrypted files without tags (written before tags existed): CRC only until compaction or `tdekv data-key reencrypt` rewrites them. */
  unauthenticatedFiles: { total: number; byMethod: Partial<Record<EncryptionMethod, number>> };
  /** Files stored as plaintext (adopted, or written while the method was plaintext). */
  plaintextFiles: number;
  /** Both copies of key.dict were found good and equal at open, or have been rewritten since. */
  keyDictCopyOk: boolean;
  /** What was wrong with a copy (file names and reasons only). */
  keyDictCopyProblems: string[];
}

export function integrityStatus(env: EncryptedEnv): IntegrityStatus {
  const d = env.dictionaryState();
  const byMethod: Partial<Record<EncryptionMethod, number>> = {};
  for (const path of d.unauthenticatedFiles) {
    const method = env.fileInfo(path)?.method;
    if (method !== undefined) byMethod[method] = (byMethod[method] ?? 0) + 1;
  }
  return {
    keyDictGeneration: d.keyDictGeneration,
    fileDictGeneration: d.fileDictGeneration,
    legacyDictionaries: d.legacy,
    unauthenticatedFiles: { total: d.unauthenticatedFiles.length, byMethod },
    plaintextFiles: d.plaintextEntries.length,
    keyDictCopyOk: d.keyDictCopyProblems.length === 0,
    keyDictCopyProblems: d.keyDictCopyProblems,
  };
}

export async function encryptionStatus(env: EncryptedEnv, nowMs = Date.now()): Promise<EncryptionStatus> {
  const stats = env.stats();
  const current = env.currentDataKey();
  const mk = env.masterKey;
  return {
    dataDir: env.dataDir,
    method: env.method,
    encrypted: env.method !== 'plaintext',
    masterKey: { type: mk.type, description: mk.description, protectsKeys: mk.protectsKeys },
    currentDataKey: current ? { id: current.id, method: current.method, ageMs: Math.max(0, nowMs - current.createdAtMs), exposed: current.exposed } : null,
    dataKeys: env
      .dataKeys()
      .sort((a, b) => a.createdAtMs - b.createdAtMs)
      .map((k) => ({ id: k.id, method: k.method, createdAt: new Date(k.createdAtMs).toISOString(), exposed: k.exposed, files: stats.byKeyId[k.id] ?? 0 })),
    files: { total: stats.files, byMethod: stats.byMethod },
    metaFileSizes: await env.metaFileSizes(),
    integrity: integrityStatus(env),
  };
}
