import type { InternalIterator } from './iterator.js';
import { ValueKind } from './internal-key.js';
import { hash32 } from './bloom.js';

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
 * Node record at offset `n` in `links` (offsets are node ids; 0 is the head, which is never
 * a successor, so 0 also means "none"): [k0, k1, k2, k3, entry, next_0 .. next_{height-1}].
 * k0..k3 hold key bytes 0-15 as big-endian words, zero-padded, top bit flipped so that
 * signed comparison is bytewise order: most comparisons end there, and keys that share a
 * prefix (`user:000123`) still fit. Per-entry data (seq, kind, where the bytes are) sits in
 * dense arrays indexed by `entry`.
 */
const K0 = 0;
const K1 = 1;
const K2 = 2;
const K3 = 3;
const ENTRY = 4;
const NEXT = 5;
/** Key bytes held in a node record. */
const ABBREVIATED = 16;
const HEAD = 0;
const NONE = 0;

/*
 * What the flush reads (node records, entry data, key arena, value slabs) lives in
 * SharedArrayBuffers: the background worker thread flushes an immutable memtable by reading
 * its skip list in place (SharedMemtable), where it used to need a copy of every entry made
 * on the main thread first (about 110 ms of a 16 MiB memtable's flush, in slices between
 * writes, and the next memtable filled before the flush was done). Nothing is written to an
 * immutable memtable, so the two threads never race.
 */
function sharedInt32(length: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(length * Int32Array.BYTES_PER_ELEMENT));
}

function sharedFloat64(length: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(length * Float64Array.BYTES_PER_ELEMENT));
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
  readonly seqs: Float64Array;
  readonly kinds: Uint8Array;
  readonly keys: Uint8Array;
  readonly keyOffs: Int32Array;
  readonly klens: Int32Array;
  readonly slabOf: Int32Array;
  readonly valueOffs: Int32Array;
  readonly vlens: Int32Array;
  readonly slabs: readonly Uint8Array[];
}

class SkipList {
  links = sharedInt32(1 << 12);
  /** The head's record comes first. */
  linksUsed = NEXT + MAX_HEIGHT;
  height = 1;
  count = 0;
  seqs = sharedFloat64(1 << 10);
  kinds = sharedBytes(1 << 10) as Uint8Array;
  /**
   * Keys sit back to back in one arena (grown by copying), so comparing past the abbreviated
   * key is a loop over one array; values go to slabs, which are never copied.
   */
  keys = sharedBytes(1 << 16);
  keysUsed = 0;
  keyOffs = sharedInt32(1 << 10);
  klens = sharedInt32(1 << 10);
  slabOf = sharedInt32(1 << 10);
  /** Per entry: the node before its node at level 0 (the head is node 0). */
  prev0 = new Int32Array(1 << 10);
  /** Per entry: hash32 of its key, so the point-lookup index grows without rehashing keys. */
  hashes = new Int32Array(1 << 10);
  valueOffs = sharedInt32(1 << 10);
  vlens = sharedInt32(1 << 10);
  slabs: Buffer[] = [];
  slab = -1;
  slabUsed = SLAB_BYTES;
  /** Abbreviated key of the current search target (set by target()). */
  t0 = 0;
  t1 = 0;
  t2 = 0;
  t3 = 0;

  /** The list as another thread reads it (see SharedMemtable). */
  shared(): SharedMemtable {
    const { links, height, count, seqs, kinds, keys, keyOffs, klens, slabOf, valueOffs, vlens, slabs } = this;
    return { links, height, count, seqs, kinds, keys, keyOffs, klens, slabOf, valueOffs, vlens, slabs: [...slabs] };
  }

  /** A read-only list over another thread's shared memory: only what iterating reads is set. */
  static reading(shared: SharedMemtable): SkipList {
    const list = new SkipList();
    list.links = shared.links;
    list.height = shared.height;
    list.count = shared.count;
    list.seqs = shared.seqs;
    list.kinds = shared.kinds;
    list.keys = asBuffer(shared.keys);
    list.keyOffs = shared.keyOffs;
    list.klens = shared.klens;
    list.slabOf = shared.slabOf;
    list.valueOffs = shared.valueOffs;
    list.vlens = shared.vlens;
    list.slabs = shared.slabs.map(asBuffer);
    return list;
  }

  /** Sets the search target's abbreviated key. */
  target(key: Uint8Array): void {
    if (key.length >= ABBREVIATED) {
      this.t0 = ((key[0]! << 24) | (key[1]! << 16) | (key[2]! << 8) | key[3]!) ^ 0x80000000;
      this.t1 = ((key[4]! << 24) | (key[5]! << 16) | (key[6]! << 8) | key[7]!) ^ 0x80000000;
      this.t2 = ((key[8]! << 24) | (key[9]! << 16) | (key[10]! << 8) | key[11]!) ^ 0x80000000;
      this.t3 = ((key[12]! << 24) | (key[13]! << 16) | (key[14]! << 8) | key[15]!) ^ 0x80000000;
    } else {
      this.t0 = word(key, 0);
      this.t1 = word(key, 4);
      this.t2 = word(key, 8);
      this.t3 = word(key, 12);
    }
  }

  /** Key order of node `n` against the target set by target(key): negative, 0 or positive. */
  compareKey(n: number, key: Uint8Array): number {
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
    const e = links[n + ENTRY]!;
    const keys = this.keys;
    const off = this.keyOffs[e]!;
    const alen = this.klens[e]!;
    const blen = key.length;
    const end = alen < blen ? alen : blen;
    for (let i = ABBREVIATED; i < end; i++) {
      const d = keys[off + i]! - key[i]!;
      if (d !== 0) return d;
    }
    return alen - blen;
  }

  /** True when node `n` comes before (key, seq): key ascending, then seq descending. */
  before(n: number, key: Uint8Array, seq: number): boolean {
    const c = this.compareKey(n, key);
    return c < 0 || (c === 0 && this.seqs[this.links[n + ENTRY]!]! > seq);
  }

  /** Last node before (key, seq) at each level into `prev` (if given); returns the level-0 one. */
  findBefore(key: Uint8Array, seq: number, prev: Int32Array | null): number {
    this.target(key);
    const links = this.links;
    let x = HEAD;
    for (let level = this.height - 1; level >= 0; level--) {
      let n = links[x + NEXT + level]!;
      while (n !== NONE && this.before(n, key, seq)) {
        x = n;
        n = links[x + NEXT + level]!;
      }
      if (prev !== null) prev[level] = x;
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

  /** True when node `n` holds `key` (any version). */
  sameKey(n: number, key: Uint8Array): boolean {
    const e = this.links[n + ENTRY]!;
    const len = this.klens[e]!;
    if (len !== key.length) return false;
    const keys = this.keys;
    const off = this.keyOffs[e]!;
    for (let i = 0; i < len; i++) if (keys[off + i] !== key[i]) return false;
    return true;
  }

  /** True when node `n` holds exactly (key, seq). */
  equals(n: number, key: Uint8Array, seq: number): boolean {
    return n !== NONE && this.compareKey(n, key) === 0 && this.seqs[this.links[n + ENTRY]!] === seq;
  }

  entry(n: number): number {
    return this.links[n + ENTRY]!;
  }

  /** Allocates a node record of `height` levels (links zeroed = none). */
  newNode(height: number): number {
    const need = NEXT + height;
    if (this.linksUsed + need > this.links.length) this.links = grow(this.links, sharedInt32(this.links.length * 2));
    const n = this.linksUsed;
    this.linksUsed += need;
    return n;
  }

  /** Allocates an entry slot; returns its index. */
  newEntry(): number {
    const e = this.count;
    if (e === this.seqs.length) {
      const cap = e * 2;
      this.seqs = grow(this.seqs, sharedFloat64(cap));
      this.kinds = grow(this.kinds, sharedBytes(cap) as Uint8Array);
      this.keyOffs = grow(this.keyOffs, sharedInt32(cap));
      this.klens = grow(this.klens, sharedInt32(cap));
      this.slabOf = grow(this.slabOf, sharedInt32(cap));
      // Only the main thread reads these two (inserts and point lookups).
      this.prev0 = grow(this.prev0, new Int32Array(cap));
      this.hashes = grow(this.hashes, new Int32Array(cap));
      this.valueOffs = grow(this.valueOffs, sharedInt32(cap));
      this.vlens = grow(this.vlens, sharedInt32(cap));
    }
    this.count++;
    return e;
  }

  /** Copies the key and value (`vlen` bytes: none for a deletion) of entry `e` in. */
  store(e: number, key: Uint8Array, value: Uint8Array, vlen: number): void {
    const klen = key.length;
    if (this.keysUsed + klen > this.keys.length) {
      // Earlier views of keys keep the old arena alive and unchanged.
      const grown = sharedBytes(Math.max(this.keys.length * 2, this.keysUsed + klen));
      this.keys.copy(grown, 0, 0, this.keysUsed);
      this.keys = grown;
    }
    this.keys.set(key, this.keysUsed);
    this.keyOffs[e] = this.keysUsed;
    this.klens[e] = klen;
    this.keysUsed += klen;
    this.vlens[e] = vlen;
    if (vlen === 0) {
      this.slabOf[e] = -1;
      return;
    }
    let slab: Buffer;
    if (vlen > OWN_ALLOCATION_BYTES) {
      slab = sharedBytes(vlen);
      this.slabs.push(slab);
      this.slabOf[e] = this.slabs.length - 1;
      this.valueOffs[e] = 0;
    } else {
      if (this.slabUsed + vlen > SLAB_BYTES) {
        this.slabs.push(sharedBytes(SLAB_BYTES));
        this.slab = this.slabs.length - 1;
        this.slabUsed = 0;
      }
      slab = this.slabs[this.slab]!;
      this.slabOf[e] = this.slab;
      this.valueOffs[e] = this.slabUsed;
      this.slabUsed += vlen;
    }
    slab.set(value, this.valueOffs[e]!);
  }

  keyOf(e: number): Buffer {
    const off = this.keyOffs[e]!;
    return this.keys.subarray(off, off + this.klens[e]!);
  }

  valueOf(e: number): Buffer {
    const slab = this.slabOf[e]!;
    if (slab < 0) return EMPTY;
    const off = this.valueOffs[e]!;
    return this.slabs[slab]!.subarray(off, off + this.vlens[e]!);
  }
}

const EMPTY = Buffer.alloc(0);

/** Key bytes at..at+3 big-endian, zero-padded, top bit flipped: signed order is bytewise order. */
function word(key: Uint8Array, at: number): number {
  const len = key.length;
  let w = 0;
  for (let i = at; i < at + 4; i++) w = (w << 8) | (i < len ? key[i]! : 0);
  return w ^ 0x80000000;
}

function grow<T extends Float64Array | Int32Array | Uint8Array>(from: T, to: T): T {
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

export class Memtable {
  readonly #list = new SkipList();
  readonly #filter = new Uint32Array(FILTER_BITS / 32);
  /**
   * Point-lookup index: an open-addressing table from a key's hash to the node of its newest
   * version (0 = empty slot). A get then costs one or two probes instead of a skip-list
   * search, whose dozens of dependent loads through cold memory made it the server's
   * hottest function. Versions of a key are adjacent in the list, newest first, so older
   * ones are reached by walking forward.
   */
  // 256 KiB to start: a full memtable of small entries needs 2^18 slots, and each doubling rehashes.
  #index = new Int32Array(1 << 16);
  #indexBits = 16;
  #indexUsed = 0;
  #bytes = 0;
  /** xorshift32: heights need speed, not quality. */
  #rng = 0x9e3779b9;
  /** Scratch for insert: the last node before the new one at each level. */
  readonly #prev = new Int32Array(MAX_HEIGHT);

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
    const list = this.#list;
    const prev = this.#prev;
    const hash = hash32(key);
    const height = this.#randomHeight();
    // Fast path for a new version of a key already here that gets a one-level node (3 in 4
    // do): it goes right before the newest version, whose level-0 predecessor is recorded,
    // so no search is needed. Overwrites of hot keys are the common case for a server.
    // The key filter first: for a new key it usually answers without touching the index.
    const newest = height === 1 && this.mayContainHash(hash) ? this.#newestNode(key, hash) : NONE;
    if (newest !== NONE && list.seqs[list.entry(newest)]! < seq) {
      list.target(key);
      prev[0] = list.prev0[list.entry(newest)]!;
    } else {
      const x = list.findBefore(key, seq, prev);
      if (list.equals(list.next(x), key, seq)) {
        throw new RangeError(`memtable already holds sequence ${seq} for this key: sequence numbers must be unique`);
      }
    }

    const klen = key.length;
    const vlen = kind === ValueKind.Deletion ? 0 : value.length;
    const e = list.newEntry();
    list.seqs[e] = seq;
    list.kinds[e] = kind;
    list.store(e, key, value, vlen);

    if (height > list.height) {
      for (let level = list.height; level < height; level++) prev[level] = HEAD;
      list.height = height;
    }
    const n = list.newNode(height);
    const links = list.links;
    links[n + K0] = list.t0;
    links[n + K1] = list.t1;
    links[n + K2] = list.t2;
    links[n + K3] = list.t3;
    links[n + ENTRY] = e;
    for (let level = 0; level < height; level++) {
      const p = prev[level]! + NEXT + level;
      links[n + NEXT + level] = links[p]!;
      links[p] = n;
    }
    const after = links[n + NEXT]!;
    list.prev0[e] = prev[0]!;
    list.hashes[e] = hash;
    if (after !== NONE) list.prev0[links[after + ENTRY]!] = n;
    this.#bytes += klen + vlen + ENTRY_OVERHEAD_BYTES;
    this.#addToFilter(hash);
    this.#indexNewest(n, key, hash, seq);
  }

  /** The node of the newest version of `key` here, or NONE. */
  #newestNode(key: Uint8Array, hash: number): number {
    const list = this.#list;
    const index = this.#index;
    const mask = index.length - 1;
    for (let slot = this.#slotOf(hash); ; slot = (slot + 1) & mask) {
      const m = index[slot]!;
      if (m === NONE || list.sameKey(m, key)) return m;
    }
  }

  #slotOf(hash: number): number {
    return Math.imul(hash, 0x9e3779b1) >>> (32 - this.#indexBits);
  }

  /** Records node `n` as the newest version of `key` (sequence numbers only grow, but check). */
  #indexNewest(n: number, key: Uint8Array, hash: number, seq: number): void {
    const list = this.#list;
    const index = this.#index;
    const mask = index.length - 1;
    for (let slot = this.#slotOf(hash); ; slot = (slot + 1) & mask) {
      const m = index[slot]!;
      if (m === NONE) {
        index[slot] = n;
        if (++this.#indexUsed * 2 > index.length) this.#growIndex();
        return;
      }
      if (list.sameKey(m, key)) {
        if (list.seqs[list.entry(m)]! < seq) index[slot] = n;
        return;
      }
    }
  }

  #growIndex(): void {
    const list = this.#list;
    const old = this.#index;
    this.#indexBits++;
    const index = new Int32Array(old.length * 2);
    const mask = index.length - 1;
    for (const m of old) {
      if (m === NONE) continue;
      let slot = this.#slotOf(list.hashes[list.entry(m)]! >>> 0);
      while (index[slot] !== NONE) slot = (slot + 1) & mask;
      index[slot] = m;
    }
    this.#index = index;
  }

  /** False: no version of the key with this hash32 is here (see bloom.ts). */
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
   * `hash` is hash32(key), when the caller has it already.
   */
  get(key: Uint8Array, seq: number, hash = hash32(key)): { kind: ValueKind; value: Buffer; seq: number } | undefined {
    const list = this.#list;
    let n = this.#newestNode(key, hash);
    if (n === NONE) return undefined;
    // Newer versions than the snapshot come first: skip them.
    while (list.seqs[list.entry(n)]! > seq) {
      n = list.next(n);
      if (n === NONE || !list.sameKey(n, key)) return undefined;
    }
    const e = list.entry(n);
    return { kind: list.kinds[e]! as ValueKind, value: list.valueOf(e), seq: list.seqs[e]! };
  }

  iterator(): InternalIterator {
    return new MemtableIterator(this.#list);
  }

  /**
   * The skip list for the worker thread's flush, shared rather than copied: call it only
   * once the memtable is immutable (nothing may be added after).
   */
  shared(): SharedMemtable {
    return this.#list.shared();
  }

  /** An iterator over a memtable shared by another thread (see shared()). */
  static iteratorOf(shared: SharedMemtable): InternalIterator {
    return new MemtableIterator(SkipList.reading(shared));
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

class MemtableIterator implements InternalIterator {
  readonly #list: SkipList;
  #node = NONE;
  /** Views of the current entry, made once: merging iterators ask for the key repeatedly. */
  #key: Buffer | undefined;
  #value: Buffer | undefined;

  constructor(list: SkipList) {
    this.#list = list;
  }

  valid(): boolean {
    return this.#node !== NONE;
  }

  seekToFirst(): void {
    this.#moveTo(this.#list.next(HEAD));
  }

  seekToLast(): void {
    this.#moveTo(this.#list.last());
  }

  seek(userKey: Uint8Array, seq: number): void {
    const list = this.#list;
    this.#moveTo(list.next(list.findBefore(userKey, seq, null)));
  }

  seekForPrev(userKey: Uint8Array, seq: number): void {
    const list = this.#list;
    const x = list.findBefore(userKey, seq, null);
    const n = list.next(x);
    this.#moveTo(list.equals(n, userKey, seq) ? n : x);
  }

  next(): void {
    this.#moveTo(this.#list.next(this.#at()));
  }

  prev(): void {
    // No back links: search from the head, as LevelDB does (O(log n)).
    const e = this.#list.entry(this.#at());
    this.#moveTo(this.#list.findBefore(this.userKey(), this.#list.seqs[e]!, null));
  }

  userKey(): Buffer {
    return (this.#key ??= this.#list.keyOf(this.#list.entry(this.#at())));
  }

  seq(): number {
    return this.#list.seqs[this.#list.entry(this.#at())]!;
  }

  kind(): ValueKind {
    return this.#list.kinds[this.#list.entry(this.#at())]! as ValueKind;
  }

  value(): Buffer {
    return (this.#value ??= this.#list.valueOf(this.#list.entry(this.#at())));
  }

  close(): void {
    this.#moveTo(NONE);
  }

  #moveTo(n: number): void {
    this.#node = n;
    this.#key = undefined;
    this.#value = undefined;
  }

  #at(): number {
    if (this.#node === NONE) throw new RangeError('memtable iterator is not positioned on an entry');
    return this.#node;
  }
}
