import { randomInt } from 'node:crypto';
import { hash32 } from '../../engine/bloom.js';

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
 * The first bytes of each value are kept beside its key: a caller that needs only a value's
 * start (SET needs the type and expiry of the record it replaces) then reads the line the key
 * comparison just loaded, not the value's Buffer object and its bytes (two or three cache
 * misses, 9 % of a pipelined SET).
 */
export const PREFIX_BYTES = 16;
/** Words per entry in a generation's refs. */
const REF = 4;

class Generation {
  /** Per slot [entry + 1 (0 = empty), hash32 of its key]; half full at most. */
  #slots = new Int32Array(INITIAL_SLOTS * 2);
  #slotBits = 10;
  /**
   * Per entry [arena offset, key length, prefix length (-1: the value is null), value length], side by side
   * so that a lookup misses the CPU cache once for them, not once per field. The arena holds
   * the key's bytes, then PREFIX_BYTES reserved for the value's first bytes.
   */
  #refs = new Int32Array((INITIAL_SLOTS / 2) * REF);
  #arena = Buffer.allocUnsafe(16 * 1024);
  #arenaUsed = 0;
  #values: Array<Buffer | null> = [];
  bytes = 0;
  /** An entry would sit further than MAX_PROBE from its home slot: the caller must drop this generation. */
  overflowed = false;

  get size(): number {
    return this.#values.length;
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

  value(e: number): Buffer | null {
    return this.#values[e]!;
  }

  /** Copies entry `e`'s value prefix into `into` (PREFIX_BYTES long); its length, or -1 for a null value. */
  prefix(e: number, into: Uint8Array): number {
    const refs = this.#refs;
    const len = refs[e * REF + 2]!;
    const from = refs[e * REF]! + refs[e * REF + 1]!;
    const arena = this.#arena;
    for (let i = 0; i < len; i++) into[i] = arena[from + i]!;
    return len;
  }

  #setPrefix(e: number, value: Buffer | null): void {
    const refs = this.#refs;
    const len = value === null ? -1 : Math.min(value.length, PREFIX_BYTES);
    refs[e * REF + 2] = len;
    refs[e * REF + 3] = value?.length ?? 0;
    const arena = this.#arena;
    const to = refs[e * REF]! + refs[e * REF + 1]!;
    for (let i = 0; i < len; i++) arena[to + i] = value![i]!;
  }

  /** Sets `key` to `value` (replacing the value of an entry already here). */
  put(key: Uint8Array, hash: number, value: Buffer | null): void {
    const e = this.find(key, hash);
    if (e >= 0) {
      // The old length from refs: reading it from the old Buffer was a cache miss per SET.
      this.bytes += (value?.length ?? 0) - this.#refs[e * REF + 3]!;
      this.#values[e] = value;
      this.#setPrefix(e, value);
      return;
    }
    const n = this.#values.length;
    if ((n + 1) * REF > this.#refs.length) this.#refs = grow(this.#refs);
    const room = key.length + PREFIX_BYTES;
    if (this.#arenaUsed + room > this.#arena.length) {
      const arena = Buffer.allocUnsafe(Math.max(this.#arena.length * 2, this.#arenaUsed + room));
      this.#arena.copy(arena, 0, 0, this.#arenaUsed);
      this.#arena = arena;
    }
    this.#arena.set(key, this.#arenaUsed);
    this.#refs[n * REF] = this.#arenaUsed;
    this.#refs[n * REF + 1] = key.length;
    this.#arenaUsed += room;
    this.#values.push(value);
    this.#setPrefix(n, value);
    this.bytes += key.length + (value?.length ?? 0) + ENTRY_OVERHEAD;
    if ((n + 1) * 4 > this.#slots.length) this.#growSlots();
    this.#place(n, hash);
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
    const hash = this.#hash(key) | 0;
    const young = this.#young.find(key, hash);
    if (young >= 0) {
      this.hits++;
      return this.#young.value(young);
    }
    const e = this.#old.find(key, hash);
    if (e < 0) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    const value = this.#old.value(e);
    this.#put(key, hash, value);
    return value;
  }

  /**
   * get(key), but only the value's first bytes, copied into `into` (PREFIX_BYTES long):
   * their number (the value's length when shorter), -1 when the key is known absent, -2 when
   * it is not cached.
   */
  getPrefix(key: Uint8Array, into: Uint8Array): number {
    const hash = this.#hash(key) | 0;
    const young = this.#young.find(key, hash);
    if (young >= 0) {
      this.hits++;
      return this.#young.prefix(young, into);
    }
    const e = this.#old.find(key, hash);
    if (e < 0) {
      this.misses++;
      return -2;
    }
    this.hits++;
    // Read before the copy back: that may turn the young generation into the old one.
    const n = this.#old.prefix(e, into);
    this.#put(key, hash, this.#old.value(e));
    return n;
  }

  /** Caches `value` (null: the key is known to be absent). The key's bytes are copied. */
  set(key: Uint8Array, value: Buffer | null): void {
    if (this.#halfBudget === 0) return;
    this.#put(key, this.#hash(key) | 0, value);
  }

  #put(key: Uint8Array, hash: number, value: Buffer | null): void {
    this.#young.put(key, hash, value);
    if (this.#young.overflowed) {
      // Both generations: the old one may hold an older value of a key the young one held.
      this.clear();
      this.#young.put(key, hash, value);
      this.overflows++;
      return;
    }
    if (this.#young.bytes > this.#halfBudget) {
      this.#old = this.#young;
      this.#young = new Generation();
    }
  }

  clear(): void {
    this.#young = new Generation();
    this.#old = new Generation();
  }

  get entries(): number {
    return this.#young.size + this.#old.size;
  }
}
