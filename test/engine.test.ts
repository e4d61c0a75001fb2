import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { cleanup, expectCode, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { abandon, b, collect, openTestDb, type TestDb } from './support/engine-helpers.js';
import type { Snapshot } from '../src/engine/types.js';
import { STAGED_LINK_BOUND } from '../src/engine/memtable.js';

let root: string;
let keyPath: string;

before(async () => {
  root = await tempDir('tdekv-engine-');
  keyPath = (await writeKeyFile(root)).path;
});
after(() => cleanup(root));

async function fresh(name: string): Promise<{ dir: string; open: () => Promise<TestDb> }> {
  const dir = `${root}/${name}`;
  return { dir, open: () => openTestDb(dir, keyPath) };
}

describe('engine basics', () => {
  test('put, get, overwrite, delete, empty values and binary keys', async () => {
    const { open } = await fresh('basics');
    const db = await open();
    try {
      await db.engine.put(b('a'), b('1'));
      await db.engine.put(b('b'), b(''));
      await db.engine.put(Buffer.from([0, 255, 0]), b('bin'));
      await db.engine.put(b('a'), b('2'));
      await db.engine.del(b('c'));
      assert.equal(db.engine.getSync(b('a'))?.toString(), '2');
      assert.equal(db.engine.getSync(b('b'))?.length, 0);
      assert.equal(db.engine.getSync(Buffer.from([0, 255, 0]))?.toString(), 'bin');
      assert.equal(db.engine.getSync(b('c')), undefined);
      await db.engine.del(b('a'));
      assert.equal(db.engine.getSync(b('a')), undefined);
      assert.equal((await db.engine.get(b('b')))?.length, 0);
    } finally {
      await db.close();
    }
  });

  test('returned buffers are copies: changing them does not change the database', async () => {
    const { open } = await fresh('copies');
    const db = await open();
    try {
      await db.engine.put(b('k'), b('value'));
      db.engine.getSync(b('k'))!.fill(0);
      const it = db.engine.iterator();
      const [k, v] = it.next()!;
      k.fill(0);
      v.fill(0);
      it.close();
      assert.equal(db.engine.getSync(b('k'))?.toString(), 'value');
      await db.engine.flush();
      db.engine.getSync(b('k'))!.fill(0);
      assert.equal(db.engine.getSync(b('k'))?.toString(), 'value');
    } finally {
      await db.close();
    }
  });

  test('writes survive reopen from the WAL, from tables, and after compaction', async () => {
    const { open } = await fresh('reopen');
    let db = await open();
    for (let i = 0; i < 2000; i++) await db.engine.put(b(`key${String(i).padStart(5, '0')}`), b(`value${i}`.repeat(5)));
    for (let i = 0; i < 2000; i += 3) await db.engine.del(b(`key${String(i).padStart(5, '0')}`));
    // Abandoned as a crash leaves it: the WAL is replayed.
    await abandon(db);
    db = await open();
    const check = (d: TestDb): void => {
      for (let i = 0; i < 2000; i++) {
        const v = d.engine.getSync(b(`key${String(i).padStart(5, '0')}`));
        assert.equal(v?.toString(), i % 3 === 0 ? undefined : `value${i}`.repeat(5), `key ${i}`);
      }
    };
    check(db);
    await db.engine.compactRange();
    check(db);
    await db.close();
    db = await open();
    check(db);
    assert.ok(db.engine.liveTables().length > 0, 'data is in tables');
    await db.close();
  });

  test('a caller may reuse its buffers once write() has returned', async () => {
    const { open } = await fresh('reuse');
    let db = await open();
    const key = b('a');
    const value = b('first');
    const p = db.engine.write([{ type: 'put', key, value }]);
    value.fill(0x58);
    key.fill(0x59);
    await p;
    assert.equal(db.engine.getSync(b('a'))?.toString(), 'first');
    await abandon(db);
    db = await open();
    assert.equal(db.engine.getSync(b('a'))?.toString(), 'first', 'the WAL holds the original bytes too');
    await db.close();
  });

  test('atomic batches: later operations on a key win, and the whole batch is visible at once', async () => {
    const { open } = await fresh('batch');
    const db = await open();
    try {
      const snap = db.engine.snapshot();
      await db.engine.write([
        { type: 'put', key: b('x'), value: b('1') },
        { type: 'put', key: b('y'), value: b('2') },
        { type: 'del', key: b('x') },
        { type: 'put', key: b('z'), value: b('3') },
        { type: 'put', key: b('z'), value: b('4') },
      ]);
      assert.deepEqual(collect(db.engine.iterator()), [
        ['y', '2'],
        ['z', '4'],
      ]);
      assert.deepEqual(collect(db.engine.iterator({ snapshot: snap })), []);
      snap.release();
    } finally {
      await db.close();
    }
  });

  test('concurrent writers are group-committed and all acknowledged writes are present', async () => {
    const { open } = await fresh('group');
    let db = await open();
    await Promise.all(Array.from({ length: 300 }, (_, i) => db.engine.put(b(`g${i}`), b(`v${i}`), { sync: i % 2 === 0 })));
    await abandon(db);
    db = await open();
    for (let i = 0; i < 300; i++) assert.equal(db.engine.getSync(b(`g${i}`))?.toString(), `v${i}`);
    await db.close();
  });

  test('close() called twice at once closes once, after flushing the memtable', async () => {
    const { open } = await fresh('double-close');
    let db = await open();
    await db.engine.put(b('k'), b('v'));
    await Promise.all([db.engine.close(), db.engine.close()]);
    await db.managed.close();
    db = await open();
    assert.equal(db.engine.getSync(b('k'))?.toString(), 'v');
    assert.ok(db.engine.liveTables().length > 0, 'the memtable was flushed at close');
    await db.close();
  });

  test('bad arguments are refused with INVALID_ARGUMENT; a closed engine with CLOSED', async () => {
    const { open } = await fresh('args');
    const db = await open();
    await assert.rejects(db.engine.write([{ type: 'put', key: 'str' as unknown as Buffer, value: b('v') }]), expectCode('INVALID_ARGUMENT'));
    await assert.rejects(db.engine.write([{ type: 'put', key: b('k'), value: 5 as unknown as Buffer }]), expectCode('INVALID_ARGUMENT'));
    await assert.rejects(db.engine.write([{ type: 'merge', key: b('k') } as unknown as { type: 'del'; key: Buffer }]), expectCode('INVALID_ARGUMENT'));
    await assert.rejects(db.engine.write([{ type: 'del', key: null as unknown as Buffer }]), expectCode('INVALID_ARGUMENT'));
    await assert.rejects(db.engine.write([{ type: 'put', key: b('k'), value: undefined as unknown as Buffer }]), expectCode('INVALID_ARGUMENT'));
    // A bad op anywhere refuses the whole write: the good ops before it are not applied either.
    await assert.rejects(
      db.engine.write([{ type: 'put', key: b('before-bad'), value: b('v') }, { type: 'put', key: b('k'), value: null as unknown as Buffer }]),
      expectCode('INVALID_ARGUMENT'),
    );
    assert.equal(db.engine.getSync(b('before-bad')), undefined);
    await db.close();
    await assert.rejects(db.engine.put(b('k'), b('v')), expectCode('CLOSED'));
    assert.throws(() => db.engine.getSync(b('k')), /closed/);
  });

  test('a lot of data goes through flushes and compactions into deeper levels and stays readable', async () => {
    const { open } = await fresh('levels');
    const db = await open();
    try {
      const value = Buffer.alloc(200, 7);
      for (let batch = 0; batch < 40; batch++) {
        const ops = [];
        for (let i = 0; i < 100; i++) {
          const n = (batch * 100 + i) * 7919 % 4000;
          ops.push({ type: 'put' as const, key: b(`k${String(n).padStart(6, '0')}`), value: Buffer.concat([b(`${n}:`), value]) });
        }
        await db.engine.write(ops);
      }
      await db.engine.waitForBackgroundWork();
      const stats = db.engine.stats();
      assert.ok(stats.flushes > 3, `flushes: ${stats.flushes}`);
      assert.ok(stats.compactions > 0, `compactions: ${stats.compactions}`);
      assert.ok(stats.levels.slice(1).some((l) => l.files > 0), 'some data below level 0');
      for (let n = 0; n < 4000; n++) {
        assert.ok(db.engine.getSync(b(`k${String(n).padStart(6, '0')}`))?.toString().startsWith(`${n}:`), `key ${n}`);
      }
      const all = collect(db.engine.iterator());
      assert.equal(all.length, 4000);
      assert.deepEqual(all.map(([k]) => k), [...all.map(([k]) => k)].sort());
    } finally {
      await db.close();
    }
  });

  test('an iterator keeps reading its snapshot while writes, flushes and compactions go on', async () => {
    const { open } = await fresh('iter-snapshot');
    const db = await open();
    try {
      for (let i = 0; i < 500; i++) await db.engine.put(b(`k${String(i).padStart(4, '0')}`), b(`old${i}`));
      await db.engine.flush();
      const it = db.engine.iterator();
      const firstHalf: string[] = [];
      for (let i = 0; i < 250; i++) firstHalf.push(it.next()![1].toString());
      for (let i = 0; i < 500; i++) await db.engine.put(b(`k${String(i).padStart(4, '0')}`), b(`new${i}`.repeat(20)));
      for (let i = 0; i < 500; i += 2) await db.engine.del(b(`k${String(i).padStart(4, '0')}`));
      await db.engine.compactRange();
      const rest: string[] = [];
      for (let e = it.next(); e; e = it.next()) rest.push(e[1].toString());
      it.close();
      assert.deepEqual([...firstHalf, ...rest], Array.from({ length: 500 }, (_, i) => `old${i}`));
    } finally {
      await db.close();
    }
  });
});

describe('staged keys', () => {
  test('until the database is first iterated new keys stay staged; after, they are linked in bounded batches, also in later memtables', async () => {
    const dir = `${root}/staged`;
    const db = await openTestDb(dir, keyPath, { tuning: { writeBufferSize: 8 * 1024 * 1024 } });
    const bound = STAGED_LINK_BOUND;
    const write = async (from: number, count: number): Promise<number> => {
      let most = 0;
      for (let i = from; i < from + count; i += 500) {
        const ops = [];
        for (let j = i; j < Math.min(i + 500, from + count); j++) ops.push({ type: 'put' as const, key: b(`k${String(j * 7919 % 1_000_003).padStart(7, '0')}`), value: b('v') });
        await db.engine.write(ops);
        most = Math.max(most, db.engine.stagedEntriesForTests());
      }
      return most;
    };
    try {
      assert.ok((await write(0, 3 * bound)) >= 3 * bound - 500, 'a write-only load leaves every new key staged');
      const it = db.engine.iterator();
      let n = 0;
      for (let e = it.next(); e; e = it.next()) n++;
      it.close();
      assert.equal(n, 3 * bound, 'the iterator saw every key');
      assert.equal(db.engine.stagedEntriesForTests(), 0, 'the iterator linked them');
      assert.ok((await write(3 * bound, 3 * bound)) < bound, 'after an iterator, never a bound or more staged');
      await db.engine.flush();
      assert.ok((await write(6 * bound, 2 * bound)) < bound, 'in the next memtable too');
      assert.equal(collect(db.engine.iterator()).length, 8 * bound);
    } finally {
      await db.close();
    }
  });
});

type Op =
  | { t: 'put'; k: number; v: string }
  | { t: 'del'; k: number }
  | { t: 'batch'; ops: Array<{ k: number; v: string | null }> }
  | { t: 'flush' }
  | { t: 'compact'; lo: number | null; hi: number | null }
  | { t: 'snapshot' }
  | { t: 'reopen' };

const keyOf = (k: number): Buffer => (k % 7 === 0 ? Buffer.from([k, 0, 255]) : b(`key-${String(k).padStart(3, '0')}`));

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ t: fc.constant('put' as const), k: fc.nat(60), v: fc.string({ maxLength: 300 }) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('del' as const), k: fc.nat(60) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('batch' as const), ops: fc.array(fc.record({ k: fc.nat(60), v: fc.option(fc.string({ maxLength: 50 })) }), { maxLength: 20 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'flush' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('compact' as const), lo: fc.option(fc.nat(60)), hi: fc.option(fc.nat(60)) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'snapshot' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'reopen' as const }) },
);

function sortedEntries(model: Map<string, string>): Array<[string, string]> {
  return [...model.entries()].sort(([a], [c]) => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(c, 'latin1')));
}

describe('flush drops hidden versions', () => {
  test('a flush writes only the newest version of a key, except versions a snapshot still reads', async () => {
    const { open } = await fresh('flush-dedupe');
    const db = await open();
    try {
      for (let i = 0; i < 50; i++) await db.engine.put(b('hot'), b(`v${i}`.padEnd(200, '.')));
      await db.engine.put(b('held'), b('old'));
      const snap = db.engine.snapshot();
      await db.engine.put(b('held'), b('new'));
      await db.engine.put(b('held'), b('newer'));
      await db.engine.flush();
      assert.equal(db.engine.getSync(b('hot'))?.toString(), 'v49'.padEnd(200, '.'));
      assert.equal(db.engine.getSync(b('held'), { snapshot: snap })?.toString(), 'old', 'the version the snapshot reads was kept');
      assert.equal(db.engine.getSync(b('held'))?.toString(), 'newer');
      const table = db.engine.liveTables()[0]!;
      assert.equal(collect(db.engine.iterator()).length, 2);
      // 50 versions of `hot` are 10 KB of values; one is 200 bytes.
      assert.ok(table.size < 2048, `the flushed table holds one version of hot (${table.size} bytes)`);
      snap.release();
    } finally {
      await db.close();
    }
  });
});

describe('engine against a model', () => {
  test('gets, iterators (both directions, ranges, limits, seeks) and snapshots match a sorted map', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 120 }), fc.array(fc.tuple(fc.option(fc.nat(62)), fc.option(fc.nat(62)), fc.boolean(), fc.boolean(), fc.boolean(), fc.integer({ min: -1, max: 10 })), { maxLength: 12 }), async (ops, ranges) => {
        const { open } = await fresh(`model-${run++}`);
        let db = await open();
        const model = new Map<string, string>();
        const snaps: Array<{ snap: Snapshot; model: Map<string, string> }> = [];
        try {
          for (const op of ops) {
            switch (op.t) {
              case 'put':
                await db.engine.put(keyOf(op.k), b(op.v));
                model.set(keyOf(op.k).toString('latin1'), b(op.v).toString('latin1'));
                break;
              case 'del':
                await db.engine.del(keyOf(op.k));
                model.delete(keyOf(op.k).toString('latin1'));
                break;
              case 'batch':
                await db.engine.write(op.ops.map((o) => (o.v === null ? { type: 'del' as const, key: keyOf(o.k) } : { type: 'put' as const, key: keyOf(o.k), value: b(o.v) })));
                for (const o of op.ops) {
                  if (o.v === null) model.delete(keyOf(o.k).toString('latin1'));
                  else model.set(keyOf(o.k).toString('latin1'), b(o.v).toString('latin1'));
                }
                break;
              case 'flush':
                await db.engine.flush();
                break;
              case 'compact':
                await db.engine.compactRange(op.lo === null ? undefined : keyOf(op.lo), op.hi === null ? undefined : keyOf(op.hi));
                break;
              case 'snapshot':
                snaps.push({ snap: db.engine.snapshot(), model: new Map(model) });
                break;
              case 'reopen':
                for (const s of snaps) s.snap.release();
                snaps.length = 0;
                await db.close();
                db = await open();
                break;
            }
          }
          for (let k = 0; k <= 62; k++) assert.equal(db.engine.getSync(keyOf(k))?.toString('latin1'), model.get(keyOf(k).toString('latin1')), `get ${k}`);
          const expected = sortedEntries(model);
          assert.deepEqual(collect(db.engine.iterator()), expected);
          assert.deepEqual(collect(db.engine.iterator({ reverse: true })), [...expected].reverse());
          for (const [lo, hi, loIncl, hiIncl, reverse, limit] of ranges) {
            const opts: Record<string, unknown> = { reverse, limit };
            if (lo !== null) opts[loIncl ? 'gte' : 'gt'] = keyOf(lo);
            if (hi !== null) opts[hiIncl ? 'lte' : 'lt'] = keyOf(hi);
            let want = expected.filter(([k]) => {
              const kb = Buffer.from(k, 'latin1');
              if (lo !== null && (loIncl ? Buffer.compare(kb, keyOf(lo)) < 0 : Buffer.compare(kb, keyOf(lo)) <= 0)) return false;
              if (hi !== null && (hiIncl ? Buffer.compare(kb, keyOf(hi)) > 0 : Buffer.compare(kb, keyOf(hi)) >= 0)) return false;
              return true;
            });
            if (reverse) want = want.reverse();
            if (limit >= 0) want = want.slice(0, limit);
            assert.deepEqual(collect(db.engine.iterator(opts)), want, `range ${JSON.stringify(opts)}`);
            // seek: to a random key, then continue in the iterator's direction within the range
            const target = keyOf(((lo ?? 0) * 31 + (hi ?? 5)) % 63);
            const it = db.engine.iterator({ ...opts, limit: -1 });
            it.seek(target);
            const afterSeek = collect(it);
            const wantSeek = want.length === 0 && limit === 0 ? afterSeek : (reverse ? [...expected].reverse() : expected).filter(([k]) => {
              const kb = Buffer.from(k, 'latin1');
              const inRange = (lo === null || (loIncl ? Buffer.compare(kb, keyOf(lo)) >= 0 : Buffer.compare(kb, keyOf(lo)) > 0)) && (hi === null || (hiIncl ? Buffer.compare(kb, keyOf(hi)) <= 0 : Buffer.compare(kb, keyOf(hi)) < 0));
              return inRange && (reverse ? Buffer.compare(kb, target) <= 0 : Buffer.compare(kb, target) >= 0);
            });
            assert.deepEqual(afterSeek, wantSeek, `seek ${target.toString('latin1')} in ${JSON.stringify(opts)}`);
          }
          for (const s of snaps) {
            assert.deepEqual(collect(db.engine.iterator({ snapshot: s.snap })), sortedEntries(s.model), 'snapshot iterator');
            for (let k = 0; k <= 62; k += 5) assert.equal(db.engine.getSync(keyOf(k), { snapshot: s.snap })?.toString('latin1'), s.model.get(keyOf(k).toString('latin1')), `snapshot get ${k}`);
          }
        } finally {
          for (const s of snaps) s.snap.release();
          await db.close();
        }
      }),
      { numRuns: Number(process.env["TDEKV_MODEL_RUNS"] ?? 25) },
    );
  });
});
