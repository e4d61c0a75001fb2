/**
 * A copy of key material in memory of its own. Buffer.from(bytes) takes small copies from
 * Node's shared pool, where they sit beside unrelated data and cannot be wiped without
 * wiping that too; Buffer.alloc never pools.
 */
export function secretCopy(bytes: Uint8Array): Buffer {
  const copy = Buffer.alloc(bytes.length);
  copy.set(bytes);
  return copy;
}
