import { createHmac, timingSafeEqual } from 'node:crypto';

/** Bytes of a dictionary MAC: full HMAC-SHA256 (the dictionaries are small; no need to truncate). */
export const DICT_MAC_LENGTH = 32;

/**
 * HMAC-SHA256 under key.dict's `dictMacKey`. Only a holder of the master key can unseal that
 * key, so a record that verifies was written by tdekv, whatever else was done to the disk.
 */
export function dictMac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

export function dictMacEquals(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
