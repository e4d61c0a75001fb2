import { randomInt } from 'node:crypto';
import { hash32 } from '../../engine/bloom.js';
import { copyBytes } from '../../engine/compare-bytes.js';
import { bufferView } from '../../util/buffer-view.js';

/**
 * Recently read and written engine entries, by key: RocksDB's row cache. A hot key is then
 * one hash-table probe instead of a walk down the memtable and the table levels (filters,
 * index block, data block). Absent keys are cached too (as null), because SET must look up
 * the key it replaces.
 *
 * Eviction is generational rather than strict LRU: entries go to a young generation; when
 * it holds half the budget it becomes the old one (the previous old one is dropped), and a
 * hit in the old generation copies the entry back to the young one. That costs no
 * bookkeeping per hit.
 *
 * Each generation is an open-addressing table over typed arrays, keyed by the key's bytes
 * (copied into an arena) and their hash32. The earlier Map keyed by latin1 strings made a
 * string per lookup and hashed it, then missed the cache on the Map's bucket, entry and key
 * string: 600-1000 ns a hit here, against 350-470 ns for this layout (100k keys).
 */
const ENTRY_OVERHEAD = 64;
const INITIAL_SLOTS = 1 << 10;
/*
 * Clients choose the keys, and hash32 is public: keys crafted to share a slot would turn
 * every lookup into a walk along them (hash flooding; the Map this replaced hashed with
 * V8's per-process seed). So the hash is seeded per process, and no entry sits more than
 * MAX_PROBE slots past its home slot: a lookup stops there, and an insert that would go
 * further empties the cache instead (a cache may forget; it must not answer slowly).
 */
const SEED = randomInt(0x1_0000_0000 - 1);
const MAX_PROBE = 32;
/**
 * Values up to this size are copied into the arena right after their key, so a hit reads
 * the line(s) the key comparison just loaded instead of the value's Buffer object and then
 * its bytes elsewhere in the heap (two more cache misses: a third of a pipelined GET).
 * Bigger values stay Buffers, held by reference.
 */
export const INLINE_VALUE_BYTES = 256;
/** Words per entry in a generation's refs. */
const REF = 4;
/** refs value-offset word: the key is known to be absent. */
const ABSENT = -1;
/** refs value-offset word: the value is a Buffer in #big. */
const BIG = -2;

/** Where a cached value's bytes are: buf[start, start + length). Filled by locate(). */
export interface ValueLocation {
  buf: Buffer;
  start: number;
}

/** The `length` bytes at `at` as a Buffer: the located Buffer itself when it is exactly them, else a view. */
export function bufferAt(at: ValueLocation, length: number): Buffer {
  return at.start === 0 && length === at.buf.length ? at.buf : bufferView(at.buf, at.start, at.start + length);
}

/** A generation's sizes when it was retired, so the next one starts there (see Generation's constructor). */
export interface GenerationSizes {
  slotBits: number;
  refWords: number;
  arenaBytes: number;
}

class Generation {
  /** Per slot [entry + 1 (0 = empty), hash32 of its key]; half full at most. */
  #slots: Int32Array;
  #slotBits: number;
  /**
   * Per entry [key offset, key length, value offset (ABSENT, BIG), value length], side by
   * side so that a lookup misses the CPU cache once for them, not once per field. Offsets
   * are into the arena.
   */
  #refs: Int32Array;
  /**
   * Keys and small values, appended. A value is never overwritten in place: callers may hold
   * views of it (get()), so a new value of a key is appended and the old bytes stay until
   * the generation is dropped; `bytes` counts them.
   */
  #arena: Buffer;
  #arenaUsed = 0;
  /** Values bigger than INLINE_VALUE_BYTES, by entry. */
  #big: Array<Buffer | undefined> = [];
  #entries = 0;
  bytes = 0;
  /** An entry would sit further than MAX_PROBE from its home slot: the caller must drop this generation. */
  overflowed = false;

  /**
   * `like`: the sizes the previous young generation reached, so that this one starts there:
   * growing by doubling from small copied the arena and rehashed the slots each time, and
   * faulted in fresh memory at every step (about 2 % of a pipelined SET's main thread).
   */
  constructor(like?: GenerationSizes) {
    this.#slotBits = like?.slotBits ?? 10;
    this.#slots = new Int32Array(2 << this.#slotBits);
    this.#refs = new Int32Array(like?.refWords ?? (INITIAL_SLOTS / 2) * REF);
    this.#arena = Buffer.allocUnsafe(like?.arenaBytes ?? 16 * 1024);
  }

  /** What this generation grew to (bounded by the cache's budget, which retired it). */
  get sizes(): GenerationSizes {
    return { slotBits: this.#slotBits, refWords: this.#refs.length, arenaBytes: this.#arena.length };
  }

  get size(): number {
    return this.#entries;
  }

  /** The entry holding `key`, or -1. */
  find(key: Uint8Array, hash: number): number {
    const slots = this.#slots;
    const mask = slots.length - 1;
    let at = this.#slotOf(hash);
    for (let probe = 0; probe <= MAX_PROBE; probe++, at = (at + 2) & mask) {
      const e = slots[at]! - 1;
      if (e < 0) return -1;
      if (slots[at + 1] === hash && this.#holds(e, key)) return e;
    }
    return -1;
  }

  /** Entry `e`'s value (a view of the arena for a small one), or null for a known absence. */
  value(e: number): Buffer | null {
    const refs = this.#refs;
    const off = refs[e * REF + 2]!;
    if (off === ABSENT) return null;
    if (off === BIG) return this.#big[e]!;
    return bufferView(this.#arena, off, off + refs[e * REF + 3]!);
  }

  /** Where entry `e`'s value lies, into `at`: its length, or -1 for a known absence. */
  locate(e: number, at: ValueLocation): number {
    const refs = this.#refs;
    const off = refs[e * REF + 2]!;
    if (off === ABSENT) return -1;
    if (off === BIG) {
      at.buf = this.#big[e]!;
      at.start = 0;
    } else {
      at.buf = this.#arena;
      at.start = off;
    }
    return refs[e * REF + 3]!;
  }

  /** Sets `key` to `value` (replacing the value of an entry already here). */
  put(key: Uint8Array, hash: number, value: Buffer | null): void {
    let e = this.find(key, hash);
    if (e < 0) {
      e = this.#entries++;
      if (e * REF + REF > this.#refs.length) this.#refs = grow(this.#refs);
      const at = this.#append(key, 0, key.length);
      this.#refs[e * REF] = at;
      this.#refs[e * REF + 1] = key.length;
      this.bytes += key.length + ENTRY_OVERHEAD;
      if ((e + 1) * 4 > this.#slots.length) this.#growSlots();
      this.#place(e, hash);
    } else if (this.#refs[e * REF + 2] === BIG) {
      // The old length from refs: reading it from the old Buffer was a cache miss per SET.
      this.bytes -= this.#refs[e * REF + 3]!;
      this.#big[e] = undefined;
    }
    const refs = this.#refs;
    if (value === null) {
      refs[e * REF + 2] = ABSENT;
      refs[e * REF + 3] = 0;
    } else if (value.length > INLINE_VALUE_BYTES) {
      this.#big[e] = value;
      refs[e * REF + 2] = BIG;
      refs[e * REF + 3] = value.length;
      this.bytes += value.length;
    } else {
      refs[e * REF + 2] = this.#append(value, 0, value.length);
      refs[e * REF + 3] = value.length;
      this.bytes += value.length;
    }
  }

  /** Appends src[start, end) to the arena; returns its offset there. */
  #append(src: Uint8Array, start: number, end: number): number {
    const n = end - start;
    if (this.#arenaUsed + n > this.#arena.length) {
      // A new arena: views of the old one stay valid, and nothing writes to it again.
      const arena = Buffer.allocUnsafe(Math.max(this.#arena.length * 2, this.#arenaUsed + n));
      this.#arena.copy(arena, 0, 0, this.#arenaUsed);
      this.#arena = arena;
    }
    const at = this.#arenaUsed;
    copyBytes(src, start, end, this.#arena, at);
    this.#arenaUsed = at + n;
    return at;
  }

  #slotOf(hash: number): number {
    return (Math.imul(hash, 0x9e3779b1) >>> (32 - this.#slotBits)) << 1;
  }

  #place(e: number, hash: number): void {
    const slots = this.#slots;
    const mask = slots.length - 1;
    let at = this.#slotOf(hash);
    for (let probe = 0; slots[at] !== 0; probe++) {
      if (probe === MAX_PROBE) this.overflowed = true;
      at = (at + 2) & mask;
    }
    slots[at] = e + 1;
    slots[at + 1] = hash;
  }

  #growSlots(): void {
    const old = this.#slots;
    this.#slots = new Int32Array(old.length * 2);
    this.#slotBits++;
    for (let at = 0; at < old.length; at += 2) if (old[at] !== 0) this.#place(old[at]! - 1, old[at + 1]!);
  }

  #holds(e: number, key: Uint8Array): boolean {
    const len = this.#refs[e * REF + 1]!;
    if (len !== key.length) return false;
    const arena = this.#arena;
    const off = this.#refs[e * REF]!;
    for (let i = 0; i < len; i++) if (arena[off + i] !== key[i]) return false;
    return true;
  }
}

function grow(a: Int32Array): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

export class RowCache {
  readonly #halfBudget: number;
  #young = new Generation();
  #old = new Generation();
  hits = 0;
  misses = 0;
  /** Times an insert found its slots crowded (crafted keys) and the cache was emptied. */
  overflows = 0;
  /**
   * Times the cache forgot entries (a generation dropped, or all of it). Until this changes,
   * every key set since is still here with the value last set.
   */
  forgets = 0;

  readonly #hash: (key: Uint8Array) => number;

  /** `hash` is for tests (a hash every key shares stands for crafted keys). */
  constructor(budgetBytes: number, hash: (key: Uint8Array) => number = (key) => hash32(key, SEED)) {
    this.#halfBudget = Math.floor(budgetBytes / 2);
    this.#hash = hash;
  }

  get enabled(): boolean {
    return this.#halfBudget > 0;
  }

  /** The cached value, null for "known absent", undefined when not cached. */
  get(key: Uint8Array): Buffer | null | undefined {
    const at = this.#at;
    const n = this.locate(key, at);
    return n === -2 ? undefined : n === -1 ? null : bufferAt(at, n);
  }

  readonly #at: ValueLocation = { buf: Buffer.alloc(0), start: 0 };

  /**
   * get(key) without a Buffer: where the cached value's bytes lie, into `at` (valid until
   * the caller's next call that may write: the bytes are never overwritten, but the
   * location object is reused). The value's length, -1 when the key is known absent, -2 when
   * it is not cached.
   */
  locate(key: Uint8Array, at: ValueLocation): number {
    let young: number;
    let e: number;
    let hash = 0;
    const probed = key === this.#probeKey && this.#probeChanges === this.#changes;
    this.#probeKey = undefined;
    if (probed) {
      young = this.#probeYoung;
      e = this.#probeOld;
    } else {
      hash = this.#hash(key) | 0;
      young = this.#young.find(key, hash);
      e = young >= 0 ? -1 : this.#old.find(key, hash);
    }
    if (young >= 0) {
      this.hits++;
      return this.#young.locate(young, at);
    }
    if (e < 0) {
      this.misses++;
      return -2;
    }
    this.hits++;
    // Located before the copy back, which may turn the young generation into the old one
    // (the bytes located stay where they are).
    const n = this.#old.locate(e, at);
    this.#put(key, probed ? this.#hash(key) | 0 : hash, this.#old.value(e));
    return n;
  }

  /**
   * Whether the cache holds `key` (a value or a known absence): not counted as a hit or a
   * miss, and nothing moves between generations (the read that follows does both).
   */
  has(key: Uint8Array): boolean {
    const hash = this.#hash(key) | 0;
    const young = this.#young.find(key, hash);
    const old = young >= 0 ? -1 : this.#old.find(key, hash);
    // The read that usually follows (a command looking up the key it was checked for) takes
    // this answer instead of hashing and probing again, unless the cache changed meanwhile.
    this.#probeKey = key;
    this.#probeYoung = young;
    this.#probeOld = old;
    this.#probeChanges = this.#changes;
    return young >= 0 || old >= 0;
  }

  #probeKey: Uint8Array | undefined;
  #probeYoung = -1;
  #probeOld = -1;
  #probeChanges = 0;
  /** Bumped by every insert and clear: a remembered probe is stale once it moved. */
  #changes = 0;

  /** Caches `value` (null: the key is known to be absent). The key's bytes are copied. */
  set(key: Uint8Array, value: Buffer | null): void {
    if (this.#halfBudget === 0) return;
    this.#put(key, this.#hash(key) | 0, value);
  }

  #put(key: Uint8Array, hash: number, value: Buffer | null): void {
    this.#changes++;
    this.#young.put(key, hash, value);
    if (this.#young.overflowed) {
      // Both generations: the old one may hold an older value of a key the young one held.
      this.clear();
      this.#young.put(key, hash, value);
      this.overflows++;
      return;
    }
    if (this.#young.bytes > this.#halfBudget) {
      this.forgets++;
      this.#old = this.#young;
      this.#young = new Generation(this.#old.sizes);
    }
  }

  clear(): void {
    this.#changes++;
    this.forgets++;
    this.#young = new Generation();
    this.#old = new Generation();
  }

  get entries(): number {
    return this.#young.size + this.#old.size;
  }

  /** The young generation's tables (for tests). */
  get youngSizes(): GenerationSizes {
    return this.#young.sizes;
  }
}
