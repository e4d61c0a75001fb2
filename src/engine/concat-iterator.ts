import { TRAILER_BYTES, trailerSeq, type ValueKind } from './internal-key.js';
import { EXHAUSTS, type InternalIterator, type SeekTarget, type StepRead } from './iterator.js';

export interface FileBounds {
  /** Internal keys (user key ++ trailer) of the file's first and last entries. */
  readonly smallest: Buffer;
  readonly largest: Buffer;
}

/**
 * One level's files (sorted, not overlapping) as one iterator. A seek binary-searches the
 * files' bounds and opens only the file it lands in; moving past a file's end closes it and
 * opens the neighbour, so at most one file is pinned at a time.
 */
export class ConcatIterator implements InternalIterator {
  readonly #files: ReadonlyArray<FileBounds>;
  readonly #open: (index: number) => InternalIterator;
  readonly #prepare: ((index: number) => Promise<void> | undefined) | undefined;
  #index = -1;
  #child: InternalIterator | undefined;
  /** The file after (or before) the open one, opened early by readBeforeStep to read its first block ahead. */
  #neighbour: { index: number; child: InternalIterator } | undefined;

  /**
   * `prepare`, if given, opens file `index` without blocking (undefined when it is open
   * already): the read-ahead methods wait for it before they open the file with `open`.
   */
  constructor(files: ReadonlyArray<FileBounds>, open: (index: number) => InternalIterator, prepare?: (index: number) => Promise<void> | undefined) {
    this.#files = files;
    this.#open = open;
    this.#prepare = prepare;
  }

  valid(): boolean {
    return this.#child !== undefined && this.#child.valid();
  }

  seekToFirst(): void {
    if (!this.#moveTo(0)) return;
    this.#child!.seekToFirst();
    this.#skipForward();
  }

  seekToLast(): void {
    if (!this.#moveTo(this.#files.length - 1)) return;
    this.#child!.seekToLast();
    this.#skipBackward();
  }

  seek(userKey: Uint8Array, seq: number): void {
    if (!this.#moveTo(this.#firstEndingAtOrAfter(userKey, seq))) return;
    this.#child!.seek(userKey, seq);
    this.#skipForward();
  }

  seekForPrev(userKey: Uint8Array, seq: number): void {
    if (!this.#moveTo(this.#lastStartingAtOrBefore(userKey, seq))) return;
    this.#child!.seekForPrev(userKey, seq);
    this.#skipBackward();
  }

  next(): void {
    this.#at().next();
    this.#skipForward();
  }

  prev(): void {
    this.#at().prev();
    this.#skipBackward();
  }

  userKey(): Buffer {
    return this.#at().userKey();
  }

  seq(): number {
    return this.#at().seq();
  }

  kind(): ValueKind {
    return this.#at().kind();
  }

  value(): Buffer {
    return this.#at().value();
  }

  close(): void {
    this.#moveTo(-1);
  }

  readBeforeStep(forward: boolean): StepRead {
    const child = this.#child;
    if (child === undefined) return undefined;
    const read = child.readBeforeStep?.(forward);
    if (read !== EXHAUSTS) return read;
    // The move leaves this file for the neighbour, whose first (or last) block it then reads.
    const index = this.#index + (forward ? 1 : -1);
    if (index < 0 || index >= this.#files.length) return EXHAUSTS;
    if (this.#neighbour?.index !== index) {
      const opening = this.#prepare?.(index);
      if (opening !== undefined) return opening;
      const stale = this.#neighbour;
      this.#neighbour = undefined;
      stale?.child.close();
      this.#neighbour = { index, child: this.#open(index) };
    }
    return this.#neighbour.child.readBeforeSeek?.({ to: forward ? 'first' : 'last' });
  }

  readBeforeSeek(target: SeekTarget): Promise<void> | undefined {
    const index = this.#fileFor(target);
    if (index < 0 || index >= this.#files.length) return undefined;
    if (index !== this.#index) {
      const opening = this.#prepare?.(index);
      if (opening !== undefined) return opening;
    }
    this.#moveTo(index);
    return this.#child!.readBeforeSeek?.(target);
  }

  /** The file a seek lands in first (-1 or files.length: none). */
  #fileFor(target: SeekTarget): number {
    switch (target.to) {
      case 'first':
        return 0;
      case 'last':
        return this.#files.length - 1;
      case 'at-or-after':
        return this.#firstEndingAtOrAfter(target.userKey, target.seq);
      case 'at-or-before':
        return this.#lastStartingAtOrBefore(target.userKey, target.seq);
    }
  }

  /** The first file whose largest entry is at or after the target. */
  #firstEndingAtOrAfter(userKey: Uint8Array, seq: number): number {
    let lo = 0;
    let hi = this.#files.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareToTarget(this.#files[mid]!.largest, userKey, seq) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The last file whose smallest entry is at or before the target. */
  #lastStartingAtOrBefore(userKey: Uint8Array, seq: number): number {
    let lo = 0;
    let hi = this.#files.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareToTarget(this.#files[mid]!.smallest, userKey, seq) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  #at(): InternalIterator {
    if (this.#child === undefined || !this.#child.valid()) throw new RangeError('level iterator is not positioned on an entry');
    return this.#child;
  }

  /** Makes file `index` the open one (closing the previous); false, with none open, when out of range. */
  #moveTo(index: number): boolean {
    if (index === this.#index && this.#child !== undefined) return true;
    const prev = this.#child;
    // Cleared first: should open() throw, the iterator is invalid rather than half-moved.
    this.#child = undefined;
    this.#index = -1;
    prev?.close();
    // The file read ahead is used if this move is to it, and closed otherwise (it pins its table).
    const neighbour = this.#neighbour;
    this.#neighbour = undefined;
    if (neighbour !== undefined && neighbour.index !== index) neighbour.child.close();
    if (index < 0 || index >= this.#files.length) return false;
    this.#child = neighbour?.index === index ? neighbour.child : this.#open(index);
    this.#index = index;
    return true;
  }

  /** Past the end of a file (or in one with nothing at or after the target): on to the next. */
  #skipForward(): void {
    while (this.#child !== undefined && !this.#child.valid()) {
      if (!this.#moveTo(this.#index + 1)) return;
      this.#child.seekToFirst();
    }
  }

  #skipBackward(): void {
    while (this.#child !== undefined && !this.#child.valid()) {
      if (!this.#moveTo(this.#index - 1)) return;
      this.#child.seekToLast();
    }
  }
}

/** Sign of internal key `ikey` against (userKey, seq) in internal order (kind ignored). */
function compareToTarget(ikey: Buffer, userKey: Uint8Array, seq: number): number {
  const t = ikey.length - TRAILER_BYTES;
  const c = ikey.compare(userKey, 0, userKey.length, 0, t);
  if (c !== 0) return c;
  const s = trailerSeq(ikey, t);
  return s > seq ? -1 : s < seq ? 1 : 0;
}
