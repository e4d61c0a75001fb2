import type { InternalIterator } from './iterator.js';
import { ValueKind } from './internal-key.js';
import { randomInt } from 'node:crypto';
import { bloomHash, hash32 } from './bloom.js';

const MAX_HEIGHT = 12;
/**
 * What an entry costs beyond its key and value bytes (its node and entry records), for
 * flush accounting, like RocksDB's arena accounting.
 */
export const ENTRY_OVERHEAD_BYTES = 80;
/**
 * Keys and values are copied into shared slabs: a Buffer per entry costs more than the
 * whole skip-list insert, and millions of small objects make every GC slower.
 * Entries bigger than a quarter slab get their own.
 */
const SLAB_BYTES = 256 * 1024;
const OWN_ALLOCATION_BYTES = SLAB_BYTES / 4;

/*
 * The skip list lives in typed arrays rather than one object per node: a search step
 * touches one node record (abbreviated key and forward pointers side by side) instead of
 * a node object, a pointer array and a key string, and an insert allocates nothing the GC
 * has to trace. Measured about 4x faster than object nodes comparing latin1 key strings
 * (random 16-byte keys, 100-byte values into a 16 MiB memtable).
 *
 * Each entry has exactly one node, and its record in `links` holds everything about it, so a
 * point lookup reads one or two cache lines instead of one per field: with the fields in
 * dense per-entry arrays (the earlier layout), a get missed the cache once for each of
 * seq, kind, key offset, key length, slab, value offset and value length, and the server's
 * GET spent a fifth of its time there.
 *
 * Node `n` is the offset of its abbreviated key; the entry's fields sit just before it and
 * the forward pointers just after, so a search step (k0, then next_level) stays within one
 * or two lines:
 *
 *   n-10 klen | n-9 key offset | n-8 slab (-1: no value) | n-7 value offset | n-6 vlen |
 *   n-5 kind | n-4 seq high | n-3 seq low | n-2 prev0 | n-1 bloomHash of the key |
 *   n+0..n+3 k0..k3 | n+4.. next_0 .. next_{height-1}
 *
 * The head's record (node FIELDS, never a successor) has no entry; 0 means "none".
 * k0..k3 hold key bytes 0-15 as big-endian words, zero-padded, top bit flipped so that
 * signed comparison is bytewise order: most comparisons end there, and keys that share a
 * prefix (`user:000123`) still fit. Sequence numbers are split into two words (they may
 * pass 2^32 and stay below 2^53). prev0 (the node before this one at level 0) and the hash
 * are read only by the main thread's inserts and lookups.
 */
const KLEN = -10;
const KEY_OFF = -9;
const SLAB = -8;
const VALUE_OFF = -7;
const VLEN = -6;
const KIND = -5;
const SEQ_HI = -4;
const SEQ_LO = -3;
const PREV0 = -2;
const HASH = -1;
/** Words of a record before its node offset. */
const FIELDS = 10;
const K0 = 0;
const K1 = 1;
const K2 = 2;
const K3 = 3;
const NEXT = 4;
/** Key bytes held in a node record. */
const ABBREVIATED = 16;
const HEAD = FIELDS;
const NONE = 0;
const TWO_32 = 0x1_0000_0000;

/*
 * What the flush reads (node records, key arena, value slabs) lives in SharedArrayBuffers:
 * the background worker thread flushes an immutable memtable by reading its skip list in
 * place (SharedMemtable), where it used to need a copy of every entry made on the main
 * thread first (about 110 ms of a 16 MiB memtable's flush, in slices between writes, and
 * the next memtable filled before the flush was done). Nothing is written to an immutable
 * memtable, so the two threads never race.
 */
function sharedInt32(length: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(length * Int32Array.BYTES_PER_ELEMENT));
}

function sharedBytes(length: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(length));
}

/** A Buffer over the same memory as `bytes` (a Buffer posted to a worker arrives as a Uint8Array). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * An immutable memtable's skip list as another thread reads it: views of the shared memory
 * (posted to a worker, they share it rather than copy it) and the list's height.
 */
export interface SharedMemtable {
  readonly links: Int32Array;
  readonly height: number;
  readonly count: number;
  readonly keys: Uint8Array;
  readonly slabs: readonly Uint8Array[];
  /** The staged nodes (see SkipList.staged), in the order they were added. */
  readonly staged: Int32Array;
}

class SkipList {
  links: Int32Array;
  linksUsed = HEAD + NEXT + MAX_HEIGHT;
  height = 1;
  count = 0;
  /**
   * Keys sit back to back in one arena (grown by copying), so comparing past the abbreviated
   * key is a loop over one array; values go to slabs, which are never copied.
   */
  keys: Buffer;
  keysUsed = 0;
  slabs: Buffer[] = [];
  slab = -1;
  slabUsed = SLAB_BYTES;
  /**
   * Nodes not linked into the list yet, in the order they were added. A new key is found by
   * the memtable's index at once, and its place in key order is needed only when the list is
   * iterated: on this thread its staged nodes are then linked, in key order (one sort, and
   * each search starts where the previous one ended); the worker's flush sorts them itself
   * and merges them with the list, off the writer's thread. The search for a new key's place
   * was a fifth of a bulk load's main thread, and a seventh of a pipelined SET's.
   *
   * A staged node's PREV0 holds its height, negated, and its level-0 link the next older
   * version of its key (staged or linked), or none: the memtable's get follows it.
   */
  staged: Int32Array;
  stagedCount = 0;
  /**
   * The current search target (set by target()): its abbreviated key, and where its bytes
   * are, which may be a range of a larger buffer (a write batch), so no view is made per key.
   */
  tBuf: Uint8Array = EMPTY;
  tOff = 0;
  tLen = 0;
  t0 = 0;
  t1 = 0;
  t2 = 0;
  t3 = 0;

  /** `linkWords` and `keyBytes`: room to start with (see MemtableSizes). */
  constructor(shared?: SharedMemtable, linkWords = 1 << 14, keyBytes = 1 << 16) {
    if (shared === undefined) {
      this.links = sharedInt32(linkWords);
      this.keys = sharedBytes(keyBytes);
      this.staged = sharedInt32(1024);
      return;
    }
    // A read-only list over another thread's shared memory: only what iterating reads is set.
    this.links = shared.links;
    this.height = shared.height;
    this.count = shared.count;
    this.keys = asBuffer(shared.keys);
    this.slabs = shared.slabs.map(asBuffer);
    this.staged = shared.staged;
    this.stagedCount = shared.staged.length;
  }

  /** The list as another thread reads it (see SharedMemtable). */
  shared(): SharedMemtable {
    const { links, height, count, keys, slabs } = this;
    return { links, height, count, keys, slabs: [...slabs], staged: this.staged.subarray(0, this.stagedCount) };
  }

  /** Stages node `n` (see staged), whose key's next older version is `older` (or NONE). */
  stage(n: number, older: number): void {
    if (this.stagedCount === this.staged.length) this.staged = grow(this.staged, sharedInt32(this.staged.length * 2));
    this.staged[this.stagedCount++] = n;
    this.links[n + NEXT] = older;
  }

  isStaged(n: number): boolean {
    return this.links[n + PREV0]! < 0;
  }

  /** The next older version of node `n`'s key, or NONE. Call target() with its key first. */
  older(n: number): number {
    if (this.isStaged(n)) return this.links[n + NEXT]!;
    const m = this.links[n + NEXT]!;
    return m !== NONE && this.sameKey(m) ? m : NONE;
  }

  /** Sets the search target to node `n`'s key. */
  targetNode(n: number): void {
    const links = this.links;
    this.tBuf = this.keys;
    this.tOff = links[n + KEY_OFF]!;
    this.tLen = links[n + KLEN]!;
    this.t0 = links[n + K0]!;
    this.t1 = links[n + K1]!;
    this.t2 = links[n + K2]!;
    this.t3 = links[n + K3]!;
  }

  /** Internal order of nodes `a` and `b`: key ascending, then sequence descending. */
  compareNodes(a: number, b: number): number {
    const links = this.links;
    for (let k = K0; k <= K3; k++) {
      const x = links[a + k]!;
      const y = links[b + k]!;
      if (x !== y) return x < y ? -1 : 1;
    }
    const alen = links[a + KLEN]!;
    const blen = links[b + KLEN]!;
    if (alen > ABBREVIATED && blen > ABBREVIATED) {
      const keys = this.keys;
      const aoff = links[a + KEY_OFF]!;
      const boff = links[b + KEY_OFF]!;
      const end = alen < blen ? alen : blen;
      for (let i = ABBREVIATED; i < end; i++) {
        const d = keys[aoff + i]! - keys[boff + i]!;
        if (d !== 0) return d;
      }
    }
    if (alen !== blen) return alen - blen;
    const sa = this.seqOf(a);
    const sb = this.seqOf(b);
    return sa > sb ? -1 : sa < sb ? 1 : 0;
  }

  /** Sets the search target: the key buf[off, off + len). */
  target(buf: Uint8Array, off = 0, len = buf.length - off): void {
    this.tBuf = buf;
    this.tOff = off;
    this.tLen = len;
    if (len >= ABBREVIATED) {
      this.t0 = ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) ^ 0x80000000;
      this.t1 = ((buf[off + 4]! << 24) | (buf[off + 5]! << 16) | (buf[off + 6]! << 8) | buf[off + 7]!) ^ 0x80000000;
      this.t2 = ((buf[off + 8]! << 24) | (buf[off + 9]! << 16) | (buf[off + 10]! << 8) | buf[off + 11]!) ^ 0x80000000;
      this.t3 = ((buf[off + 12]! << 24) | (buf[off + 13]! << 16) | (buf[off + 14]! << 8) | buf[off + 15]!) ^ 0x80000000;
    } else {
      this.t0 = word(buf, off, len, 0);
      this.t1 = word(buf, off, len, 4);
      this.t2 = word(buf, off, len, 8);
      this.t3 = word(buf, off, len, 12);
    }
  }

  /** Key order of node `n` against the target set by target(): negative, 0 or positive. */
  compareKey(n: number): number {
    const links = this.links;
    const a0 = links[n + K0]!;
    if (a0 !== this.t0) return a0 < this.t0 ? -1 : 1;
    const a1 = links[n + K1]!;
    if (a1 !== this.t1) return a1 < this.t1 ? -1 : 1;
    const a2 = links[n + K2]!;
    if (a2 !== this.t2) return a2 < this.t2 ? -1 : 1;
    const a3 = links[n + K3]!;
    if (a3 !== this.t3) return a3 < this.t3 ? -1 : 1;
    // The first 16 bytes are equal (or zero padding): compare the rest, then the lengths.
    const alen = links[n + KLEN]!;
    const blen = this.tLen;
    if (alen > ABBREVIATED && blen > ABBREVIATED) {
      const keys = this.keys;
      const off = links[n + KEY_OFF]!;
      const key = this.tBuf;
      const toff = this.tOff;
      const end = alen < blen ? alen : blen;
      for (let i = ABBREVIATED; i < end; i++) {
        const d = keys[off + i]! - key[toff + i]!;
        if (d !== 0) return d;
      }
    }
    return alen - blen;
  }

  seqOf(n: number): number {
    return this.links[n + SEQ_HI]! * TWO_32 + (this.links[n + SEQ_LO]! >>> 0);
  }

  kindOf(n: number): ValueKind {
    return this.links[n + KIND]! as ValueKind;
  }

  /** True when node `n` comes before (target, seq): key ascending, then seq descending. */
  before(n: number, seq: number): boolean {
    const c = this.compareKey(n);
    return c < 0 || (c === 0 && this.seqOf(n) > seq);
  }

  /**
   * Last node before (target, seq) at each level into `prev` (if given); returns the level-0
   * one. Call target() first.
   */
  findBefore(seq: number, prev: Int32Array | null): number {
    const links = this.links;
    let x = HEAD;
    for (let level = this.height - 1; level >= 0; level--) {
      let n = links[x + NEXT + level]!;
      while (n !== NONE && this.before(n, seq)) {
        x = n;
        n = links[x + NEXT + level]!;
      }
      if (prev !== null) prev[level] = x;
    }
    return x;
  }

  /**
   * findBefore() starting from a finger: `prev` holds, at each level, a node of that level
   * before the target (or HEAD), the last of its level at or before the previous key inserted
   * for the fastest search; on return it holds the target's predecessors, as findBefore's.
   * A level's walk starts from the finger until the walk above it has passed the finger, then
   * from where that walk stopped, as a search from the head would. With keys inserted in
   * order, the levels above the gap between consecutive keys cost one comparison each, with a
   * node the previous search touched: a search of a new key then misses the cache about a
   * third as often as one from the head (the misses were a fifth of a bulk load).
   */
  findBeforeFrom(seq: number, prev: Int32Array): number {
    const links = this.links;
    let x = HEAD;
    let beyond = false;
    for (let level = this.height - 1; level >= 0; level--) {
      if (!beyond) x = prev[level]!;
      let n = links[x + NEXT + level]!;
      while (n !== NONE && this.before(n, seq)) {
        x = n;
        n = links[x + NEXT + level]!;
        beyond = true;
      }
      prev[level] = x;
    }
    return x;
  }

  next(n: number): number {
    return this.links[n + NEXT]!;
  }

  last(): number {
    const links = this.links;
    let x = HEAD;
    for (let level = this.height - 1; level >= 0; level--) {
      let n = links[x + NEXT + level]!;
      while (n !== NONE) {
        x = n;
        n = links[x + NEXT + level]!;
      }
    }
    return x;
  }

  /**
   * True when node `n` holds the target key (any version). Keys of up to 16 bytes are decided
   * by the record alone.
   */
  sameKey(n: number): boolean {
    const links = this.links;
    const len = links[n + KLEN]!;
    if (len !== this.tLen || links[n + K0] !== this.t0 || links[n + K1] !== this.t1 || links[n + K2] !== this.t2 || links[n + K3] !== this.t3) return false;
    if (len <= ABBREVIATED) return true;
    const keys = this.keys;
    const off = links[n + KEY_OFF]!;
    const key = this.tBuf;
    const toff = this.tOff;
    for (let i = ABBREVIATED; i < len; i++) if (keys[off + i] !== key[toff + i]) return false;
    return true;
  }

  /** True when node `n` holds exactly (target, seq). */
  equals(n: number, seq: number): boolean {
    return n !== NONE && this.compareKey(n) === 0 && this.seqOf(n) === seq;
  }

  /** Allocates the record of a node of `height` levels (links zeroed = none). */
  newNode(height: number): number {
    const need = FIELDS + NEXT + height;
    if (this.linksUsed + need > this.links.length) this.links = grow(this.links, sharedInt32(this.links.length * 2));
    const n = this.linksUsed + FIELDS;
    this.linksUsed += need;
    this.count++;
    return n;
  }

  /**
   * Copies the target key and the value values[valueOff, valueOff + vlen) (none for a
   * deletion) of node `n` in.
   */
  store(n: number, values: Uint8Array, valueOff: number, vlen: number): void {
    const klen = this.tLen;
    if (this.keysUsed + klen > this.keys.length) {
      // Earlier views of keys keep the old arena alive and unchanged.
      const grown = sharedBytes(Math.max(this.keys.length * 2, this.keysUsed + klen));
      this.keys.copy(grown, 0, 0, this.keysUsed);
      this.keys = grown;
    }
    copyInto(this.keys, this.keysUsed, this.tBuf, this.tOff, klen);
    const links = this.links;
    links[n + KEY_OFF] = this.keysUsed;
    links[n + KLEN] = klen;
    this.keysUsed += klen;
    links[n + VLEN] = vlen;
    if (vlen === 0) {
      links[n + SLAB] = -1;
      return;
    }
    let slab: Buffer;
    let off: number;
    if (vlen > OWN_ALLOCATION_BYTES) {
      slab = sharedBytes(vlen);
      this.slabs.push(slab);
      links[n + SLAB] = this.slabs.length - 1;
      off = 0;
    } else {
      if (this.slabUsed + vlen > SLAB_BYTES) {
        this.slabs.push(sharedBytes(SLAB_BYTES));
        this.slab = this.slabs.length - 1;
        this.slabUsed = 0;
      }
      slab = this.slabs[this.slab]!;
      links[n + SLAB] = this.slab;
      off = this.slabUsed;
      this.slabUsed += vlen;
    }
    links[n + VALUE_OFF] = off;
    copyInto(slab, off, values, valueOff, vlen);
  }

  keyOf(n: number): Buffer {
    const off = this.links[n + KEY_OFF]!;
    return this.keys.subarray(off, off + this.links[n + KLEN]!);
  }

  /** Where node `n`'s key and value lie, into `at` (see EntryLocation). */
  locate(n: number, at: EntryLocation): void {
    const links = this.links;
    at.keys = this.keys;
    at.keyStart = links[n + KEY_OFF]!;
    at.keyEnd = at.keyStart + links[n + KLEN]!;
    const slab = links[n + SLAB]!;
    if (slab < 0) {
      at.values = EMPTY;
      at.valueStart = at.valueEnd = 0;
    } else {
      at.values = this.slabs[slab]!;
      at.valueStart = links[n + VALUE_OFF]!;
      at.valueEnd = at.valueStart + links[n + VLEN]!;
    }
    at.hash = links[n + HASH]! >>> 0;
  }

  valueOf(n: number): Buffer {
    const links = this.links;
    const slab = links[n + SLAB]!;
    if (slab < 0) return EMPTY;
    const off = links[n + VALUE_OFF]!;
    return this.slabs[slab]!.subarray(off, off + links[n + VLEN]!);
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Where a memtable entry's bytes lie: its key is keys[keyStart, keyEnd), its value
 * values[valueStart, valueEnd), and `hash` is its key's bloomHash (uint32). A flush reads
 * entries this way, because a Buffer view per key and value was an eighth of its time.
 */
export interface EntryLocation {
  keys: Buffer;
  keyStart: number;
  keyEnd: number;
  values: Buffer;
  valueStart: number;
  valueEnd: number;
  hash: number;
}

export function newEntryLocation(): EntryLocation {
  return { keys: EMPTY, keyStart: 0, keyEnd: 0, values: EMPTY, valueStart: 0, valueEnd: 0, hash: 0 };
}

/**
 * Bytes at..at+3 of the key buf[off, off + len), big-endian, zero-padded, top bit flipped:
 * signed order is bytewise order.
 */
function word(buf: Uint8Array, off: number, len: number, at: number): number {
  let w = 0;
  for (let i = at; i < at + 4; i++) w = (w << 8) | (i < len ? buf[off + i]! : 0);
  return w ^ 0x80000000;
}

/** Copies from[fromOff, fromOff + n) to to[toOff…]: a loop for short runs, where TypedArray.set's native call costs more than the copy. */
function copyInto(to: Uint8Array, toOff: number, from: Uint8Array, fromOff: number, n: number): void {
  if (n <= 32) {
    for (let i = 0; i < n; i++) to[toOff + i] = from[fromOff + i]!;
  } else {
    to.set(from.subarray(fromOff, fromOff + n), toOff);
  }
}

/** Room for `used` (with an eighth more), at least `least`, at most `most`. */
function initialSize(used: number | undefined, least: number, most: number): number {
  if (used === undefined || !(used > least)) return least;
  return Math.min(most, Math.ceil((used * 1.125) / 1024) * 1024);
}

function grow<T extends Int32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/**
 * The in-memory write buffer: a skip list (LevelDB's: height ≤ 12, branching 4) of
 * versioned entries in internal-key order. Single-threaded JS needs no locks; inserts only
 * relink nodes, so iterators made earlier stay valid and see entries added after them.
 */
/**
 * Bits of the memtable's key filter. A get that misses the memtable (most of them, once
 * data lives in tables) then costs a hash and a few bit tests instead of a skip-list
 * search through cold memory. 2^20 bits (128 KiB) keep false positives under 1% up to
 * ~100k distinct keys, a 16 MiB memtable of small entries; beyond that they only rise.
 */
const FILTER_BITS = 1 << 20;
const FILTER_PROBES = 6;

/*
 * Clients choose the keys, and hash32 is public (table filters on disk use it, with a fixed
 * seed); its blocks are invertible, so any number of keys with one hash32 cost nothing to
 * make. An index keyed by it, probing without a bound, let such keys make every add and get
 * walk all of them: a CPU denial of service through SET. So the index hashes with a seed
 * drawn per process, and no version sits more than INDEX_MAX_PROBE slots from its home: an
 * add that would go further leaves the key out of the index and marks it overflowed, and a
 * lookup that then misses falls back to the skip-list search (O(log n), what the index
 * only speeds up).
 */
const INDEX_SEED = randomInt(0x1_0000_0000 - 1);
const INDEX_MAX_PROBE = 32;
/** 2^22 slots (32 MiB): what 2M small entries in one memtable would need. */
const MAX_INITIAL_INDEX_BITS = 22;

/**
 * What a memtable grew to, so that the next one can start at that size: growing by doubling
 * copied each array about once more and made fresh memory for every step (a twentieth of a
 * bulk load's main thread, in the copies and the page faults of the new arrays).
 */
export interface MemtableSizes {
  distinctKeys: number;
  linkWords: number;
  keyBytes: number;
}

/** Bounds on a first size taken from a previous memtable (2^22 words and 2^24 bytes: 16 MiB each). */
const MAX_INITIAL_LINK_WORDS = 1 << 22;
const MAX_INITIAL_KEY_BYTES = 1 << 24;

/**
 * A first memtable's sizes, when there is no previous one: room for a write buffer of
 * 128-byte entries (48 bytes of key and value). Untouched room costs address space only
 * (the pages are committed when first written).
 */
export function firstMemtableSizes(writeBufferSize: number): MemtableSizes {
  const entries = Math.floor(writeBufferSize / 128);
  return { distinctKeys: 0, linkWords: entries * (FIELDS + NEXT + 2), keyBytes: entries * 16 };
}

export class Memtable {
  readonly #list: SkipList;
  readonly #filter = new Uint32Array(FILTER_BITS / 32);
  /**
   * Point-lookup index: an open-addressing table from a key's hash to the node of its newest
   * version. A get then costs one or two probes instead of a skip-list search, whose dozens
   * of dependent loads through cold memory made it the server's hottest function. Versions
   * of a key are adjacent in the list, newest first, so older ones are reached by walking
   * forward. A slot is two words, [node (0 = empty), index hash of its key], so a probe that
   * lands on another key is rejected without loading that key's node.
   */
  // 512 KiB to start: a full memtable of small entries needs 2^18 slots, and each doubling rehashes.
  #index = new Int32Array(2 << 16);
  #indexBits = 16;
  #indexUsed = 0;
  /** Some version is missing from the index (see INDEX_MAX_PROBE): lookups it misses search the list. */
  #indexOverflowed = false;
  readonly #indexHash: (buf: Uint8Array, start: number, end: number) => number;
  #bytes = 0;
  /** xorshift32: heights need speed, not quality. */
  #rng = 0x9e3779b9;
  /** Scratch for insert: the last node before the new one at each level. */
  readonly #prev = new Int32Array(MAX_HEIGHT);

  /**
   * `like`: what the previous memtable grew to (its `sizes`), so that this one starts at its
   * final size instead of growing its way there: its index (rehashing was 2.5 % of a bulk
   * load's main thread), its node records and its key arena (a bounded first size: an
   * unusual previous memtable must not reserve much). `indexHash` is for tests that need keys
   * to collide; the default is seeded per process.
   */
  constructor(options: { like?: Partial<MemtableSizes>; indexHash?: (buf: Uint8Array, start: number, end: number) => number } = {}) {
    this.#indexHash = options.indexHash ?? ((buf, start, end) => hash32(buf, INDEX_SEED, start, end));
    const like = options.like ?? {};
    this.#list = new SkipList(undefined, initialSize(like.linkWords, 1 << 14, MAX_INITIAL_LINK_WORDS), initialSize(like.keyBytes, 1 << 16, MAX_INITIAL_KEY_BYTES));
    // At most 40 % full when the expected keys are in (it grows at half).
    const bits = Math.min(MAX_INITIAL_INDEX_BITS, Math.max(this.#indexBits, Math.ceil(Math.log2(Math.max(1, (like.distinctKeys ?? 0) * 2.5)))));
    if (bits > this.#indexBits) {
      this.#indexBits = bits;
      this.#index = new Int32Array(2 << bits);
    }
  }

  /** Slots of the lookup index (for tests). */
  get indexSlots(): number {
    return this.#index.length >>> 1;
  }

  /** What this memtable grew to: the next one's `like`. */
  get sizes(): MemtableSizes {
    const list = this.#list;
    return { distinctKeys: this.#indexUsed, linkWords: list.linksUsed, keyBytes: list.keysUsed };
  }

  /** Node-record words and key-arena bytes allocated (for tests). */
  get capacity(): { linkWords: number; keyBytes: number } {
    return { linkWords: this.#list.links.length, keyBytes: this.#list.keys.length };
  }

  /** Keys held, each counted once whatever its versions (those in the lookup index). */
  get distinctKeys(): number {
    return this.#indexUsed;
  }

  /** Entries held (every version of every key). */
  get entries(): number {
    return this.#list.count;
  }

  /** Key and value bytes plus ENTRY_OVERHEAD_BYTES per entry: compared with writeBufferSize. */
  get approximateBytes(): number {
    return this.#bytes;
  }

  /**
   * Inserts a version. Key and value are copied, so callers may reuse their buffers.
   * Each (key, seq) may be added once: sequence numbers are unique per write.
   */
  add(seq: number, kind: ValueKind, key: Uint8Array, value: Uint8Array): void {
    this.addAt(seq, kind, key, 0, key.length, value, 0, value.length);
  }

  /**
   * add() of the key keys[keyOff, keyOff + keyLen) and the value values[valueOff, valueOff +
   * valueLen): a write batch's ops are inserted from where they lie in it, with no Buffer view
   * per key and value (two views per op were a twentieth of a bulk load's main thread).
   */
  addAt(seq: number, kind: ValueKind, keys: Uint8Array, keyOff: number, keyLen: number, values: Uint8Array, valueOff: number, valueLen: number): void {
    if (this.#shared) throw new RangeError('memtable is immutable: it was shared with the flush');
    const list = this.#list;
    // The table filter's hash: mayContainHash is asked with it, and the flush hands it on.
    const hash = bloomHash(keys, keyOff, keyOff + keyLen);
    const ih = this.#indexHash(keys, keyOff, keyOff + keyLen) | 0; // int32, as the index stores it
    list.target(keys, keyOff, keyLen);
    // The key filter first: for a new key it usually answers without touching the index.
    const newest = this.mayContainHash(hash) ? this.#newestNode(ih) : NONE;
    if ((newest !== NONE && list.seqOf(newest) >= seq) || this.#indexOverflowed) {
      // Not newer than what is here (the engine's sequence numbers only grow), or a key the
      // index may not hold: the general path, over a list that holds every version.
      this.#linkStaged();
      list.target(keys, keyOff, keyLen);
      const x = list.findBefore(seq, this.#prev);
      if (list.equals(list.next(x), seq)) {
        throw new RangeError(`memtable already holds sequence ${seq} for this key: sequence numbers must be unique`);
      }
      const n = this.#newEntry(seq, kind, values, valueOff, valueLen, hash, this.#randomHeight());
      this.#link(n, -this.#list.links[n + PREV0]!);
      this.#indexNewest(n, ih, seq);
    } else if (newest !== NONE && !list.isStaged(newest)) {
      // A new version of a key whose versions are in the list: it goes right before the newest,
      // whose level-0 predecessor is recorded, so no search is needed. Overwrites of hot keys
      // are the common case for a server. Such a node gets one level: the key's first version
      // already has the random height that keeps searches logarithmic in distinct keys, and a
      // taller node would need the predecessors a search finds.
      const n = this.#newEntry(seq, kind, values, valueOff, valueLen, hash, 1);
      this.#prev[0] = list.links[newest + PREV0]!;
      this.#link(n, 1);
      this.#indexNewest(n, ih, seq);
    } else {
      // A new key, or a new version of a staged one: staged (see SkipList.staged), found through
      // the index, unless the index cannot hold it (see INDEX_MAX_PROBE): then it is linked (a
      // key the index never held is new here, so no version of it is in the list).
      const n = this.#newEntry(seq, kind, values, valueOff, valueLen, hash, newest === NONE ? this.#randomHeight() : 1);
      if (this.#indexNewest(n, ih, seq)) {
        list.stage(n, newest);
      } else {
        list.findBefore(seq, this.#prev);
        this.#link(n, -list.links[n + PREV0]!);
      }
    }
    // The target may be a range of a whole write batch: do not keep the batch alive with the memtable.
    list.tBuf = EMPTY;
    // Growing the index may have left a staged key out of it (crafted keys only): link every
    // staged version, so that a lookup that misses the index finds them in the list.
    if (this.#indexOverflowed && list.stagedCount > 0) this.#linkStaged();
  }

  /**
   * A node for (search target, seq) holding the value, unlinked: its height is recorded in
   * PREV0, negated, until it is linked.
   */
  #newEntry(seq: number, kind: ValueKind, values: Uint8Array, valueOff: number, valueLen: number, hash: number, height: number): number {
    const list = this.#list;
    const vlen = kind === ValueKind.Deletion ? 0 : valueLen;
    const n = list.newNode(height);
    list.store(n, values, valueOff, vlen);
    const links = list.links;
    links[n + KIND] = kind;
    links[n + SEQ_HI] = Math.floor(seq / TWO_32);
    links[n + SEQ_LO] = seq % TWO_32;
    links[n + K0] = list.t0;
    links[n + K1] = list.t1;
    links[n + K2] = list.t2;
    links[n + K3] = list.t3;
    links[n + PREV0] = -height;
    links[n + HASH] = hash;
    this.#bytes += list.tLen + vlen + ENTRY_OVERHEAD_BYTES;
    this.#addToFilter(hash);
    return n;
  }

  /** Links node `n` into the list's `height` levels after the nodes in #prev. */
  #link(n: number, height: number): void {
    const list = this.#list;
    const prev = this.#prev;
    if (height > list.height) {
      for (let level = list.height; level < height; level++) prev[level] = HEAD;
      list.height = height;
    }
    const links = list.links;
    for (let level = 0; level < height; level++) {
      const p = prev[level]! + NEXT + level;
      links[n + NEXT + level] = links[p]!;
      links[p] = n;
    }
    const after = links[n + NEXT]!;
    links[n + PREV0] = prev[0]!;
    if (after !== NONE) links[after + PREV0] = n;
  }

  /**
   * Links every staged node, in key order, each search starting where the previous one ended
   * (SkipList.findBeforeFrom): before the list is iterated on this thread.
   */
  #linkStaged(): void {
    const list = this.#list;
    if (list.stagedCount === 0) return;
    const order = sortNodes(list, list.staged, list.stagedCount);
    list.stagedCount = 0;
    const prev = this.#prev;
    prev.fill(HEAD);
    const links = list.links;
    for (let i = 0; i < order.length; i++) {
      const n = order[i]!;
      const height = -links[n + PREV0]!;
      list.targetNode(n);
      if (height > list.height) {
        for (let level = list.height; level < height; level++) prev[level] = HEAD;
        list.height = height;
      }
      list.findBeforeFrom(list.seqOf(n), prev);
      this.#link(n, height);
      // The finger for the next node: this one is the last of its levels at or before it.
      for (let level = 0; level < height; level++) prev[level] = n;
    }
    list.tBuf = EMPTY;
  }

  /**
   * The node of the newest version of the list's search target in the index, or NONE (also
   * when the key overflowed the index: see #indexOverflowed). `ih` is the key's index hash.
   */
  #newestNode(ih: number): number {
    const list = this.#list;
    const index = this.#index;
    const mask = index.length - 1;
    let at = this.#slotOf(ih);
    for (let probe = 0; probe <= INDEX_MAX_PROBE; probe++, at = (at + 2) & mask) {
      const m = index[at]!;
      if (m === NONE || (index[at + 1] === ih && list.sameKey(m))) return m;
    }
    return NONE;
  }

  /** The index of an index hash's first slot's first word. */
  #slotOf(ih: number): number {
    return (Math.imul(ih, 0x9e3779b1) >>> (32 - this.#indexBits)) << 1;
  }

  /**
   * Records node `n` as the newest version of the search target's key (sequence numbers only
   * grow, but check). False when the index could not take the key (see INDEX_MAX_PROBE).
   */
  #indexNewest(n: number, ih: number, seq: number): boolean {
    const list = this.#list;
    const index = this.#index;
    const mask = index.length - 1;
    let at = this.#slotOf(ih);
    for (let probe = 0; probe <= INDEX_MAX_PROBE; probe++, at = (at + 2) & mask) {
      const m = index[at]!;
      if (m === NONE) {
        index[at] = n;
        index[at + 1] = ih;
        // Half full at most (a slot is two words).
        if (++this.#indexUsed * 4 > index.length) this.#growIndex();
        return true;
      }
      if (index[at + 1] === ih && list.sameKey(m)) {
        if (list.seqOf(m) < seq) index[at] = n;
        return true;
      }
    }
    // No slot near enough. Ordinary keys meet this near half full (runs of ~30 were measured
    // at 2^18 slots): a quarter full makes it vanishingly rare, so grow once and retry.
    if (this.#indexUsed * 16 > index.length) {
      this.#growIndex();
      return this.#indexNewest(n, ih, seq);
    }
    // Keys crafted to collide: no older version of this key is indexed either (it would have
    // been found above), so leaving this one out cannot make a lookup find a stale version.
    this.#indexOverflowed = true;
    return false;
  }

  #growIndex(): void {
    const old = this.#index;
    this.#indexBits++;
    const index = new Int32Array(old.length * 2);
    const mask = index.length - 1;
    let used = 0;
    for (let from = 0; from < old.length; from += 2) {
      const m = old[from]!;
      if (m === NONE) continue;
      const ih = old[from + 1]!;
      let at = this.#slotOf(ih);
      let probe = 0;
      while (index[at] !== NONE && probe <= INDEX_MAX_PROBE) {
        at = (at + 2) & mask;
        probe++;
      }
      if (probe > INDEX_MAX_PROBE) {
        this.#indexOverflowed = true;
        continue;
      }
      index[at] = m;
      index[at + 1] = ih;
      used++;
    }
    this.#index = index;
    this.#indexUsed = used;
  }

  /** For tests: the furthest any indexed version sits from its home slot, in slots. */
  longestIndexProbe(): number {
    const index = this.#index;
    const slots = index.length >>> 1;
    let longest = 0;
    for (let at = 0; at < index.length; at += 2) {
      if (index[at] === NONE) continue;
      const home = this.#slotOf(index[at + 1]!) >>> 1;
      longest = Math.max(longest, ((at >>> 1) - home + slots) % slots);
    }
    return longest;
  }

  /** For tests and metrics: some version was left out of the index (see INDEX_MAX_PROBE). */
  get indexOverflowed(): boolean {
    return this.#indexOverflowed;
  }

  /** False: no version of the key with this bloomHash is here (see bloom.ts). */
  mayContainHash(hash: number): boolean {
    const f = this.#filter;
    let h = hash;
    const delta = ((h >>> 17) | (h << 15)) >>> 0;
    for (let j = 0; j < FILTER_PROBES; j++) {
      const bit = h & (FILTER_BITS - 1);
      if ((f[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
      h = (h + delta) >>> 0;
    }
    return true;
  }

  #addToFilter(hash: number): void {
    const f = this.#filter;
    let h = hash;
    const delta = ((h >>> 17) | (h << 15)) >>> 0;
    for (let j = 0; j < FILTER_PROBES; j++) {
      const bit = h & (FILTER_BITS - 1);
      f[bit >>> 5]! |= 1 << (bit & 31);
      h = (h + delta) >>> 0;
    }
  }

  /**
   * The newest version of `key` with a sequence ≤ `seq` (deletions included), or undefined.
   */
  get(key: Uint8Array, seq: number): { kind: ValueKind; value: Buffer; seq: number } | undefined {
    const list = this.#list;
    list.target(key);
    let n = this.#newestNode(this.#indexHash(key, 0, key.length) | 0);
    if (n === NONE) {
      if (!this.#indexOverflowed) return undefined;
      // The key may be one the index left out: the list holds every version.
      n = list.next(list.findBefore(seq, null));
      if (n === NONE || !list.sameKey(n)) return undefined;
      return { kind: list.kindOf(n), value: list.valueOf(n), seq: list.seqOf(n) };
    }
    // Newer versions than the snapshot come first: skip them.
    let at = list.seqOf(n);
    while (at > seq) {
      n = list.older(n);
      if (n === NONE) return undefined;
      at = list.seqOf(n);
    }
    return { kind: list.kindOf(n), value: list.valueOf(n), seq: at };
  }

  /**
   * An iterator over every entry. Staged nodes are linked first, unless the memtable was
   * shared with the flush (another thread may be reading the list): then the iterator merges
   * them, sorted once for all its iterators.
   */
  iterator(): MemtableIterator {
    const list = this.#list;
    if (!this.#shared) {
      this.#linkStaged();
      return new MemtableIterator(list, NO_NODES);
    }
    this.#sortedStaged ??= sortNodes(list, list.staged, list.stagedCount);
    return new MemtableIterator(list, this.#sortedStaged);
  }

  /** Shared with the flush: nothing may be added or linked any more. */
  #shared = false;
  #sortedStaged: Int32Array | undefined;

  /** Nodes staged and not linked yet (for tests). */
  get stagedEntries(): number {
    return this.#list.stagedCount;
  }

  /**
   * The skip list for the worker thread's flush, shared rather than copied: call it only
   * once the memtable is immutable (nothing may be added after).
   */
  shared(): SharedMemtable {
    this.#shared = true;
    return this.#list.shared();
  }

  /** An iterator over a memtable shared by another thread (see shared()). */
  static iteratorOf(shared: SharedMemtable): MemtableIterator {
    const list = new SkipList(shared);
    return new MemtableIterator(list, sortNodes(list, list.staged, list.stagedCount));
  }

  #randomHeight(): number {
    let r = this.#rng;
    r ^= r << 13;
    r ^= r >>> 17;
    r ^= r << 5;
    this.#rng = r;
    // Each further level with probability 1/4: two more zero bits of the random word.
    let height = 1;
    while (height < MAX_HEIGHT && (r & 3) === 0) {
      height++;
      r >>>= 2;
    }
    return height;
  }
}

const NO_NODES = new Int32Array(0);
/** Fewer nodes than this are sorted by comparison, more by radix. */
const RADIX_SORT_MIN = 512;

/**
 * Nodes ids[0, count) of `list` in internal order (key ascending, sequence descending), as a
 * new array. A comparison sort of a memtable's new keys reads node records in random order;
 * this reads each once, in order, and radix-sorts (least significant digit first, 16 bits a
 * pass) by the first two words of the abbreviated key that are not the same in every node
 * (a shared prefix such as `key:` is skipped), then sorts each run of nodes equal in those
 * words by comparison (versions of one key, longer shared prefixes).
 */
function sortNodes(list: SkipList, ids: Int32Array, count: number): Int32Array {
  const compare = (a: number, b: number): number => list.compareNodes(a, b);
  if (count < RADIX_SORT_MIN) return ids.slice(0, count).sort(compare);
  const links = list.links;
  const words = new Int32Array(count * 4);
  for (let i = 0; i < count; i++) {
    const n = ids[i]!;
    for (let k = 0; k < 4; k++) words[i * 4 + k] = links[n + K0 + k]!;
  }
  let first = 0;
  while (first < 4 && sameInAll(words, count, first)) first++;
  if (first === 4) return ids.slice(0, count).sort(compare);
  const last = Math.min(first + 1, 3);
  let order = new Int32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  let spare = new Int32Array(count);
  const starts = new Int32Array(0x1_0001);
  for (let word = last; word >= first; word--) {
    for (const high of [false, true]) {
      starts.fill(0);
      for (let i = 0; i < count; i++) starts[digit(words[i * 4 + word]!, high) + 1]!++;
      for (let d = 1; d <= 0x1_0000; d++) starts[d]! += starts[d - 1]!;
      for (let i = 0; i < count; i++) {
        const at = order[i]!;
        spare[starts[digit(words[at * 4 + word]!, high)]!++] = at;
      }
      [order, spare] = [spare, order];
    }
  }
  const sorted = new Int32Array(count);
  for (let i = 0; i < count; i++) sorted[i] = ids[order[i]!]!;
  for (let start = 0; start < count; ) {
    const w = order[start]! * 4;
    let end = start + 1;
    while (end < count && sameWords(words, order[end]! * 4, w, first, last)) end++;
    if (end - start > 1) sorted.subarray(start, end).sort(compare);
    start = end;
  }
  return sorted;
}

function sameInAll(words: Int32Array, count: number, word: number): boolean {
  const w = words[word]!;
  for (let i = 1; i < count; i++) if (words[i * 4 + word] !== w) return false;
  return true;
}

function sameWords(words: Int32Array, a: number, b: number, first: number, last: number): boolean {
  for (let k = first; k <= last; k++) if (words[a + k] !== words[b + k]) return false;
  return true;
}

/** 16 bits of the key bytes a word abbreviates (see SkipList: stored with the top bit flipped). */
function digit(word: number, high: boolean): number {
  return high ? (word >>> 16) ^ 0x8000 : word & 0xffff;
}

/**
 * A cursor over the list and, merged with it, nodes staged and not linked (sorted). The
 * position is kept as the first list node and the first staged node at or after the current
 * entry (`#a`, `#b`); the current entry is the smaller of the two.
 */
export class MemtableIterator implements InternalIterator {
  readonly #list: SkipList;
  readonly #staged: Int32Array;
  #a = NONE;
  #b = 0;
  #node = NONE;
  /** Views of the current entry, made once: merging iterators ask for the key repeatedly. */
  #key: Buffer | undefined;
  #value: Buffer | undefined;

  constructor(list: SkipList, staged: Int32Array) {
    this.#list = list;
    this.#staged = staged;
  }

  valid(): boolean {
    return this.#node !== NONE;
  }

  seekToFirst(): void {
    this.#a = this.#list.next(HEAD);
    this.#b = 0;
    this.#settle();
  }

  seekToLast(): void {
    this.#atOrBefore(this.#list.last(), this.#staged.length - 1);
  }

  seek(userKey: Uint8Array, seq: number): void {
    const list = this.#list;
    list.target(userKey);
    this.#a = list.next(list.findBefore(seq, null));
    this.#b = this.#stagedFrom(seq);
    this.#settle();
  }

  seekForPrev(userKey: Uint8Array, seq: number): void {
    const list = this.#list;
    list.target(userKey);
    const x = list.findBefore(seq, null);
    const n = list.next(x);
    const b = this.#stagedFrom(seq);
    const staged = this.#staged;
    this.#atOrBefore(list.equals(n, seq) ? n : x, b < staged.length && list.equals(staged[b]!, seq) ? b : b - 1);
  }

  next(): void {
    const at = this.#at();
    if (at === this.#a) this.#a = this.#list.next(at);
    else this.#b++;
    this.#settle();
  }

  prev(): void {
    // No back links: search from the head, as LevelDB does (O(log n)).
    const list = this.#list;
    const at = this.#at();
    list.targetNode(at);
    this.#atOrBefore(list.findBefore(list.seqOf(at), null), this.#b - 1);
  }

  userKey(): Buffer {
    return (this.#key ??= this.#list.keyOf(this.#at()));
  }

  seq(): number {
    return this.#list.seqOf(this.#at());
  }

  kind(): ValueKind {
    return this.#list.kindOf(this.#at());
  }

  value(): Buffer {
    return (this.#value ??= this.#list.valueOf(this.#at()));
  }

  /** Where the current entry's key and value lie, into `at`: userKey() and value() without the views. */
  locate(at: EntryLocation): void {
    this.#list.locate(this.#at(), at);
  }

  close(): void {
    this.#a = NONE;
    this.#b = this.#staged.length;
    this.#node = NONE;
  }

  /** The first staged node at or after (target, seq): a binary search. */
  #stagedFrom(seq: number): number {
    const list = this.#list;
    const staged = this.#staged;
    let lo = 0;
    let hi = staged.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list.before(staged[mid]!, seq)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Current: the smaller of the list's and the staged nodes' next. */
  #settle(): void {
    const a = this.#a;
    const staged = this.#staged;
    const b = this.#b < staged.length ? staged[this.#b]! : NONE;
    this.#node = b === NONE ? a : a === NONE ? b : this.#list.compareNodes(a, b) < 0 ? a : b;
    this.#key = undefined;
    this.#value = undefined;
  }

  /**
   * Current: the larger of list node `la` (HEAD: none) and staged node `lb` (an index; -1:
   * none), each the last of its kind at or before the position wanted.
   */
  #atOrBefore(la: number, lb: number): void {
    const list = this.#list;
    const a = la === HEAD ? NONE : la;
    const b = lb >= 0 ? this.#staged[lb]! : NONE;
    if (b === NONE || (a !== NONE && list.compareNodes(a, b) > 0)) {
      this.#a = a;
      this.#b = lb + 1;
      this.#node = a;
    } else {
      this.#a = list.next(a === NONE ? HEAD : a);
      this.#b = lb;
      this.#node = b;
    }
    this.#key = undefined;
    this.#value = undefined;
  }

  #at(): number {
    if (this.#node === NONE) throw new RangeError('memtable iterator is not positioned on an entry');
    return this.#node;
  }
}
