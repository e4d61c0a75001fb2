import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { TdekvError } from '../errors.js';

/** AES-256-GCM, used to seal the key dictionary under the master key. */
export const SEAL_KEY_LENGTH = 32;
export const SEAL_NONCE_LENGTH = 12;
export const SEAL_TAG_LENGTH = 16;

export interface Sealed {
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

/** Thrown when the tag does not verify: a wrong key, or bytes changed since sealing. */
export class AuthenticationFailure extends Error {
  constructor() {
    super('AES-256-GCM authentication failed');
    this.name = 'AuthenticationFailure';
  }
}

function checkKey(key: Uint8Array): void {
  if (key.length !== SEAL_KEY_LENGTH) {
    throw new TdekvError('INVALID_ARGUMENT', `sealing key must be ${SEAL_KEY_LENGTH} bytes, got ${key.length}`);
  }
}

/** A fresh random nonce per call: a (key, nonce) pair is never reused. */
export function seal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Sealed {
  checkKey(key);
  const nonce = randomBytes(SEAL_NONCE_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: SEAL_TAG_LENGTH });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { nonce, ciphertext, tag: cipher.getAuthTag() };
}

export function unseal(key: Uint8Array, sealed: Sealed, aad: Uint8Array): Buffer {
  checkKey(key);
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.nonce, { authTagLength: SEAL_TAG_LENGTH });
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.tag);
  const out = decipher.update(sealed.ciphertext);
  try {
    decipher.final();
  } catch {
    out.fill(0);
    throw new AuthenticationFailure();
  }
  return out;
}
