/**
 * Engine.get() reads a table block that is not in the block cache on the thread pool (the
 * env's async read), while getSync stays synchronous (issue 11 item 3): same answers as
 * getSync, at the point in time of the call, and safe while compactions remove its tables.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setFileFaults } from '../src/util/file-io.js';
import type { EngineTuning } from '../src/engine/options.js';
import { b, openTestDb, SMALL_TUNING, type TestDb } from './support/engine-helpers.js';
import { fileOpsDuring } from './support/file-ops.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

let root: string;
let keyPath: string;
let n = 0;

before(async () => {
  root = await tempDir('tdekv-async-get-');
  keyPath = (await writeKeyFile(root)).path;
});
after(async () => {
  setFileFaults(undefined);
  await cleanup(root);
});

/** No block cache: every table read is a miss. */
const NO_CACHE: Partial<EngineTuning> = { ...SMALL_TUNING, blockCacheSize: 0 };

function open(tuning: Partial<EngineTuning> = NO_CACHE): Promise<TestDb> {
  return openTestDb(`${root}/db-${++n}`, keyPath, { tuning });
}

const value = (k: string, round: number): Buffer => Buffer.from(`${k}@${round}`.padEnd(150, '.'));

test('get() on a block-cache miss reads on the thread pool (pread), getSync with a synchronous read', async () => {
  const db = await open();
  try {
    await db.engine.write([{ type: 'put', key: b('k'), value: value('k', 0) }]);
    await db.engine.flush();
    // Opens the table (footer, index, filter): the open itself stays synchronous.
    assert.equal(db.engine.getSync(b('k'))?.toString(), value('k', 0).toString());
    const asyncOps = await fileOpsDuring(async () => {
      assert.equal((await db.engine.get(b('k')))?.toString(), value('k', 0).toString());
    });
    assert.ok(asyncOps.includes('pread'), `get() read on the thread pool (${asyncOps.join(', ')})`);
    assert.ok(!asyncOps.includes('readSync'), `get() did not read on the event loop (${asyncOps.join(', ')})`);
    const syncOps = await fileOpsDuring(async () => {
      assert.equal(db.engine.getSync(b('k'))?.toString(), value('k', 0).toString());
    });
    assert.ok(syncOps.includes('readSync') && !syncOps.includes('pread'), `getSync reads synchronously (${syncOps.join(', ')})`);
  } finally {
    await db.close();
  }
});

test('get() answers as getSync does over every level, deletions and snapshots, also while compactions remove the tables it reads', async () => {
  const db = await open({ ...SMALL_TUNING, blockCacheSize: 8 * 1024 });
  try {
    const keys = Array.from({ length: 600 }, (_, i) => `key:${String(i).padStart(5, '0')}`);
    for (let round = 0; round < 4; round++) {
      const ops = keys.map((k, i) =>
        (i + round) % 7 === 0 ? { type: 'del' as const, key: b(k) } : { type: 'put' as const, key: b(k), value: value(k, round) },
      );
      await db.engine.write(ops);
      if (round === 1) await db.engine.compactRange();
    }
    const snapshot = db.engine.snapshot();
    await db.engine.write(keys.filter((_, i) => i % 3 === 0).map((k) => ({ type: 'put' as const, key: b(k), value: value(k, 9) })));
    assert.ok(db.engine.stats().levels.filter((l) => l.files > 0).length >= 2, 'tables on several levels');
    const expected = keys.map((k) => db.engine.getSync(b(k))?.toString());
    const expectedAtSnapshot = keys.map((k) => db.engine.getSync(b(k), { snapshot })?.toString());
    // All gets in flight at once, with a full compaction removing the tables they read.
    const compaction = db.engine.compactRange();
    const [got, gotAtSnapshot] = await Promise.all([
      Promise.all(keys.map(async (k) => (await db.engine.get(b(k)))?.toString())),
      Promise.all(keys.map(async (k) => (await db.engine.get(b(k), { snapshot }))?.toString())),
    ]);
    await compaction;
    assert.deepEqual(got, expected);
    assert.deepEqual(gotAtSnapshot, expectedAtSnapshot);
    assert.equal(await db.engine.get(b('absent')), undefined);
    snapshot.release();
  } finally {
    await db.close();
  }
});

test('close() waits for get()s reading on the thread pool: they answer, then the tables close', async () => {
  const db = await open();
  const keys = Array.from({ length: 300 }, (_, i) => `k${i}`);
  await db.engine.write(keys.map((k) => ({ type: 'put' as const, key: b(k), value: value(k, 1) })));
  await db.engine.flush();
  await db.engine.waitForBackgroundWork();
  const gets = keys.map((k) => db.engine.get(b(k)));
  await db.close();
  const got = await Promise.all(gets);
  assert.deepEqual(got.map((v) => v?.toString()), keys.map((k) => value(k, 1).toString()));
});

test('get() opens a table that is not open on the thread pool, and answers from the caches with no read at all when they hold the block', async () => {
  const dir = `${root}/db-${++n}`;
  let db = await openTestDb(dir, keyPath, { tuning: { ...SMALL_TUNING, blockCacheSize: 1 << 20 } });
  const keys = Array.from({ length: 400 }, (_, i) => `k${String(i).padStart(4, '0')}`);
  try {
    await db.engine.write(keys.map((k) => ({ type: 'put' as const, key: b(k), value: value(k, 2) })));
    await db.engine.compactRange();
  } finally {
    await db.close();
  }
  db = await openTestDb(dir, keyPath, { tuning: { ...SMALL_TUNING, blockCacheSize: 1 << 20 } });
  try {
    // Reopened: no table open, no block cached.
    const cold = await fileOpsDuring(async () => {
      for (const k of keys) assert.equal((await db.engine.get(b(k)))?.toString(), value(k, 2).toString());
    });
    assert.ok(cold.includes('pread'), 'read on the thread pool');
    assert.equal(cold.filter((op) => op === 'readSync').length, 0, `no synchronous read, table opens included (${cold.join(', ')})`);
    const warm = await fileOpsDuring(async () => {
      for (const k of keys) assert.equal((await db.engine.get(b(k)))?.toString(), value(k, 2).toString());
      assert.equal(await db.engine.get(b('k9999')), undefined);
    });
    assert.deepEqual(warm.filter((op) => op === 'readSync' || op === 'pread'), [], 'every block in the cache: no read');
  } finally {
    await db.close();
  }
});
