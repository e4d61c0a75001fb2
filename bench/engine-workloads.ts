/**
 * The engine benchmark's workloads, timed against any Driver:
 *
 * 1. load: keys once each, in counter order (random key order), in batches of `batch` puts;
 * 2. gets: random existing keys (seeded, the same sequence on every engine), synchronous;
 * 3. scan: every entry in key order;
 * 4. mix: 90% random gets / 10% single-put overwrites of random existing keys with a value
 *    they do not hold yet, one op at a time (each write awaited before the next op), bounded
 *    by an op count and a time limit.
 *
 * Results are checked as they come (a missing key, a short value, a wrong count or order
 * throws), so no engine can win by skipping work.
 */
import { prng } from './bench-env.js';
import { DataSet, VALUE_BYTES } from './engine-data.js';
import type { Driver } from './engine-driver.js';

export interface Measurement {
  ops: number;
  ms: number;
  /**
   * Minor page faults of the engine's process during the workload (all threads; set by the
   * child process): first writes to fresh memory, ~11 µs each on a small VM.
   */
  faults?: number;
}

export interface LoadMeasurement extends Measurement {
  /** True when the time limit, not the key count, ended the run. */
  timedOut: boolean;
}

export interface MixMeasurement extends LoadMeasurement {
  reads: number;
  writes: number;
}

const GETS_SEED = 0x6e75_7473;
export const MIX_SEED = 0x6d69_7821;
const VERIFY_GETS = 1000;
const VERIFY_SCAN_ORDER = 10_000;
const WRITE_FRACTION = 0.1;

/** Keeps read results observable so no engine can skip work. */
let sink = 0;
export function observe(): number {
  return sink;
}

/**
 * Puts keys [from, to) in batches of `batch`, each awaited before the next; stops early (and
 * says so) once `maxMs` has passed. `ops` counts the keys written.
 */
export async function load(
  driver: Driver,
  data: DataSet,
  range: { from: number; to: number; batch: number; maxMs?: number },
  onProgress: (done: number) => void,
): Promise<LoadMeasurement> {
  const { from, to, batch } = range;
  const maxMs = range.maxMs ?? Infinity;
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  const total = to - from;
  const progressEvery = Math.max(batch, Math.ceil(total / 10 / batch) * batch);
  let done = 0;
  let timedOut = false;
  const t = performance.now();
  for (let start = from; start < to; start += batch) {
    if (start > from && performance.now() - t > maxMs) {
      timedOut = true;
      break;
    }
    const end = Math.min(to, start + batch);
    keys.length = 0;
    values.length = 0;
    for (let i = start; i < end; i++) {
      keys.push(data.key(i));
      values.push(data.value(i));
    }
    const pending = driver.writeBatch(keys, values);
    if (pending) await pending;
    done = end - from;
    if (done % progressEvery === 0 && done < total) onProgress(done);
  }
  return { ops: done, ms: performance.now() - t, timedOut };
}

function randomIndices(seed: number, count: number, range: number): Uint32Array {
  const next = prng(seed);
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.floor(next() * range);
  return out;
}

/** `count` random gets among the first `loaded` keys. */
export function gets(driver: Driver, data: DataSet, loaded: number, count: number): Measurement {
  const indices = randomIndices(GETS_SEED, count, loaded);
  // Untimed: the store returns exactly what was loaded.
  for (let i = 0; i < Math.min(VERIFY_GETS, count); i++) {
    const k = indices[i]!;
    const v = driver.get(data.key(k));
    if (v === undefined || !Buffer.from(v.buffer, v.byteOffset, v.byteLength).equals(data.value(k))) {
      throw new Error(`get of loaded key #${k} returned ${v === undefined ? 'nothing' : 'a wrong value'}`);
    }
  }
  const t = performance.now();
  for (let i = 0; i < count; i++) {
    const v = driver.get(data.key(indices[i]!));
    if (v === undefined || v.length !== VALUE_BYTES) throw new Error(`get of loaded key #${indices[i]} returned ${v === undefined ? 'nothing' : `${v.length} bytes`}`);
    sink ^= v[0]!;
  }
  return { ops: count, ms: performance.now() - t };
}

/** Every entry; the store must hold exactly `loaded` keys. */
export async function scan(driver: Driver, loaded: number): Promise<Measurement> {
  let seen = 0;
  let previous: Buffer | undefined;
  const visit = (key: Uint8Array, value: Uint8Array): void => {
    if (seen < VERIFY_SCAN_ORDER) {
      const k = Buffer.from(key); // a copy: some stores reuse the key buffer
      if (previous && Buffer.compare(previous, k) >= 0) throw new Error(`scan returned key ${k.toString('hex')} after ${previous.toString('hex')}`);
      previous = k;
    }
    seen++;
    sink ^= value[0]!;
  };
  const t = performance.now();
  const pending = driver.scan(visit);
  const n = typeof pending === 'number' ? pending : await pending;
  const ms = performance.now() - t;
  if (n !== loaded || seen !== loaded) throw new Error(`scan saw ${seen} entries (reported ${n}), expected ${loaded}`);
  return { ops: n, ms };
}

export interface MixOptions {
  /** The PRNG seed choosing each op and key. */
  seed?: number;
  /**
   * Write number w (from 0) stores version `firstVersion + w` of its key's value, so no put
   * ever writes the value a key already holds: SQLite skips the commit, and so the fsync, of
   * a write that changes no byte. A second mix starts after the first one's versions.
   */
  firstVersion?: number;
  /** Called after each acknowledged put (tests check the store against it). */
  onWrite?: (key: number, version: number) => void;
}

/** The 90/10 mix over the first `loaded` keys, bounded by `maxOps` and `maxMs`. */
export async function mix(driver: Driver, data: DataSet, loaded: number, maxOps: number, maxMs: number, options: MixOptions = {}): Promise<MixMeasurement> {
  const { seed = MIX_SEED, firstVersion = 1, onWrite } = options;
  const next = prng(seed);
  let reads = 0;
  let writes = 0;
  let timedOut = false;
  const t = performance.now();
  for (let op = 0; op < maxOps; op++) {
    if ((op & 63) === 0 && op > 0 && performance.now() - t > maxMs) {
      timedOut = true;
      break;
    }
    const isWrite = next() < WRITE_FRACTION;
    const k = Math.floor(next() * loaded);
    if (isWrite) {
      const version = firstVersion + writes;
      const pending = driver.put(data.key(k), data.value(k, version));
      if (pending) await pending;
      onWrite?.(k, version);
      writes++;
    } else {
      const v = driver.get(data.key(k));
      if (v === undefined || v.length !== VALUE_BYTES) throw new Error(`get of key #${k} returned ${v === undefined ? 'nothing' : `${v.length} bytes`}`);
      sink ^= v[0]!;
      reads++;
    }
  }
  return { ops: reads + writes, ms: performance.now() - t, reads, writes, timedOut };
}
