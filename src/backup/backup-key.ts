import { createHmac, hkdfSync } from 'node:crypto';
import { TdekvError } from '../errors.js';
import { randomKey, zeroize } from '../crypto/random.js';
import { AuthenticationFailure, seal, unseal, type Sealed } from '../crypto/seal.js';

/** Every backup has its own random AES-256 key; nothing else encrypts its objects. */
export const BACKUP_KEY_BYTES = 32;

export function newBackupKey(): Buffer {
  return randomKey(BACKUP_KEY_BYTES);
}

/**
 * The backup key is the data key its objects are framed under (AES-256-CTR and per-file tags,
 * as the live store); the manifest's MAC and the seals of other keys use keys derived from it
 * with HKDF under their own labels, so no two uses share key material.
 */
export type BackupKeyUse = 'manifest-mac' | 'key-seal';

export function deriveBackupKey(backupKey: Uint8Array, use: BackupKeyUse, backupId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', backupKey, Buffer.from(backupId, 'utf8'), Buffer.from(`tdekv backup ${use} v1`), 32));
}

/** Hex fields of an AES-256-GCM seal, as the manifest stores them. */
export interface SealedHex {
  nonce: string;
  ciphertext: string;
  tag: string;
}

export function sealHex(key: Uint8Array, secret: Uint8Array, aad: string): SealedHex {
  const s = seal(key, secret, Buffer.from(aad, 'utf8'));
  return { nonce: s.nonce.toString('hex'), ciphertext: s.ciphertext.toString('hex'), tag: s.tag.toString('hex') };
}

/** Undefined when the key is wrong or the sealed bytes were changed (GCM cannot tell the two apart). */
export function unsealHex(key: Uint8Array, sealed: SealedHex, aad: string): Buffer | undefined {
  const s: Sealed = { nonce: Buffer.from(sealed.nonce, 'hex'), ciphertext: Buffer.from(sealed.ciphertext, 'hex'), tag: Buffer.from(sealed.tag, 'hex') };
  try {
    return unseal(key, s, Buffer.from(aad, 'utf8'));
  } catch (err) {
    if (err instanceof AuthenticationFailure) return undefined;
    throw err;
  }
}

/**
 * The chain's naming key: a table is recognised across the backups of one chain by
 * HMAC(name key, its source identity), so an incremental backup finds a table it stored
 * before without the storage learning anything about the source's files.
 */
export function contentId(nameKey: Uint8Array, identity: string): string {
  return createHmac('sha256', nameKey).update(identity, 'utf8').digest('hex');
}

/** Keys held while a backup or restore runs; wiped together when it ends. */
export class KeyRing {
  readonly #keys = new Map<number, Buffer>();

  set(id: number, key: Buffer): void {
    this.#keys.set(id, key);
  }

  get(id: number): Buffer {
    const k = this.#keys.get(id);
    if (!k) throw new TdekvError('BACKUP_DAMAGED', `the manifest references backup key ${id}, which it does not carry: the manifest is damaged`);
    return k;
  }

  has(id: number): boolean {
    return this.#keys.has(id);
  }

  ids(): number[] {
    return [...this.#keys.keys()];
  }

  wipe(): void {
    for (const k of this.#keys.values()) zeroize(k);
    this.#keys.clear();
  }
}
