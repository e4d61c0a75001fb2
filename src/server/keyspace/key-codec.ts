/**
 * How the Redis keyspace maps onto engine keys. One byte of tag keeps each kind of record in
 * its own key range, so a scan of one kind never reads the others:
 *
 *   'k' key                     → the key's record (type, expiry, string value or hash size)
 *   'h' u32(len) key field      → one hash field's value
 *   'x' u64(expire-at ms) key   → expiry index, scanned in time order by active expiry
 *   '!stats'                    → key and expiring-key counts, kept in step with every batch
 */
const TAG_KEY = 0x6b; // 'k'
const TAG_FIELD = 0x68; // 'h'
const TAG_EXPIRY = 0x78; // 'x'

export const STATS_KEY = Buffer.from('!stats', 'latin1');

export function recordKey(key: Buffer): Buffer {
  const out = Buffer.allocUnsafe(key.length + 1);
  out[0] = TAG_KEY;
  key.copy(out, 1);
  return out;
}

/** The user key of a record key. */
export function userKeyOf(recordKey: Buffer): Buffer {
  return recordKey.subarray(1);
}

/** Every record key, in user-key order. */
export const RECORD_RANGE = { gte: Buffer.from([TAG_KEY]), lt: Buffer.from([TAG_KEY + 1]) };

/** Record keys of user keys that start with `prefix`. */
export function recordRangeWithPrefix(prefix: Buffer): { gte: Buffer; lt: Buffer } {
  const gte = recordKey(prefix);
  return { gte, lt: prefixEnd(gte) };
}

function fieldPrefix(key: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + key.length);
  out[0] = TAG_FIELD;
  out.writeUInt32BE(key.length, 1);
  key.copy(out, 5);
  return out;
}

export function fieldKey(key: Buffer, field: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + key.length + field.length);
  out[0] = TAG_FIELD;
  out.writeUInt32BE(key.length, 1);
  key.copy(out, 5);
  field.copy(out, 5 + key.length);
  return out;
}

/** All field keys of one hash. */
export function fieldRange(key: Buffer): { gte: Buffer; lt: Buffer } {
  const gte = fieldPrefix(key);
  return { gte, lt: prefixEnd(gte) };
}

export function fieldOf(fieldKey: Buffer, keyLength: number): Buffer {
  return fieldKey.subarray(5 + keyLength);
}

export function expiryKey(at: number, key: Buffer): Buffer {
  const out = Buffer.allocUnsafe(9 + key.length);
  out[0] = TAG_EXPIRY;
  out.writeUInt32BE(Math.floor(at / 0x1_0000_0000), 1);
  out.writeUInt32BE(at % 0x1_0000_0000, 5);
  key.copy(out, 9);
  return out;
}

/** Expiry index entries due at or before `now`. */
export function expiryRangeUntil(now: number): { gte: Buffer; lt: Buffer } {
  return { gte: Buffer.from([TAG_EXPIRY]), lt: expiryKey(now + 1, Buffer.alloc(0)) };
}

export function decodeExpiryKey(k: Buffer): { at: number; key: Buffer } {
  return { at: k.readUInt32BE(1) * 0x1_0000_0000 + k.readUInt32BE(5), key: k.subarray(9) };
}

/** The first key after every key that starts with `prefix`. */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
}
