/**
 * The engine benchmark's data set: N keys of 16 bytes that look random (a hashed counter,
 * so inserting counter order inserts in random key order) with 100-byte values, the same on
 * every engine and every run. Keys live in one buffer (16 × N bytes, the same memory in every
 * engine's process); values are windows into a 1 MiB seeded random pool, so nothing has to
 * be materialized per key and the bytes do not compress.
 */
import { prng } from './bench-env.js';

export const KEY_BYTES = 16;
export const VALUE_BYTES = 100;
const POOL_BYTES = 1024 * 1024;
const KEY_SEED = 0x9e37_79b9;
const POOL_SEED = 0x00c0_ffee;


/** MurmurHash3's 32-bit finalizer: a bijection on 32-bit integers. */
function fmix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85eb_ca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2_ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export class DataSet {
  readonly #keys: Buffer;
  readonly #pool: Buffer;

  constructor(readonly count: number) {
    if (count > 2 ** 29) throw new Error(`at most ${2 ** 29} keys`);
    this.#keys = Buffer.allocUnsafe(count * KEY_BYTES);
    for (let i = 0; i < count; i++) {
      // Lane 0 alone is unique per i (fmix32 is a bijection and 4i+seed does not repeat),
      // so the keys are distinct; the other lanes fill the rest of the 16 bytes.
      for (let lane = 0; lane < 4; lane++) this.#keys.writeUInt32BE(fmix32(4 * i + lane + KEY_SEED), i * KEY_BYTES + lane * 4);
    }
    this.#pool = Buffer.allocUnsafe(POOL_BYTES + VALUE_BYTES);
    const next = prng(POOL_SEED);
    for (let i = 0; i < this.#pool.length; i += 4) this.#pool.writeUInt32LE(Math.floor(next() * 4294967296), i);
  }

  /** The i-th key (a view, not a copy). */
  key(i: number): Buffer {
    return this.#keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES);
  }

  /** The value of key i at a version (0 = loaded, 1 and up = each overwrite of the mixed workloads). */
  value(i: number, version = 0): Buffer {
    const off = (Math.imul(i, 0x9e37_79b1) + Math.imul(version, 0x85eb_ca6b)) >>> 0;
    const start = off % POOL_BYTES;
    return this.#pool.subarray(start, start + VALUE_BYTES);
  }
}
