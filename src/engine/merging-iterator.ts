import { compareKeySeq, type ValueKind } from './internal-key.js';
import { allReads, EXHAUSTS, type InternalIterator, type SeekTarget, type StepRead } from './iterator.js';

const EMPTY = Buffer.alloc(0);

/**
 * The union of several internal iterators (memtables, level-0 tables, levels) in internal
 * order, in either direction. Valid children sit in a binary heap: smallest first going
 * forward, largest first in reverse. Switching direction repositions every other child
 * just past (or before) the current entry, as LevelDB's MergingIterator does.
 *
 * Entries equal in (user key, seq) cannot come from two children in the engine; should they,
 * the lower child index comes first going forward (and last in reverse), so the order is
 * still total and both directions agree.
 */
export class MergingIterator implements InternalIterator {
  readonly #children: readonly InternalIterator[];
  /** Each child's current key and seq, cached: heap comparisons would otherwise call into the children. */
  readonly #keys: Buffer[];
  readonly #seqs: number[];
  /** Indexes of the valid children, heap-ordered for the direction. */
  #heap: number[] = [];
  #forward = true;

  constructor(children: readonly InternalIterator[]) {
    this.#children = children;
    this.#keys = new Array<Buffer>(children.length).fill(EMPTY);
    this.#seqs = new Array<number>(children.length).fill(0);
  }

  valid(): boolean {
    return this.#heap.length > 0;
  }

  seekToFirst(): void {
    for (const c of this.#children) c.seekToFirst();
    this.#rebuild(true);
  }

  seekToLast(): void {
    for (const c of this.#children) c.seekToLast();
    this.#rebuild(false);
  }

  seek(userKey: Uint8Array, seq: number): void {
    for (const c of this.#children) c.seek(userKey, seq);
    this.#rebuild(true);
  }

  seekForPrev(userKey: Uint8Array, seq: number): void {
    for (const c of this.#children) c.seekForPrev(userKey, seq);
    this.#rebuild(false);
  }

  next(): void {
    const cur = this.#current();
    if (!this.#forward) {
      // Every other child sits at or before the current entry: move each to the first entry
      // after it in merged order.
      const key = this.#keys[cur]!;
      const seq = this.#seqs[cur]!;
      this.#children.forEach((c, i) => {
        if (i === cur) return;
        c.seek(key, seq);
        if (i < cur && c.valid() && compareKeySeq(c.userKey(), c.seq(), key, seq) === 0) c.next();
      });
      this.#children[cur]!.next();
      this.#rebuild(true);
      return;
    }
    this.#children[cur]!.next();
    this.#restoreTop();
  }

  prev(): void {
    const cur = this.#current();
    if (this.#forward) {
      const key = this.#keys[cur]!;
      const seq = this.#seqs[cur]!;
      this.#children.forEach((c, i) => {
        if (i === cur) return;
        c.seekForPrev(key, seq);
        if (i > cur && c.valid() && compareKeySeq(c.userKey(), c.seq(), key, seq) === 0) c.prev();
      });
      this.#children[cur]!.prev();
      this.#rebuild(false);
      return;
    }
    this.#children[cur]!.prev();
    this.#restoreTop();
  }

  readBeforeStep(forward: boolean): StepRead {
    // Only the current child moves, unless the direction changes: then every child seeks,
    // and reads as it does (a database iterator keeps one direction).
    const top = this.#heap[0];
    if (top === undefined || forward !== this.#forward) return undefined;
    const read = this.#children[top]!.readBeforeStep?.(forward);
    // A child that runs out leaves the others: the merge goes on.
    return read === EXHAUSTS ? undefined : read;
  }

  readBeforeSeek(target: SeekTarget): Promise<void> | undefined {
    return allReads(this.#children.map((c) => c.readBeforeSeek?.(target)));
  }

  userKey(): Buffer {
    return this.#keys[this.#current()]!;
  }

  seq(): number {
    return this.#seqs[this.#current()]!;
  }

  kind(): ValueKind {
    return this.#children[this.#current()]!.kind();
  }

  value(): Buffer {
    return this.#children[this.#current()]!.value();
  }

  close(): void {
    this.#heap = [];
    for (const c of this.#children) c.close();
  }

  #current(): number {
    const top = this.#heap[0];
    if (top === undefined) throw new RangeError('merging iterator is not positioned on an entry');
    return top;
  }

  /** Restores the heap after the top child moved. */
  #restoreTop(): void {
    const heap = this.#heap;
    const top = heap[0]!;
    if (this.#load(top)) {
      this.#siftDown(0);
    } else {
      const last = heap.pop()!;
      if (heap.length > 0) {
        heap[0] = last;
        this.#siftDown(0);
      }
    }
  }

  #rebuild(forward: boolean): void {
    this.#forward = forward;
    const heap: number[] = [];
    for (let i = 0; i < this.#children.length; i++) if (this.#load(i)) heap.push(i);
    this.#heap = heap;
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) this.#siftDown(i);
  }

  /** Caches child i's position; false when it is exhausted. */
  #load(i: number): boolean {
    const c = this.#children[i]!;
    if (!c.valid()) return false;
    this.#keys[i] = c.userKey();
    this.#seqs[i] = c.seq();
    return true;
  }

  /** True when child a's entry comes out before child b's in the current direction. */
  #first(a: number, b: number): boolean {
    let c = compareBytes(this.#keys[a]!, this.#keys[b]!);
    if (c === 0) {
      const sa = this.#seqs[a]!;
      const sb = this.#seqs[b]!;
      c = sa > sb ? -1 : sa < sb ? 1 : a - b;
    }
    return this.#forward ? c < 0 : c > 0;
  }

  #siftDown(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && this.#first(heap[r]!, heap[l]!) ? r : l;
      if (!this.#first(heap[child]!, item)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = item;
  }
}

/**
 * Bytewise order. Short keys are compared in JS: measured about twice as fast as
 * Buffer.compare's call into C++, and every step of a merge compares keys.
 */
function compareBytes(a: Buffer, b: Buffer): number {
  const n = a.length < b.length ? a.length : b.length;
  if (n > 64) return Buffer.compare(a, b);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}
