/**
 * A flushed memtable's arrays are handed to the next memtable (MemtableMemory): memory that is
 * already faulted in. What must hold: a memtable built on them answers exactly as a fresh one
 * (nothing of the old entries shows through), a memtable is not given up while an iterator
 * over it is open, a retired one refuses to be read, and the engine keeps every read right
 * across many flushes that reuse memory, with and without the worker thread.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import { ValueKind } from '../src/engine/internal-key.js';
import { Memtable } from '../src/engine/memtable.js';
import type { MemtableIterator } from '../src/engine/memtable-iterator.js';
import { b, collect, openTestDb, SMALL_TUNING } from './support/engine-helpers.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

type Op = { key: Buffer; value: Buffer | null };

/** Short keys that collide on prefixes, keys past the 16 abbreviated bytes, and values from empty to past a quarter slab (their own allocation). */
const opArb: fc.Arbitrary<Op> = fc.record({
  key: fc.oneof(fc.constantFrom('a', 'ab', 'b', 'k1', 'k2'), fc.string({ minLength: 0, maxLength: 30 })).map((s) => Buffer.from(s)),
  value: fc.oneof(
    { weight: 1, arbitrary: fc.constant(null) },
    { weight: 6, arbitrary: fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)) },
    { weight: 1, arbitrary: fc.integer({ min: 64 * 1024 + 1, max: 80 * 1024 }).map((n) => Buffer.alloc(n, n & 0xff)) },
  ),
});

/** Identity of two arrays, asserted as a boolean: a failing assert.equal would print both, megabytes each. */
function same(a: object, b: object, message = 'the same array'): void {
  assert.ok(a === b, message);
}

function different(a: object, b: object, message = 'another array'): void {
  assert.ok(a !== b, message);
}

function apply(m: Memtable, ops: Op[], firstSeq: number): number {
  let seq = firstSeq;
  for (const op of ops) {
    if (op.value === null) m.add(seq++, ValueKind.Deletion, op.key, Buffer.alloc(0));
    else m.add(seq++, ValueKind.Value, op.key, op.value);
  }
  return seq;
}

function entries(m: Memtable): Array<[string, number, number, string]> {
  const it = m.iterator();
  const out: Array<[string, number, number, string]> = [];
  for (it.seekToFirst(); it.valid(); it.next()) out.push([it.userKey().toString('hex'), it.seq(), it.kind(), it.value().toString('hex')]);
  it.close();
  return out;
}

describe('memtable memory reuse', () => {
  test('a memtable built on a retired one answers exactly as a fresh one, over every key either saw', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 300 }), fc.array(opArb, { maxLength: 300 }), fc.boolean(), (first, second, shared) => {
        const old = new Memtable();
        const next = apply(old, first, 1);
        // The worker's flush shares the list first; either way the memory comes back.
        if (shared) old.shared();
        const like = old.sizes;
        const memory = old.retire();
        assert.ok(memory, 'no iterator is open: the memory is given up');
        const reused = new Memtable({ like, memory });
        const fresh = new Memtable({ like });
        apply(reused, second, next);
        apply(fresh, second, next);
        assert.deepEqual(entries(reused), entries(fresh));
        const top = next + second.length;
        for (const { key } of [...first, ...second]) {
          for (const seq of [top, next, next + (second.length >> 1)]) {
            const r = reused.get(key, seq);
            const f = fresh.get(key, seq);
            assert.deepEqual(r && { kind: r.kind, seq: r.seq, value: r.value.toString('hex') }, f && { kind: f.kind, seq: f.seq, value: f.value.toString('hex') });
          }
        }
        assert.equal(reused.approximateBytes, fresh.approximateBytes);
        assert.equal(reused.distinctKeys, fresh.distinctKeys);
      }),
      { numRuns: 150 },
    );
  });

  test('the arrays are the retired memtable\'s own, used again (not copies or fresh ones)', () => {
    const old = new Memtable();
    for (let i = 0; i < 5000; i++) old.add(i + 1, ValueKind.Value, Buffer.from(`key-${i}`), Buffer.alloc(100, i & 0xff));
    const like = old.sizes;
    const memory = old.retire()!;
    assert.ok(memory.slabs.length > 0, 'value slabs are kept');
    const reused = new Memtable({ like, memory });
    for (let i = 0; i < 5000; i++) reused.add(10_000 + i, ValueKind.Value, Buffer.from(`other-${i}`), Buffer.alloc(100, 7));
    const again = reused.retire()!;
    same(again.links, memory.links);
    same(again.keys, memory.keys);
    same(again.index, memory.index);
    same(again.filter, memory.filter);
    same(again.staged, memory.staged);
    for (const slab of memory.slabs) assert.ok(again.slabs.includes(slab), 'every slab taken back');
  });

  test('a memtable is not given up while an iterator over it is open; once it is closed, it is', () => {
    const m = new Memtable();
    m.add(1, ValueKind.Value, b('k'), b('v'));
    const it: MemtableIterator = m.iterator();
    const second = m.iterator();
    second.close();
    second.close(); // closing twice counts once
    assert.equal(m.retire(), undefined, 'an open iterator still reads it');
    it.seekToFirst();
    assert.equal(it.value().toString(), 'v');
    it.close();
    assert.ok(m.retire(), 'no reader left');
    assert.equal(m.retire(), undefined, 'given up once only');
  });

  test('a retired memtable refuses reads and writes rather than answer from memory that is another\'s', () => {
    const m = new Memtable();
    m.add(1, ValueKind.Value, b('k'), b('v'));
    assert.ok(m.retire());
    assert.throws(() => m.get(b('k'), 10), /retired/);
    assert.throws(() => m.iterator(), /retired/);
    assert.throws(() => m.add(2, ValueKind.Value, b('k'), b('w')), RangeError);
  });

  test('a retired array far bigger than asked for is not kept: one huge key must not pin its arena in every later memtable', () => {
    const old = new Memtable();
    old.add(1, ValueKind.Value, Buffer.alloc(4 * 1024 * 1024, 0x6b), b('v'));
    for (let i = 0; i < 100; i++) old.add(2 + i, ValueKind.Value, Buffer.from(`k${i}`), b('v'));
    const memory = old.retire()!;
    assert.ok(memory.keys.length >= 4 * 1024 * 1024);
    // The next memtables hold ordinary keys: they ask for what such a memtable needs.
    const next = new Memtable({ like: { linkWords: 1 << 14, keyBytes: 1 << 16, distinctKeys: 100 }, memory });
    next.add(1000, ValueKind.Value, b('a'), b('1'));
    assert.equal(next.get(b('a'), 1000)?.value.toString(), '1');
    const back = next.retire()!;
    different(back.keys, memory.keys, 'the 4 MiB key arena was left to the GC');
    assert.ok(back.keys.length < 1024 * 1024);
  });

  test('a retired array that is too small is not used', () => {
    const small = new Memtable();
    small.add(1, ValueKind.Value, b('k'), b('v'));
    const memory = small.retire()!;
    // Asked for room for far more than the small memtable had.
    const big = new Memtable({ like: { linkWords: memory.links.length * 8, keyBytes: memory.keys.length * 8, distinctKeys: 1 << 20 }, memory });
    const back = big.retire()!;
    different(back.links, memory.links);
    different(back.keys, memory.keys);
    different(back.index, memory.index);
    same(back.filter, memory.filter, 'the filter has one size');
  });
});

describe('engine: memtables built on flushed ones', () => {
  let root: string;
  let keyPath: string;
  let n = 0;
  before(async () => {
    root = await tempDir('tdekv-memtable-memory-');
    keyPath = (await writeKeyFile(root)).path;
  });
  after(() => cleanup(root));

  for (const backgroundThread of [false, true]) {
    test(`reads stay right across flushes that reuse memory, and an open iterator keeps its memtable (${backgroundThread ? 'worker thread' : 'in-process'})`, { timeout: 120_000 }, async () => {
      const db = await openTestDb(root, keyPath, { dataDir: join(root, `db-${++n}`), backgroundThread, tuning: { ...SMALL_TUNING, level0FileNumCompactionTrigger: 4 } });
      try {
        const { engine } = db;
        const model = new Map<string, string>();
        const write = async (round: number): Promise<void> => {
          const ops = [];
          for (let i = 0; i < 40; i++) {
            const key = `k${(round * 37 + i * 11) % 500}`;
            if ((round + i) % 9 === 0) {
              ops.push({ type: 'del' as const, key: b(key) });
              model.delete(key);
            } else {
              const value = `${key}@${round}`.padEnd(60, String.fromCharCode(97 + (round % 26)));
              ops.push({ type: 'put' as const, key: b(key), value: b(value) });
              model.set(key, value);
            }
          }
          await engine.write(ops);
        };
        for (let round = 0; round < 60; round++) await write(round);
        await engine.waitForBackgroundWork();
        // An iterator over what is there now: its memtables must not be reused under it.
        const frozen = [...model].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
        const it = engine.iterator();
        const head = it.next();
        const reusedBefore = engine.reusedMemtablesForTests();
        for (let round = 60; round < 200; round++) await write(round);
        await engine.waitForBackgroundWork();
        assert.ok(engine.reusedMemtablesForTests() > reusedBefore, 'later memtables were built on flushed ones');
        const rest = collect(it);
        assert.deepEqual([head && [head[0].toString(), head[1].toString()], ...rest], frozen, 'the open iterator reads what was there when it was made');
        for (const [k, v] of model) assert.equal(engine.getSync(b(k))?.toString(), v, k);
        for (let i = 0; i < 500; i++) if (!model.has(`k${i}`)) assert.equal(engine.getSync(b(`k${i}`)), undefined);
        assert.deepEqual(collect(engine.iterator()), [...model].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
      } finally {
        await db.close();
      }
    });
  }
});
