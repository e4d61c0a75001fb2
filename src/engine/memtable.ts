import { ValueKind } from './internal-key.js';
import { randomInt } from 'node:crypto';
import { bloomHash, hash32 } from './bloom.js';
import { MemtableIterator } from './memtable-iterator.js';
import { reusable, type MemtableMemory } from './memtable-memory.js';
import { EMPTY, MAX_HEIGHT, NONE, nodeWords, SkipList, type SharedMemtable } from './skip-list.js';

/**
 * What an entry costs beyond its key and value bytes (its node and entry records), for
 * flush accounting, like RocksDB's arena accounting.
 */
export const ENTRY_OVERHEAD_BYTES = 80;

/**
 * Room for `used` (with a quarter more), at least `least`, at most `most`. Room never written
 * costs address space only; the quarter lets the next memtable but one build on this one's
 * arrays (see MemtableMemory) when it holds a little more, which it often does.
 */
function initialSize(used: number | undefined, least: number, most: number): number {
  if (used === undefined || !(used > least)) return least;
  return Math.min(most, Math.ceil((used * 1.25) / 1024) * 1024);
}

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
/** See Memtable.linkThreshold. */
export const STAGED_LINK_BOUND = 8192;

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
  return { distinctKeys: 0, linkWords: entries * nodeWords(2), keyBytes: entries * 16 };
}

/**
 * The in-memory write buffer: a skip list (LevelDB's: height ≤ 12, branching 4; skip-list.ts)
 * of versioned entries in internal-key order, with a point-lookup index and a key filter.
 * Single-threaded JS needs no locks. Inserts only relink nodes, so iterators made earlier
 * stay valid; they see the entries there when they were made, and those linked since (entries
 * added later carry higher sequence numbers, which every reader above skips).
 */
export class Memtable {
  readonly #list: SkipList;
  readonly #filter: Uint32Array;
  /**
   * Point-lookup index: an open-addressing table from a key's hash to the node of its newest
   * version. A get then costs one or two probes instead of a skip-list search, whose dozens
   * of dependent loads through cold memory made it the server's hottest function. Versions
   * of a key are adjacent in the list, newest first, so older ones are reached by walking
   * forward. A slot is two words, [node (0 = empty), index hash of its key], so a probe that
   * lands on another key is rejected without loading that key's node.
   */
  // 512 KiB to start: a full memtable of small entries needs 2^18 slots, and each doubling rehashes.
  #index: Int32Array = new Int32Array(2 << 16);
  #indexBits = 16;
  #indexUsed = 0;
  /** Some version is missing from the index (see INDEX_MAX_PROBE): lookups it misses search the list. */
  #indexOverflowed = false;
  readonly #indexHash: (buf: Uint8Array, start: number, end: number) => number;
  #bytes = 0;
  /** xorshift32: heights need speed, not quality. */
  #rng = 0x9e3779b9;
  /**
   * Staged nodes are linked once there are this many (Infinity: only when the list is
   * iterated). Linking them all at an iterator's start took 70–150 ms after 100k new keys
   * (a server's SCAN); a bound of STAGED_LINK_BOUND keeps that under ~10 ms but costs the
   * writes about 0.7 µs a new key (measured: 0.33 µs linking all at once, 1.2 µs a key in
   * batches of 2048), so the engine sets it only once the database is iterated.
   */
  linkThreshold = Infinity;

  /**
   * `like`: what the previous memtable grew to (its `sizes`), so that this one starts at its
   * final size instead of growing its way there: its index (rehashing was 2.5 % of a bulk
   * load's main thread), its node records and its key arena (a bounded first size: an
   * unusual previous memtable must not reserve much). `indexHash` is for tests that need keys
   * to collide; the default is seeded per process.
   */
  constructor(options: { like?: Partial<MemtableSizes>; memory?: MemtableMemory; indexHash?: (buf: Uint8Array, start: number, end: number) => number } = {}) {
    this.#indexHash = options.indexHash ?? ((buf, start, end) => hash32(buf, INDEX_SEED, start, end));
    const like = options.like ?? {};
    const memory = options.memory;
    this.#list = new SkipList(undefined, initialSize(like.linkWords, 1 << 14, MAX_INITIAL_LINK_WORDS), initialSize(like.keyBytes, 1 << 16, MAX_INITIAL_KEY_BYTES), memory);
    // At most 40 % full when the expected keys are in (it grows at half).
    const bits = Math.min(MAX_INITIAL_INDEX_BITS, Math.max(this.#indexBits, Math.ceil(Math.log2(Math.max(1, (like.distinctKeys ?? 0) * 2.5)))));
    if (memory !== undefined && memory.index.length >= 2 << bits && reusable(memory.index.length, 2 << bits)) {
      // A bigger index than asked for is only emptier (and costs its zeroing: at most twice).
      memory.index.fill(0);
      this.#index = memory.index;
      this.#indexBits = Math.log2(memory.index.length) - 1;
    } else if (bits > this.#indexBits) {
      this.#indexBits = bits;
      this.#index = new Int32Array(2 << bits);
    }
    if (memory !== undefined) {
      memory.filter.fill(0);
      this.#filter = memory.filter;
    } else this.#filter = new Uint32Array(FILTER_BITS / 32);
  }

  /** Open iterators (see retire()). */
  #readers = 0;
  #retired = false;

  /**
   * Gives this memtable's arrays up for the next one (see MemtableMemory), or returns
   * undefined while an iterator over it is open (its memory is then left to the GC). Call it
   * only once nothing else can reach the memtable: flushed, installed and dropped by the
   * engine. It cannot be read afterwards.
   */
  retire(): MemtableMemory | undefined {
    if (this.#readers > 0 || this.#retired) return undefined;
    this.#retired = true;
    this.#shared = true; // nothing may be added either
    const memory = { ...this.#list.memory(), index: this.#index, filter: this.#filter };
    this.#index = NO_NODES;
    return memory;
  }

  #checkLive(): void {
    if (this.#retired) throw new RangeError('memtable was retired: its memory belongs to another memtable now');
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
      list.linkStaged();
      list.target(keys, keyOff, keyLen);
      const x = list.findBefore(seq, list.prev);
      if (list.equals(list.next(x), seq)) {
        throw new RangeError(`memtable already holds sequence ${seq} for this key: sequence numbers must be unique`);
      }
      const n = this.#newEntry(seq, kind, values, valueOff, valueLen, hash, this.#randomHeight(), newest === NONE);
      list.link(n);
      this.#indexNewest(n, ih, seq);
    } else if (newest !== NONE && !list.isStaged(newest)) {
      // A new version of a key whose versions are in the list: it goes right before the newest,
      // whose level-0 predecessor is recorded, so no search is needed. Overwrites of hot keys
      // are the common case for a server. Such a node gets one level: the key's first version
      // already has the random height that keeps searches logarithmic in distinct keys, and a
      // taller node would need the predecessors a search finds.
      const n = this.#newEntry(seq, kind, values, valueOff, valueLen, hash, 1, false);
      list.linkBefore(n, newest);
      this.#indexNewest(n, ih, seq);
    } else {
      // A new key, or a new version of a staged one: staged (see SkipList.staged), found through
      // the index, unless the index cannot hold it (see INDEX_MAX_PROBE): then it is linked (a
      // key the index never held is new here, so no version of it is in the list).
      const n = this.#newEntry(seq, kind, values, valueOff, valueLen, hash, newest === NONE ? this.#randomHeight() : 1, newest === NONE);
      if (this.#indexNewest(n, ih, seq)) {
        list.stage(n, newest);
        if (list.stagedCount >= this.linkThreshold) list.linkStaged();
      } else {
        list.findBefore(seq, list.prev);
        list.link(n);
      }
    }
    // The target may be a range of a whole write batch: do not keep the batch alive with the memtable.
    list.tBuf = EMPTY;
    // Growing the index may have left a staged key out of it (crafted keys only): link every
    // staged version, so that a lookup that misses the index finds them in the list.
    if (this.#indexOverflowed) list.linkStaged();
  }

  /**
   * SkipList.newEntry(), counted in the memtable's bytes, and in its key filter when `newKey`:
   * a key with a version here already has its bits set (six scattered writes per overwrite).
   */
  #newEntry(seq: number, kind: ValueKind, values: Uint8Array, valueOff: number, valueLen: number, hash: number, height: number, newKey: boolean): number {
    const list = this.#list;
    const vlen = kind === ValueKind.Deletion ? 0 : valueLen;
    const n = list.newEntry(seq, kind, values, valueOff, vlen, hash, height);
    this.#bytes += list.tLen + vlen + ENTRY_OVERHEAD_BYTES;
    if (newKey) this.#addToFilter(hash);
    return n;
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
    this.#checkLive();
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
    this.#checkLive();
    const list = this.#list;
    this.#readers++;
    if (!this.#shared) {
      list.linkStaged();
      return new MemtableIterator(list, NO_NODES, this.#readerClosed);
    }
    this.#sortedStaged ??= list.sortedStaged();
    return new MemtableIterator(list, this.#sortedStaged, this.#readerClosed);
  }

  readonly #readerClosed = (): void => {
    this.#readers--;
  };

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
    return new MemtableIterator(list, list.sortedStaged());
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
