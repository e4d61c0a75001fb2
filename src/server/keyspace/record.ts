import { bufferView } from '../../util/buffer-view.js';

/**
 * The value stored under a key's record: its type, its expiry and, for a string, the bytes;
 * for a hash, the number of fields (so HLEN and DBSIZE-style counts need no scan).
 *
 *   u8 type | u32 expire-at high | u32 expire-at low (ms since the epoch, 0 = none) | payload
 */
export type KeyRecord =
  | { type: 'string'; expireAt: number; value: Buffer }
  | { type: 'hash'; expireAt: number; fields: number };

const TYPE_STRING = 0;
const TYPE_HASH = 1;
/** Bytes before a record's payload (a string's value). */
export const RECORD_HEADER_BYTES = 9;
const HEADER = RECORD_HEADER_BYTES;

export function encodeRecord(r: KeyRecord): Buffer {
  const payload = r.type === 'string' ? r.value.length : 4;
  const out = Buffer.allocUnsafe(HEADER + payload);
  out[0] = r.type === 'string' ? TYPE_STRING : TYPE_HASH;
  out.writeUInt32BE(Math.floor(r.expireAt / 0x1_0000_0000), 1);
  out.writeUInt32BE(r.expireAt % 0x1_0000_0000, 5);
  if (r.type === 'string') r.value.copy(out, HEADER);
  else out.writeUInt32BE(r.fields, HEADER);
  return out;
}

/** What decodeMetaAt returns for a key with no expiry: shared, so a lookup allocates nothing (callers only read it). */
const STRING_META: Readonly<Pick<KeyRecord, 'type' | 'expireAt'>> = Object.freeze({ type: 'string', expireAt: 0 });
const HASH_META: Readonly<Pick<KeyRecord, 'type' | 'expireAt'>> = Object.freeze({ type: 'hash', expireAt: 0 });

/** The type and expiry of the record that starts at b[start], without a view of its value. Read-only: it may be shared. */
export function decodeMetaAt(b: Buffer, start: number): Readonly<Pick<KeyRecord, 'type' | 'expireAt'>> {
  const type = b[start] === TYPE_HASH ? 'hash' : 'string';
  const expireAt = b.readUInt32BE(start + 1) * 0x1_0000_0000 + b.readUInt32BE(start + 5);
  if (expireAt === 0) return type === 'hash' ? HASH_META : STRING_META;
  return { type, expireAt };
}

export function decodeRecord(b: Buffer): KeyRecord {
  const expireAt = b.readUInt32BE(1) * 0x1_0000_0000 + b.readUInt32BE(5);
  if (b[0] === TYPE_HASH) return { type: 'hash', expireAt, fields: b.readUInt32BE(HEADER) };
  return { type: 'string', expireAt, value: bufferView(b, HEADER, b.length) };
}
