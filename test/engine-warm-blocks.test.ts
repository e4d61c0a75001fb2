/**
 * New tables' data blocks go to the block cache when a flush or compaction installs them
 * (src/engine/warm-blocks.ts): reads right after a flush or a compaction find them there, with
 * no file read, decryption or tag check, and what is cached is exactly what the table holds.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setFileFaults, type FileOp } from '../src/util/file-io.js';
import type { EngineTuning } from '../src/engine/options.js';
import { BlockCache } from '../src/engine/block-cache.js';
import { TableBuilder } from '../src/engine/table-builder.js';
import { TableReader } from '../src/engine/table-reader.js';
import { ValueKind } from '../src/engine/internal-key.js';
import { WarmBlocks, warmBlockCache } from '../src/engine/warm-blocks.js';
import { b, openTestDb, SMALL_TUNING, type TestDb } from './support/engine-helpers.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

let root: string;
let keyPath: string;
let n = 0;

before(async () => {
  root = await tempDir('tdekv-warm-blocks-');
  keyPath = (await writeKeyFile(root)).path;
});
after(async () => {
  setFileFaults(undefined);
  await cleanup(root);
});

/** A cache big enough for everything, so a miss can only mean the block was never put there. */
const TUNING: Partial<EngineTuning> = { ...SMALL_TUNING, blockCacheSize: 8 * 1024 * 1024 };

const key = (i: number): Buffer => b(`key-${String(i).padStart(6, '0')}`);
const value = (i: number, round: number): Buffer => Buffer.from(`${i}@${round}:`.padEnd(120, String.fromCharCode(97 + (i % 26))));

async function readsDuring(fn: () => void | Promise<void>): Promise<Array<{ op: FileOp; path: string }>> {
  const ops: Array<{ op: FileOp; path: string }> = [];
  setFileFaults((op, path) => {
    if (op === 'pread' || op === 'fh.read' || op === 'readSync') ops.push({ op, path });
    return undefined;
  });
  try {
    await fn();
  } finally {
    setFileFaults(undefined);
  }
  return ops;
}

for (const backgroundThread of [true, false]) {
  describe(`warm blocks (${backgroundThread ? 'on the worker thread' : 'in-process'})`, () => {
    let db: TestDb;
    before(async () => {
      db = await openTestDb(`${root}/db-${++n}`, keyPath, { tuning: TUNING, backgroundThread });
      if (backgroundThread) await db.engine.startBackgroundThread();
    });
    after(async () => {
      await db.close();
    });

    test('a flushed table is read from the cache: no data block is read from its file', async () => {
      const ops = [];
      for (let i = 0; i < 300; i++) ops.push({ type: 'put' as const, key: key(i), value: value(i, 0) });
      await db.engine.write(ops);
      const before = db.engine.stats().warmedBlocks;
      await db.engine.flush();
      const after = db.engine.stats();
      assert.equal(after.levels[0]!.files, 1, 'one level-0 table');
      assert.ok(after.warmedBlocks - before > 20, `the table's blocks went to the cache (${after.warmedBlocks - before})`);
      // The first read opens the table (footer, index and filter are read then); data blocks are cached.
      assert.equal(db.engine.getSync(key(0))?.toString(), value(0, 0).toString());
      const reads = await readsDuring(() => {
        for (let i = 0; i < 300; i++) assert.equal(db.engine.getSync(key(i))?.toString(), value(i, 0).toString(), `key ${i}`);
        assert.equal(db.engine.getSync(b('key-absent')), undefined);
      });
      assert.deepEqual(reads, [], 'every get was answered from the cache');
    });

    test('after a compaction its outputs are warm where its inputs were, and scans agree with gets', async () => {
      // More level-0 tables than the trigger: the engine compacts them into level 1.
      for (let round = 1; round <= 3; round++) {
        const ops = [];
        for (let i = 0; i < 300; i++) if (i % round === 0) ops.push({ type: 'put' as const, key: key(i), value: value(i, round) });
        await db.engine.write(ops);
        await db.engine.flush();
        for (let i = 0; i < 300; i++) db.engine.getSync(key(i));
      }
      await db.engine.waitForBackgroundWork();
      const stats = db.engine.stats();
      assert.ok(stats.compactions > 0, 'a compaction ran');
      const want = (i: number): string => value(i, i % 3 === 0 ? 3 : i % 2 === 0 ? 2 : 1).toString();
      // Opens the new tables first (footer, index, filter).
      for (const i of [0, 299]) db.engine.getSync(key(i));
      for (let i = 0; i < 300; i += 50) db.engine.getSync(key(i));
      const reads = await readsDuring(() => {
        for (let i = 0; i < 300; i++) assert.equal(db.engine.getSync(key(i))?.toString(), want(i), `key ${i}`);
      });
      // Tables opened for the first time here read their footer, index and filter: no data block.
      assert.ok(reads.length <= 3 * stats.levels.reduce((s, l) => s + l.files, 0), `reads: ${JSON.stringify(reads)}`);
      const it = db.engine.iterator();
      let seen = 0;
      for (let e = it.next(); e !== undefined; e = it.next()) assert.equal(e[1].toString(), want(seen++));
      it.close();
      assert.equal(seen, 300);
    });
  });
}

test('no cache, no warm blocks: a block cache of size 0 keeps nothing', async () => {
  const db = await openTestDb(`${root}/db-${++n}`, keyPath, { tuning: { ...TUNING, blockCacheSize: 0 } });
  try {
    await db.engine.write([{ type: 'put', key: key(1), value: value(1, 0) }]);
    await db.engine.flush();
    assert.equal(db.engine.stats().warmedBlocks, 0);
    assert.equal(db.engine.getSync(key(1))?.toString(), value(1, 0).toString());
  } finally {
    await db.close();
  }
});

test('the blocks kept are byte for byte the blocks the table holds, within the budget, and nothing is kept without one', async () => {
  const dir = await tempDir('tdekv-warm-table-');
  try {
    const db = await openTestDb(`${dir}/db`, keyPath, { tuning: { ...TUNING, blockCacheSize: 0 }, backgroundThread: false });
    const env = db.managed.env;
    const build = async (name: string, warm: WarmBlocks | undefined): Promise<TableBuilder> => {
      const builder = new TableBuilder(await env.create(name), { blockSize: 512, blockRestartInterval: 4, bloomFilterBitsPerKey: 10, ...(warm ? { warm } : {}) });
      for (let i = 0; i < 2000; i++) {
        builder.add(key(i), i + 1, ValueKind.Value, value(i, 7));
        // The builder hands what is queued to the file when the caller yields: several pieces.
        if (i % 250 === 249) await builder.drain();
      }
      await builder.finish();
      return builder;
    };
    const warm = new WarmBlocks(Infinity);
    const whole = (await build('000101.sst', warm)).warmTable(101)!;
    assert.ok(whole.blocks.length / 2 > 100, `${whole.blocks.length / 2} data blocks`);
    assert.ok(whole.chunks.length > 2, `${whole.chunks.length} pieces`);
    // Put in a cache from the kept pieces, each block equals the one a reader gets from the file.
    const warmed = new BlockCache(64 * 1024 * 1024);
    assert.equal(warmBlockCache(warmed, [whole], () => '000101.sst'), whole.blocks.length / 2);
    const reader = TableReader.open(env.openReadSync('000101.sst'), 101, new BlockCache(0));
    for (let i = 0; i < whole.blocks.length; i += 2) {
      const handle = { offset: whole.blocks[i]!, size: whole.blocks[i + 1]! };
      const fromFile = reader.readBlock(handle);
      const fromCache = warmed.get(101, handle.offset);
      assert.ok(fromCache !== undefined && fromCache.data.equals(fromFile.data), `block at ${handle.offset}`);
      // Its own memory: a cached block does not keep a whole piece alive.
      assert.equal(fromCache.data.byteLength, fromCache.data.buffer.byteLength);
    }
    reader.close();
    // A budget smaller than the table keeps a prefix of it; the rest is simply not cached.
    const small = new WarmBlocks(whole.chunks[0]!.bytes.length);
    const part = (await build('000102.sst', small)).warmTable(102)!;
    assert.equal(part.chunks.length, 1);
    assert.equal(small.bytesLeft, 0);
    const partial = new BlockCache(64 * 1024 * 1024);
    const put = warmBlockCache(partial, [part], () => '000102.sst');
    assert.ok(put > 0 && put < whole.blocks.length / 2, `${put} of ${whole.blocks.length / 2}`);
    assert.equal((await build('000103.sst', new WarmBlocks(0))).warmTable(103), undefined);
    assert.equal((await build('000104.sst', undefined)).warmTable(104), undefined);
    await db.close();
  } finally {
    await cleanup(dir);
  }
});
