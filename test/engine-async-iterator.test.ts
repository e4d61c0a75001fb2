/**
 * Iterators read a table block that is not in the block cache on the thread pool when asked
 * through nextBatch() (what TdekvLevel's iterators call), as get() does (issue 11 item 3),
 * while next() stays synchronous: the same entries as next() and as a model, in both
 * directions, with ranges, limits and seeks, over every level; no synchronous read of a data
 * block on the way; and close() of the engine waits for a read in flight.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { setFileFaults, type FileOp } from '../src/util/file-io.js';
import { fileOpsDuring } from './support/file-ops.js';
import type { EngineTuning } from '../src/engine/options.js';
import type { EngineIterator, IteratorOptions } from '../src/engine/types.js';
import { DbIterator } from '../src/engine/db-iterator.js';
import { ValueKind } from '../src/engine/internal-key.js';
import type { InternalIterator } from '../src/engine/iterator.js';
import { b, openTestDb, SMALL_TUNING, type TestDb } from './support/engine-helpers.js';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { cleanup, flipByte, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { TdekvLevel } from '../src/level/tdekv-level.js';
import { isTdekvError } from '../src/errors.js';

let root: string;
let keyPath: string;
let n = 0;

before(async () => {
  root = await tempDir('tdekv-async-iter-');
  keyPath = (await writeKeyFile(root)).path;
});
after(async () => {
  setFileFaults(undefined);
  await cleanup(root);
});

/** No block cache: every data block read is a miss. Small tables, so level 1 holds several files. */
const NO_CACHE: Partial<EngineTuning> = { ...SMALL_TUNING, blockCacheSize: 0, maxOpenFiles: 1000 };

function open(tuning: Partial<EngineTuning> = NO_CACHE): Promise<TestDb> {
  return openTestDb(`${root}/db-${++n}`, keyPath, { tuning });
}

const key = (i: number): string => `key:${String(i).padStart(5, '0')}`;
const value = (k: string, round: number): Buffer => Buffer.from(`${k}@${round}`.padEnd(120, '.'));

/**
 * File reads during `fn`. Only tables are read while iterating (their files were opened
 * before, so the seam has no path for them).
 */
async function tableReadsDuring(fn: () => Promise<void>): Promise<FileOp[]> {
  return (await fileOpsDuring(fn)).filter((op) => op === 'readSync' || op === 'pread');
}

function drainSync(it: EngineIterator): string[] {
  const out: string[] = [];
  try {
    for (let e; (e = it.next()) !== undefined; ) out.push(`${e[0].toString()}=${e[1].toString()}`);
  } finally {
    it.close();
  }
  return out;
}

async function drainAsync(it: EngineIterator, batch: number): Promise<string[]> {
  const out: string[] = [];
  try {
    for (;;) {
      const entries = await it.nextBatch(batch);
      assert.ok(entries.length <= batch, 'a batch holds at most what was asked');
      for (const [k, v] of entries) out.push(`${k.toString()}=${v.toString()}`);
      if (entries.length < batch) break;
    }
    assert.deepEqual(await it.nextBatch(batch), [], 'an ended iterator stays ended');
  } finally {
    it.close();
  }
  return out;
}

/** A store with tables on level 0 and on level 1 (several files), overwrites and deletions, nothing in the memtable. */
async function layeredStore(db: TestDb, count: number): Promise<Map<string, string>> {
  const model = new Map<string, string>();
  const keys = Array.from({ length: count }, (_, i) => key(i));
  for (let round = 0; round < 3; round++) {
    const ops = keys.map((k, i) => ((i + round) % 5 === 0 ? { type: 'del' as const, key: b(k) } : { type: 'put' as const, key: b(k), value: value(k, round) }));
    await db.engine.write(ops);
    for (const op of ops) {
      if (op.type === 'del') model.delete(op.key.toString());
      else model.set(op.key.toString(), op.value.toString());
    }
    await db.engine.flush();
    if (round === 1) await db.engine.compactRange();
  }
  await db.engine.waitForBackgroundWork();
  const levels = db.engine.stats().levels;
  assert.ok(levels[0]!.files >= 1, 'tables on level 0');
  assert.ok(levels.slice(1).some((l) => l.files >= 2), `several tables on a deeper level (${levels.map((l) => l.files).join('/')})`);
  return model;
}

function modelEntries(model: Map<string, string>, o: IteratorOptions): string[] {
  const inRange = (k: string): boolean =>
    (o.gte === undefined || k >= o.gte.toString()) &&
    (o.gt === undefined || k > o.gt.toString()) &&
    (o.lte === undefined || k <= o.lte.toString()) &&
    (o.lt === undefined || k < o.lt.toString());
  const keys = [...model.keys()].filter(inRange).sort();
  if (o.reverse === true) keys.reverse();
  const limit = o.limit === undefined || o.limit < 0 ? keys.length : o.limit;
  return keys.slice(0, limit).map((k) => `${k}=${model.get(k)!}`);
}

test('nextBatch reads data blocks on the thread pool, forward, in reverse and after a seek; next() reads them synchronously', async () => {
  const db = await open();
  try {
    const model = await layeredStore(db, 1500);
    // Opens every table (footer, index, filter): opening stays synchronous and is not what this measures.
    const all = drainSync(db.engine.iterator());
    assert.deepEqual(all, modelEntries(model, {}));
    for (const reverse of [false, true]) {
      let got: string[] = [];
      const ops = await tableReadsDuring(async () => {
        got = await drainAsync(db.engine.iterator({ reverse }), 64);
      });
      assert.deepEqual(got, modelEntries(model, { reverse }));
      assert.ok(ops.filter((op) => op === 'pread').length >= 10, `reverse ${reverse}: blocks read on the thread pool (${ops.length} reads)`);
      assert.equal(ops.filter((op) => op === 'readSync').length, 0, `reverse ${reverse}: no data block read on the event loop`);
    }
    // A seek, into the middle of level-1 files, and then a second one further on.
    const sought = await tableReadsDuring(async () => {
      const it = db.engine.iterator();
      try {
        it.seek(b(key(700)));
        const first = await it.nextBatch(3);
        assert.deepEqual(first.map(([k]) => k.toString()), modelEntries(model, { gte: b(key(700)), limit: 3 }).map((e) => e.split('=')[0]));
        it.seek(b(key(1201)));
        const second = await it.nextBatch(2);
        assert.deepEqual(second.map(([k]) => k.toString()), modelEntries(model, { gte: b(key(1201)), limit: 2 }).map((e) => e.split('=')[0]));
      } finally {
        it.close();
      }
    });
    assert.ok(sought.includes('pread') && !sought.includes('readSync'), `seeks read on the thread pool (${sought.join(', ')})`);
    const syncOps = await tableReadsDuring(async () => {
      assert.deepEqual(drainSync(db.engine.iterator({ gte: b(key(100)), lt: b(key(300)) })), modelEntries(model, { gte: b(key(100)), lt: b(key(300)) }));
    });
    assert.ok(syncOps.includes('readSync') && !syncOps.includes('pread'), 'next() reads synchronously');
  } finally {
    await db.close();
  }
});

test('nextBatch opens level files that are not in the table cache on the thread pool too', async () => {
  const dir = `${root}/db-${++n}`;
  let db = await openTestDb(dir, keyPath, { tuning: NO_CACHE });
  let model: Map<string, string>;
  try {
    model = await layeredStore(db, 1500);
    await db.engine.compactRange();
    await db.engine.waitForBackgroundWork();
    assert.equal(db.engine.stats().levels[0]!.files, 0, 'nothing on level 0 (its tables open when an iterator is made)');
  } finally {
    await db.close();
  }
  // Reopened: no table is open.
  db = await openTestDb(dir, keyPath, { tuning: NO_CACHE });
  try {
    assert.ok(db.engine.liveTables().length >= 3, `several tables (${db.engine.liveTables().length})`);
    for (const reverse of [false, true]) {
      let got: string[] = [];
      const ops = await tableReadsDuring(async () => {
        got = await drainAsync(db.engine.iterator({ reverse }), 100);
      });
      assert.deepEqual(got, modelEntries(model, { reverse }));
      assert.equal(ops.filter((op) => op === 'readSync').length, 0, `reverse ${reverse}: no synchronous read, table opens included (${ops.length} reads)`);
    }
  } finally {
    await db.close();
  }
});

test('a table whose metadata was changed on disk, opened on the thread pool, is an error naming it for nextBatch and get(), and nothing is left open', async () => {
  const dir = `${root}/db-${++n}`;
  let db = await openTestDb(dir, keyPath, { tuning: NO_CACHE });
  let damaged: string;
  try {
    await layeredStore(db, 900);
    await db.engine.compactRange();
    await db.engine.waitForBackgroundWork();
    const tables = db.engine.liveTables();
    assert.ok(tables.length >= 2 && tables.every((t) => t.level > 0), 'several tables, none on level 0');
    damaged = tables[tables.length - 1]!.name;
    // A byte of the index block (just before the footer), changed without the key.
    await flipByte(join(db.dataDir, damaged), tables[tables.length - 1]!.size - 60, 0x40);
  } finally {
    await db.close();
  }
  db = await openTestDb(dir, keyPath, { tuning: NO_CACHE });
  try {
    const named = (err: unknown): boolean => isTdekvError(err, 'DATA_CORRUPTED') && err.message.includes(damaged);
    for (const reverse of [false, true]) {
      const it = db.engine.iterator({ reverse });
      try {
        await assert.rejects((async () => {
          while ((await it.nextBatch(100)).length > 0) {
            // drains until the damaged table
          }
        })(), named, `reverse ${reverse}`);
      } finally {
        it.close();
      }
    }
    let failed = 0;
    for (let i = 0; i < 900; i += 7) {
      try {
        await db.engine.get(b(key(i)));
      } catch (err) {
        assert.ok(named(err), String(err));
        failed++;
      }
    }
    assert.ok(failed > 0, 'gets of keys in the damaged table fail');
    // Every failed open closed its descriptor (the reads it started settled first).
    const openOnDamaged = readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).endsWith(damaged);
      } catch {
        return false;
      }
    });
    assert.deepEqual(openOnDamaged, [], 'no descriptor left open on the damaged table');
  } finally {
    await db.close();
  }
});

test('nextBatch answers as next() and a model do: random ranges, directions, limits, batch sizes and seeks over every level', async () => {
  const db = await open({ ...NO_CACHE, blockCacheSize: 4 * 1024 });
  try {
    const count = 1200;
    const model = await layeredStore(db, count);
    // Newer versions in the memtable, some deleted, on top of the tables.
    const fresh = Array.from({ length: count }, (_, i) => i).filter((i) => i % 11 === 3);
    await db.engine.write(fresh.map((i) => (i % 2 === 0 ? { type: 'del' as const, key: b(key(i)) } : { type: 'put' as const, key: b(key(i)), value: value(key(i), 7) })));
    for (const i of fresh) {
      if (i % 2 === 0) model.delete(key(i));
      else model.set(key(i), value(key(i), 7).toString());
    }
    const bound = fc.option(fc.integer({ min: -5, max: count + 5 }), { nil: undefined });
    await fc.assert(
      fc.asyncProperty(
        fc.record({ lower: bound, lowerInclusive: fc.boolean(), upper: bound, upperInclusive: fc.boolean(), reverse: fc.boolean(), limit: fc.integer({ min: -1, max: 40 }), batch: fc.integer({ min: 1, max: 300 }), seekTo: bound }),
        async ({ lower, lowerInclusive, upper, upperInclusive, reverse, limit, batch, seekTo }) => {
          const o: IteratorOptions = { reverse, limit };
          if (lower !== undefined) o[lowerInclusive ? 'gte' : 'gt'] = b(key(lower));
          if (upper !== undefined) o[upperInclusive ? 'lte' : 'lt'] = b(key(upper));
          const expected = modelEntries(model, o);
          assert.deepEqual(drainSync(db.engine.iterator(o)), expected);
          assert.deepEqual(await drainAsync(db.engine.iterator(o), batch), expected);
          if (seekTo !== undefined) {
            // One entry, then a seek: what follows is the range from the target on (in the direction), as next() gives it.
            const target = b(key(seekTo));
            const asyncIt = db.engine.iterator(o);
            const syncIt = db.engine.iterator(o);
            try {
              const a1 = await asyncIt.nextBatch(1);
              const s1 = syncIt.next();
              assert.deepEqual(a1[0]?.map(String), s1?.map(String));
              asyncIt.seek(target);
              syncIt.seek(target);
              const rest = await drainAsync(asyncIt, batch);
              assert.deepEqual(rest, drainSync(syncIt));
            } finally {
              asyncIt.close();
              syncIt.close();
            }
          }
        },
      ),
      { numRuns: 60 },
    );
  } finally {
    await db.close();
  }
});

test('a cursor that asks for a read before every move, whatever was read, cannot keep nextBatch waiting: each move waits a bounded number of times', { timeout: 10_000 }, async () => {
  const keys = Array.from({ length: 50 }, (_, i) => b(key(i)));
  /** A sorted array as a cursor, whose read-ahead questions always answer "wait for this read". */
  class AlwaysReading implements InternalIterator {
    #i = -1;
    asked = 0;
    valid(): boolean {
      return this.#i >= 0 && this.#i < keys.length;
    }
    seekToFirst(): void {
      this.#i = 0;
    }
    seekToLast(): void {
      this.#i = keys.length - 1;
    }
    seek(userKey: Uint8Array): void {
      const i = keys.findIndex((k) => Buffer.compare(k, userKey) >= 0);
      this.#i = i < 0 ? keys.length : i;
    }
    seekForPrev(userKey: Uint8Array): void {
      let i = keys.length - 1;
      while (i >= 0 && Buffer.compare(keys[i]!, userKey) > 0) i--;
      this.#i = i;
    }
    next(): void {
      this.#i++;
    }
    prev(): void {
      this.#i--;
    }
    userKey(): Buffer {
      return keys[this.#i]!;
    }
    seq(): number {
      return 1;
    }
    kind(): ValueKind {
      return ValueKind.Value;
    }
    value(): Buffer {
      return keys[this.#i]!;
    }
    close(): void {}
    // Settled in a later turn, as a read is: a waiting loop without end then fails by the test's timeout instead of spinning.
    readBeforeStep(): Promise<void> {
      this.asked++;
      return new Promise((resolve) => setImmediate(resolve));
    }
    readBeforeSeek(): Promise<void> {
      this.asked++;
      return new Promise((resolve) => setImmediate(resolve));
    }
  }
  for (const reverse of [false, true]) {
    const cursor = new AlwaysReading();
    const it = new DbIterator(cursor, 10, { lowerInclusive: true, upperInclusive: true }, reverse, -1, () => undefined);
    const got: string[] = [];
    for (let batch; (batch = await it.nextBatch(7)).length > 0; ) got.push(...batch.map(([k]) => k.toString()));
    const want = keys.map((k) => k.toString());
    assert.deepEqual(got, reverse ? want.reverse() : want);
    // 50 moves and a seek, each waiting a few times at most.
    assert.ok(cursor.asked > 50 && cursor.asked <= 51 * 4, `asked ${cursor.asked} times`);
  }
});

test('a read that interrupts the skipping of a deleted key resumes the skipping: nextBatch never shows a hidden value', async () => {
  const db = await open();
  try {
    const keys = Array.from({ length: 2000 }, (_, i) => key(i));
    await db.engine.write(keys.map((k) => ({ type: 'put' as const, key: b(k), value: value(k, 1) })));
    await db.engine.compactRange();
    // A newer table of deletions over the values: most moves in it stop on a deletion, and
    // its reads ahead start there.
    await db.engine.write(keys.filter((_, i) => i % 10 !== 0).map((k) => ({ type: 'del' as const, key: b(k) })));
    await db.engine.flush();
    await db.engine.waitForBackgroundWork();
    const live = keys.filter((_, i) => i % 10 === 0).map((k) => `${k}=${value(k, 1).toString()}`);
    for (const batch of [1, 7, 1000]) {
      assert.deepEqual(await drainAsync(db.engine.iterator(), batch), live, `forward, batches of ${batch}`);
      assert.deepEqual(await drainAsync(db.engine.iterator({ reverse: true }), batch), [...live].reverse(), `reverse, batches of ${batch}`);
    }
  } finally {
    await db.close();
  }
});

test('nextBatch reads at the iterator snapshot while writes, flushes and compactions go on between its batches', async () => {
  const db = await open();
  try {
    const model = await layeredStore(db, 800);
    const expected = modelEntries(model, {});
    const it = db.engine.iterator();
    const got: string[] = [];
    for (let round = 0; ; round++) {
      const entries = await it.nextBatch(50);
      for (const [k, v] of entries) got.push(`${k.toString()}=${v.toString()}`);
      if (entries.length < 50) break;
      // Everything rewritten under the iterator: it must still read its snapshot.
      await db.engine.write(Array.from({ length: 800 }, (_, i) => ({ type: 'put' as const, key: b(key(i)), value: value(key(i), 100 + round) })));
      if (round % 3 === 0) await db.engine.compactRange();
    }
    it.close();
    assert.deepEqual(got, expected);
  } finally {
    await db.close();
  }
});

test('next(), seek() or another nextBatch() while a nextBatch() waits for a read is refused, and the waiting batch is unharmed', async () => {
  const db = await open();
  try {
    const model = await layeredStore(db, 600);
    drainSync(db.engine.iterator()); // tables open
    const it = db.engine.iterator();
    try {
      const pending = it.nextBatch(100);
      const busy = (err: unknown): boolean => isTdekvError(err, 'INVALID_ARGUMENT') && /still waiting for a read: await it first/.test(err.message);
      assert.throws(() => it.next(), busy);
      assert.throws(() => it.seek(b(key(10))), busy);
      await assert.rejects(it.nextBatch(1), busy);
      const first = await pending;
      assert.deepEqual(first.map(([k, v]) => `${k.toString()}=${v.toString()}`), modelEntries(model, { limit: 100 }));
      assert.equal(it.next()?.[0].toString(), modelEntries(model, {})[100]!.split('=')[0], 'usable again once it settled');
    } finally {
      it.close();
    }
  } finally {
    await db.close();
  }
});

test('an iterator closed while its read is in flight ends quietly, and engine close() waits for that read', async () => {
  const db = await open();
  await layeredStore(db, 600);
  drainSync(db.engine.iterator()); // tables open
  const it = db.engine.iterator();
  const batch = it.nextBatch(1000);
  // The first block is being read on the thread pool: close both now.
  it.close();
  const closing = db.close();
  const entries = await batch;
  await closing;
  assert.ok(entries.length < 1000, `the batch ended at close (${entries.length} entries)`);
});

test('TdekvLevel iterators read cold blocks on the thread pool', async () => {
  const location = `${root}/level-${++n}`;
  const db = new TdekvLevel(location, { dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path: keyPath }, ...NO_CACHE });
  try {
    await db.open();
    const keys = Array.from({ length: 1200 }, (_, i) => key(i));
    for (let round = 0; round < 3; round++) {
      await db.batch(keys.map((k) => ({ type: 'put' as const, key: k, value: value(k, round).toString() })));
    }
    // Everything in level-1 tables, with no compaction left to make new ones meanwhile.
    await db.compactRange();
    // Opens the tables (synchronous, not what this measures).
    assert.equal((await db.keys().all()).length, keys.length);
    let values: string[] = [];
    let reversed: string[] = [];
    const ops = await tableReadsDuring(async () => {
      values = await db.values({ gte: key(100) }).all();
      const it = db.iterator({ reverse: true, lt: key(900) });
      for await (const [k] of it) reversed.push(k);
    });
    assert.deepEqual(values, keys.slice(100).map((k) => value(k, 2).toString()));
    assert.deepEqual(reversed, keys.slice(0, 900).reverse());
    assert.ok(ops.includes('pread') && !ops.includes('readSync'), `reads on the thread pool only (${ops.filter((o) => o === 'readSync').length} synchronous of ${ops.length})`);
  } finally {
    await db.close();
  }
});

test('a TdekvLevel iterator over level-0 tables that are not open opens them on the thread pool before its first read', async () => {
  const location = `${root}/level-${++n}`;
  const options = { dataEncryptionMethod: 'aes256-ctr' as const, masterKey: { type: 'file' as const, path: keyPath }, ...NO_CACHE, level0FileNumCompactionTrigger: 8 };
  let db = new TdekvLevel(location, options);
  const keys = Array.from({ length: 600 }, (_, i) => key(i));
  try {
    // Three flushes: three level-0 tables, below the compaction trigger.
    for (let round = 0; round < 3; round++) {
      await db.batch(keys.filter((_, i) => i % 3 === round).map((k) => ({ type: 'put' as const, key: k, value: value(k, round).toString() })));
      await db.flush();
    }
  } finally {
    await db.close();
  }
  db = new TdekvLevel(location, options);
  try {
    await db.open();
    let got: string[] = [];
    let sought: string[] = [];
    const ops = await tableReadsDuring(async () => {
      got = await db.keys().all();
      const it = db.keys({ reverse: true });
      it.seek(key(300));
      sought = await it.nextv(3);
      await it.close();
    });
    assert.deepEqual(got, keys);
    assert.deepEqual(sought, [key(300), key(299), key(298)]);
    assert.ok(ops.includes('pread'), 'read on the thread pool');
    assert.equal(ops.filter((op) => op === 'readSync').length, 0, `no synchronous read, level-0 table opens included (${ops.length} reads)`);
  } finally {
    await db.close();
  }
});

test('TdekvLevel get, getMany, has and hasMany read cold blocks and open tables on the thread pool, each call at one point in time', async () => {
  const location = `${root}/level-${++n}`;
  const options = { dataEncryptionMethod: 'aes256-ctr' as const, masterKey: { type: 'file' as const, path: keyPath }, ...NO_CACHE };
  let db = new TdekvLevel(location, options);
  const keys = Array.from({ length: 1200 }, (_, i) => key(i));
  try {
    await db.batch(keys.map((k) => ({ type: 'put' as const, key: k, value: value(k, 1).toString() })));
    await db.compactRange();
  } finally {
    await db.close();
  }
  db = new TdekvLevel(location, options);
  try {
    await db.open();
    const some = keys.filter((_, i) => i % 97 === 0);
    const ops = await tableReadsDuring(async () => {
      assert.equal(await db.get(key(5)), value(key(5), 1).toString());
      assert.equal(await db.get('absent'), undefined);
      assert.deepEqual(await db.getMany([...some, 'absent']), [...some.map((k) => value(k, 1).toString()), undefined]);
      assert.equal(await db.has(key(700)), true);
      assert.deepEqual(await db.hasMany([key(1), 'absent', key(1199)]), [true, false, true]);
    });
    assert.ok(ops.includes('pread'), 'read on the thread pool');
    assert.equal(ops.filter((op) => op === 'readSync').length, 0, `no synchronous read, table opens included (${ops.length} reads)`);
    // Overwritten while the reads are in flight (no block cache: every get waits for a read): the answers are the call's moment.
    const pending = db.getMany(some);
    await db.batch(some.map((k) => ({ type: 'put' as const, key: k, value: 'later' })));
    assert.deepEqual(await pending, some.map((k) => value(k, 1).toString()));
    assert.deepEqual(await db.getMany(some), some.map(() => 'later'));
    assert.equal(db.getSync(some[0]!), 'later');
  } finally {
    await db.close();
  }
});
