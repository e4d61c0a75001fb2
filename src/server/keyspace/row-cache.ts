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
 * string: 600-1000 ns a hit here, against 350-470 ns for this layout (100k keys). A slot
 * points straight at its entry, whose header, key and small value lie together, and a new
 * value that fits is written over the old one: before, a hit also read a table of entry
 * offsets and then the value where its last write had appended it, two more misses, and the
 * row cache was a quarter of a pipelined GET's main thread.
 */
const ENTRY_OVERHEAD = 64;
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
/** Header words of an entry in the arena: [key length, value state, value room in bytes]. */
const HEADER_WORDS = 3;
const HEADER_BYTES = HEADER_WORDS * 4;
/** Value state: the key is known to be absent. Below it, -2 - i: the value is the Buffer #big[i]. */
const ABSENT = -1;
/**
 * Value room given to a known absence, so that the SET that usually follows it (a key is
 * looked up, then written) writes its record in place: a server record is 9 bytes and the
 * value, so 16 bytes take values up to 7 bytes, and bigger ones get an entry of their own.
 */
const ABSENT_ROOM = 16;

/** Where a cached value's bytes are: buf[start, start + length). Filled by locate(). */
export interface ValueLocation {
  buf: Buffer;
  start: number;
}

/**
 * The `length` bytes at `at` as a Buffer the caller may keep: the located Buffer itself when it
 * is exactly them (a whole value, never written to afterwards), else a copy of them.
 */
export function ownedCopy(at: ValueLocation, length: number): Buffer {
  return at.start === 0 && length === at.buf.length ? at.buf : Buffer.from(bufferView(at.buf, at.start, at.start + length));
}

/** A generation's sizes when it was retired, so the next one starts there (see Generation's constructor). */
export interface GenerationSizes {
  slotBits: number;
  arenaBytes: number;
}

/**
 * One generation: an open-addressing table whose slots point straight at entries in an arena.
 * An entry is its header, its key and its value (when small) side by side, so a hit costs the
 * CPU-cache misses of one slot and one entry. A value that fits its entry's room is written in
 * place; one that does not gets a new entry, and the slot moves to it.
 */
class Generation {
  /** Per slot [entry offset + 1 (0 = empty), hash32 of its key]; half full at most. */
  #slots: Int32Array;
  #slotBits: number;
  /** Entries, appended at 4-byte boundaries (see HEADER_WORDS); `#words` is the same memory. */
  #arena: Buffer;
  #words: Int32Array;
  #arenaUsed = 0;
  /** Values bigger than INLINE_VALUE_BYTES; an entry's value state names its index. */
  #big: Array<Buffer | undefined> = [];
  /** Free indexes of #big. */
  #freeBig: number[] = [];
  #entries = 0;
  /** Arena bytes used (entries replaced included), big values and ENTRY_OVERHEAD per entry. */
  bytes = 0;
  /** An entry would sit further than MAX_PROBE from its home slot: the caller must drop this generation. */
  overflowed = false;
  /** The slot find() last found its entry in (the entry is moved there when it outgrows its room). */
  #foundSlot = -1;

  /**
   * `like`: the sizes the previous young generation reached, so that this one starts there:
   * growing by doubling from small copied the arena and rehashed the slots each time, and
   * faulted in fresh memory at every step (about 2 % of a pipelined SET's main thread).
   */
  constructor(like?: GenerationSizes) {
    this.#slotBits = like?.slotBits ?? 10;
    this.#slots = new Int32Array(2 << this.#slotBits);
    this.#arena = newArena(like?.arenaBytes ?? 16 * 1024);
    this.#words = wordsOf(this.#arena);
  }

  /** What this generation grew to (bounded by the cache's budget, which retired it). */
  get sizes(): GenerationSizes {
    return { slotBits: this.#slotBits, arenaBytes: this.#arena.length };
  }

  get size(): number {
    return this.#entries;
  }

  /** The offset of the entry holding `key`, or -1. */
  find(key: Uint8Array, hash: number): number {
    const slots = this.#slots;
    const mask = slots.length - 1;
    let at = this.#slotOf(hash);
    for (let probe = 0; probe <= MAX_PROBE; probe++, at = (at + 2) & mask) {
      const e = slots[at]! - 1;
      if (e < 0) return -1;
      if (slots[at + 1] === hash && this.#holds(e, key)) {
        this.#foundSlot = at;
        return e;
      }
    }
    return -1;
  }

  /** Entry `e`'s value (a view of the arena for a small one), or null for a known absence. */
  value(e: number): Buffer | null {
    const state = this.#words[(e >> 2) + 1]!;
    if (state === ABSENT) return null;
    if (state < ABSENT) return this.#big[-2 - state]!;
    const start = e + HEADER_BYTES + this.#words[e >> 2]!;
    return bufferView(this.#arena, start, start + state);
  }

  /** Where entry `e`'s value lies, into `at`: its length, or -1 for a known absence. */
  locate(e: number, at: ValueLocation): number {
    const words = this.#words;
    const state = words[(e >> 2) + 1]!;
    if (state === ABSENT) return -1;
    if (state < ABSENT) {
      const big = this.#big[-2 - state]!;
      at.buf = big;
      at.start = 0;
      return big.length;
    }
    at.buf = this.#arena;
    at.start = e + HEADER_BYTES + words[e >> 2]!;
    return state;
  }

  /** Sets `key` to `value` (replacing the value of an entry already here, in place when it fits). */
  put(key: Uint8Array, hash: number, value: Buffer | null): void {
    const e = this.find(key, hash);
    if (e < 0) {
      const n = this.#append(key, value);
      this.#entries++;
      if (this.#entries * 4 > this.#slots.length) this.#growSlots();
      this.#place(n, hash);
      return;
    }
    const words = this.#words;
    const w = e >> 2;
    const state = words[w + 1]!;
    if (state < ABSENT) this.#dropBig(-2 - state);
    if (value === null) {
      words[w + 1] = ABSENT;
    } else if (value.length > INLINE_VALUE_BYTES) {
      words[w + 1] = this.#holdBig(value);
    } else if (value.length <= words[w + 2]!) {
      copyBytes(value, 0, value.length, this.#arena, e + HEADER_BYTES + words[w]!);
      words[w + 1] = value.length;
    } else {
      // Outgrew its room: a new entry, and the slot points at it (the old one is left behind).
      this.#slots[this.#foundSlot] = this.#append(key, value) + 1;
    }
  }

  /** Appends an entry for `key` holding `value`; returns its offset. */
  #append(key: Uint8Array, value: Buffer | null): number {
    const inline = value !== null && value.length <= INLINE_VALUE_BYTES;
    const room = value === null ? ABSENT_ROOM : inline ? value.length : 0;
    const size = (HEADER_BYTES + key.length + room + 3) & ~3;
    if (this.#arenaUsed + size > this.#arena.length) {
      // A new arena: views of the old one stay valid, and nothing writes to it again.
      const arena = newArena(Math.max(this.#arena.length * 2, this.#arenaUsed + size));
      this.#arena.copy(arena, 0, 0, this.#arenaUsed);
      this.#arena = arena;
      this.#words = wordsOf(arena);
    }
    const e = this.#arenaUsed;
    this.#arenaUsed = e + size;
    const words = this.#words;
    const w = e >> 2;
    words[w] = key.length;
    // The alignment padding is room too.
    words[w + 2] = size - HEADER_BYTES - key.length;
    copyBytes(key, 0, key.length, this.#arena, e + HEADER_BYTES);
    if (value === null) words[w + 1] = ABSENT;
    else if (inline) {
      copyBytes(value, 0, value.length, this.#arena, e + HEADER_BYTES + key.length);
      words[w + 1] = value.length;
    } else words[w + 1] = this.#holdBig(value);
    this.bytes += size + ENTRY_OVERHEAD;
    return e;
  }

  /** Keeps a big value; returns the value state that names it. */
  #holdBig(value: Buffer): number {
    const i = this.#freeBig.pop() ?? this.#big.length;
    this.#big[i] = value;
    this.bytes += value.length;
    return -2 - i;
  }

  #dropBig(i: number): void {
    this.bytes -= this.#big[i]!.length;
    this.#big[i] = undefined;
    this.#freeBig.push(i);
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
    const len = this.#words[e >> 2]!;
    if (len !== key.length) return false;
    const arena = this.#arena;
    const off = e + HEADER_BYTES;
    for (let i = 0; i < len; i++) if (arena[off + i] !== key[i]) return false;
    return true;
  }
}

/** An arena of its own (not a slice of Buffer's pool), so its Int32Array view starts at offset 0. */
function newArena(bytes: number): Buffer {
  return Buffer.allocUnsafeSlow((bytes + 3) & ~3);
}

function wordsOf(arena: Buffer): Int32Array {
  return new Int32Array(arena.buffer, arena.byteOffset, arena.length >> 2);
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

  /**
   * The cached value, null for "known absent", undefined when not cached. A small value is a
   * copy: its bytes in the arena are overwritten by the key's next value of the same size.
   */
  get(key: Uint8Array): Buffer | null | undefined {
    const at = this.#at;
    const n = this.locate(key, at);
    return n === -2 ? undefined : n === -1 ? null : ownedCopy(at, n);
  }

  readonly #at: ValueLocation = { buf: Buffer.alloc(0), start: 0 };

  /**
   * get(key) without a Buffer: where the cached value's bytes lie, into `at`, valid until the
   * caller's next call that may write (a small value is overwritten in place by the key's
   * next value that fits, and the location object is reused). The value's length, -1 when the key is known absent, -2 when
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
