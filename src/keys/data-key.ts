import { randomInt } from 'node:crypto';
import { keyLengthOf, type EncryptionMethod } from '../crypto/method.js';
import { randomKey } from '../crypto/random.js';

export interface DataKey {
  /** Random, never 0 (0 means "no key": plaintext files). */
  id: number;
  method: EncryptionMethod;
  createdAtMs: number;
  /** True once the key has been stored unprotected (plaintext master key) or dumped. */
  exposed: boolean;
  key: Buffer;
}

export type DataKeyInfo = Omit<DataKey, 'key'>;

export function infoOf(k: DataKey): DataKeyInfo {
  return { id: k.id, method: k.method, createdAtMs: k.createdAtMs, exposed: k.exposed };
}

export type RotationReason = 'no-current-key' | 'method-changed' | 'exposed' | 'expired' | 'requested';

export interface RotationPolicy {
  method: EncryptionMethod;
  periodMs: number;
  /** Exposure only forces rotation when a real master key can protect the new key. */
  masterKeyProtects: boolean;
}

/** Why the current key must be replaced before encrypting a new file, or null. */
export function rotationReason(current: DataKeyInfo | undefined, policy: RotationPolicy, nowMs: number): RotationReason | null {
  if (policy.method === 'plaintext') return null;
  if (!current) return 'no-current-key';
  if (current.method !== policy.method) return 'method-changed';
  if (current.exposed && policy.masterKeyProtects) return 'exposed';
  if (nowMs - current.createdAtMs >= policy.periodMs) return 'expired';
  return null;
}

const MAX_ID = 2 ** 53 - 1;

/** A random id that collides with no existing one (TiKV #14583: a collision erased a key). */
export function newKeyId(taken: ReadonlySet<number>): number {
  for (;;) {
    // randomInt is limited to 48-bit ranges; combine two draws for 53 bits.
    const id = randomInt(0, 2 ** 26) * 2 ** 27 + randomInt(0, 2 ** 27);
    if (id !== 0 && id <= MAX_ID && !taken.has(id)) return id;
  }
}

export function generateDataKey(method: EncryptionMethod, taken: ReadonlySet<number>, nowMs: number, exposed: boolean): DataKey {
  return { id: newKeyId(taken), method, createdAtMs: nowMs, exposed, key: randomKey(keyLengthOf(method)) };
}
