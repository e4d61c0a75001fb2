import type { TdekvError } from '../errors.js';
import { TRAILER_BYTES, trailerSeq, type ValueKind } from './internal-key.js';
import type { InternalIterator } from './iterator.js';
import { tableCorrupted } from './table-format.js';
import { compareBytes } from './compare-bytes.js';

/**
 * A parsed block (see BlockBuilder for the layout): its contents, already checksum-verified,
 * and the bounds of its restart array. Blocks are immutable and shared through the block
 * cache, so iterators hand out subarrays of them.
 */
export class Block {
  readonly data: Buffer;
  /** Where the restart array starts, which is also where the entries end. */
  readonly restartsOffset: number;
  readonly numRestarts: number;
  readonly path: string;
  /** The block's offset in its file, for error messages. */
  readonly offset: number;

  constructor(data: Buffer, path: string, offset: number) {
    this.data = data;
    this.path = path;
    this.offset = offset;
    if (data.length < 4) throw this.corrupt(`it is ${data.length} bytes, too short for a restart count`);
    const n = data.readUInt32LE(data.length - 4);
    if (n < 1 || n > (data.length - 4) / 4) throw this.corrupt(`its restart count ${n} does not fit its ${data.length} bytes`);
    this.numRestarts = n;
    this.restartsOffset = data.length - 4 - 4 * n;
    // Checked once here so that seeks can jump to any restart point without bounds checks.
    let prev = -1;
    for (let i = 0; i < n; i++) {
      const r = data.readUInt32LE(this.restartsOffset + 4 * i);
      const ok = i === 0 ? r === 0 : r > prev && r < this.restartsOffset;
      if (!ok) throw this.corrupt(`restart point ${i} (offset ${r}) is out of order or outside the entries`);
      prev = r;
    }
  }

  get size(): number {
    return this.data.length;
  }

  restartAt(i: number): number {
    const d = this.data;
    const o = this.restartsOffset + 4 * i;
    return (d[o]! | (d[o + 1]! << 8) | (d[o + 2]! << 16) | (d[o + 3]! << 24)) >>> 0;
  }

  iterator(): BlockIterator {
    return new BlockIterator(this);
  }

  corrupt(detail: string): TdekvError {
    return tableCorrupted(this.path, `block at offset ${this.offset}: ${detail}`);
  }
}

/** Set by varintAt: the offset after the varint it decoded (saves an object per decode). */
let varintEnd = 0;

/** A varint at buf[at, end), or -1 when it is malformed (values are never negative). */
function varintAt(buf: Buffer, at: number, end: number): number {
  let result = 0;
  let mul = 1;
  while (at < end) {
    const b = buf[at++]!;
    result += (b & 0x7f) * mul;
    if (b < 0x80) {
      varintEnd = at;
      return result;
    }
    mul *= 128;
    if (mul > 2 ** 49) return -1;
  }
  return -1;
}

/**
 * A cursor over one block, in internal-key order. Seeks binary-search the restart points
 * (whose keys are stored whole, so they are compared in place, without copying), then
 * scan forward at most one restart interval. prev() re-scans from the previous restart
 * point, as in LevelDB: entries only encode their difference from the entry before.
 */
export class BlockIterator implements InternalIterator {
  #block!: Block;
  #data!: Buffer;
  #restartsOffset = 0;
  #numRestarts = 0;
  /** Offset of the current entry; restartsOffset when not valid. */
  #current = 0;
  /** Offset just past the current entry. */
  #next = 0;
  #restartIndex = 0;
  /** Offset of restart point restartIndex + 1 (restartsOffset when there is none). */
  #nextRestart = 0;
  /** The current internal key, rebuilt from the shared prefix and the entry's suffix. */
  #key: Buffer = Buffer.allocUnsafe(128);
  #keyLength = 0;
  /** Where the current key lies whole in the block (entries with no shared prefix), else -1. */
  #keyInBlock = -1;
  #valueStart = 0;
  #valueEnd = 0;
  #userKey: Buffer | undefined;

  constructor(block: Block) {
    this.reset(block);
  }

  /** Points this cursor at another block, reusing its key buffer (the table reader's gets do). */
  reset(block: Block): void {
    this.#block = block;
    this.#data = block.data;
    this.#restartsOffset = block.restartsOffset;
    this.#numRestarts = block.numRestarts;
    this.#invalidate();
  }

  get block(): Block {
    return this.#block;
  }

  /** The current value's bounds in block.data, for decoding it without a subarray. */
  get valueOffset(): number {
    return this.#valueStart;
  }

  get valueLength(): number {
    return this.#valueEnd - this.#valueStart;
  }

  valid(): boolean {
    return this.#current < this.#restartsOffset;
  }

  /** On the block's last entry: next() leaves it. */
  get atLast(): boolean {
    return this.#current < this.#restartsOffset && this.#next >= this.#restartsOffset;
  }

  /** On the block's first entry: prev() leaves it. */
  get atFirst(): boolean {
    return this.#current === this.#block.restartAt(0) && this.#current < this.#restartsOffset;
  }

  /**
   * Where the next entry's value lies in block.data, without moving: [start, end), or
   * undefined on the last entry (or none). Its key is not decoded (that needs the current
   * one); a table cursor reads the handle of the data block it moves into next this way.
   */
  peekNextValue(): [number, number] | undefined {
    if (!this.valid()) return undefined;
    const data = this.#data;
    const end = this.#restartsOffset;
    const p = this.#next;
    if (p >= end) return undefined;
    const shared = varintAt(data, p, end);
    const unshared = shared < 0 ? -1 : varintAt(data, varintEnd, end);
    const valueLength = unshared < 0 ? -1 : varintAt(data, varintEnd, end);
    if (valueLength < 0) throw this.#block.corrupt(`the entry at ${p} has a malformed header`);
    const start = varintEnd + unshared;
    if (start + valueLength > end) throw this.#block.corrupt(`the entry at ${p} does not fit (unshared ${unshared}, value ${valueLength}, ${end - varintEnd} bytes left)`);
    return [start, start + valueLength];
  }

  seekToFirst(): void {
    this.#seekToRestart(0);
    this.#parseNext();
  }

  seekToLast(): void {
    this.#seekToRestart(this.#numRestarts - 1);
    while (this.#parseNext() && this.#next < this.#restartsOffset) {
      // Walks to the last entry.
    }
  }

  seek(userKey: Uint8Array, seq: number): void {
    // Last restart point whose key is before the target; the target is within its interval.
    let left = 0;
    let right = this.#numRestarts - 1;
    while (left < right) {
      const mid = (left + right + 1) >>> 1;
      if (this.#compareRestartKey(mid, userKey, seq) < 0) left = mid;
      else right = mid - 1;
    }
    this.#seekToRestart(left);
    while (this.#parseNext()) {
      if (this.#compareCurrent(userKey, seq) >= 0) return;
    }
  }

  seekForPrev(userKey: Uint8Array, seq: number): void {
    this.seek(userKey, seq);
    if (!this.valid()) this.seekToLast();
    else if (this.#compareCurrent(userKey, seq) > 0) this.prev();
  }

  next(): void {
    if (!this.valid()) return;
    this.#parseNext();
  }

  prev(): void {
    if (!this.valid()) return;
    const original = this.#current;
    while (this.#block.restartAt(this.#restartIndex) >= original) {
      if (this.#restartIndex === 0) {
        this.#invalidate();
        return;
      }
      this.#restartIndex--;
    }
    this.#seekToRestart(this.#restartIndex);
    while (this.#parseNext() && this.#next < original) {
      // Walks to the entry just before the original one.
    }
  }

  userKey(): Buffer {
    if (this.#userKey) return this.#userKey;
    const n = this.#keyLength - TRAILER_BYTES;
    // A key rebuilt in the scratch buffer is copied: callers may keep it after the cursor moves.
    this.#userKey = this.#keyInBlock >= 0 ? this.#data.subarray(this.#keyInBlock, this.#keyInBlock + n) : Buffer.from(this.#key.subarray(0, n));
    return this.#userKey;
  }

  seq(): number {
    return trailerSeq(this.#key, this.#keyLength - TRAILER_BYTES);
  }

  kind(): ValueKind {
    return this.#key[this.#keyLength - TRAILER_BYTES]! as ValueKind;
  }

  value(): Buffer {
    return this.#data.subarray(this.#valueStart, this.#valueEnd);
  }

  /** Compares the current user key with `userKey` without materializing it. */
  compareUserKey(userKey: Uint8Array): number {
    return compareBytes(this.#key, 0, this.#keyLength - TRAILER_BYTES, userKey);
  }

  /**
   * The current internal key as a view of the cursor's scratch buffer: valid only until the
   * cursor moves (for order checks and copying, not for keeping).
   */
  internalKeyView(): Buffer {
    return this.#key.subarray(0, this.#keyLength);
  }

  close(): void {
    this.#invalidate();
  }

  #invalidate(): void {
    this.#current = this.#restartsOffset;
    this.#next = this.#restartsOffset;
    this.#restartIndex = this.#numRestarts;
    this.#nextRestart = this.#restartsOffset;
    this.#keyLength = 0;
    this.#userKey = undefined;
  }

  #seekToRestart(i: number): void {
    this.#keyLength = 0;
    this.#restartIndex = i;
    this.#nextRestart = i + 1 < this.#numRestarts ? this.#block.restartAt(i + 1) : this.#restartsOffset;
    this.#next = this.#block.restartAt(i);
  }

  /** Decodes the entry at #next; false (and not valid) at the end of the entries. */
  #parseNext(): boolean {
    const data = this.#data;
    const end = this.#restartsOffset;
    const p = this.#next;
    this.#current = p;
    this.#userKey = undefined;
    if (p >= end) {
      this.#invalidate();
      return false;
    }
    const shared = varintAt(data, p, end);
    const unshared = shared < 0 ? -1 : varintAt(data, varintEnd, end);
    const valueLength = unshared < 0 ? -1 : varintAt(data, varintEnd, end);
    if (valueLength < 0) throw this.#block.corrupt(`the entry at ${p} has a malformed header`);
    const q = varintEnd;
    const keyLength = shared + unshared;
    if (shared > this.#keyLength || keyLength < TRAILER_BYTES || q + unshared + valueLength > end) {
      throw this.#block.corrupt(`the entry at ${p} does not fit (shared ${shared}, unshared ${unshared}, value ${valueLength}, ${end - q} bytes left)`);
    }
    if (this.#key.length < keyLength) {
      const grown = Buffer.allocUnsafe(Math.max(keyLength, this.#key.length * 2));
      this.#key.copy(grown, 0, 0, shared);
      this.#key = grown;
    }
    const key = this.#key;
    if (unshared <= 64) {
      // A loop beats a native copy call for the few bytes prefix compression usually leaves.
      for (let i = 0; i < unshared; i++) key[shared + i] = data[q + i]!;
    } else {
      data.copy(key, shared, q, q + unshared);
    }
    this.#keyLength = keyLength;
    this.#keyInBlock = shared === 0 ? q : -1;
    this.#valueStart = q + unshared;
    this.#valueEnd = this.#valueStart + valueLength;
    this.#next = this.#valueEnd;
    while (this.#nextRestart < p) {
      this.#restartIndex++;
      this.#nextRestart = this.#restartIndex + 1 < this.#numRestarts ? this.#block.restartAt(this.#restartIndex + 1) : end;
    }
    return true;
  }

  /** Internal order of the current entry against (userKey, seq). */
  #compareCurrent(userKey: Uint8Array, seq: number): number {
    const n = this.#keyLength - TRAILER_BYTES;
    const c = compareBytes(this.#key, 0, n, userKey);
    if (c !== 0) return c;
    const s = trailerSeq(this.#key, n);
    return s > seq ? -1 : s < seq ? 1 : 0;
  }

  /** Internal order of restart point i's key (stored whole, compared in place) against (userKey, seq). */
  #compareRestartKey(i: number, userKey: Uint8Array, seq: number): number {
    const data = this.#data;
    const end = this.#restartsOffset;
    const p = this.#block.restartAt(i);
    const shared = varintAt(data, p, end);
    const unshared = shared < 0 ? -1 : varintAt(data, varintEnd, end);
    const valueLength = unshared < 0 ? -1 : varintAt(data, varintEnd, end);
    const q = varintEnd;
    if (valueLength < 0 || shared !== 0 || unshared < TRAILER_BYTES || q + unshared + valueLength > end) {
      throw this.#block.corrupt(`the entry at restart point ${i} (offset ${p}) is malformed`);
    }
    const n = q + unshared - TRAILER_BYTES;
    const c = compareBytes(data, q, n, userKey);
    if (c !== 0) return c;
    const s = trailerSeq(data, n);
    return s > seq ? -1 : s < seq ? 1 : 0;
  }
}
