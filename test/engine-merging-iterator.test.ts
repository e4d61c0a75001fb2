import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConcatIterator } from '../src/engine/concat-iterator.js';
import { encodeInternalKey, ValueKind } from '../src/engine/internal-key.js';
import type { InternalIterator } from '../src/engine/iterator.js';
import { Memtable } from '../src/engine/memtable.js';
import { MergingIterator } from '../src/engine/merging-iterator.js';
import { assertEmptyEverywhere, compareEntries, type ModelEntry } from './support/iterator-model.js';

type Entry = ModelEntry;
const cmp = compareEntries;

function lastWhere<T>(items: readonly T[], pred: (item: T) => boolean): T | undefined {
  for (let i = items.length - 1; i >= 0; i--) if (pred(items[i]!)) return items[i];
  return undefined;
}

/** A cursor over a sorted array: the reference child. */
class ArrayIterator implements InternalIterator {
  #i = -1;
  closed = false;

  constructor(readonly entries: readonly Entry[]) {}

  valid(): boolean {
    return this.#i >= 0 && this.#i < this.entries.length;
  }
  seekToFirst(): void {
    this.#i = 0;
  }
  seekToLast(): void {
    this.#i = this.entries.length - 1;
  }
  seek(key: Uint8Array, seq: number): void {
    const i = this.entries.findIndex((e) => cmp(e, { key, seq }) >= 0);
    this.#i = i < 0 ? this.entries.length : i;
  }
  seekForPrev(key: Uint8Array, seq: number): void {
    let i = this.entries.length - 1;
    while (i >= 0 && cmp(this.entries[i]!, { key, seq }) > 0) i--;
    this.#i = i;
  }
  next(): void {
    assert.ok(this.valid(), 'next() on an invalid child');
    this.#i++;
  }
  prev(): void {
    assert.ok(this.valid(), 'prev() on an invalid child');
    this.#i--;
  }
  #at(): Entry {
    assert.ok(!this.closed, 'read from a closed child');
    const e = this.entries[this.#i];
    assert.ok(e, 'read from an invalid child');
    return e;
  }
  userKey(): Buffer {
    return this.#at().key;
  }
  seq(): number {
    return this.#at().seq;
  }
  kind(): ValueKind {
    return this.#at().kind;
  }
  value(): Buffer {
    return this.#at().value;
  }
  close(): void {
    this.closed = true;
    this.#i = -1;
  }
}

function sorted(entries: Entry[]): Entry[] {
  return [...entries].sort(cmp);
}

/** Sorted, non-overlapping runs of `entries` as the files of one level, with a record of opens and closes. */
function level(entries: Entry[], cuts: number[]): { it: ConcatIterator; open: ArrayIterator[]; maxOpen: () => number } {
  const all = sorted(entries);
  const bounds = [...new Set(cuts.map((c) => c % (all.length + 1)))].filter((c) => c > 0 && c < all.length).sort((a, b) => a - b);
  const runs: Entry[][] = [];
  let start = 0;
  for (const b of [...bounds, all.length]) {
    if (b > start) runs.push(all.slice(start, b));
    start = b;
  }
  const files = runs.map((r) => ({ smallest: encodeInternalKey(r[0]!.key, r[0]!.seq, r[0]!.kind), largest: encodeInternalKey(r.at(-1)!.key, r.at(-1)!.seq, r.at(-1)!.kind) }));
  const opened: ArrayIterator[] = [];
  let most = 0;
  const it = new ConcatIterator(files, (i) => {
    const child = new ArrayIterator(runs[i]!);
    opened.push(child);
    most = Math.max(most, opened.filter((c) => !c.closed).length);
    return child;
  });
  return { it, open: opened, maxOpen: () => most };
}

function memtableOf(entries: Entry[]): InternalIterator {
  const mem = new Memtable();
  for (const e of entries) mem.add(e.seq, e.kind, e.key, e.value);
  return mem.iterator();
}

const keyArb = fc.uint8Array({ maxLength: 3 }).map((a) => Buffer.from(a.map((b) => [0x61, 0x62, 0x63, 0][b % 4]!)));

type Step = { op: 'first' | 'last' | 'next' | 'prev' } | { op: 'seek' | 'seekForPrev'; key: Buffer; seq: number };
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('first' as const, 'last' as const) }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constantFrom('next' as const, 'prev' as const) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('seek' as const, 'seekForPrev' as const), key: keyArb, seq: fc.nat(40) }) },
);

/**
 * Drives `it` and a sorted model through the same steps and compares after each. The model
 * holds each entry with a tag (its value) that tells apart equal entries of different children.
 */
function walk(it: InternalIterator, model: readonly Entry[], steps: readonly Step[]): void {
  let at = -1;
  const check = (what: string): void => {
    const e = model[at];
    assert.equal(it.valid(), e !== undefined, `${what}: valid`);
    if (!e) return;
    assert.ok(it.userKey().equals(e.key), `${what}: key`);
    assert.equal(it.seq(), e.seq, `${what}: seq`);
    assert.equal(it.kind(), e.kind, `${what}: kind`);
    assert.equal(it.value().toString(), e.value.toString(), `${what}: value`);
  };
  for (const [i, s] of steps.entries()) {
    switch (s.op) {
      case 'first':
        it.seekToFirst();
        at = model.length > 0 ? 0 : -1;
        break;
      case 'last':
        it.seekToLast();
        at = model.length - 1;
        break;
      case 'seek': {
        it.seek(s.key, s.seq);
        const found = model.findIndex((e) => cmp(e, s) >= 0);
        at = found;
        break;
      }
      case 'seekForPrev': {
        it.seekForPrev(s.key, s.seq);
        const e = lastWhere(model, (x) => cmp(x, s) <= 0);
        at = e ? model.indexOf(e) : -1;
        break;
      }
      case 'next':
      case 'prev':
        if (at < 0 || at >= model.length) continue;
        if (s.op === 'next') it.next();
        else it.prev();
        at += s.op === 'next' ? 1 : -1;
        if (at >= model.length) at = -1;
        break;
    }
    check(`step ${i} (${s.op}${'key' in s ? ` ${s.key.toString('hex')}@${s.seq}` : ''})`);
  }
}

/** Entries with unique sequences, spread over children. */
const uniqueChildrenArb = fc
  .tuple(fc.array(fc.tuple(keyArb, fc.boolean(), fc.nat(5)), { maxLength: 80 }), fc.integer({ min: 1, max: 6 }))
  .map(([raw, n]) => {
    const children: Entry[][] = Array.from({ length: n }, () => []);
    raw.forEach(([key, put, child], i) => {
      children[child % n]!.push({ key, seq: i + 1, kind: put ? ValueKind.Value : ValueKind.Deletion, value: put ? Buffer.from(`e${i}`) : Buffer.alloc(0) });
    });
    return children;
  });

describe('merging iterator', () => {
  test('random walks over memtables, arrays and levels match the merged model', () => {
    fc.assert(
      fc.property(uniqueChildrenArb, fc.array(fc.nat(100), { maxLength: 4 }), fc.array(stepArb, { maxLength: 120 }), (children, cuts, steps) => {
        // Each child is a different implementation, as in the engine: memtable, level-0 table, level.
        const its = children.map((entries, i) => (i % 3 === 0 ? memtableOf(entries) : i % 3 === 1 ? new ArrayIterator(sorted(entries)) : level(entries, cuts).it));
        walk(new MergingIterator(its), sorted(children.flat()), steps);
      }),
      { numRuns: 300 },
    );
  });

  test('equal entries in several children come out lower child first, in both directions', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.tuple(keyArb, fc.nat(6)), { maxLength: 15 }), { minLength: 1, maxLength: 5 }),
        fc.array(stepArb, { maxLength: 120 }),
        (raw, steps) => {
          // Within a child (key, seq) pairs are unique; across children they repeat.
          const children = raw.map((pairs, c) => {
            const seen = new Set<string>();
            const entries: Entry[] = [];
            for (const [key, seq] of pairs) {
              const id = `${key.toString('hex')}@${seq}`;
              if (seen.has(id)) continue;
              seen.add(id);
              entries.push({ key, seq, kind: ValueKind.Value, value: Buffer.from(`c${c}:${id}`) });
            }
            return sorted(entries);
          });
          const model = children.flatMap((entries, c) => entries.map((e) => ({ e, c }))).sort((a, b) => cmp(a.e, b.e) || a.c - b.c).map((x) => x.e);
          walk(new MergingIterator(children.map((entries) => new ArrayIterator(entries))), model, steps);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('with no children it is never valid; close closes every child', () => {
    const empty = new MergingIterator([]);
    empty.seekToFirst();
    assert.equal(empty.valid(), false);
    assert.throws(() => empty.userKey(), RangeError);
    const a = new ArrayIterator([{ key: Buffer.from('a'), seq: 1, kind: ValueKind.Value, value: Buffer.from('1') }]);
    const b = new ArrayIterator([]);
    const m = new MergingIterator([a, b]);
    m.seekToFirst();
    assert.equal(m.valid(), true);
    m.close();
    assert.equal(m.valid(), false);
    assert.ok(a.closed && b.closed);
  });
});

describe('concat iterator', () => {
  test('random walks over a level match the model, with at most one file open at a time', () => {
    fc.assert(
      fc.property(uniqueChildrenArb, fc.array(fc.nat(100), { maxLength: 8 }), fc.array(stepArb, { maxLength: 120 }), (children, cuts, steps) => {
        const entries = children.flat();
        const lvl = level(entries, cuts);
        walk(lvl.it, sorted(entries), steps);
        assert.ok(lvl.maxOpen() <= 1, `${lvl.maxOpen()} files were open at once`);
        lvl.it.close();
        assert.ok(lvl.open.every((c) => c.closed), 'close() releases the open file');
      }),
      { numRuns: 300 },
    );
  });

  test('a seek opens only the file it lands in', () => {
    const entries: Entry[] = ['a', 'b', 'c', 'd', 'e', 'f'].map((k, i) => ({ key: Buffer.from(k), seq: i + 1, kind: ValueKind.Value, value: Buffer.from(k) }));
    const lvl = level(entries, [2, 4]); // files [a b] [c d] [e f]
    lvl.it.seek(Buffer.from('d'), 100);
    assert.equal(lvl.it.userKey().toString(), 'd');
    assert.deepEqual(
      lvl.open.map((c) => c.entries.map((e) => e.key.toString()).join('')),
      ['cd'],
    );
    lvl.it.next();
    assert.equal(lvl.it.userKey().toString(), 'e');
    assert.ok(lvl.open[0]!.closed, 'leaving a file closes it');
    lvl.it.seekForPrev(Buffer.from('bb'), 0);
    assert.equal(lvl.it.userKey().toString(), 'b');
    lvl.it.seek(Buffer.from('g'), 100);
    assert.equal(lvl.it.valid(), false);
    assert.ok(lvl.open.every((c) => c.closed), 'running off the level closes the last file');
  });

  test('an empty level is never valid', () => {
    const it = new ConcatIterator([], () => assert.fail('nothing to open'));
    assertEmptyEverywhere(it);
  });
});
