import type { ValueKind } from './internal-key.js';
import { reusable, type MemtableMemory } from './memtable-memory.js';

/*
 * The memtable's skip list: node records in shared typed arrays, keys in one arena, values in
 * slabs, and nodes staged before they are linked (see SkipList.staged). Memtable (the index,
 * the filter, what to stage) and MemtableIterator are built on it.
 */

export const MAX_HEIGHT = 12;
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
 * A staged node (see SkipList.staged) holds -height in prev0 and its key's next older version
 * in next_0 until it is linked.
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
export const HEAD = FIELDS;
export const NONE = 0;
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

/** What a list built on a retired one's memory takes from it. */
export type ListMemory = Pick<MemtableMemory, 'links' | 'linksUsed' | 'keys' | 'slabs' | 'staged'>;

export class SkipList {
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

  /**
   * `linkWords` and `keyBytes`: room to start with (see MemtableSizes). `memory`: a retired
   * list's arrays to build on (see MemtableMemory), each used if it has that room.
   */
  constructor(shared?: SharedMemtable, linkWords = 1 << 14, keyBytes = 1 << 16, memory?: ListMemory) {
    if (shared === undefined) {
      if (memory !== undefined && reusable(memory.links.length, linkWords)) {
        memory.links.fill(0, 0, memory.linksUsed);
        this.links = memory.links;
      } else this.links = sharedInt32(linkWords);
      this.keys = memory !== undefined && reusable(memory.keys.length, keyBytes) ? memory.keys : sharedBytes(keyBytes);
      this.staged = memory?.staged ?? sharedInt32(1024);
      if (memory !== undefined) this.#spareSlabs = memory.slabs;
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

  /** Value slabs of a retired list, taken before new ones are made. */
  #spareSlabs: Buffer[] = [];

  /** The arrays, for a list built after this one (see MemtableMemory); this list must not be used again. */
  memory(): ListMemory {
    const slabs = this.#spareSlabs;
    for (const s of this.slabs) if (s.length === SLAB_BYTES) slabs.push(s);
    const out = { links: this.links, linksUsed: this.linksUsed, keys: this.keys, slabs, staged: this.staged };
    this.#spareSlabs = [];
    this.slabs = [];
    return out;
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
        this.slabs.push(this.#spareSlabs.pop() ?? sharedBytes(SLAB_BYTES));
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

  /** Scratch for inserts: the last node before the new one at each level (see findBefore). */
  readonly prev = new Int32Array(MAX_HEIGHT);

  /**
   * A node for (search target, seq) holding the value (none for a deletion), not linked: its
   * height is kept in PREV0, negated, until it is.
   */
  newEntry(seq: number, kind: ValueKind, values: Uint8Array, valueOff: number, vlen: number, hash: number, height: number): number {
    const n = this.newNode(height);
    this.store(n, values, valueOff, vlen);
    const links = this.links;
    links[n + KIND] = kind;
    links[n + SEQ_HI] = Math.floor(seq / TWO_32);
    links[n + SEQ_LO] = seq % TWO_32;
    links[n + K0] = this.t0;
    links[n + K1] = this.t1;
    links[n + K2] = this.t2;
    links[n + K3] = this.t3;
    links[n + PREV0] = -height;
    links[n + HASH] = hash;
    return n;
  }

  /** Links new node `n` at its height after the nodes in `prev` (as findBefore leaves them). */
  link(n: number): void {
    const links = this.links;
    const height = -links[n + PREV0]!;
    const prev = this.prev;
    if (height > this.height) {
      for (let level = this.height; level < height; level++) prev[level] = HEAD;
      this.height = height;
    }
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
   * Links new node `n`, a version of `newest`'s key (linked) and newer, right before it at
   * level 0, after the predecessor `newest` records: no search.
   */
  linkBefore(n: number, newest: number): void {
    this.prev[0] = this.links[newest + PREV0]!;
    this.link(n);
  }

  /**
   * Links every staged node, in key order, each search starting where the previous one
   * ended (findBeforeFrom): before the list is iterated on this thread.
   */
  linkStaged(): void {
    if (this.stagedCount === 0) return;
    const order = this.sortedStaged();
    this.stagedCount = 0;
    const prev = this.prev;
    prev.fill(HEAD);
    for (let i = 0; i < order.length; i++) {
      const n = order[i]!;
      const height = -this.links[n + PREV0]!;
      this.targetNode(n);
      if (height > this.height) {
        for (let level = this.height; level < height; level++) prev[level] = HEAD;
        this.height = height;
      }
      this.findBeforeFrom(this.seqOf(n), prev);
      this.link(n);
      // The finger for the next node: this one is the last of its levels at or before it.
      for (let level = 0; level < height; level++) prev[level] = n;
    }
    this.tBuf = EMPTY;
  }

  /** The staged nodes in internal order (a new array). */
  sortedStaged(): Int32Array {
    return sortNodes(this, this.staged, this.stagedCount);
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

export const EMPTY = Buffer.alloc(0);

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
  return w ^ TOP_BIT;
}

const TOP_BIT = 0x80000000;

/** Copies from[fromOff, fromOff + n) to to[toOff…]: a loop for short runs, where TypedArray.set's native call costs more than the copy. */
function copyInto(to: Uint8Array, toOff: number, from: Uint8Array, fromOff: number, n: number): void {
  if (n <= 32) {
    for (let i = 0; i < n; i++) to[toOff + i] = from[fromOff + i]!;
  } else {
    to.set(from.subarray(fromOff, fromOff + n), toOff);
  }
}

/** Words of the record of a node of `height` levels. */
export function nodeWords(height: number): number {
  return FIELDS + NEXT + height;
}

function grow<T extends Int32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/** Fewer nodes than this are sorted by comparison, more by radix. */
const RADIX_SORT_MIN = 512;
/** Runs shorter than this are radix-sorted a byte a pass (256 buckets), longer ones two bytes a pass. */
const WIDE_DIGITS_MIN = 16_384;
/** The radix sort's counters (16-bit digits), kept: allocated per sort, they were faulted in each time. */
const RADIX_COUNTS = new Int32Array(0x1_0001);

/**
 * Nodes ids[0, count) of `list` in internal order (key ascending, sequence descending), as a
 * new array. A comparison sort of a memtable's new keys reads node records in random order;
 * this reads each key once, in the order the keys were added (which is their order in the
 * key arena), and radix-sorts (least significant digit first) by the 8 bytes after the prefix
 * every key shares (`key:000…`, `tenant/42/users/`: a shared prefix, however long, costs
 * nothing). Each run of nodes equal in those bytes is then sorted the same way by its next 8
 * bytes (after the prefix the run shares) while it is long and its keys go on, so no key
 * shape (a stray key of another prefix, say, which leaves every other key equal in the first
 * bytes sorted on) leaves a long run to compare. What is left: versions of one key (a key no
 * longer than the bytes sorted on), which arrive oldest first, are reversed once their
 * sequence numbers are seen to rise (comparing them node against node re-read their records
 * at random: two fifths of a server's flush, where SETs rewrite keys), and short runs of
 * other keys are compared.
 */
export function sortNodes(list: SkipList, ids: Int32Array, count: number): Int32Array {
  const compare = (a: number, b: number): number => list.compareNodes(a, b);
  if (count < RADIX_SORT_MIN) return ids.slice(0, count).sort(compare);
  const links = list.links;
  const keys = list.keys;
  const order = new Int32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  const spare = new Int32Array(count);
  const words = new Int32Array(count * 2);
  const compared: number[] = [];
  // Runs still to radix-sort: [start, end, first key byte not yet known to be equal in the run].
  const todo: number[] = [0, count, 0];
  while (todo.length > 0) {
    const from = todo.pop()!;
    const end = todo.pop()!;
    const start = todo.pop()!;
    const at = from + sharedPrefix(list, ids, order, start, end, from);
    for (let i = start; i < end; i++) {
      const x = order[i]!;
      const n = ids[x]!;
      const off = links[n + KEY_OFF]!;
      const len = links[n + KLEN]!;
      // As the abbreviated key's words: signed order is byte order (so digits flip the top bit back).
      words[x * 2] = word(keys, off, len, at) ^ TOP_BIT;
      words[x * 2 + 1] = word(keys, off, len, at + 4) ^ TOP_BIT;
    }
    radixSort(order, spare, start, end, words);
    // Runs of one key's versions are put in order here (newest first); long runs of keys that
    // go on are sorted by their next bytes; the rest are compared after.
    const sortedBytes = at + 8;
    for (let i = start; i < end; ) {
      const first = order[i]!;
      let j = i + 1;
      while (j < end && words[order[j]! * 2] === words[first * 2] && words[order[j]! * 2 + 1] === words[first * 2 + 1]) j++;
      if (j - i > 1) {
        const len = links[ids[first]! + KLEN]!;
        let oneKey = len <= sortedBytes;
        let goesOn = len > sortedBytes;
        for (let k = i + 1; k < j; k++) {
          const l = links[ids[order[k]!]! + KLEN]!;
          if (l !== len) oneKey = false;
          if (l > sortedBytes) goesOn = true;
        }
        if (!(oneKey && reverseAscending(list, ids, order, i, j))) {
          if (goesOn && j - i >= RADIX_SORT_MIN) todo.push(i, j, sortedBytes);
          else compared.push(i, j);
        }
      }
      i = j;
    }
  }
  const sorted = new Int32Array(count);
  for (let i = 0; i < count; i++) sorted[i] = ids[order[i]!]!;
  for (let r = 0; r < compared.length; r += 2) sorted.subarray(compared[r], compared[r + 1]).sort(compare);
  return sorted;
}

/** How many bytes from `from` on every key of order[start, end) shares with the first. */
function sharedPrefix(list: SkipList, ids: Int32Array, order: Int32Array, start: number, end: number, from: number): number {
  const links = list.links;
  const keys = list.keys;
  const first = ids[order[start]!]!;
  const firstOff = links[first + KEY_OFF]! + from;
  let prefix = Math.max(0, links[first + KLEN]! - from);
  for (let i = start + 1; i < end && prefix > 0; i++) {
    const n = ids[order[i]!]!;
    const off = links[n + KEY_OFF]! + from;
    const len = Math.min(prefix, links[n + KLEN]! - from);
    let p = 0;
    while (p < len && keys[off + p] === keys[firstOff + p]) p++;
    prefix = p;
  }
  return prefix;
}

/**
 * Sorts order[start, end) by the unsigned 64-bit (words[2x], words[2x + 1]) of each entry x,
 * least significant digit first (stable): 16-bit digits for a long run, 8-bit for a shorter
 * one, where clearing 65,536 counters per pass would cost more than the pass. A run of every
 * entry is counted in entry order, which reads the words in order.
 */
function radixSort(order: Int32Array, spare: Int32Array, start: number, end: number, words: Int32Array): void {
  const bits = end - start >= WIDE_DIGITS_MIN ? 16 : 8;
  const mask = (1 << bits) - 1;
  const perWord = 32 / bits;
  const whole = start === 0 && end === order.length;
  const counts = RADIX_COUNTS;
  let from = order;
  let to = spare;
  for (let pass = 2 * perWord - 1; pass >= 0; pass--) {
    const which = pass < perWord ? 0 : 1; // the first word's digits are the high passes
    const low = 32 - bits * ((pass % perWord) + 1);
    counts.fill(0, 0, mask + 2);
    if (whole) for (let x = 0; x < end; x++) counts[((words[x * 2 + which]! >>> low) & mask) + 1]!++;
    else for (let i = start; i < end; i++) counts[((words[from[i]! * 2 + which]! >>> low) & mask) + 1]!++;
    counts[0] = start;
    for (let d = 1; d <= mask + 1; d++) counts[d]! += counts[d - 1]!;
    for (let i = start; i < end; i++) {
      const x = from[i]!;
      to[counts[(words[x * 2 + which]! >>> low) & mask]!++] = x;
    }
    [from, to] = [to, from];
  }
  // An even number of passes: the result is back in `order`.
}

/**
 * Puts order[start, end), one key's versions, newest first, when they arrived oldest first,
 * as they do: the radix sort is stable, and a memtable stages a key's new version only when
 * it is newer than the key's newest. Otherwise returns false (the run is then compared).
 */
function reverseAscending(list: SkipList, ids: Int32Array, order: Int32Array, start: number, end: number): boolean {
  let last = list.seqOf(ids[order[start]!]!);
  for (let i = start + 1; i < end; i++) {
    const seq = list.seqOf(ids[order[i]!]!);
    if (seq <= last) return false;
    last = seq;
  }
  order.subarray(start, end).reverse();
  return true;
}
