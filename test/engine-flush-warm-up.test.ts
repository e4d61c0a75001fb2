/**
 * The background worker's flush warm-up (src/engine/background/flush-warm-up.ts): it runs the
 * real flush code on made-up entries, writes nothing to the data dir, gives way to the first
 * real job, and leaves the engine's contents as they would be without it.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { WARM_UP_ENTRIES, WARM_UP_ROUNDS, warmUpFlush } from '../src/engine/background/flush-warm-up.js';
import type { Engine } from '../src/engine/engine.js';
import { DEFAULT_ENGINE_TUNING } from '../src/engine/options.js';
import { b, openTestDb, SMALL_TUNING } from './support/engine-helpers.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

let root: string;
let keyPath: string;
before(async () => {
  root = await tempDir('tdekv-warm-up-');
  keyPath = (await writeKeyFile(root)).path;
});
after(async () => {
  await cleanup(root);
});

/** Distinct keys per round: the last tenth of the entries rewrites keys of the first nine tenths. */
const DISTINCT = WARM_UP_ENTRIES * 0.9;

async function warmUpOf(engine: Engine): Promise<NonNullable<ReturnType<Engine['backgroundThread']>>['warmUp']> {
  for (let i = 0; i < 1000; i++) {
    const w = engine.backgroundThread()?.warmUp;
    if (w !== undefined) return w;
    await sleep(10);
  }
  throw new Error('the warm-up did not report within 10 s');
}

describe('flush warm-up', () => {
  test('flushes every round through the table builder, one entry per distinct key (older versions dropped), encrypted bytes out', async () => {
    const r = await warmUpFlush(DEFAULT_ENGINE_TUNING, 20, () => false);
    assert.equal(r.stopped, false);
    assert.equal(r.error, undefined);
    assert.equal(r.rounds, WARM_UP_ROUNDS);
    assert.equal(r.entriesWritten, WARM_UP_ROUNDS * DISTINCT);
    // At least the keys' bytes came out (24-byte keys, prefix-compressed in blocks, plus values).
    assert.ok(r.bytes > DISTINCT * 16, `${r.bytes} bytes`);
  });

  test('gives up at its next slice once stop() is true', async () => {
    let asked = 0;
    // 0 ms slices: it yields, and asks, every few dozen entries.
    const r = await warmUpFlush(DEFAULT_ENGINE_TUNING, 0, () => ++asked > 3);
    assert.equal(r.stopped, true);
    assert.ok(r.rounds < WARM_UP_ROUNDS, `${r.rounds} rounds`);
  });

  test('an engine whose worker warms up writes nothing to its data dir for it, and reports it', async () => {
    const db = await openTestDb(root, keyPath, { dataDir: join(root, 'quiet'), tuning: SMALL_TUNING });
    try {
      const before = (await readdir(db.dataDir)).sort();
      await db.engine.startBackgroundThread({ warmUpFlush: true });
      const w = await warmUpOf(db.engine);
      assert.deepEqual(w, { rounds: WARM_UP_ROUNDS, entriesWritten: WARM_UP_ROUNDS * DISTINCT, bytes: w!.bytes, stopped: false });
      assert.deepEqual((await readdir(db.dataDir)).sort(), before, 'no file created, renamed or removed');
      assert.equal(db.engine.backgroundThread()!.flushes, 0);
    } finally {
      await db.close();
    }
  });

  test('the first real flush stops the warm-up; its tables hold exactly what was written', async () => {
    const dataDir = join(root, 'busy');
    let db = await openTestDb(root, keyPath, { dataDir, tuning: SMALL_TUNING });
    try {
      await db.engine.startBackgroundThread({ warmUpFlush: true });
      // The warm-up runs for hundreds of ms; this flush is posted within a few.
      for (let i = 0; i < 200; i++) await db.engine.put(b(`k${String(i).padStart(4, '0')}`), b(`v${i}`));
      await db.engine.flush();
      await db.engine.waitForBackgroundWork();
      const w = await warmUpOf(db.engine);
      assert.equal(w!.stopped, true, 'the warm-up gave way');
      assert.ok(db.engine.backgroundThread()!.flushes >= 1, 'the flush ran on the worker');
      await db.close();
      db = await openTestDb(root, keyPath, { dataDir, tuning: SMALL_TUNING, backgroundThread: false });
      for (let i = 0; i < 200; i++) assert.equal(db.engine.getSync(b(`k${String(i).padStart(4, '0')}`))?.toString(), `v${i}`);
      assert.equal(db.engine.getSync(b('warm-up/key:000000000001')), undefined, 'no made-up entry reached the database');
    } finally {
      await db.close();
    }
  });
});
