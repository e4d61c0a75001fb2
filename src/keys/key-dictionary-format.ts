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
 * Sealed content (version 2): u16 content version | u64 generation (+1 on every write) |
 * u64 fileDictGeneration (the file dictionary's generation when this was written) |
 * dictMacKey(32) (the file dictionary's MAC key) | u64 current key id | u32 count | keys.
 * Version 1 content (legacy) has no generations and no MAC key.
 *
 * The outer CRC tells a damaged file (CRC fails) from a wrong master key (CRC passes,
 * GCM tag fails), and from a newer format (CRC passes, version too high); later versions
 * must keep it as the last 4 bytes.
 */
export const KEY_DICT_MAGIC = Buffer.from('TDEKVKEY');
export const KEY_DICT_VERSION = 2;
const LEGACY_VERSION = 1;
const CONTENT_VERSION = 2;
export const DICT_MAC_KEY_LENGTH = 32;

export interface KeyDictionary {
  /** 0 for a legacy (version 1) dictionary; every write stores generation + 1. */
  generation: number;
  /** The file dictionary's generation when this was written; 0 = not yet bound (legacy, or being migrated). */
  fileDictGeneration: number;
  /** The file dictionary's MAC key; undefined only in a legacy (version 1) dictionary. */
  dictMacKey: Buffer | undefined;
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

/**
 * Key material is written straight into one buffer of its own (Buffer.alloc, never the
 * shared pool that allocUnsafe/concat of small sizes use), so the caller can wipe every copy.
 */
export function encodeContent(dict: KeyDictionary): Buffer {
  if (!dict.dictMacKey || dict.dictMacKey.length !== DICT_MAC_KEY_LENGTH) throw new KeyDictFormatError('the file dictionary MAC key is missing');
  let size = 2 + 8 + 8 + DICT_MAC_KEY_LENGTH + 8 + 4;
  for (const k of dict.keys.values()) size += 8 + 1 + 8 + 1 + 1 + k.key.length;
  const out = Buffer.alloc(size);
  let off = out.writeUInt16LE(CONTENT_VERSION, 0);
  off = out.writeBigUInt64LE(BigInt(dict.generation), off);
  off = out.writeBigUInt64LE(BigInt(dict.fileDictGeneration), off);
  off += dict.dictMacKey.copy(out, off);
  off = out.writeBigUInt64LE(BigInt(dict.currentKeyId), off);
  off = out.writeUInt32LE(dict.keys.size, off);
  for (const k of dict.keys.values()) {
    off = out.writeBigUInt64LE(BigInt(k.id), off);
    off = out.writeUInt8(methodCode(k.method), off);
    off = out.writeBigUInt64LE(BigInt(k.createdAtMs), off);
    off = out.writeUInt8(k.exposed ? 1 : 0, off);
    off = out.writeUInt8(k.key.length, off);
    off += k.key.copy(out, off);
  }
  return out;
}

export function decodeContent(buf: Buffer): KeyDictionary {
  const r = new BinaryReader(buf);
  const version = r.u16();
  if (version !== CONTENT_VERSION && version !== LEGACY_VERSION) throw new KeyDictFormatError(`unknown content version ${version}`, version > CONTENT_VERSION);
  let generation = 0;
  let fileDictGeneration = 0;
  let dictMacKey: Buffer | undefined;
  if (version === CONTENT_VERSION) {
    generation = r.u64();
    fileDictGeneration = r.u64();
    dictMacKey = Buffer.alloc(DICT_MAC_KEY_LENGTH);
    r.bytes(DICT_MAC_KEY_LENGTH).copy(dictMacKey);
  }
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
    const key = Buffer.alloc(len);
    r.bytes(len).copy(key);
    keys.set(id, { id, method, createdAtMs, exposed, key });
  }
  if (r.remaining !== 0) throw new KeyDictFormatError(`${r.remaining} unexpected trailing bytes`);
  return { generation, fileDictGeneration, dictMacKey, currentKeyId, keys };
}

export function sealedHeader(masterKeyType: MasterKeyType, envelope: Buffer, version = KEY_DICT_VERSION): Buffer {
  return new BinaryWriter().bytes(KEY_DICT_MAGIC).u16(version).u8(MASTER_KEY_TYPE_CODES[masterKeyType]).blob(envelope).finish();
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
