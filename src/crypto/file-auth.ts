import { createHmac, createSecretKey, hkdfSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import { TdekvError } from '../errors.js';
import type { EncryptionMethod } from './method.js';

/** Bytes of every tag: HMAC-SHA256 truncated to 128 bits (NIST SP 800-107 allows it). */
export const TAG_BYTES = 16;
/** What a tag covers before the unit's bytes: domain (1), offset (8), length (4). */
export const TAG_PREFIX_BYTES = 13;

/**
 * What a tag covers, so a tag made for one kind of unit never verifies as another (a table
 * footer passed off as a data block, a WAL record as a manifest record).
 */
export const enum AuthDomain {
  TableBlock = 1,
  TableFooter = 2,
  LogRecord = 3,
}

const HKDF_INFO = Buffer.from('tdekv file authentication v1');

/**
 * Tags for the blocks and records of one file, under a key derived from the file's data key
 * with HKDF-SHA256: salt = the file's IV, info = a label and the key id. Every file has a
 * fresh random IV, so every file has its own MAC key: a block copied from another file, or
 * a whole file put in another's place, fails its tag. The tag also covers the unit's byte
 * offset and length, so blocks cannot be moved or swapped within a file.
 *
 * The construction is MAC-then-encrypt: the tag is computed over the plaintext and stored
 * inside the CTR stream with it (see docs/encryption.md, "Tamper evidence", for why).
 */
export class FileAuthenticator {
  readonly #keyBytes: Buffer;
  /** A KeyObject, so each tag does not import the key again. */
  readonly #key: KeyObject;
  readonly #prefix = Buffer.alloc(TAG_PREFIX_BYTES);

  private constructor(key: Buffer) {
    this.#keyBytes = key;
    this.#key = createSecretKey(key);
  }

  /** The authenticator of a file under `dataKey`, or undefined for plaintext files (no key). */
  static forFile(method: EncryptionMethod, dataKey: Uint8Array, keyId: number, iv: Uint8Array): FileAuthenticator | undefined {
    if (method === 'plaintext') return undefined;
    if (dataKey.length === 0) throw new TdekvError('INVALID_ARGUMENT', `${method} file authentication needs its data key`);
    const info = Buffer.alloc(HKDF_INFO.length + 8);
    HKDF_INFO.copy(info, 0);
    info.writeBigUInt64BE(BigInt(keyId), HKDF_INFO.length);
    return new FileAuthenticator(Buffer.from(hkdfSync('sha256', dataKey, iv, info, 32)));
  }

  /** The tag of `data`, a unit of kind `domain` that starts at byte `offset` of the file. */
  tag(domain: AuthDomain, offset: number, data: Uint8Array): Buffer {
    writePrefix(this.#prefix, 0, domain, offset, data.length);
    return createHmac('sha256', this.#key).update(this.#prefix).update(data).digest().subarray(0, TAG_BYTES);
  }

  /**
   * The same tag for `buf[start, end)`, computed in one pass: the caller leaves
   * TAG_PREFIX_BYTES of room before `start`, which this overwrites (on the write path of every
   * log record, one HMAC update instead of two is a measurable share of a put).
   */
  tagWithRoom(domain: AuthDomain, offset: number, buf: Buffer, start: number, end: number): Buffer {
    const from = start - TAG_PREFIX_BYTES;
    if (from < 0) throw new TdekvError('INVALID_ARGUMENT', `tagWithRoom needs ${TAG_PREFIX_BYTES} bytes of room before the data`);
    writePrefix(buf, from, domain, offset, end - start);
    return createHmac('sha256', this.#key).update(buf.subarray(from, end)).digest().subarray(0, TAG_BYTES);
  }

  /** Constant-time comparison of `tag` with the tag `data` should have. */
  verify(domain: AuthDomain, offset: number, data: Uint8Array, tag: Uint8Array): boolean {
    return tag.length === TAG_BYTES && timingSafeEqual(this.tag(domain, offset, data), tag);
  }

  /** Wipes the derived key; the authenticator is unusable afterwards. */
  destroy(): void {
    this.#keyBytes.fill(0);
  }
}

function writePrefix(buf: Buffer, at: number, domain: AuthDomain, offset: number, length: number): void {
  buf[at] = domain;
  buf.writeUInt32BE(Math.floor(offset / 2 ** 32), at + 1);
  buf.writeUInt32BE(offset >>> 0, at + 5);
  buf.writeUInt32BE(length, at + 9);
}
