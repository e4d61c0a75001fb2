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
  if (r.type === 'string') return encodeStringRecord(r.value, r.expireAt);
  const out = header(TYPE_HASH, r.expireAt, 4);
  out.writeUInt32BE(r.fields, HEADER);
  return out;
}

/** encodeRecord of a string record, from its parts. */
export function encodeStringRecord(value: Buffer, expireAt: number): Buffer {
  const out = header(TYPE_STRING, expireAt, value.length);
  value.copy(out, HEADER);
  return out;
}

/** A record's buffer with its header written, `payload` bytes left for the caller. */
function header(type: number, expireAt: number, payload: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER + payload);
  out[0] = type;
  out.writeUInt32BE(Math.floor(expireAt / 0x1_0000_0000), 1);
  out.writeUInt32BE(expireAt % 0x1_0000_0000, 5);
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
