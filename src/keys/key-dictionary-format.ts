import { checksum32 } from './crc.js';
import { methodCode, methodFromCode, keyLengthOf } from '../crypto/method.js';
import { SEAL_NONCE_LENGTH, SEAL_TAG_LENGTH, type Sealed } from '../crypto/seal.js';
import { MASTER_KEY_TYPE_CODES, masterKeyTypeFromCode, type MasterKeyType } from '../masterkey/master-key.js';
import { BinaryReader, BinaryWriter } from '../util/binary.js';
import type { DataKey } from './data-key.js';

/**
 * key.dict: the data keys, sealed with AES-256-GCM under the master key.
 *
 *   magic "TDEKVKEY" | u16 version | u8 master-key type | blob envelope      <- AAD
 *   nonce(12) | blob ciphertext | tag(16) | u32 crc32 of all preceding bytes
 *
 * The outer CRC tells a damaged file (CRC fails) from a wrong master key (CRC passes,
 * GCM tag fails), and from a newer format (CRC passes, version too high); later versions
 * must keep it as the last 4 bytes.
 */
export const KEY_DICT_MAGIC = Buffer.from('TDEKVKEY');
export const KEY_DICT_VERSION = 1;
const CONTENT_VERSION = 1;

export interface KeyDictionary {
  currentKeyId: number;
  keys: Map<number, DataKey>;
}

export interface SealedKeyDictionary {
  version: number;
  masterKeyType: MasterKeyType;
  envelope: Buffer;
  aad: Buffer;
  sealed: Sealed;
}

export class KeyDictFormatError extends Error {
  constructor(
    message: string,
    readonly tooNew = false,
  ) {
    super(message);
  }
}

export function encodeContent(dict: KeyDictionary): Buffer {
  const w = new BinaryWriter().u16(CONTENT_VERSION).u64(dict.currentKeyId).u32(dict.keys.size);
  for (const k of dict.keys.values()) {
    w.u64(k.id).u8(methodCode(k.method)).u64(k.createdAtMs).u8(k.exposed ? 1 : 0).u8(k.key.length).bytes(k.key);
  }
  return w.finish();
}

export function decodeContent(buf: Buffer): KeyDictionary {
  const r = new BinaryReader(buf);
  const version = r.u16();
  if (version !== CONTENT_VERSION) throw new KeyDictFormatError(`unknown content version ${version}`, version > CONTENT_VERSION);
  const currentKeyId = r.u64();
  const count = r.u32();
  const keys = new Map<number, DataKey>();
  for (let i = 0; i < count; i++) {
    const id = r.u64();
    const code = r.u8();
    const method = methodFromCode(code);
    if (!method) throw new KeyDictFormatError(`data key ${id} has unknown method code ${code}`);
    const createdAtMs = r.u64();
    const exposed = r.u8() === 1;
    const len = r.u8();
    if (len !== keyLengthOf(method)) throw new KeyDictFormatError(`data key ${id} has ${len} bytes, ${method} needs ${keyLengthOf(method)}`);
    keys.set(id, { id, method, createdAtMs, exposed, key: Buffer.from(r.bytes(len)) });
  }
  if (r.remaining !== 0) throw new KeyDictFormatError(`${r.remaining} unexpected trailing bytes`);
  return { currentKeyId, keys };
}

export function sealedHeader(masterKeyType: MasterKeyType, envelope: Buffer): Buffer {
  return new BinaryWriter().bytes(KEY_DICT_MAGIC).u16(KEY_DICT_VERSION).u8(MASTER_KEY_TYPE_CODES[masterKeyType]).blob(envelope).finish();
}

export function encodeSealedFile(aad: Buffer, sealed: Sealed): Buffer {
  const body = new BinaryWriter().bytes(aad).bytes(sealed.nonce).blob(sealed.ciphertext).bytes(sealed.tag).finish();
  return new BinaryWriter().bytes(body).u32(checksum32(body)).finish();
}

/** Parses the envelope of key.dict; throws KeyDictFormatError describing the damage. */
export function decodeSealedFile(buf: Buffer): SealedKeyDictionary {
  if (buf.length < KEY_DICT_MAGIC.length + 2 || !buf.subarray(0, KEY_DICT_MAGIC.length).equals(KEY_DICT_MAGIC)) {
    throw new KeyDictFormatError('it does not start with the key dictionary magic bytes');
  }
  const version = buf.readUInt16LE(KEY_DICT_MAGIC.length);
  if (buf.length < 4) throw new KeyDictFormatError('it is truncated');
  // The checksum comes first (every version keeps the trailing CRC-32 over all preceding
  // bytes): a damaged version field must read as damage, not as a newer format.
  const body = buf.subarray(0, buf.length - 4);
  if (checksum32(body) !== buf.readUInt32LE(buf.length - 4)) {
    const newer = version > KEY_DICT_VERSION ? `; its version field reads ${version}, but this build reads up to ${KEY_DICT_VERSION}` : '';
    throw new KeyDictFormatError(`its checksum does not match (${buf.length} bytes)${newer}`);
  }
  if (version > KEY_DICT_VERSION) {
    throw new KeyDictFormatError(`it was written in format version ${version}; this build reads up to ${KEY_DICT_VERSION}`, true);
  }
  const r = new BinaryReader(body);
  try {
    r.bytes(KEY_DICT_MAGIC.length);
    r.u16();
    const typeCode = r.u8();
    const masterKeyType = masterKeyTypeFromCode(typeCode);
    if (!masterKeyType) throw new KeyDictFormatError(`unknown master key type code ${typeCode}`);
    const envelope = Buffer.from(r.blob());
    const aad = Buffer.from(body.subarray(0, r.offset));
    const nonce = Buffer.from(r.bytes(SEAL_NONCE_LENGTH));
    const ciphertext = Buffer.from(r.blob());
    const tag = Buffer.from(r.bytes(SEAL_TAG_LENGTH));
    if (r.remaining !== 0) throw new KeyDictFormatError(`${r.remaining} unexpected trailing bytes`);
    return { version, masterKeyType, envelope, aad, sealed: { nonce, ciphertext, tag } };
  } catch (err) {
    if (err instanceof KeyDictFormatError) throw err;
    throw new KeyDictFormatError(`its structure is inconsistent (${(err as Error).message})`);
  }
}
