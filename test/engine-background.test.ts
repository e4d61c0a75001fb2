/**
 * Flush and compaction on the engine's background worker thread (issue 11 item 3): they
 * really run there, give the same contents as the in-process runners, a crashed worker is a
 * background error (never a hang) and a reopen recovers every acknowledged write, and a
 * full disk met by the worker stays recoverable.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { threadId } from 'node:worker_threads';
import { Engine } from '../src/engine/engine.js';
import type { EngineTuning } from '../src/engine/options.js';
import { configFromOptions, parseConfig } from '../src/config/config.js';
import { isTdekvError } from '../src/errors.js';
import type { EngineSettings } from '../src/engine/options.js';
import type { ManagedEnv as LevelEnv } from '../src/env/open-env.js';
import type { Logger } from '../src/log/logger.js';
import { TdekvLevel, type LevelEngine } from '../src/level/tdekv-level.js';
import type { ManagedEnv } from '../src/env/open-env.js';
import { WRITE_OPS, setFileFaults } from '../src/util/file-io.js';
import { b, collect, openTestDb, SMALL_TUNING } from './support/engine-helpers.js';
import { cleanup, expectCode, tempDir, writeKeyFile } from './support/fs-helpers.js';

const TUNING: Partial<EngineTuning> = { ...SMALL_TUNING, noSpaceRetryIntervalMs: 5, noSpaceRetryMaxIntervalMs: 40 };

let root: string;
let keyPath: string;
let n = 0;

before(async () => {
  root = await tempDir('tdekv-background-');
  keyPath = (await writeKeyFile(root)).path;
});
after(async () => {
  setFileFaults(undefined);
  await cleanup(root);
});

interface Db {
  engine: Engine;
  managed: ManagedEnv;
  dataDir: string;
  close(): Promise<void>;
}

function open(dataDir: string, backgroundThread: boolean, tuning: Partial<EngineTuning> = TUNING): Promise<Db> {
  return openTestDb(root, keyPath, { dataDir, backgroundThread, tuning });
}

function freshDir(): string {
  return join(root, `db-${++n}`);
}

/** A deterministic PRNG (mulberry32): the same operations in both modes. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const value = (key: string, round: number, size: number): Buffer => Buffer.from(`${key}@${round}:`.padEnd(size, String.fromCharCode(97 + (round % 26))));

/** Fills a db with enough to flush several times and compact; returns what was acknowledged. */
async function load(engine: Engine, keys: number, rounds: number, acked = new Map<string, string>()): Promise<Map<string, string>> {
  for (let r = 0; r < rounds; r++) {
    const ops = [];
    for (let i = 0; i < keys; i++) {
      const k = `key:${String((i * 7919 + r) % keys).padStart(6, '0')}`;
      const v = value(k, r, 200);
      ops.push({ type: 'put' as const, key: b(k), value: v });
      acked.set(k, v.toString('latin1'));
    }
    await engine.write(ops);
  }
  return acked;
}

function contents(engine: Engine): Array<[string, string]> {
  return collect(engine.iterator());
}

async function sstNames(dataDir: string): Promise<string[]> {
  return (await readdir(dataDir)).filter((f) => f.endsWith('.sst')).sort();
}

async function until(cond: () => boolean, what: string, boundMs = 20_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('background worker thread', () => {
  test('the worker starts loading once the first memtable is an eighth full, not before', async () => {
    const writeBufferSize = 256 * 1024;
    const db = await open(freshDir(), true, { ...TUNING, writeBufferSize });
    try {
      // Just under an eighth (each entry is ~500 bytes as the memtable counts them), then past it.
      const entry = (i: number): Buffer => Buffer.alloc(400, i % 251);
      let i = 0;
      while (db.engine.stats().memtableBytes < writeBufferSize / 8 - 1024) await db.engine.put(b(`k${i}`), entry(i++));
      await sleep(300);
      assert.equal(db.engine.backgroundThread()!.threadId, undefined, `no worker under an eighth full (${db.engine.stats().memtableBytes} bytes)`);
      for (let j = 0; j < 16; j++, i++) await db.engine.put(b(`k${i}`), entry(i));
      await until(() => db.engine.backgroundThread()!.threadId !== undefined, 'the worker to start');
      assert.equal(db.engine.stats().flushes, 0, 'started ahead of the first flush');
    } finally {
      await db.close();
    }
  });

  test('flushes and compactions run on the worker thread, not the main one, and their tables read back', async () => {
    const db = await open(freshDir(), true);
    try {
      assert.deepEqual(db.engine.backgroundThread(), { threadId: undefined, flushes: 0, compactions: 0 }, 'the worker is not started at open');
      // A job asked for before the worker has loaded runs in-process: it never waits for the thread to start.
      await db.engine.put(b('first'), b('flush'));
      await db.engine.flush();
      assert.equal(db.engine.stats().flushes, 1);
      assert.equal(db.engine.backgroundThread()!.flushes, 0, 'the first flush ran in-process while the worker loaded');
      await db.engine.startBackgroundThread();
      const acked = await load(db.engine, 400, 6);
      acked.set('first', 'flush');
      await db.engine.compactRange();
      await db.engine.waitForBackgroundWork();
      const info = db.engine.backgroundThread()!;
      assert.ok(info.threadId !== undefined && info.threadId !== threadId, `the jobs ran on thread ${info.threadId}, the test on ${threadId}`);
      assert.ok(info.flushes >= 1, 'a flush ran on the worker');
      assert.ok(info.compactions >= 1, 'a compaction ran on the worker');
      const s = db.engine.stats();
      assert.equal(s.flushes, info.flushes + 1, 'every flush once the worker was ready ran on it');
      assert.equal(s.compactions, info.compactions + 0, 'every rewriting compaction ran on the worker');
      assert.ok(s.levels.slice(1).some((l) => l.files > 0), 'the compaction wrote deeper levels');
      assert.deepEqual(contents(db.engine), [...acked].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
      for (const [k, v] of acked) assert.equal(db.engine.getSync(b(k))?.toString('latin1'), v);
      // No table but the live ones: outputs were installed, inputs removed.
      assert.deepEqual(await sstNames(db.dataDir), db.engine.liveTables().map((t) => t.name).sort());
    } finally {
      await db.close();
    }
  });

  test('model check: the same random operations give the same contents on the worker and in-process, and after a reopen', async () => {
    const dirs = { worker: freshDir(), inProcess: freshDir() };
    const dbs = { worker: await open(dirs.worker, true), inProcess: await open(dirs.inProcess, false) };
    await dbs.worker.engine.startBackgroundThread();
    const model = new Map<string, string>();
    const snapshots: Array<{ at: Map<string, string>; worker: ReturnType<Engine['snapshot']>; inProcess: ReturnType<Engine['snapshot']> }> = [];
    try {
      const rnd = prng(20261203);
      for (let step = 0; step < 60; step++) {
        const ops: Array<{ type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer }> = [];
        const count = 1 + Math.floor(rnd() * 120);
        for (let i = 0; i < count; i++) {
          const k = `k${Math.floor(rnd() * 3000)}`;
          if (rnd() < 0.2) {
            ops.push({ type: 'del', key: b(k) });
            model.delete(k);
          } else {
            const v = value(k, step, 20 + Math.floor(rnd() * 400));
            ops.push({ type: 'put', key: b(k), value: v });
            model.set(k, v.toString('latin1'));
          }
        }
        await Promise.all([dbs.worker.engine.write(ops), dbs.inProcess.engine.write(ops)]);
        const r = rnd();
        if (r < 0.05) await Promise.all([dbs.worker.engine.compactRange(), dbs.inProcess.engine.compactRange()]);
        else if (r < 0.15) await Promise.all([dbs.worker.engine.flush(), dbs.inProcess.engine.flush()]);
        else if (r < 0.2 && snapshots.length < 3) {
          // Snapshots keep versions the drop rule must leave in both paths.
          snapshots.push({ at: new Map(model), worker: dbs.worker.engine.snapshot(), inProcess: dbs.inProcess.engine.snapshot() });
        }
      }
      await Promise.all([dbs.worker.engine.waitForBackgroundWork(), dbs.inProcess.engine.waitForBackgroundWork()]);
      const expected = [...model].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
      assert.deepEqual(contents(dbs.worker.engine), expected);
      assert.deepEqual(contents(dbs.inProcess.engine), expected);
      for (const s of snapshots) {
        assert.deepEqual(collect(dbs.worker.engine.iterator({ snapshot: s.worker })), collect(dbs.inProcess.engine.iterator({ snapshot: s.inProcess })));
        assert.equal(collect(dbs.worker.engine.iterator({ snapshot: s.worker })).length, s.at.size);
      }
      assert.ok(dbs.worker.engine.backgroundThread()!.compactions >= 1 && dbs.worker.engine.backgroundThread()!.flushes >= 1);
      assert.equal(dbs.inProcess.engine.backgroundThread(), undefined);
      for (const s of snapshots) (s.worker.release(), s.inProcess.release());
      await Promise.all([dbs.worker.close(), dbs.inProcess.close()]);
      // Reopened the other way round: the files either path wrote are the same format.
      dbs.worker = await open(dirs.worker, false);
      dbs.inProcess = await open(dirs.inProcess, true);
      assert.deepEqual(contents(dbs.worker.engine), expected);
      assert.deepEqual(contents(dbs.inProcess.engine), expected);
    } finally {
      await Promise.all([dbs.worker.close(), dbs.inProcess.close()]);
    }
  });

  for (const how of ['exit', 'throw'] as const) {
    test(`a worker that dies mid-compaction (${how}) is a background error: writes refused, close() returns, a reopen has every acknowledged write and no partial table`, async () => {
      const dataDir = freshDir();
      const db = await open(dataDir, true);
      await db.engine.startBackgroundThread();
      let acked: Map<string, string>;
      try {
        acked = await load(db.engine, 400, 4);
        await db.engine.waitForBackgroundWork();
        // Dies when the compaction asks for its second output: the first is written by then.
        db.engine.crashBackgroundThreadForTest(how, 2);
        await assert.rejects(db.engine.compactRange(), (e: unknown) => isTdekvError(e, 'IO_FAILED') && /background worker thread/.test((e as Error).message));
        await until(() => db.engine.writeFailure() !== undefined, 'the crash to be reported');
        const failure = db.engine.writeFailure()!;
        assert.equal(failure.recoverable, false, 'a crash is sticky, as EIO');
        assert.match(db.engine.stats().backgroundError ?? '', /background worker thread/);
        await assert.rejects(db.engine.put(b('after'), b('crash')), (e: unknown) => isTdekvError(e, 'IO_FAILED'));
        // Reads go on.
        for (const [k, v] of acked) assert.equal(db.engine.getSync(b(k))?.toString('latin1'), v);
      } finally {
        await db.close();
      }
      const again = await open(dataDir, true);
      try {
        assert.equal(again.engine.writeFailure(), undefined);
        assert.deepEqual(contents(again.engine), [...acked].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
        // The crashed job's output was never installed: removed as obsolete at open.
        // A compaction started at open must end first: its outputs are not live until installed.
        await again.engine.waitForBackgroundWork();
        assert.deepEqual(await sstNames(dataDir), again.engine.liveTables().map((t) => t.name).sort());
        await again.engine.put(b('after'), b('reopen'));
        await again.engine.compactRange();
        assert.equal(again.engine.getSync(b('after'))?.toString(), 'reopen');
      } finally {
        await again.close();
      }
    });
  }

  test('a worker that dies while idle is reported too, and a write waiting on background work gets the error, not a hang', async () => {
    const dataDir = freshDir();
    const db = await open(dataDir, true, { ...TUNING, level0StopWritesTrigger: 2, level0SlowdownWritesTrigger: 2, level0FileNumCompactionTrigger: 2 });
    try {
      await db.engine.startBackgroundThread();
      await load(db.engine, 100, 1);
      await db.engine.flush();
      db.engine.crashBackgroundThreadForTest('exit');
      await until(() => db.engine.writeFailure() !== undefined, 'the crash to be reported');
      // Enough to need a flush: refused with the reason, never left waiting.
      await assert.rejects(load(db.engine, 400, 6), (e: unknown) => isTdekvError(e, 'IO_FAILED') && /background worker thread/.test((e as Error).message));
    } finally {
      await db.close();
    }
  });

  test('close() during a compaction on the worker abandons it: close returns, the inputs stay, nothing is lost', async () => {
    const dataDir = freshDir();
    const db = await open(dataDir, true);
    await db.engine.startBackgroundThread();
    const acked = await load(db.engine, 400, 6);
    await db.engine.waitForBackgroundWork();
    const compacting = db.engine.compactRange().then(
      () => 'done',
      (e: unknown) => (isTdekvError(e, 'CLOSED') ? 'abandoned' : Promise.reject(e)),
    );
    await db.close();
    assert.match(await compacting, /done|abandoned/);
    const again = await open(dataDir, true);
    try {
      assert.deepEqual(contents(again.engine), [...acked].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
      // A compaction started at open must end first: its outputs are not live until installed.
        await again.engine.waitForBackgroundWork();
        assert.deepEqual(await sstNames(dataDir), again.engine.liveTables().map((t) => t.name).sort());
    } finally {
      await again.close();
    }
  });

  test('ENOSPC met by the worker keeps the full-disk recovery: writes refused (recoverable), resumed once space is back, the partial table removed', async () => {
    const dataDir = freshDir();
    const db = await open(dataDir, true);
    try {
      await db.engine.startBackgroundThread();
      const acked = await load(db.engine, 50, 1);
      await db.engine.flush();
      const before = db.engine.backgroundThread()!.flushes;
      await load(db.engine, 60, 1, acked);
      // Only table writes fail, and those happen on the worker thread.
      setFileFaults((op, path) => (path.endsWith('.sst') && WRITE_OPS.has(op) ? 'ENOSPC' : undefined));
      await assert.rejects(db.engine.flush(), /ENOSPC/);
      const failure = db.engine.writeFailure();
      assert.equal(failure?.recoverable, true, 'a full disk on the worker is recoverable');
      assert.equal(db.engine.backgroundThread()!.flushes, before);
      setFileFaults(undefined);
      await until(() => db.engine.writeFailure() === undefined, 'writes to resume');
      await db.engine.put(b('resumed'), b('yes'));
      await db.engine.flush();
      assert.ok(db.engine.backgroundThread()!.flushes > before, 'the retried flush ran on the worker');
      for (const [k, v] of acked) assert.equal(db.engine.getSync(b(k))?.toString('latin1'), v);
      // The compaction this flush started removes its inputs when it is installed.
      await db.engine.waitForBackgroundWork();
      assert.deepEqual(await sstNames(dataDir), db.engine.liveTables().map((t) => t.name).sort());
    } finally {
      setFileFaults(undefined);
      await db.close();
    }
  });
});

/** TdekvLevel that keeps its engine, to look at where its background work runs. */
class ProbeLevel extends TdekvLevel {
  engine: Engine | undefined;

  protected override async openEngine(env: LevelEnv, logger: Logger | undefined, settings: EngineSettings): Promise<LevelEngine> {
    const engine = (await super.openEngine(env, logger, settings)) as Engine;
    this.engine = engine;
    return engine;
  }
}

describe('where background work runs is a setting', () => {
  test('[engine] background-thread in the config file, backgroundThread in TdekvLevel options; anything but a boolean is refused', async () => {
    const opts = { source: '/etc/tdekv/tdekv.toml', baseDir: '/etc/tdekv' };
    assert.equal(parseConfig('[engine]\nbackground-thread = false', opts).engine.backgroundThread, false);
    assert.equal(parseConfig('[engine]\nbackground-thread = true', opts).engine.backgroundThread, true);
    assert.equal(parseConfig('', opts).engine.backgroundThread, undefined, 'absent: the engine default (false)');
    assert.throws(() => parseConfig('[engine]\nbackground-thread = "no"', opts), expectCode('CONFIG_INVALID', 'background-thread'));
    assert.equal(configFromOptions({ backgroundThread: false }, 'options').engine.backgroundThread, false);
    await assert.rejects(Engine.open({ env: undefined as never, backgroundThread: 'yes' as never }), expectCode('CONFIG_INVALID', 'backgroundThread'));

    for (const backgroundThread of [false, true]) {
      const db = new ProbeLevel(freshDir(), { backgroundThread, ...SMALL_TUNING });
      await db.open();
      try {
        await db.engine!.startBackgroundThread();
        for (let i = 0; i < 300; i++) await db.put(`k${i}`, 'v'.repeat(200));
        await db.compactRange();
        const info = db.engine!.backgroundThread();
        if (backgroundThread) assert.ok(info!.flushes >= 1 && info!.compactions >= 1);
        else assert.equal(info, undefined, 'backgroundThread false: the runners run in-process');
        assert.equal(await db.get('k299'), 'v'.repeat(200));
      } finally {
        await db.close();
      }
    }
  });
});
