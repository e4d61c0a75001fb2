/*
 * Hex for key material without JS strings: a string cannot be wiped and may be interned or
 * copied by the engine at will, while these Buffers come from Buffer.alloc (never the shared
 * pool) and the caller zero-fills them when done.
 */

const DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/** The value of one ASCII hex digit (either case), or -1. */
function nibble(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * Decodes `text[start, start + 2 * length)` as hex into a fresh non-pooled Buffer, or
 * returns undefined (having wiped its partial output) if any byte is not a hex digit.
 */
export function decodeHexBytes(text: Uint8Array, start: number, length: number): Buffer | undefined {
  if (start < 0 || start + 2 * length > text.length) return undefined;
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    const hi = nibble(text[start + 2 * i]!);
    const lo = nibble(text[start + 2 * i + 1]!);
    if (hi < 0 || lo < 0) {
      out.fill(0);
      return undefined;
    }
    out[i] = (hi << 4) | lo;
  }
  return out;
}

/** Writes `bytes` as lowercase hex into `into` at `offset`; returns the offset after it. */
export function encodeHexInto(bytes: Uint8Array, into: Buffer, offset: number): number {
  for (let i = 0; i < bytes.length; i++) {
    into[offset++] = DIGITS[bytes[i]! >> 4]!;
    into[offset++] = DIGITS[bytes[i]! & 0x0f]!;
  }
  return offset;
}

/** True when every byte equals the first: all zeros, all 0xff, ... — a placeholder, not a random key. */
export function isOneRepeatedByte(key: Uint8Array): boolean {
  return key.length > 0 && key.every((b) => b === key[0]);
}
