import type { InternalIterator } from './iterator.js';
import type { ValueKind } from './internal-key.js';
import { HEAD, NONE, type EntryLocation, type SkipList } from './skip-list.js';

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

  /** Told once, at the first close(): the memtable counts its open iterators (Memtable.retire). */
  #onClose: (() => void) | undefined;

  constructor(list: SkipList, staged: Int32Array, onClose?: () => void) {
    this.#list = list;
    this.#staged = staged;
    this.#onClose = onClose;
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
    const onClose = this.#onClose;
    this.#onClose = undefined;
    onClose?.();
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
