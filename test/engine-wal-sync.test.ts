/*
 * Where a sync write's fsync runs ([engine] wal-sync): 'inline' fdatasyncs the WAL on the main
 * thread (no thread-pool round trip), 'thread-pool' on libuv's pool. Either way a sync write is
 * acknowledged only after its record is fsynced, a failed fsync refuses writes, and sync
 * writers of one turn of the event loop share one fsync (group commit).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setFileFaults, type FileOp } from '../src/util/file-io.js';
import { parseConfig, configFromOptions } from '../src/config/config.js';
import { Engine } from '../src/engine/engine.js';
import { TdekvLevel } from '../src/level/tdekv-level.js';
import type { WalSyncMode } from '../src/engine/options.js';
import { cp, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { b, openTestDb, SMALL_TUNING, type TestDb } from './support/engine-helpers.js';
import { captureLogger, cleanup, expectCode, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { parseInfo, startTdekv } from './support/server-process.js';

let root: string;
let keyPath: string;
let n = 0;

before(async () => {
  root = await tempDir('tdekv-wal-sync-');
  keyPath = (await writeKeyFile(root)).path;
});
after(async () => {
  setFileFaults(undefined);
  await cleanup(root);
});

/**
 * What the fault seam does now: handles opened while an injector is installed ask it on
 * every call, so one is installed for the whole test and forwards to this.
 */
let current: (op: FileOp, path: string) => string | undefined = () => undefined;

function installSeam(): void {
  setFileFaults((op, path) => current(op, path));
}

function open(walSync?: WalSyncMode): Promise<TestDb> {
  installSeam();
  return openTestDb(`${root}/db-${++n}`, keyPath, walSync === undefined ? {} : { walSync });
}

const isWal = (path: string): boolean => /\.log$/.test(path);

/** The file operations on WAL files during `fn`, in order, through the fault seam (nothing injected). */
async function walOpsDuring(fn: () => Promise<void>): Promise<FileOp[]> {
  const ops: FileOp[] = [];
  current = (op, path) => {
    if (isWal(path)) ops.push(op);
    return undefined;
  };
  try {
    await fn();
  } finally {
    current = () => undefined;
  }
  return ops;
}

const syncs = (ops: FileOp[]): number => ops.filter((op) => op === 'fdatasyncSync' || op === 'fh.datasync').length;

describe('WAL sync', () => {
  for (const mode of ['inline', 'thread-pool'] as const) {
    test(`${mode}: a sync write is acknowledged after its record is written and fsynced on the thread the mode names`, async () => {
      const db = await open(mode);
      try {
        // The first sync of a new log also syncs its directory entry; that one always goes to the pool.
        await db.engine.write([{ type: 'put', key: b('warm'), value: b('up') }], { sync: true });
        const ops = await walOpsDuring(() => db.engine.write([{ type: 'put', key: b('k'), value: b('v') }], { sync: true }));
        const write = ops.indexOf('writeSync');
        const sync = ops.indexOf(mode === 'inline' ? 'fdatasyncSync' : 'fh.datasync');
        assert.ok(write >= 0 && sync > write, `record written, then fsynced: ${ops.join(', ')}`);
        assert.equal(syncs(ops), 1, `one fsync: ${ops.join(', ')}`);
        assert.ok(!ops.includes(mode === 'inline' ? 'fh.datasync' : 'fdatasyncSync'), `only the mode's fsync: ${ops.join(', ')}`);

        const nosync = await walOpsDuring(() => db.engine.write([{ type: 'put', key: b('k2'), value: b('v') }]));
        assert.equal(syncs(nosync), 0, 'a write without sync is not fsynced');
      } finally {
        await db.close();
      }
    });

    test(`${mode}: a failed WAL fsync fails the write, names the log, and refuses later writes`, async () => {
      const db = await open(mode);
      try {
        await db.engine.write([{ type: 'put', key: b('warm'), value: b('up') }], { sync: true });
        current = (op, path) => (isWal(path) && (op === 'fdatasyncSync' || op === 'fh.datasync') ? 'EIO' : undefined);
        await assert.rejects(db.engine.write([{ type: 'put', key: b('k'), value: b('v') }], { sync: true }), /EIO/);
        current = () => undefined;
        await assert.rejects(db.engine.write([{ type: 'put', key: b('k2'), value: b('v') }]), (err: Error) => /fsync of the write-ahead log .*\.log failed/.test(err.message));
      } finally {
        current = () => undefined;
        await db.close().catch(() => undefined);
      }
    });
  }

  test('inline: sync writers of one turn share one fsync, even when each comes from its own callback', async () => {
    const db = await open('inline');
    try {
      await db.engine.write([{ type: 'put', key: b('warm'), value: b('up') }], { sync: true });
      // Timers of one phase: each callback queues a write and its microtasks run before the next
      // callback, so without waiting for the end of the turn each write would fsync alone. One
      // delay for all: timers made in one turn with one delay share an expiry (the loop's cached
      // time plus the delay), so they fire in one timers phase however slow the machine is (a
      // delay recomputed from Date.now() per timer split them over three turns on a loaded CI run).
      const ops = await walOpsDuring(
        () =>
          new Promise<void>((resolve, reject) => {
            const writes: Array<Promise<void>> = [];
            for (let i = 0; i < 8; i++) {
              setTimeout(() => {
                writes.push(db.engine.write([{ type: 'put', key: b(`t${i}`), value: b('v') }], { sync: true }));
                if (writes.length === 8) Promise.all(writes).then(() => resolve(), reject);
              }, 5);
            }
          }),
      );
      assert.ok(syncs(ops) <= 2, `8 sync writers of one turn: ${syncs(ops)} fsyncs (${ops.join(', ')})`);
      // And in one tick: one group, one fsync.
      const tick = await walOpsDuring(async () => {
        await Promise.all(Array.from({ length: 16 }, (_, i) => db.engine.write([{ type: 'put', key: b(`p${i}`), value: b('v') }], { sync: true })));
      });
      assert.equal(syncs(tick), 1, `16 sync writers in one tick: ${tick.join(', ')}`);
      for (let i = 0; i < 16; i++) assert.equal(db.engine.getSync(b(`p${i}`))?.toString(), 'v');
    } finally {
      await db.close();
    }
  });

  test('syncAppendedWal fsyncs beside the write queue: writes made meanwhile do not wait for it', async () => {
    const db = await open();
    try {
      await db.engine.write([{ type: 'put', key: b('before'), value: b('v') }]);
      const ops = await walOpsDuring(async () => {
        const order: string[] = [];
        const synced = db.engine.syncAppendedWal().then(() => order.push('sync'));
        // A second call while the first runs joins it: one fsync.
        const joined = db.engine.syncAppendedWal().then(() => order.push('sync'));
        const writes = Array.from({ length: 20 }, (_, i) => db.engine.write([{ type: 'put', key: b(`during${i}`), value: b('v') }]).then(() => order.push('write')));
        await Promise.all([synced, joined, ...writes]);
        // In the queue (syncWal), every write queued after the sync waited for its fsync.
        assert.deepEqual(order, [...Array(20).fill('write'), 'sync', 'sync']);
      });
      assert.equal(syncs(ops), 1, `one fsync for both calls: ${ops.join(', ')}`);
      for (let i = 0; i < 20; i++) assert.equal(db.engine.getSync(b(`during${i}`))?.toString(), 'v');
    } finally {
      await db.close();
    }
  });

  test('syncAppendedWal beside a WAL switch and a close: both finish, nothing is lost, and a failed fsync still refuses writes', async () => {
    const dir = `${root}/db-${++n}`;
    installSeam();
    let db = await openTestDb(dir, keyPath);
    await db.engine.write([{ type: 'put', key: b('a'), value: b('1') }]);
    // The flush switches to a new WAL and closes the old one while its fsync may be running.
    await Promise.all([db.engine.syncAppendedWal(), db.engine.flush(), db.engine.write([{ type: 'put', key: b('b'), value: b('2') }])]);
    await db.engine.write([{ type: 'put', key: b('c'), value: b('3') }]);
    const closing = db.engine.syncAppendedWal();
    await db.close();
    await closing;
    db = await openTestDb(dir, keyPath);
    try {
      for (const [k, v] of [['a', '1'], ['b', '2'], ['c', '3']]) assert.equal(db.engine.getSync(b(k!))?.toString(), v);
      current = (op, path) => (isWal(path) && op === 'fh.datasync' ? 'EIO' : undefined);
      await assert.rejects(db.engine.syncAppendedWal(), /EIO/);
      current = () => undefined;
      await assert.rejects(db.engine.write([{ type: 'put', key: b('d'), value: b('4') }]), /fsync of the write-ahead log .*\.log failed/);
    } finally {
      current = () => undefined;
      await db.close();
    }
  });

  test('the WAL reserves space ahead of its appends, so a sync write does not grow the file; after a crash the zeros end the log', async () => {
    const MiB = 1 << 20;
    installSeam();
    const db = await openTestDb(`${root}/db-${++n}`, keyPath, { tuning: { ...SMALL_TUNING, writeBufferSize: 64 * MiB } });
    let wal = '';
    const crashed = `${root}/db-${n}-crashed`;
    try {
      await db.engine.write([{ type: 'put', key: b('warm'), value: b('up') }], { sync: true });
      wal = join(db.dataDir, (await readdir(db.dataDir)).find((f) => isWal(f))!);
      assert.equal((await stat(wal)).size, MiB, 'the first append reserved a step');
      const ops = await walOpsDuring(() => db.engine.write([{ type: 'put', key: b('k'), value: b('v') }], { sync: true }));
      assert.ok(ops.includes('fdatasyncSync') && !ops.includes('ftruncateSync'), `fsynced with no size change within the reserved space: ${ops.join(', ')}`);
      assert.equal((await stat(wal)).size, MiB);
      // A group that runs past the reservation grows it by whole steps, before its bytes are written.
      const big = Array.from({ length: 1200 }, (_, i) => ({ type: 'put' as const, key: b(`big-${i}`), value: Buffer.alloc(1000, i) }));
      const grew = await walOpsDuring(() => db.engine.write(big, { sync: true }));
      assert.ok(grew.indexOf('ftruncateSync') >= 0 && grew.indexOf('ftruncateSync') < grew.indexOf('writeSync'), `reserved, then written: ${grew.join(', ')}`);
      assert.equal((await stat(wal)).size, 2 * MiB);
      // A crash now leaves the reserved zeros after the last record: they end the log, and every write replays.
      await cp(db.dataDir, crashed, { recursive: true });
      await rm(join(crashed, 'encryption-meta', 'LOCK'));
    } finally {
      current = () => undefined;
      await db.close();
    }
    const logger = captureLogger();
    const again = await openTestDb(`${root}/db-${n}`, keyPath, { dataDir: crashed, logger: logger.logger });
    try {
      assert.equal(again.engine.getSync(b('k'))?.toString(), 'v');
      assert.ok(again.engine.getSync(b('big-1199'))?.equals(Buffer.alloc(1000, 1199 & 0xff)));
      const torn = logger.warnings().filter((w) => String(w['reason']).includes('zeros'));
      assert.equal(torn.length, 1, `one warning names the zeros after the last record: ${JSON.stringify(logger.warnings())}`);
      assert.match(String(torn[0]!['msg']), /ends in zeros after its last record/, 'not reported as an incomplete record: none was');
    } finally {
      await again.close();
    }
  });

  test('a WAL append the disk fills part way (a short write, then ENOSPC) is dropped at reopen as cut short; the writes before it replay', async () => {
    const dir = `${root}/db-${++n}`;
    const crashed = `${dir}-crashed`;
    installSeam();
    let db = await openTestDb(dir, keyPath);
    try {
      for (let i = 0; i < 5; i++) await db.engine.write([{ type: 'put', key: b(`k${i}`), value: b(`v${i}`) }], { sync: true });
      let calls = 0;
      current = (op, path) => (isWal(path) && op === 'writeSync' ? (++calls === 1 ? 'short' : 'ENOSPC') : undefined);
      await assert.rejects(db.engine.write([{ type: 'put', key: b('lost'), value: Buffer.alloc(200, 7) }], { sync: true }));
      assert.ok(calls >= 2, 'the append was cut short, then refused');
      // The process dies here: its WAL ends in half a record and then the reserved zeros.
      await cp(db.dataDir, crashed, { recursive: true });
      await rm(join(crashed, 'encryption-meta', 'LOCK'));
    } finally {
      current = () => undefined;
      await db.close().catch(() => undefined);
    }
    // A torn tail, not damage: the open goes on without it.
    const logger = captureLogger();
    db = await openTestDb(dir, keyPath, { logger: logger.logger, dataDir: crashed });
    try {
      for (let i = 0; i < 5; i++) assert.equal(db.engine.getSync(b(`k${i}`))?.toString(), `v${i}`);
      assert.equal(db.engine.getSync(b('lost')), undefined);
      assert.ok(logger.warnings().some((w) => /incomplete record/.test(String(w['msg']))), JSON.stringify(logger.warnings()));
    } finally {
      await db.close();
    }
  });

  test('a file system that refuses the reservation only costs the speed-up: writes go on and replay', async () => {
    const dir = `${root}/db-${++n}`;
    installSeam();
    current = (op, path) => (isWal(path) && op === 'ftruncateSync' ? 'EIO' : undefined);
    let db = await openTestDb(dir, keyPath);
    let wal = '';
    try {
      for (let i = 0; i < 20; i++) await db.engine.write([{ type: 'put', key: b(`k${i}`), value: b(`v${i}`) }], { sync: true });
      wal = join(db.dataDir, (await readdir(db.dataDir)).find((f) => isWal(f))!);
      assert.ok((await stat(wal)).size < 4096, 'no space reserved');
    } finally {
      current = () => undefined;
      await db.close();
    }
    db = await openTestDb(dir, keyPath);
    try {
      for (let i = 0; i < 20; i++) assert.equal(db.engine.getSync(b(`k${i}`))?.toString(), `v${i}`);
    } finally {
      await db.close();
    }
  });

  test('the server fsyncs on the thread pool unless [engine] wal-sync says otherwise; INFO persistence says which', async () => {
    for (const [settings, want] of [[{}, 'thread-pool'], [{ engine: { 'wal-sync': 'inline' } }, 'inline']] as const) {
      const server = await startTdekv({ settings });
      try {
        const info = parseInfo((await server.client().call('INFO', 'persistence')) as string);
        assert.equal(info.get('persistence')?.get('wal_sync'), want, JSON.stringify(settings));
      } finally {
        await server.stop();
      }
    }
  });

  test('[engine] wal-sync in the config file, walSync in the options; anything else is refused, naming the setting', async () => {
    const opts = { source: '/etc/tdekv/tdekv.toml', baseDir: '/etc/tdekv' };
    assert.equal(parseConfig('[engine]\nwal-sync = "thread-pool"', opts).engine.walSync, 'thread-pool');
    assert.equal(parseConfig('[engine]\nwal-sync = "inline"', opts).engine.walSync, 'inline');
    assert.equal(parseConfig('', opts).engine.walSync, undefined, 'absent: the engine default');
    assert.throws(() => parseConfig('[engine]\nwal-sync = "always"', opts), expectCode('CONFIG_INVALID', 'wal-sync'));
    assert.equal(configFromOptions({ walSync: 'thread-pool' }, 'options').engine.walSync, 'thread-pool');
    assert.throws(() => configFromOptions({ walSync: 'fast' }, 'options'), expectCode('CONFIG_INVALID', 'walSync'));
    await assert.rejects(Engine.open({ env: undefined as never, walSync: 'fast' as never }), expectCode('CONFIG_INVALID', 'walSync'));

    // Through TdekvLevel: the option reaches the engine (its fsyncs run on the pool).
    installSeam();
    const db = new TdekvLevel(`${root}/level-${++n}`, { masterKey: { type: 'file', path: keyPath }, walSync: 'thread-pool' });
    await db.open();
    try {
      await db.put('warm', 'up', { sync: true });
      const ops = await walOpsDuring(() => db.put('k', 'v', { sync: true }));
      assert.ok(ops.includes('fh.datasync') && !ops.includes('fdatasyncSync'), ops.join(', '));
    } finally {
      await db.close();
    }
  });
});
