/**
 * Internal keys: a user key plus the sequence number and kind of the write that made it,
 * as in LevelDB. Order: user key ascending (bytewise), then sequence descending, so the
 * newest version of a key comes first.
 *
 * Encoding: userKey ++ [kind:1] ++ [seq:7 little-endian]. Sequence numbers stay below 2^53
 * so they are exact JS numbers.
 */

export const ValueKind = { Deletion: 0, Value: 1 } as const;
export type ValueKind = (typeof ValueKind)[keyof typeof ValueKind];

export const TRAILER_BYTES = 8;
/** Largest sequence number; seeking with it finds the newest version of a key. */
export const MAX_SEQUENCE = Number.MAX_SAFE_INTEGER;

export function encodeInternalKey(userKey: Uint8Array, seq: number, kind: ValueKind): Buffer {
  const out = Buffer.allocUnsafe(userKey.length + TRAILER_BYTES);
  out.set(userKey, 0);
  writeTrailer(out, userKey.length, seq, kind);
  return out;
}

export function writeTrailer(buf: Buffer, offset: number, seq: number, kind: ValueKind): void {
  buf[offset] = kind;
  // Byte by byte: writeUIntLE's argument checks cost more than the write on this hot path.
  let v = seq;
  for (let i = 1; i < 7; i++) {
    buf[offset + i] = v % 256;
    v = Math.floor(v / 256);
  }
  buf[offset + 7] = v;
}

/** User-key part of an internal key held in buf[start, end). */
export function userKeyEnd(end: number): number {
  return end - TRAILER_BYTES;
}

export function trailerSeq(buf: Buffer, trailerOffset: number): number {
  const o = trailerOffset;
  const lo = (buf[o + 1]! | (buf[o + 2]! << 8) | (buf[o + 3]! << 16)) + buf[o + 4]! * 2 ** 24;
  const hi = buf[o + 5]! + buf[o + 6]! * 256 + buf[o + 7]! * 65536;
  return lo + hi * 2 ** 32;
}

export function trailerKind(buf: Buffer, trailerOffset: number): ValueKind {
  return buf[trailerOffset]! as ValueKind;
}

export interface ParsedInternalKey {
  userKey: Buffer;
  seq: number;
  kind: ValueKind;
}

export function parseInternalKey(ikey: Buffer): ParsedInternalKey {
  if (ikey.length < TRAILER_BYTES) throw new RangeError('internal key shorter than its trailer');
  const t = ikey.length - TRAILER_BYTES;
  return { userKey: ikey.subarray(0, t), seq: trailerSeq(ikey, t), kind: trailerKind(ikey, t) };
}

/** Bytewise comparison of user keys. */
export function compareUserKeys(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** Internal-key order of (userKey, seq) pairs: key ascending, then seq descending. */
export function compareKeySeq(aKey: Uint8Array, aSeq: number, bKey: Uint8Array, bSeq: number): number {
  const c = Buffer.compare(aKey, bKey);
  if (c !== 0) return c;
  return aSeq > bSeq ? -1 : aSeq < bSeq ? 1 : 0;
}

/** Internal-key order of two encoded internal keys. */
export function compareInternalKeys(a: Buffer, b: Buffer): number {
  const at = a.length - TRAILER_BYTES;
  const bt = b.length - TRAILER_BYTES;
  const c = a.compare(b, 0, bt, 0, at);
  if (c !== 0) return c;
  const as = trailerSeq(a, at);
  const bs = trailerSeq(b, bt);
  if (as !== bs) return as > bs ? -1 : 1;
  return b[bt]! - a[at]!;
}
