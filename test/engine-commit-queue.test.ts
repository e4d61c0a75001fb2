import assert from 'node:assert/strict';
import { setImmediate as endOfTurn } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { CommitQueue } from '../src/engine/commit.js';
import { WriteBatchBuilder } from '../src/engine/write-batch.js';
import { b, openTestDb, SMALL_TUNING } from './support/engine-helpers.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

/*
 * The write queue's two paths: a non-sync write to an idle queue is committed on the spot
 * (commitNow), everything else goes through the queue in order. The fast path must never let
 * a write overtake a queued write or task, and must fall back when the engine says so.
 */

function batchOf(key: string): Buffer {
  const b = new WriteBatchBuilder();
  b.put(Buffer.from(key), Buffer.from('v'));
  return b.take();
}

function recorder(options: { now?: (label: string) => boolean; gather?: boolean } = {}) {
  const log: string[] = [];
  const failures: unknown[] = [];
  const label = (batch: Buffer): string => batch.toString('latin1').replace(/[^a-uw-z0-9]/g, '');
  const queue = new CommitQueue(
    async (batch, sync) => {
      log.push(`commit ${label(batch)}${sync ? ' sync' : ''}`);
      await endOfTurn();
    },
    (err) => failures.push(err),
    {
      gatherSyncWriters: options.gather ?? false,
      commitNow: (batch) => {
        const ok = options.now ? options.now(label(batch)) : true;
        log.push(`${ok ? 'now' : 'refused'} ${label(batch)}`);
        return ok;
      },
    },
  );
  return { queue, log, failures };
}

describe('commit queue', () => {
  test('a non-sync write to an idle queue is committed before write() returns', async () => {
    const { queue, log } = recorder();
    const p = queue.write(batchOf('a'), false);
    assert.deepEqual(log, ['now a'], 'committed synchronously, without the queue');
    assert.equal(queue.busy, false);
    await p;
    assert.deepEqual(log, ['now a']);
  });

  test('a sync write always goes through the queue (it may gather others for one fsync)', async () => {
    const { queue, log } = recorder();
    await queue.write(batchOf('s'), true);
    assert.deepEqual(log, ['commit s sync']);
  });

  test('when the engine refuses the fast path, the write is queued and committed there', async () => {
    const { queue, log } = recorder({ now: () => false });
    await queue.write(batchOf('a'), false);
    assert.deepEqual(log, ['refused a', 'commit a']);
  });

  test('writes never overtake a running task or queued writes', async () => {
    const { queue, log } = recorder();
    let release!: () => void;
    const task = queue.run(() => new Promise<void>((r) => (release = r)).then(() => void log.push('task done')));
    const a = queue.write(batchOf('a'), false);
    const b = queue.write(batchOf('b'), false);
    assert.deepEqual(log, [], 'nothing committed while the task runs');
    release();
    await Promise.all([task, a, b]);
    assert.deepEqual(log, ['task done', 'commit ab']);
    // Idle again: the next lone write takes the fast path.
    await queue.write(batchOf('c'), false);
    assert.deepEqual(log.at(-1), 'now c');
  });

  test('a write arriving while a group commits waits for it, then goes on in order', async () => {
    const { queue, log } = recorder();
    const s = queue.write(batchOf('s'), true);
    const a = queue.write(batchOf('a'), false);
    await Promise.all([s, a]);
    assert.deepEqual(log, ['commit s sync', 'commit a'], 'queued behind the group, not committed on the spot');
  });

  test('a fast-path failure rejects that write and is reported, and the queue goes on', async () => {
    const boom = new Error('disk on fire');
    const { queue, log, failures } = recorder({
      now: (label) => {
        if (label === 'bad') throw boom;
        return true;
      },
    });
    await assert.rejects(queue.write(batchOf('bad'), false), boom);
    assert.deepEqual(failures, [boom]);
    await queue.write(batchOf('ok'), false);
    assert.deepEqual(log, ['now ok']);
  });
});

describe('Engine.writeBatchNow', () => {
  let root: string;
  before(async () => {
    root = await tempDir('write-now-');
  });
  after(async () => cleanup(root));

  test('commits on the spot when nothing waits, and otherwise leaves the batch for writeBatch()', async () => {
    const key = await writeKeyFile(root);
    const db = await openTestDb(root, key.path, { tuning: { ...SMALL_TUNING, writeBufferSize: 64 << 10, level0FileNumCompactionTrigger: 1000, level0SlowdownWritesTrigger: 1000, level0StopWritesTrigger: 1000 } });
    try {
      const batch = new WriteBatchBuilder();
      batch.put(b('a'), b('1'));
      assert.equal(db.engine.writeBatchNow(batch), true);
      assert.equal(batch.count, 0, 'the batch was taken');
      assert.equal(db.engine.getSync(b('a'))?.toString(), '1', 'visible as soon as it returns');

      // A sync write in the queue: nothing may overtake it.
      const syncWrite = db.engine.write([{ type: 'put', key: b('s'), value: b('sync') }], { sync: true });
      batch.put(b('a'), b('2'));
      assert.equal(db.engine.writeBatchNow(batch), false);
      assert.equal(batch.count, 1, 'the batch is untouched');
      assert.equal(db.engine.getSync(b('a'))?.toString(), '1');
      await Promise.all([syncWrite, db.engine.writeBatch(batch)]);
      assert.equal(db.engine.getSync(b('a'))?.toString(), '2');

      // A full memtable waits for its switch: refused too, and the queue switches it.
      const big = Buffer.alloc(70 << 10, 0x62);
      const fill = new WriteBatchBuilder();
      fill.put(b('big'), big);
      assert.equal(db.engine.writeBatchNow(fill), true, 'room before it');
      fill.put(b('c'), b('3'));
      assert.equal(db.engine.writeBatchNow(fill), false, 'the memtable is over its size');
      await db.engine.writeBatch(fill);
      assert.equal(db.engine.getSync(b('c'))?.toString(), '3');
    } finally {
      await db.close();
    }
    const late = new WriteBatchBuilder();
    late.put(b('x'), b('y'));
    assert.throws(() => db.engine.writeBatchNow(late), /closed/i, 'a closed engine refuses, naming why');
    assert.equal(late.count, 0, 'and the refused batch is emptied, as writeBatch() empties it');
  });
});
