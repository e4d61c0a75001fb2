import { createCipheriv, type Cipher } from 'node:crypto';
import { TdekvError } from '../errors.js';
import { keyLengthOf, opensslCipherOf, type EncryptionMethod } from './method.js';

const BLOCK = 16;

/**
 * The IV for the block holding byte `offset` of a stream: the 16-byte IV read as a 128-bit
 * big-endian counter, plus floor(offset / 16), carrying across all 128 bits (OpenSSL's CTR
 * increments the full block the same way, so this matches a stream started at 0).
 */
export function ivAtOffset(iv: Uint8Array, offset: number): Buffer {
  if (iv.length !== BLOCK) throw new TdekvError('INVALID_ARGUMENT', `IV must be 16 bytes, got ${iv.length}`);
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new TdekvError('INVALID_ARGUMENT', `offset must be a non-negative safe integer, got ${offset}`);
  }
  const out = Buffer.from(iv);
  let add = Math.floor(offset / BLOCK);
  let carry = 0;
  for (let i = BLOCK - 1; i >= 0 && (add > 0 || carry > 0); i--) {
    const sum = out[i]! + (add % 256) + carry;
    out[i] = sum & 0xff;
    carry = sum >> 8;
    add = Math.floor(add / 256);
  }
  return out;
}

/** Transforms bytes in stream order; for CTR, encryption and decryption are the same. */
export interface StreamTransform {
  update(data: Uint8Array): Buffer;
}

const IDENTITY: StreamTransform = { update: (data) => Buffer.from(data) };

/**
 * A CTR keystream positioned at byte `offset` of the stream that starts at `iv`.
 * The partial first block is consumed by running offset % 16 zero bytes through OpenSSL.
 */
export function ctrStreamAt(method: EncryptionMethod, key: Uint8Array, iv: Uint8Array, offset: number): StreamTransform {
  const name = opensslCipherOf(method);
  if (name === null) return IDENTITY;
  if (key.length !== keyLengthOf(method)) {
    throw new TdekvError('INVALID_ARGUMENT', `${method} needs a ${keyLengthOf(method)}-byte key, got ${key.length}`);
  }
  const cipher: Cipher = createCipheriv(name, key, ivAtOffset(iv, offset));
  const skip = offset % BLOCK;
  if (skip > 0) cipher.update(Buffer.alloc(skip));
  return cipher;
}

/** Encrypts or decrypts `data`, which sits at byte `offset` of the stream. */
export function ctrTransformAt(
  method: EncryptionMethod,
  key: Uint8Array,
  iv: Uint8Array,
  offset: number,
  data: Uint8Array,
): Buffer {
  return ctrStreamAt(method, key, iv, offset).update(data);
}
