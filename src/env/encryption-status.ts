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
  };
}
