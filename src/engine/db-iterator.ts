import { EXHAUSTS, seekTo, type BlockEdges, type InternalIterator, type SeekTarget } from './iterator.js';
import { TdekvError } from '../errors.js';
import { MAX_SEQUENCE, ValueKind } from './internal-key.js';
import type { EngineIterator, RangeOptions } from './types.js';

export interface UserRange {
  lower?: Buffer;
  lowerInclusive: boolean;
  upper?: Buffer;
  upperInclusive: boolean;
}

export function toUserRange(o: RangeOptions): UserRange {
  const r: UserRange = { lowerInclusive: true, upperInclusive: true };
  if (o.gte !== undefined) r.lower = asBuffer(o.gte);
  else if (o.gt !== undefined) ((r.lower = asBuffer(o.gt)), (r.lowerInclusive = false));
  if (o.lte !== undefined) r.upper = asBuffer(o.lte);
  else if (o.lt !== undefined) ((r.upper = asBuffer(o.lt)), (r.upperInclusive = false));
  return r;
}

export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * User-visible iteration over the merged internal entries: for each user key, the newest
 * version at the snapshot's sequence, hiding deletions, within a range, in one direction.
 * Returned keys and values are copies, so callers may keep or change them freely.
 *
 * next() reads synchronously, as every engine read does. nextBatch() reads a block that is
 * not in the block cache on the thread pool instead, so that a cold block
 * stalls only this iterator, not the event loop: before each move of the internal cursor
 * they ask it which block that move would read (InternalIterator.readBeforeStep) and wait
 * for that read. So that they can, the cursor is moved lazily: past a returned entry at the
 * next call, and to a seek's target at the next call too.
 */
export class DbIterator implements EngineIterator {
  readonly #it: InternalIterator;
  readonly #seq: number;
  readonly #range: UserRange;
  readonly #reverse: boolean;
  readonly #limit: number;
  readonly #onClose: () => void;
  /** Registers a read on the thread pool with the engine, whose close() waits for it. */
  readonly #track: (read: Promise<void>) => Promise<void>;
  #returned = 0;
  /** Where the next call positions the cursor first: undefined once positioned. */
  #seekTarget: { to: Buffer | undefined } | undefined = { to: undefined };
  /** The cursor must move one entry (in the iterator's direction) before its entry is looked at. */
  #stepOwed = false;
  /** Forward: the user key just returned, whose older versions must be skipped. */
  #skip: Buffer | undefined;
  /** Reverse: the newest visible version seen so far of the key being gathered (kept across a wait). */
  #prevKind: ValueKind = ValueKind.Deletion;
  #prevKey: Buffer | undefined;
  #prevValue: Buffer | undefined;
  /** The read a #find stopped for (it returned WAIT). */
  #pending: Promise<void> | undefined;
  /**
   * Reads waited for before the owed move, and before the pending seek: each is asked again
   * after a wait (a level's next table is opened, then its block read), but at most
   * MAX_WAITS_PER_MOVE times, so that a table cache too small for the tables one move needs
   * (each open evicting another's) cannot keep it waiting: it then reads synchronously.
   */
  #stepWaits = 0;
  #seekWaits = 0;
  #done = false;
  #closed = false;
  /** A nextBatch() is running (it may be waiting for a read). */
  #busy = false;

  /** Table cursors on a block's edge (see BlockEdges); undefined: always ask. */
  readonly #edges: BlockEdges | undefined;

  constructor(it: InternalIterator, seq: number, range: UserRange, reverse: boolean, limit: number, onClose: () => void, track: (read: Promise<void>) => Promise<void> = (read) => read, edges?: BlockEdges) {
    this.#it = it;
    this.#seq = seq;
    this.#range = range;
    this.#reverse = reverse;
    this.#limit = limit < 0 ? Infinity : limit;
    this.#onClose = onClose;
    this.#track = track;
    this.#edges = edges;
  }

  next(): [Buffer, Buffer] | undefined {
    this.#checkIdle('next()');
    if (this.#closed || this.#done || this.#returned >= this.#limit) return undefined;
    if (this.#seekTarget !== undefined) this.#position();
    // With no reads allowed to wait, the find never returns WAIT.
    return this.#took((this.#reverse ? this.#findPrev(false) : this.#findNext(false)) as [Buffer, Buffer] | undefined);
  }

  /**
   * Up to `max` entries, as that many next() calls return them, reading blocks that are not
   * in the block cache on the thread pool. Fewer only at the end of the range (or at close).
   */
  async nextBatch(max: number): Promise<Array<[Buffer, Buffer]>> {
    this.#checkIdle('nextBatch()');
    this.#busy = true;
    try {
      return await this.#nextBatch(max);
    } finally {
      this.#busy = false;
    }
  }

  /** One call at a time: a move made while another call waits for a read would lose its place. */
  #checkIdle(call: string): void {
    if (this.#busy) throw new TdekvError('INVALID_ARGUMENT', `iterator ${call} called while a nextBatch() of it is still waiting for a read: await it first`);
  }

  async #nextBatch(max: number): Promise<Array<[Buffer, Buffer]>> {
    const out: Array<[Buffer, Buffer]> = [];
    while (out.length < max && !this.#closed && !this.#done && this.#returned < this.#limit) {
      const target = this.#seekTarget;
      if (target !== undefined) {
        const read = this.#seekWaits < MAX_WAITS_PER_MOVE ? this.#it.readBeforeSeek?.(this.#startTarget(target.to)) : undefined;
        if (read !== undefined) {
          this.#seekWaits++;
          await this.#track(read);
          continue; // asks again (a table opened, then its block read), or ends if closed meanwhile
        }
        this.#position();
      }
      if (this.#fill(out, Math.min(max, out.length + this.#limit - this.#returned))) {
        const read = this.#pending!;
        this.#pending = undefined;
        this.#stepWaits++;
        await this.#track(read);
      }
    }
    return out;
  }

  /** Adds entries to `out` until it holds `until` or the range ends; true when it stopped for a read (in #pending). */
  #fill(out: Array<[Buffer, Buffer]>, until: number): boolean {
    const reverse = this.#reverse;
    while (out.length < until) {
      const e = reverse ? this.#findPrev(true) : this.#findNext(true);
      if (e === WAIT) return true;
      if (e === undefined) {
        this.#done = true;
        return false;
      }
      this.#returned++;
      out.push(e);
    }
    return false;
  }

  seek(target: Uint8Array): void {
    this.#checkIdle('seek()');
    if (this.#closed) return;
    this.#done = false;
    // Positioned at the next call: an async one may read the target's blocks first.
    this.#seekTarget = { to: asBuffer(target) };
    this.#seekWaits = 0;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#it.close();
    this.#onClose();
  }

  /** Counts a found entry; at the end of the range, marks the iterator done. */
  #took(entry: [Buffer, Buffer] | undefined): [Buffer, Buffer] | undefined {
    if (entry === undefined) {
      this.#done = true;
      return undefined;
    }
    this.#returned++;
    return entry;
  }

  /** Where the cursor goes for a seek to `target` (undefined: the start of the range), in internal terms. */
  #startTarget(target: Buffer | undefined): SeekTarget {
    const { lower, upper, upperInclusive } = this.#range;
    if (!this.#reverse) {
      const from = target && (!lower || Buffer.compare(target, lower) > 0) ? target : lower;
      return from === undefined ? FIRST : { to: 'at-or-after', userKey: from, seq: MAX_SEQUENCE };
    }
    let from = upper;
    let inclusive = upperInclusive;
    if (target && (!from || Buffer.compare(target, from) < 0)) ((from = target), (inclusive = true));
    if (from === undefined) return LAST;
    return { to: 'at-or-before', userKey: from, seq: inclusive ? 0 : MAX_SEQUENCE };
  }

  #position(): void {
    const target = this.#seekTarget!.to;
    this.#seekTarget = undefined;
    this.#seekWaits = 0;
    this.#stepOwed = false;
    this.#stepWaits = 0;
    this.#skip = undefined;
    this.#resetPrev();
    seekTo(this.#it, this.#startTarget(target));
    if (!this.#reverse) {
      // An exclusive lower bound (not overridden by a later target): its own key is skipped.
      const { lower, lowerInclusive } = this.#range;
      if (lower !== undefined && !lowerInclusive && !(target && Buffer.compare(target, lower) > 0)) this.#skip = lower;
    }
  }

  /** Moves the cursor if a move is owed; false, with the read it needs in #pending, when `reads` and that move would read. */
  #step(reads: boolean, forward: boolean): boolean {
    // No table cursor on a block's edge: no move can need a read, and asking costs a chain of calls.
    if (reads && this.#stepWaits < MAX_WAITS_PER_MOVE && (this.#edges === undefined || this.#edges.count > 0)) {
      const read = this.#it.readBeforeStep?.(forward);
      if (read !== undefined && read !== EXHAUSTS) {
        this.#pending = read;
        return false;
      }
    }
    if (forward) this.#it.next();
    else this.#it.prev();
    this.#stepOwed = false;
    this.#stepWaits = 0;
    return true;
  }

  #findNext(reads: boolean): [Buffer, Buffer] | undefined | typeof WAIT {
    const it = this.#it;
    const { upper, upperInclusive } = this.#range;
    let skip = this.#skip;
    for (;;) {
      if (this.#stepOwed && !this.#step(reads, true)) {
        this.#skip = skip;
        return WAIT;
      }
      if (!it.valid()) return undefined;
      this.#stepOwed = true;
      if (it.seq() > this.#seq) continue;
      const key = it.userKey();
      if (skip !== undefined && key.equals(skip)) continue;
      if (upper !== undefined) {
        const c = key.compare(upper);
        if (c > 0 || (c === 0 && !upperInclusive)) return undefined;
      }
      if (it.kind() === ValueKind.Deletion) {
        skip = key;
        continue;
      }
      const out: [Buffer, Buffer] = [Buffer.from(key), Buffer.from(it.value())];
      this.#skip = out[0];
      return out;
    }
  }

  /** LevelDB's FindPrevUserEntry: walking backwards, the last visible version seen of a key is its newest. */
  #findPrev(reads: boolean): [Buffer, Buffer] | undefined | typeof WAIT {
    const it = this.#it;
    const { lower, lowerInclusive } = this.#range;
    let kind = this.#prevKind;
    let key = this.#prevKey;
    let value = this.#prevValue;
    for (;;) {
      if (this.#stepOwed && !this.#step(reads, false)) {
        this.#prevKind = kind;
        this.#prevKey = key;
        this.#prevValue = value;
        return WAIT;
      }
      if (!it.valid()) break;
      if (it.seq() <= this.#seq) {
        const uk = it.userKey();
        // The cursor stays on this older key: the next call starts there, with no move owed.
        if (kind !== ValueKind.Deletion && uk.compare(key!) < 0) break;
        if (lower !== undefined && kind === ValueKind.Deletion) {
          const c = uk.compare(lower);
          if (c < 0 || (c === 0 && !lowerInclusive)) {
            this.#resetPrev();
            return undefined;
          }
        }
        kind = it.kind();
        if (kind === ValueKind.Deletion) key = value = undefined;
        else ((key = uk), (value = it.value()));
      }
      this.#stepOwed = true;
    }
    this.#resetPrev();
    if (kind === ValueKind.Deletion) return undefined;
    return [Buffer.from(key!), Buffer.from(value!)];
  }

  #resetPrev(): void {
    this.#prevKind = ValueKind.Deletion;
    this.#prevKey = undefined;
    this.#prevValue = undefined;
  }
}

/** What #findNext and #findPrev return when they stopped for a read (in #pending). */
const WAIT = null;
/** See DbIterator.#stepWaits. A move waits for a table open and a block read at most. */
const MAX_WAITS_PER_MOVE = 4;
const FIRST: SeekTarget = { to: 'first' };
const LAST: SeekTarget = { to: 'last' };
