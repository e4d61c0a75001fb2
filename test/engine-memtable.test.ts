import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { ValueKind } from '../src/engine/internal-key.js';
import type { InternalIterator } from '../src/engine/iterator.js';
import { ENTRY_OVERHEAD_BYTES, firstMemtableSizes, Memtable } from '../src/engine/memtable.js';
import { bloomHash } from '../src/engine/bloom.js';
import { SkipList, sortNodes } from '../src/engine/skip-list.js';
import { compareEntries, type ModelEntry } from './support/iterator-model.js';

type Entry = ModelEntry;
const cmp = compareEntries;

/** Keys that stress the comparisons: shared prefixes up to and past the 16 bytes a node holds, zero bytes, high bytes, the empty key. */
const keyArb: fc.Arbitrary<Buffer> = fc
  .oneof(
    fc.uint8Array({ maxLength: 6 }).map((a) => a.map((b) => [0, 1, 0x61, 0x7f, 0x80, 0xff][b % 6]!)),
    fc.tuple(fc.constantFrom(0, 4, 8, 12, 15, 16, 17, 20, 24), fc.uint8Array({ maxLength: 3 })).map(([shared, tail]) => {
      const k = new Uint8Array(shared + tail.length).fill(0x6b, 0, shared);
      k.set(tail.map((b) => b % 3), shared);
      return k;
    }),
    fc.uint8Array({ minLength: 0, maxLength: 40 }),
  )
  .map((a) => Buffer.from(a));

/** The model: entries sorted in internal order. */
class Model {
  readonly entries: Entry[] = [];

  add(e: Entry): void {
    let i = 0;
    while (i < this.entries.length && cmp(this.entries[i]!, e) < 0) i++;
    this.entries.splice(i, 0, e);
  }

  has(key: Buffer, seq: number): boolean {
    return this.entries.some((e) => e.seq === seq && e.key.equals(key));
  }

  indexOf(e: { key: Buffer; seq: number }): number {
    return this.entries.findIndex((x) => cmp(x, e) === 0);
  }

  get(key: Buffer, seq: number): Entry | undefined {
    return this.entries.find((e) => e.key.equals(key) && e.seq <= seq);
  }
}

function lastWhere<T>(items: readonly T[], pred: (item: T) => boolean): T | undefined {
  for (let i = items.length - 1; i >= 0; i--) if (pred(items[i]!)) return items[i];
  return undefined;
}

function assertAt(it: InternalIterator, expected: Entry | undefined, what: string): void {
  assert.equal(it.valid(), expected !== undefined, `${what}: valid`);
  if (!expected) return;
  assert.ok(it.userKey().equals(expected.key), `${what}: key ${it.userKey().toString('hex')} != ${expected.key.toString('hex')}`);
  assert.equal(it.seq(), expected.seq, `${what}: seq`);
  assert.equal(it.kind(), expected.kind, `${what}: kind`);
  assert.ok(it.value().equals(expected.value), `${what}: value`);
}

type Step =
  | { op: 'add'; key: Buffer; kind: ValueKind; value: Buffer; embed: boolean; pad: number }
  | { op: 'first' | 'last' | 'next' | 'prev' }
  | { op: 'seek' | 'seekForPrev'; key: Buffer; seq: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('add' as const),
      key: keyArb,
      kind: fc.constantFrom(ValueKind.Value, ValueKind.Deletion),
      value: fc.uint8Array({ maxLength: 30 }).map((a) => Buffer.from(a)),
      // addAt from ranges of one larger buffer (as a write batch holds them), or add.
      embed: fc.boolean(),
      pad: fc.nat(20),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('first' as const, 'last' as const) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constantFrom('next' as const, 'prev' as const) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('seek' as const, 'seekForPrev' as const), key: keyArb, seq: fc.nat(60) }) },
);

/** Moves `it` as step `s` says; returns the entry the model says it is on now (`at`: before; next and prev need one). */
function move(it: InternalIterator, model: Model, s: Exclude<Step, { op: 'add' }>, at: Entry | undefined): Entry | undefined {
  switch (s.op) {
    case 'first':
      it.seekToFirst();
      return model.entries[0];
    case 'last':
      it.seekToLast();
      return model.entries.at(-1);
    case 'seek':
      it.seek(s.key, s.seq);
      return model.entries.find((e) => cmp(e, s) >= 0);
    case 'seekForPrev':
      it.seekForPrev(s.key, s.seq);
      return lastWhere(model.entries, (e) => cmp(e, s) <= 0);
    case 'next':
    case 'prev': {
      const idx = model.indexOf(at!);
      if (s.op === 'next') it.next();
      else it.prev();
      return model.entries[s.op === 'next' ? idx + 1 : idx - 1];
    }
  }
}

/** Nodes for `entries`, added to `list` in that order and left unlinked (as staged nodes are). */
function unlinkedNodes(list: SkipList, entries: ReadonlyArray<{ key: Buffer; seq: number }>): Int32Array {
  return Int32Array.from(entries, ({ key, seq }) => {
    list.target(key);
    return list.newEntry(seq, ValueKind.Value, key, 0, key.length, bloomHash(key), 1);
  });
}

/** `entries` in internal order: key ascending, then sequence descending. */
function inInternalOrder<T extends { key: Buffer; seq: number }>(entries: readonly T[]): T[] {
  return [...entries].sort((a, b) => Buffer.compare(a.key, b.key) || b.seq - a.seq);
}

describe('memtable', () => {
  test('iterates in internal order (key ascending, newest first) in both directions', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(keyArb, fc.boolean(), fc.uint8Array({ maxLength: 20 })), { maxLength: 120 }), fc.boolean(), (adds, shuffle) => {
        const mem = new Memtable();
        const model = new Model();
        // Sequences in write order, or shuffled (replay order must not matter).
        const seqs = adds.map((_, i) => i + 1);
        if (shuffle) seqs.reverse();
        adds.forEach(([key, put, value], i) => {
          const e: Entry = { key, seq: seqs[i]!, kind: put ? ValueKind.Value : ValueKind.Deletion, value: put ? Buffer.from(value) : Buffer.alloc(0) };
          mem.add(e.seq, e.kind, key, value);
          model.add(e);
        });
        assert.equal(mem.entries, adds.length);
        const it = mem.iterator();
        it.seekToFirst();
        for (const [i, e] of model.entries.entries()) {
          assertAt(it, e, `forward ${i}`);
          it.next();
        }
        assert.equal(it.valid(), false);
        it.seekToLast();
        for (let i = model.entries.length - 1; i >= 0; i--) {
          assertAt(it, model.entries[i], `backward ${i}`);
          it.prev();
        }
        assert.equal(it.valid(), false);
      }),
    );
  });

  test('get finds every key through the point-lookup index as it grows, at every version', () => {
    const mem = new Memtable();
    const n = 20_000; // past several doublings of the index
    for (let i = 0; i < n; i++) mem.add(i + 1, ValueKind.Value, Buffer.from(`key-${i % 7000}`), Buffer.from(`v${i}`));
    for (let k = 0; k < 7000; k++) {
      const key = Buffer.from(`key-${k}`);
      // Versions of key k were written at sequences k+1, k+7001, k+14001 (the last only for k < 6000).
      const newest = k < 6000 ? k + 14001 : k + 7001;
      assert.equal(mem.get(key, Number.MAX_SAFE_INTEGER)?.seq, newest);
      assert.equal(mem.get(key, k + 7001)?.seq, k + 7001, 'an older snapshot sees the older version');
      assert.equal(mem.get(key, k + 1)?.value.toString(), `v${k}`);
      assert.equal(mem.get(key, k), undefined, 'nothing before the first version');
    }
    assert.equal(mem.get(Buffer.from('key-7000'), Number.MAX_SAFE_INTEGER), undefined);
    assert.equal(mem.get(Buffer.from('key-'), Number.MAX_SAFE_INTEGER), undefined);
    // Overwrites take the no-search insert path most of the time: the list must stay in
    // internal-key order (key ascending, newest version first) in both directions.
    const it = mem.iterator();
    let count = 0;
    let last: { key: Buffer; seq: number } | undefined;
    for (it.seekToFirst(); it.valid(); it.next()) {
      const key = Buffer.from(it.userKey());
      const c = last === undefined ? -1 : Buffer.compare(last.key, key);
      assert.ok(c < 0 || (c === 0 && last!.seq > it.seq()), `order at entry ${count}`);
      last = { key, seq: it.seq() };
      count++;
    }
    assert.equal(count, n);
    let back = 0;
    for (it.seekToLast(); it.valid(); it.prev()) back++;
    assert.equal(back, n);
  });

  test('keys crafted to share one index hash cannot make lookups walk them all: the index stays bounded and get stays right', () => {
    // A client may choose keys whose hash collides; here every key gets one index hash.
    const mem = new Memtable({ indexHash: () => 0x7e57 });
    const model = new Map<string, { seq: number; value: string }[]>();
    let seq = 0;
    for (let i = 0; i < 3000; i++) {
      const key = `k${(i * 7919) % 1200}`; // 1200 distinct keys, each written 2-3 times, interleaved
      seq++;
      mem.add(seq, ValueKind.Value, Buffer.from(key), Buffer.from(`v${seq}`));
      const versions = model.get(key) ?? [];
      versions.unshift({ seq, value: `v${seq}` });
      model.set(key, versions);
    }
    assert.equal(mem.indexOverflowed, true, 'keys past the probe bound are left out of the index');
    assert.ok(mem.longestIndexProbe() <= 32, `an indexed version sits ${mem.longestIndexProbe()} slots from home`);
    for (const [key, versions] of model) {
      const newest = versions[0]!;
      const got = mem.get(Buffer.from(key), Number.MAX_SAFE_INTEGER);
      assert.deepEqual([got?.seq, got?.value.toString()], [newest.seq, newest.value], `newest of ${key}`);
      const oldest = versions[versions.length - 1]!;
      assert.equal(mem.get(Buffer.from(key), oldest.seq)?.value.toString(), oldest.value, `oldest of ${key}`);
      assert.equal(mem.get(Buffer.from(key), oldest.seq - 1), undefined, `before ${key} was written`);
    }
    assert.equal(mem.get(Buffer.from('absent'), Number.MAX_SAFE_INTEGER), undefined);
    assert.equal(mem.entries, 3000);
  });

  test('keys that share one index hash and differ only past the first 16, 20 or 24 bytes are told apart', () => {
    // The index compares a slot's key with the one looked for only when their hashes match:
    // with one hash for every key, each lookup and each overwrite depends on that comparison,
    // up to and past the bytes a node record holds.
    const mem = new Memtable({ indexHash: () => 0x600d });
    const keys: Buffer[] = [];
    for (const shared of [15, 16, 17, 18, 19, 20, 23, 24]) for (const last of [0, 1, 0x7f, 0x80, 0xff]) keys.push(Buffer.concat([Buffer.alloc(shared, 0x6b), Buffer.from([last])]));
    const newest = new Map<string, number>();
    let seq = 0;
    for (let round = 0; round < 3; round++) {
      for (const key of keys) {
        seq++;
        mem.add(seq, ValueKind.Value, key, Buffer.from(`v${seq}`));
        newest.set(key.toString('hex'), seq);
      }
    }
    for (const key of keys) {
      const want = newest.get(key.toString('hex'))!;
      const got = mem.get(key, Number.MAX_SAFE_INTEGER);
      assert.deepEqual([got?.seq, got?.value.toString()], [want, `v${want}`], `newest of ${key.toString('hex')}`);
      assert.equal(mem.get(key, want - 1)?.seq, want - keys.length, `the version before it, of the same key`);
    }
  });

  test('with the default (seeded) index hash, ordinary keys stay within the probe bound', () => {
    const mem = new Memtable();
    for (let i = 0; i < 200_000; i++) mem.add(i + 1, ValueKind.Value, Buffer.from(`user:${i}`), Buffer.alloc(0));
    assert.equal(mem.indexOverflowed, false);
    assert.ok(mem.longestIndexProbe() <= 32);
    assert.equal(mem.get(Buffer.from('user:123456'), Number.MAX_SAFE_INTEGER)?.seq, 123457);
  });

  test('a memtable sized from the previous one finds every key, and its index needs no growth', () => {
    const first = new Memtable();
    for (let i = 0; i < 150_000; i++) first.add(i + 1, ValueKind.Value, Buffer.from(`key-${i % 120_000}`), Buffer.from(`v${i}`));
    assert.equal(first.distinctKeys, 120_000);
    const next = new Memtable({ like: first.sizes });
    const before = next.indexSlots;
    assert.ok(before * 0.5 >= 120_000, `starts with room for the expected keys (${before} slots)`);
    for (let i = 0; i < 120_000; i++) next.add(i + 1, ValueKind.Value, Buffer.from(`key-${i}`), Buffer.from(`w${i}`));
    assert.equal(next.indexSlots, before, 'no rehash on the way');
    for (let i = 0; i < 120_000; i += 997) assert.equal(next.get(Buffer.from(`key-${i}`), Number.MAX_SAFE_INTEGER)?.value.toString(), `w${i}`);
    assert.equal(new Memtable({ like: { distinctKeys: 1e12 } }).indexSlots, 1 << 22, 'a bounded first size, whatever the previous one held');
  });

  test('a memtable sized from the previous one starts with room for its node records and keys, within bounds', () => {
    const first = new Memtable();
    const start = first.capacity;
    for (let i = 0; i < 100_000; i++) first.add(i + 1, ValueKind.Value, Buffer.from(`a-longer-key-than-sixteen-bytes-${i}`), Buffer.from(`v${i}`));
    assert.ok(first.capacity.linkWords > start.linkWords && first.capacity.keyBytes > start.keyBytes, 'the first one grew');
    const sizes = first.sizes;
    assert.equal(sizes.distinctKeys, 100_000);
    const next = new Memtable({ like: sizes });
    const room = next.capacity;
    assert.ok(room.linkWords >= sizes.linkWords && room.keyBytes >= sizes.keyBytes, `room for what the previous one held (${JSON.stringify(room)} for ${JSON.stringify(sizes)})`);
    for (let i = 0; i < 100_000; i++) next.add(i + 1, ValueKind.Value, Buffer.from(`a-longer-key-than-sixteen-bytes-${i}`), Buffer.from(`w${i}`));
    assert.deepEqual(next.capacity, room, 'the same load needs no growth');
    for (let i = 0; i < 100_000; i += 991) assert.equal(next.get(Buffer.from(`a-longer-key-than-sixteen-bytes-${i}`), Number.MAX_SAFE_INTEGER)?.value.toString(), `w${i}`);
    // An unusual previous memtable (or a wrong figure) cannot make the next one reserve without bound.
    const huge = new Memtable({ like: { linkWords: 1e12, keyBytes: 1e12 } }).capacity;
    assert.ok(huge.linkWords <= 1 << 22 && huge.keyBytes <= 1 << 24, JSON.stringify(huge));
    // A first memtable (no previous one) gets room for a write buffer of small entries, and still grows past it.
    const sized = new Memtable({ like: firstMemtableSizes(4 * 1024 * 1024) });
    assert.ok(sized.capacity.linkWords >= (4 * 1024 * 1024) / 128 * 14, JSON.stringify(sized.capacity));
    for (let i = 0; i < 200_000; i++) sized.add(i + 1, ValueKind.Value, Buffer.from(`k${i}`), Buffer.from('v'));
    assert.equal(sized.get(Buffer.from('k199999'), Number.MAX_SAFE_INTEGER)?.seq, 200_000);
    assert.equal(sized.get(Buffer.from('k0'), Number.MAX_SAFE_INTEGER)?.seq, 1);
  });

  test('sequence numbers past 2^32 (stored as two words) keep their order and value', () => {
    const mem = new Memtable();
    const seqs = [2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER - 1];
    for (const seq of seqs) mem.add(seq, ValueKind.Value, Buffer.from('k'), Buffer.from(String(seq)));
    for (const seq of seqs) {
      const got = mem.get(Buffer.from('k'), seq);
      assert.equal(got?.seq, seq);
      assert.equal(got?.value.toString(), String(seq));
      assert.equal(mem.get(Buffer.from('k'), seq - 1)?.seq ?? 0, seqs[seqs.indexOf(seq) - 1] ?? 0, `below ${seq}`);
    }
    const it = mem.iterator();
    const seen: number[] = [];
    for (it.seekToFirst(); it.valid(); it.next()) seen.push(it.seq());
    assert.deepEqual(seen, [...seqs].reverse(), 'newest first');
    it.seek(Buffer.from('k'), 2 ** 32);
    assert.equal(it.seq(), 2 ** 32, 'a seek lands on the version at or below the snapshot');
  });

  test('get returns the newest version at or below the snapshot sequence, deletions included', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(keyArb, fc.boolean()), { maxLength: 80 }), fc.array(fc.tuple(keyArb, fc.nat(90)), { maxLength: 40 }), (adds, probes) => {
        const mem = new Memtable();
        const model = new Model();
        adds.forEach(([key, put], i) => {
          const value = Buffer.from(`v${i}`);
          const kind = put ? ValueKind.Value : ValueKind.Deletion;
          mem.add(i + 1, kind, key, value);
          model.add({ key, seq: i + 1, kind, value: put ? value : Buffer.alloc(0) });
        });
        // Probe keys that were written, at every snapshot, and keys that were not.
        const keys = [...adds.map(([k]) => k), ...probes.map(([k]) => k)];
        for (const key of keys) {
          for (const seq of [0, ...probes.map(([, s]) => s), adds.length, Number.MAX_SAFE_INTEGER]) {
            const want = model.get(key, seq);
            const got = mem.get(key, seq);
            if (!want) {
              assert.equal(got, undefined, `get ${key.toString('hex')}@${seq}`);
            } else {
              assert.ok(got, `get ${key.toString('hex')}@${seq}`);
              assert.equal(got.seq, want.seq);
              assert.equal(got.kind, want.kind);
              assert.ok(got.value.equals(want.value));
            }
          }
        }
      }),
    );
  });

  test('random walks with seeks, direction switches and inserts (from whole buffers or ranges of one) match a sorted-array model', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 150 }), (steps) => {
        const mem = new Memtable();
        const model = new Model();
        // Made before any entry exists: it must see everything linked later (another iterator's
        // making links what is staged, and the walk makes one after each add).
        const it = mem.iterator();
        let at: Entry | undefined;
        let nextSeq = 1;
        for (const [i, s] of steps.entries()) {
          const what = `step ${i} (${s.op})`;
          switch (s.op) {
            case 'add': {
              const seq = nextSeq++;
              if (s.embed) {
                // Junk around and between the key and value; overwritten after, so only copies count.
                const buf = Buffer.concat([Buffer.alloc(s.pad, 0xa5), s.key, Buffer.alloc(3, 0x5a), s.value, Buffer.alloc(2, 0xff)]);
                mem.addAt(seq, s.kind, buf, s.pad, s.key.length, buf, s.pad + s.key.length + 3, s.value.length);
                buf.fill(0xee);
              } else {
                mem.add(seq, s.kind, s.key, s.value);
              }
              model.add({ key: s.key, seq, kind: s.kind, value: s.kind === ValueKind.Value ? s.value : Buffer.alloc(0) });
              mem.iterator().close();
              break;
            }
            default: {
              if (!at && (s.op === 'next' || s.op === 'prev')) continue;
              at = move(it, model, s, at);
            }
          }
          assertAt(it, at, what);
        }
        // Point lookups (the index, the filter and the hashes of keys added from ranges) agree.
        for (const e of model.entries) {
          const got = mem.get(e.key, e.seq);
          assert.ok(got && got.seq === e.seq && got.kind === e.kind && got.value.equals(e.value), `get of ${e.key.toString('hex')} at ${e.seq}`);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('shared with the flush, staged and linked versions iterate merged: random walks in both directions match the model', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(keyArb, fc.boolean(), fc.nat(9)), { maxLength: 120 }),
        fc.array(stepArb.filter((s) => s.op !== 'add'), { maxLength: 80 }),
        fc.boolean(),
        (adds, walk, overWorkerView) => {
          const mem = new Memtable();
          const model = new Model();
          adds.forEach(([key, put, linkNow], i) => {
            const kind = put ? ValueKind.Value : ValueKind.Deletion;
            const value = put ? Buffer.from(`v${i}`) : Buffer.alloc(0);
            mem.add(i + 1, kind, key, value);
            model.add({ key, seq: i + 1, kind, value });
            // Now and then an iterator links what is staged: the list then holds some versions
            // of a key and the staged nodes newer ones.
            if (linkNow === 0) mem.iterator().close();
          });
          const shared = mem.shared();
          const it = overWorkerView ? Memtable.iteratorOf(shared) : mem.iterator();
          let at: Entry | undefined;
          for (const [i, s] of walk.entries()) {
            const what = `step ${i} (${s.op})`;
            if (!at && (s.op === 'next' || s.op === 'prev')) continue;
            at = move(it, model, s, at);
            assertAt(it, at, what);
          }
          const all: number[] = [];
          // Bounded, so that a cursor that stops moving fails rather than hangs.
          for (it.seekToFirst(); it.valid() && all.length <= model.entries.length; it.next()) all.push(it.seq());
          assert.deepEqual(all, model.entries.map((e) => e.seq), 'forward, whole');
          const back: number[] = [];
          for (it.seekToLast(); it.valid() && back.length <= model.entries.length; it.prev()) back.push(it.seq());
          assert.deepEqual(back, model.entries.map((e) => e.seq).reverse(), 'backward, whole');
          for (const e of model.entries) assert.equal(mem.get(e.key, e.seq)?.seq, e.seq, 'get of each version');
          assert.throws(() => mem.add(adds.length + 1, ValueKind.Value, Buffer.from('k'), Buffer.from('v')), RangeError, 'no add after sharing');
        },
      ),
      { numRuns: 300 },
    );
  });

  test('new keys are staged, not searched for, until the list is iterated; the radix sort orders thousands of them as a comparison sort would', () => {
    const shapes: Record<string, (i: number, r: Buffer) => Buffer> = {
      // Shared prefixes longer than the abbreviated 16 bytes, short keys, and versions of a key.
      mixed: (i, r) => (i % 3 === 0 ? Buffer.concat([Buffer.from('user:session:0000'), r]) : i % 3 === 1 ? r.subarray(0, 1 + (r[0]! % 4)) : Buffer.from(`k${r[1]! % 50}`)),
      // What redis-benchmark writes: the first words are the same in every key.
      numbered: (_i, r) => Buffer.from(`key:${String(r.readUInt32BE(0) % 100_000).padStart(12, '0')}`),
      // Every key shares its first 16 bytes and more.
      longPrefix: (_i, r) => Buffer.concat([Buffer.from('tenant/0042/users/'), r.subarray(0, 1 + (r[0]! % 4))]),
      // The 8 bytes after the shared prefix take two values: runs of thousands sorted by comparison.
      bigRuns: (_i, r) => Buffer.concat([Buffer.from('p'), Buffer.from([r[0]! % 2]), Buffer.alloc(7, 7), r.subarray(1)]),
    };
    for (const [shape, makeKey] of Object.entries(shapes)) {
      const mem = new Memtable();
      const model = new Model();
      for (let i = 1; i <= 5000; i++) {
        const key = makeKey(i, randomBytes(4));
        const kind = i % 13 === 0 ? ValueKind.Deletion : ValueKind.Value;
        const value = kind === ValueKind.Value ? Buffer.from(String(i)) : Buffer.alloc(0);
        mem.add(i, kind, key, value);
        model.add({ key, seq: i, kind, value });
      }
      assert.ok(mem.stagedEntries > 500, `${shape}: new keys are staged (${mem.stagedEntries})`);
      for (const e of model.entries.slice(0, 300)) assert.equal(mem.get(e.key, e.seq)?.seq, e.seq, `${shape}: get reads staged versions`);
      const merged = Memtable.iteratorOf(mem.shared());
      const seen: number[] = [];
      for (merged.seekToFirst(); merged.valid() && seen.length <= model.entries.length; merged.next()) seen.push(merged.seq());
      assert.deepEqual(seen, model.entries.map((e) => e.seq), `${shape}: merged order`);
    }
  });

  test('the staged-node sort orders versions of one key newest first in whatever order they were added, and keys equal in the radix-sorted bytes by comparison', () => {
    // Straight on a skip list, so versions can be added out of sequence order (a memtable stages
    // a key's versions oldest first, and the sort reverses those runs without comparing).
    const shapes: Record<string, (r: Buffer) => Buffer> = {
      // Short keys: hundreds of versions of a few dozen keys.
      versions: (r) => Buffer.from([0x6b, r[0]! % 40]),
      // Equal in the 8 bytes after the shared prefix but of other lengths: 'ab' and 'ab\0' are not one key.
      zeroPadded: (r) => Buffer.concat([Buffer.from('p:'), Buffer.from([r[0]! % 3]), Buffer.alloc(r[1]! % 4)]),
      // Longer than the sorted bytes, equal in them: compared further on.
      longTails: (r) => Buffer.concat([Buffer.from('prefix-12345678'), Buffer.from([r[0]! % 2, r[1]! % 2])]),
      // Equal in the first 8 bytes after the shared prefix, then in the next 8, then not: sorted a level deeper each time.
      deep: (r) => Buffer.concat([Buffer.from([r[0]! % 2]), Buffer.alloc(7, 1), Buffer.from([r[1]! % 2]), Buffer.alloc(7, 2), r]),
      // Versions of a few keys longer than 16 bytes.
      longVersions: (r) => Buffer.from(`a-key-longer-than-sixteen-bytes-${r[0]! % 3}`),
    };
    for (const [shape, makeKey] of Object.entries(shapes)) {
      for (const seqOrder of ['ascending', 'shuffled']) {
        const list = new SkipList();
        const seqs = Array.from({ length: 1500 }, (_, i) => i + 1);
        if (seqOrder === 'shuffled') for (let i = seqs.length - 1; i > 0; i--) {
          const j = randomBytes(4).readUInt32BE(0) % (i + 1);
          [seqs[i], seqs[j]] = [seqs[j]!, seqs[i]!];
        }
        const entries = seqs.map((seq) => ({ key: makeKey(randomBytes(2)), seq }));
        const ids = unlinkedNodes(list, entries);
        const sorted = sortNodes(list, ids, ids.length);
        const got = [...sorted].map((n) => `${list.keyOf(n).toString('hex')}@${list.seqOf(n)}`);
        assert.deepEqual(got, inInternalOrder(entries).map((e) => `${e.key.toString('hex')}@${e.seq}`), `${shape}, sequence numbers ${seqOrder}`);
      }
    }
  });

  test('the staged-node sort compares few nodes, whatever the keys: one stray key of another prefix, versions of long keys', () => {
    const shapes: Record<string, (i: number, r: Buffer) => Buffer> = {
      // The server's record keys beside its stats record: no prefix is shared by every key.
      strayKey: (i, r) => (i === 7 ? Buffer.from('\x00stats') : Buffer.from(`kkey:${String(r.readUInt32BE(0) % 3000).padStart(12, '0')}`)),
      longVersions: (_i, r) => Buffer.from(`tenant/0042/users/profile/${r.readUInt16BE(0) % 2000}`),
      random: (_i, r) => r,
    };
    for (const [shape, makeKey] of Object.entries(shapes)) {
      const list = new SkipList();
      const entries = Array.from({ length: 20_000 }, (_, i) => ({ key: makeKey(i + 1, randomBytes(8)), seq: i + 1 }));
      const ids = unlinkedNodes(list, entries);
      let comparisons = 0;
      const compareNodes = list.compareNodes.bind(list);
      list.compareNodes = (a: number, b: number): number => {
        comparisons++;
        return compareNodes(a, b);
      };
      const sorted = sortNodes(list, ids, ids.length);
      assert.deepEqual([...sorted].map((n) => list.seqOf(n)), inInternalOrder(entries).map((e) => e.seq), `${shape}: order`);
      assert.ok(comparisons < ids.length / 10, `${shape}: ${comparisons} comparisons for ${ids.length} nodes`);
    }
  });

  test('an iterator links the staged nodes: every entry, in order, and nothing staged after', () => {
    const mem = new Memtable();
    for (let i = 1; i <= 2000; i++) mem.add(i, ValueKind.Value, randomBytes(8), Buffer.from('v'));
    assert.ok(mem.stagedEntries > 0);
    const it = mem.iterator();
    assert.equal(mem.stagedEntries, 0);
    let n = 0;
    let last: Buffer | undefined;
    for (it.seekToFirst(); it.valid() && n <= 2000; it.next(), n++) {
      if (last) assert.ok(Buffer.compare(last, it.userKey()) < 0);
      last = it.userKey();
    }
    assert.equal(n, 2000);
  });

  test('keys added from ranges of a larger buffer sort, hash and read back as the same keys added whole', () => {
    // Long keys sharing their first 16 bytes (compared past the abbreviated key), short ones, and versions.
    const keys = [
      ...Array.from({ length: 40 }, (_, i) => Buffer.from(`shared-prefix-16-${String(i * 7919 % 1000).padStart(4, '0')}-tail`)),
      ...Array.from({ length: 20 }, (_, i) => Buffer.from(`k${i}`)),
    ];
    const whole = new Memtable();
    const ranged = new Memtable();
    let seq = 0;
    for (let round = 0; round < 2; round++) {
      for (const [i, key] of keys.entries()) {
        seq++;
        const value = Buffer.from(`v${round}-${i}`);
        whole.add(seq, ValueKind.Value, key, value);
        const batch = Buffer.concat([randomBytes(5 + (i % 7)), key, randomBytes(4), value]);
        const keyOff = batch.length - value.length - 4 - key.length;
        ranged.addAt(seq, ValueKind.Value, batch, keyOff, key.length, batch, batch.length - value.length, value.length);
        batch.fill(0);
      }
    }
    const entries = (m: Memtable): string[] => {
      const out: string[] = [];
      const it = m.iterator();
      for (it.seekToFirst(); it.valid(); it.next()) out.push(`${it.userKey().toString()}@${it.seq()}=${it.value().toString()}`);
      return out;
    };
    assert.deepEqual(entries(ranged), entries(whole));
    const sorted = [...keys].sort(Buffer.compare).map((k) => k.toString());
    assert.deepEqual([...new Set(entries(ranged).map((e) => e.slice(0, e.indexOf('@'))))], sorted, 'key order');
    for (const key of keys) {
      assert.ok(ranged.mayContainHash(bloomHash(key)), `the filter holds ${key.toString()}`);
      assert.equal(ranged.get(key, seq)?.value.toString(), whole.get(key, seq)?.value.toString());
    }
  });

  test('seekForPrev to an exact entry lands on it; seeks between versions land on the right version', () => {
    const mem = new Memtable();
    const k = Buffer.from('key');
    for (const seq of [10, 20, 30]) mem.add(seq, ValueKind.Value, k, Buffer.from(`v${seq}`));
    const it = mem.iterator();
    it.seekForPrev(k, 20);
    assert.equal(it.seq(), 20);
    it.seekForPrev(k, 25);
    assert.equal(it.seq(), 30, 'the entry before (key, 25) in internal order is the newer version');
    it.seek(k, 25);
    assert.equal(it.seq(), 20);
    it.seek(k, 5);
    assert.equal(it.valid(), false);
    it.seekForPrev(k, 35);
    assert.equal(it.valid(), false);
  });

  test('keys and values are copied: callers may reuse their buffers', () => {
    const mem = new Memtable();
    const key = Buffer.from('abcdefghijklmnopqrstuvwxyz');
    const value = Buffer.from('value-bytes');
    mem.add(1, ValueKind.Value, key, value);
    key.fill(0);
    value.fill(0);
    assert.equal(mem.get(Buffer.from('abcdefghijklmnopqrstuvwxyz'), 1)?.value.toString(), 'value-bytes');
    assert.equal(mem.get(key, 1), undefined);
    const it = mem.iterator();
    it.seekToFirst();
    assert.equal(it.userKey().toString(), 'abcdefghijklmnopqrstuvwxyz');
  });

  test('buffers returned earlier stay valid as the memtable grows', () => {
    const mem = new Memtable();
    const first = Buffer.from('first-key-with-some-length');
    mem.add(1, ValueKind.Value, first, Buffer.from('first-value'));
    const it = mem.iterator();
    it.seekToFirst();
    const key = it.userKey();
    const value = mem.get(first, 1)!.value;
    // Enough to grow every internal array and the key arena several times over.
    for (let i = 2; i < 20_000; i++) mem.add(i, ValueKind.Value, randomBytes(40), randomBytes(8));
    assert.equal(key.toString(), 'first-key-with-some-length');
    assert.equal(value.toString(), 'first-value');
    assert.equal(mem.get(first, 1)!.value.toString(), 'first-value');
  });

  test('large entries, many entries and long keys survive arena growth intact', () => {
    const mem = new Memtable();
    const model = new Model();
    for (let i = 1; i <= 4000; i++) {
      const key = randomBytes(i % 50 === 0 ? 1000 + (i % 7) : 1 + (i % 30));
      const value = randomBytes(i % 500 === 0 ? 100_000 + i : i % 120);
      mem.add(i, ValueKind.Value, key, value);
      model.add({ key, seq: i, kind: ValueKind.Value, value });
    }
    const it = mem.iterator();
    it.seekToFirst();
    for (const e of model.entries) {
      assertAt(it, e, `seq ${e.seq}`);
      it.next();
    }
    assert.equal(it.valid(), false);
  });

  test('shared with a worker thread, the skip list is read there in place: same entries, same order, no copy', async () => {
    const mem = new Memtable();
    const model = new Model();
    for (let i = 1; i <= 3000; i++) {
      const key = randomBytes(i % 40 === 0 ? 600 : 1 + (i % 24));
      const kind = i % 11 === 0 ? ValueKind.Deletion : ValueKind.Value;
      const value = kind === ValueKind.Deletion ? Buffer.alloc(0) : randomBytes(i % 300 === 0 ? 80_000 : i % 90);
      mem.add(i, kind, key, value);
      model.add({ key, seq: i, kind, value });
    }
    const shared = mem.shared();
    // Posting shares SharedArrayBuffers and copies everything else: every part must be shared.
    for (const [name, part] of Object.entries(shared)) {
      const views = Array.isArray(part) ? (part as Uint8Array[]) : ArrayBuffer.isView(part) ? [part] : [];
      for (const v of views) assert.ok(v.buffer instanceof SharedArrayBuffer, `${name} is in shared memory`);
    }
    // The worker iterates with the same code the background flush uses, and writes a marker into
    // the first value's bytes: seen here, it proves the memory was shared, not copied.
    const workerCode = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.memtableUrl).then(({ Memtable }) => {
        const it = Memtable.iteratorOf(workerData.shared);
        const out = [];
        for (it.seekToFirst(); it.valid(); it.next()) out.push([Buffer.from(it.userKey()).toString('hex'), it.seq(), it.kind(), Buffer.from(it.value()).toString('hex')]);
        it.seekToFirst();
        while (it.valid() && it.value().length === 0) it.next();
        it.value()[0] ^= 0xff;
        parentPort.postMessage(out);
      });
    `;
    const { Worker } = await import('node:worker_threads');
    const memtableUrl = new URL('../src/engine/memtable.js', import.meta.url).href;
    const worker = new Worker(workerCode, { eval: true, workerData: { shared, memtableUrl } });
    const seen = await new Promise<Array<[string, number, number, string]>>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    assert.deepEqual(
      seen,
      model.entries.map((e) => [e.key.toString('hex'), e.seq, e.kind, e.value.toString('hex')]),
    );
    const it = mem.iterator();
    it.seekToFirst();
    while (it.valid() && it.value().length === 0) it.next();
    const first = model.entries.find((e) => e.value.length > 0)!;
    assert.equal(it.value()[0], first.value[0]! ^ 0xff, 'the worker wrote into the same memory');
  });

  test('counts entries and approximate bytes (keys, values and a per-entry overhead)', () => {
    const mem = new Memtable();
    assert.equal(mem.entries, 0);
    assert.equal(mem.approximateBytes, 0);
    mem.add(1, ValueKind.Value, Buffer.from('abc'), Buffer.alloc(100));
    mem.add(2, ValueKind.Deletion, Buffer.from('abc'), Buffer.alloc(100));
    assert.equal(mem.entries, 2);
    assert.equal(mem.approximateBytes, 3 + 100 + 3 + 2 * ENTRY_OVERHEAD_BYTES, 'a deletion stores no value');
    assert.equal(mem.get(Buffer.from('abc'), 2)?.value.length, 0);
  });

  test('adding the same (key, seq) twice is refused', () => {
    const mem = new Memtable();
    mem.add(7, ValueKind.Value, Buffer.from('k'), Buffer.from('a'));
    assert.throws(() => mem.add(7, ValueKind.Deletion, Buffer.from('k'), Buffer.alloc(0)), RangeError);
    assert.equal(mem.entries, 1);
    mem.add(7, ValueKind.Value, Buffer.from('k2'), Buffer.from('b'));
    assert.equal(mem.entries, 2);
  });

  test('an unpositioned iterator refuses to read', () => {
    const it = new Memtable().iterator();
    it.seekToFirst();
    assert.equal(it.valid(), false);
    assert.throws(() => it.userKey(), RangeError);
    assert.throws(() => it.next(), RangeError);
  });
});
