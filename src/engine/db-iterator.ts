import type { InternalIterator } from './iterator.js';
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
 */
export class DbIterator implements EngineIterator {
  readonly #it: InternalIterator;
  readonly #seq: number;
  readonly #range: UserRange;
  readonly #reverse: boolean;
  readonly #limit: number;
  readonly #onClose: () => void;
  #returned = 0;
  #positioned = false;
  /** Forward: the user key just returned, whose older versions must be skipped. */
  #skip: Buffer | undefined;
  #done = false;
  #closed = false;

  constructor(it: InternalIterator, seq: number, range: UserRange, reverse: boolean, limit: number, onClose: () => void) {
    this.#it = it;
    this.#seq = seq;
    this.#range = range;
    this.#reverse = reverse;
    this.#limit = limit < 0 ? Infinity : limit;
    this.#onClose = onClose;
  }

  next(): [Buffer, Buffer] | undefined {
    if (this.#closed || this.#done || this.#returned >= this.#limit) return undefined;
    if (!this.#positioned) this.#seekStart(undefined);
    const entry = this.#reverse ? this.#findPrev() : this.#findNext();
    if (!entry) {
      this.#done = true;
      return undefined;
    }
    this.#returned++;
    return entry;
  }

  seek(target: Uint8Array): void {
    if (this.#closed) return;
    this.#done = false;
    this.#seekStart(asBuffer(target));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#it.close();
    this.#onClose();
  }

  #seekStart(target: Buffer | undefined): void {
    this.#positioned = true;
    this.#skip = undefined;
    const { lower, lowerInclusive, upper, upperInclusive } = this.#range;
    if (!this.#reverse) {
      let from = lower;
      let inclusive = lowerInclusive;
      if (target && (!from || Buffer.compare(target, from) > 0)) ((from = target), (inclusive = true));
      if (from === undefined) this.#it.seekToFirst();
      else this.#it.seek(from, MAX_SEQUENCE);
      if (from !== undefined && !inclusive) this.#skip = from;
    } else {
      let from = upper;
      let inclusive = upperInclusive;
      if (target && (!from || Buffer.compare(target, from) < 0)) ((from = target), (inclusive = true));
      if (from === undefined) this.#it.seekToLast();
      else if (inclusive) this.#it.seekForPrev(from, 0);
      else this.#it.seekForPrev(from, MAX_SEQUENCE);
    }
  }

  #findNext(): [Buffer, Buffer] | undefined {
    const it = this.#it;
    const { upper, upperInclusive } = this.#range;
    let skip = this.#skip;
    for (; it.valid(); it.next()) {
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
      it.next();
      return out;
    }
    return undefined;
  }

  /** LevelDB's FindPrevUserEntry: walking backwards, the last visible version seen of a key is its newest. */
  #findPrev(): [Buffer, Buffer] | undefined {
    const it = this.#it;
    const { lower, lowerInclusive } = this.#range;
    let kind: ValueKind = ValueKind.Deletion;
    let key: Buffer | undefined;
    let value: Buffer | undefined;
    while (it.valid()) {
      if (it.seq() <= this.#seq) {
        const uk = it.userKey();
        if (kind !== ValueKind.Deletion && uk.compare(key!) < 0) break;
        if (lower !== undefined && kind === ValueKind.Deletion) {
          const c = uk.compare(lower);
          if (c < 0 || (c === 0 && !lowerInclusive)) return undefined;
        }
        kind = it.kind();
        if (kind === ValueKind.Deletion) key = value = undefined;
        else ((key = uk), (value = it.value()));
      }
      it.prev();
    }
    if (kind === ValueKind.Deletion) return undefined;
    return [Buffer.from(key!), Buffer.from(value!)];
  }
}
