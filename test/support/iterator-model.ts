import assert from 'node:assert/strict';
import { compareKeySeq, type ValueKind } from '../../src/engine/internal-key.js';

/** One versioned entry of a sorted-array model of a block, table or memtable. */
export interface ModelEntry {
  key: Buffer;
  seq: number;
  kind: ValueKind;
  value: Buffer;
}

/** What the model checks of a cursor (InternalIterator, BlockIterator). */
export interface CursorLike {
  valid(): boolean;
  userKey(): Buffer;
  seq(): number;
  kind(): ValueKind;
  value(): Buffer;
  seek(key: Uint8Array, seq: number): void;
  seekForPrev(key: Uint8Array, seq: number): void;
  next(): void;
  prev(): void;
}

/** Internal order of two model entries (or seek targets): key ascending, then seq descending. */
export function compareEntries(a: { key: Uint8Array; seq: number }, b: { key: Uint8Array; seq: number }): number {
  return compareKeySeq(a.key, a.seq, b.key, b.seq);
}

/** Asserts a cursor over nothing is invalid after every kind of positioning. */
export function assertEmptyEverywhere(it: Pick<CursorLike, 'valid' | 'seek' | 'seekForPrev'> & { seekToFirst(): void; seekToLast(): void }): void {
  it.seekToFirst();
  assert.equal(it.valid(), false, 'seekToFirst');
  it.seekToLast();
  assert.equal(it.valid(), false, 'seekToLast');
  it.seek(Buffer.from('a'), 1);
  assert.equal(it.valid(), false, 'seek');
  it.seekForPrev(Buffer.from('a'), 1);
  assert.equal(it.valid(), false, 'seekForPrev');
}

/** Sorts into internal order and drops duplicate (key, seq) pairs, as a memtable would. */
export function normalize(entries: ModelEntry[]): ModelEntry[] {
  const sorted = [...entries].sort((a, b) => compareKeySeq(a.key, a.seq, b.key, b.seq));
  return sorted.filter((e, i) => i === 0 || compareKeySeq(sorted[i - 1]!.key, sorted[i - 1]!.seq, e.key, e.seq) !== 0);
}

/** Index of the first entry at or after (key, seq); model.length when none. */
export function lowerBound(model: ModelEntry[], key: Uint8Array, seq: number): number {
  let lo = 0;
  let hi = model.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeySeq(model[mid]!.key, model[mid]!.seq, key, seq) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the last entry at or before (key, seq); -1 when none. */
export function upperBoundPrev(model: ModelEntry[], key: Uint8Array, seq: number): number {
  let lo = 0;
  let hi = model.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeySeq(model[mid]!.key, model[mid]!.seq, key, seq) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** Asserts the cursor sits on model[i] (or is invalid when i is out of range). */
export function assertAt(it: Omit<CursorLike, 'seek' | 'seekForPrev' | 'next' | 'prev'>, model: ModelEntry[], i: number, what: string): void {
  if (i < 0 || i >= model.length) {
    assert.equal(it.valid(), false, `${what}: expected the end, cursor is valid`);
    return;
  }
  assert.equal(it.valid(), true, `${what}: expected entry ${i}, cursor is not valid`);
  const e = model[i]!;
  assert.deepEqual(it.userKey(), e.key, `${what}: key of entry ${i}`);
  assert.equal(it.seq(), e.seq, `${what}: seq of entry ${i}`);
  assert.equal(it.kind(), e.kind, `${what}: kind of entry ${i}`);
  assert.deepEqual(it.value(), e.value, `${what}: value of entry ${i}`);
}

export type Step = 'next' | 'prev';

/** Seeks (or seeks for prev) to each target, then walks the steps, checking the cursor against the model after each move. */
export function walkProbes(it: CursorLike, model: ModelEntry[], probes: ReadonlyArray<readonly [{ key: Buffer; seq: number }, boolean, readonly Step[]]>): void {
  for (const [target, forPrev, ops] of probes) {
    let i: number;
    if (forPrev) {
      it.seekForPrev(target.key, target.seq);
      i = upperBoundPrev(model, target.key, target.seq);
    } else {
      it.seek(target.key, target.seq);
      i = lowerBound(model, target.key, target.seq);
    }
    assertAt(it, model, i, forPrev ? 'seekForPrev' : 'seek');
    for (const op of ops) {
      if (i < 0 || i >= model.length) break;
      if (op === 'next') {
        it.next();
        i++;
      } else {
        it.prev();
        i--;
      }
      assertAt(it, model, i, op);
    }
  }
}
