/**
 * Bloom filters over user keys, LevelDB's layout: a bit array followed by one byte holding
 * k, the number of probes. Probes come from one 32-bit hash by double hashing
 * (h, h + delta, h + 2·delta, ...), so a key costs one pass over its bytes however many
 * probes there are. A get that misses a table is answered from memory, without reading a
 * data block or decrypting anything.
 */

const SEED = 0xbc9f1d34;
const M = 0xc6a4a793;
/** Larger k values are reserved for other encodings; such a filter must not exclude anything. */
const MAX_PROBES = 30;

/**
 * LevelDB's murmur-like Hash over data[start, end) (bytes read unsigned, as LevelDB does
 * since its signed-char fix). Part of the file format: changing it breaks every filter.
 */
export function hash32(data: Uint8Array, seed = SEED, start = 0, end = data.length): number {
  const n = end - start;
  let h = (seed ^ Math.imul(n, M)) >>> 0;
  let i = start;
  const limit = start + (n & ~3);
  for (; i < limit; i += 4) {
    const w = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) >>> 0;
    h = Math.imul((h + w) >>> 0, M) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  const rest = end - i;
  if (rest > 0) {
    if (rest === 3) h = (h + (data[i + 2]! << 16)) >>> 0;
    if (rest >= 2) h = (h + (data[i + 1]! << 8)) >>> 0;
    h = (h + data[i]!) >>> 0;
    h = Math.imul(h, M) >>> 0;
    h = (h ^ (h >>> 24)) >>> 0;
  }
  return h;
}

/** The hash table filters are built from and probed with (on disk: its seed is fixed). The memtable keeps each key's, and a flush passes it on. */
export function bloomHash(key: Uint8Array, start = 0, end = key.length): number {
  return hash32(key, SEED, start, end);
}

export function bloomProbes(bitsPerKey: number): number {
  return Math.min(MAX_PROBES, Math.max(1, Math.round(bitsPerKey * Math.LN2)));
}

/**
 * Builds a filter from keys or from their bloomHash values (a table builder collects
 * hashes: 4 bytes per key instead of the keys themselves).
 */
export function buildBloom(keysOrHashes: readonly Uint8Array[] | Uint32Array, bitsPerKey: number): Buffer {
  const count = keysOrHashes.length;
  const k = bloomProbes(bitsPerKey);
  // Small filters have high false-positive rates whatever bitsPerKey says: use 64 bits at least.
  const bytes = Math.ceil(Math.max(64, Math.ceil(count * bitsPerKey)) / 8);
  const bits = bytes * 8;
  const out = Buffer.alloc(bytes + 1);
  out[bytes] = k;
  for (let i = 0; i < count; i++) {
    const item = keysOrHashes[i]!;
    let h = typeof item === 'number' ? item : hash32(item);
    const delta = ((h >>> 17) | (h << 15)) >>> 0;
    for (let j = 0; j < k; j++) {
      const bit = h % bits;
      out[bit >>> 3] = out[bit >>> 3]! | (1 << (bit & 7));
      h = (h + delta) >>> 0;
    }
  }
  return out;
}

/** False means the key is certainly absent; true means it may be present. */
export function bloomMayContain(filter: Uint8Array, userKey: Uint8Array): boolean {
  return bloomMayContainHash(filter, hash32(userKey));
}

export function bloomMayContainHash(filter: Uint8Array, hash: number): boolean {
  const len = filter.length;
  if (len < 2) return true;
  const k = filter[len - 1]!;
  if (k > MAX_PROBES) return true;
  const bits = (len - 1) * 8;
  let h = hash;
  const delta = ((h >>> 17) | (h << 15)) >>> 0;
  for (let j = 0; j < k; j++) {
    const bit = h % bits;
    if ((filter[bit >>> 3]! & (1 << (bit & 7))) === 0) return false;
    h = (h + delta) >>> 0;
  }
  return true;
}

/** Collects the hashes of a table's user keys in a growing Uint32Array. */
export class BloomHashCollector {
  #hashes = new Uint32Array(1024);
  #count = 0;

  get count(): number {
    return this.#count;
  }

  add(key: Uint8Array): void {
    this.addHash(bloomHash(key));
  }

  /** A key by its bloomHash, when the caller has it (a memtable node keeps its key's). */
  addHash(hash: number): void {
    if (this.#count === this.#hashes.length) {
      const grown = new Uint32Array(this.#hashes.length * 2);
      grown.set(this.#hashes);
      this.#hashes = grown;
    }
    this.#hashes[this.#count++] = hash;
  }

  /** A view of the collected hashes. */
  hashes(): Uint32Array {
    return this.#hashes.subarray(0, this.#count);
  }
}
