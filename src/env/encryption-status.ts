import type { EncryptionMethod } from '../crypto/method.js';
import type { MasterKey, MasterKeyType } from '../masterkey/master-key.js';
import type { EncryptedEnv } from './encrypted-env.js';
import { KeyAdmin } from './key-admin.js';

/**
 * What an operator needs to see about encryption, and nothing secret: THE one projection
 * of the env and its keys. `tdekv ctl encryption-meta status` prints it (as lines, or as
 * this JSON), `/status` serves it as `encryption`, INFO `# Encryption` and the
 * `tdekv_encryption_*` metrics are read from it. A fact added here is added everywhere
 * it is shown; none of them computes its own.
 */
export interface EncryptionStatus {
  dataDir: string;
  /** Method for new files. */
  method: EncryptionMethod;
  /** The method is not plaintext. */
  encrypted: boolean;
  /** As tdekv_encryption_is_initialized: new files are encrypted under a current data key. */
  initialized: boolean;
  masterKey: MasterKeyStatus;
  currentDataKey: {
    id: number;
    method: EncryptionMethod;
    createdAt: string;
    ageMs: number;
    ageSeconds: number;
    exposed: boolean;
  } | null;
  dataKeyCount: number;
  /** Oldest first. */
  dataKeys: Array<{ id: number; method: EncryptionMethod; createdAt: string; exposed: boolean; files: number }>;
  /** Tracked files, per method and per data key id (0: plaintext). */
  files: { total: number; byMethod: Partial<Record<EncryptionMethod, number>>; byKeyId: Record<string, number> };
  /** File name → bytes: key.dict, file.dict, file.dict.log. */
  metaFileSizes: Record<string, number>;
  integrity: IntegrityStatus;
}

/** The status without the metadata files' sizes, which take a stat each: what a synchronous caller (INFO) can have. */
export type EncryptionFacts = Omit<EncryptionStatus, 'metaFileSizes'>;

export interface MasterKeyStatus {
  type: MasterKeyType;
  /** Where the key lives ("file /run/tdekv/master.key", "kms key-id=… region=… endpoint=…"); never credentials. */
  description: string;
  /** False for `plaintext`: data keys are stored unprotected. */
  protectsKeys: boolean;
  /** kms only, from MasterKey.publicInfo(). */
  keyId?: string;
  region?: string;
  /** kms only, when one is configured (else the SDK's endpoint for the region); without credentials. */
  endpoint?: string;
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

/** The master key's public fields: read from publicInfo(), never parsed out of the description. */
export function masterKeyStatus(mk: MasterKey): MasterKeyStatus {
  const out: MasterKeyStatus = { type: mk.type, description: mk.description, protectsKeys: mk.protectsKeys };
  const info = mk.publicInfo();
  if (info.type === 'kms') {
    out.keyId = info.keyId;
    out.region = info.region;
    if (info.endpoint !== undefined) out.endpoint = info.endpoint;
  }
  return out;
}

/** Everything but the metadata files' sizes, synchronously. */
export function encryptionFacts(env: EncryptedEnv, nowMs = Date.now()): EncryptionFacts {
  const keys = new KeyAdmin(env);
  const stats = env.stats();
  const current = keys.currentDataKey();
  const dataKeys = keys
    .dataKeys()
    .sort((a, b) => a.createdAtMs - b.createdAtMs)
    .map((k) => ({ id: k.id, method: k.method, createdAt: new Date(k.createdAtMs).toISOString(), exposed: k.exposed, files: stats.byKeyId[k.id] ?? 0 }));
  const ageMs = current ? Math.max(0, nowMs - current.createdAtMs) : 0;
  return {
    dataDir: env.dataDir,
    method: env.method,
    encrypted: env.method !== 'plaintext',
    initialized: env.method !== 'plaintext' && current !== undefined,
    masterKey: masterKeyStatus(keys.masterKey),
    currentDataKey: current
      ? { id: current.id, method: current.method, createdAt: new Date(current.createdAtMs).toISOString(), ageMs, ageSeconds: ageMs / 1000, exposed: current.exposed }
      : null,
    dataKeyCount: dataKeys.length,
    dataKeys,
    files: { total: stats.files, byMethod: stats.byMethod, byKeyId: { ...stats.byKeyId } },
    integrity: integrityStatus(env),
  };
}

export async function encryptionStatus(env: EncryptedEnv, nowMs = Date.now()): Promise<EncryptionStatus> {
  const facts = encryptionFacts(env, nowMs);
  const metaFileSizes = await env.metaFileSizes();
  // Field order as before metaFileSizes joined: integrity last.
  const { integrity, ...rest } = facts;
  return { ...rest, metaFileSizes, integrity };
}
