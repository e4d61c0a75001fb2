import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isTdekvError } from '../src/errors.js';
import type { Engine } from '../src/engine/engine.js';
import type { EngineTuning } from '../src/engine/options.js';
import type { BatchOp, WriteOptions } from '../src/engine/types.js';
import type { WriteBatchBuilder } from '../src/engine/write-batch.js';
import type { ManagedEnv } from '../src/env/open-env.js';
import type { Logger } from '../src/log/logger.js';
import { TdekvLevel, type LevelEngine, type TdekvLevelOptions } from '../src/level/tdekv-level.js';
import { MemoryEngine } from './support/level-memory-engine.js';
import { captureLogger, withTempDir, writeKeyFile } from './support/fs-helpers.js';

/** TdekvLevel that exposes its engine, and can record or fail the engine's open and writes. */
class ProbeLevel<K = string, V = string> extends TdekvLevel<K, V> {
  engine: Engine | undefined;
  writes: Array<WriteOptions | undefined> = [];
  failEngineOpen = false;

  protected override async openEngine(env: ManagedEnv, logger: Logger | undefined, tuning: Partial<EngineTuning>): Promise<LevelEngine> {
    if (this.failEngineOpen) throw new Error('engine open failed (test)');
    const engine = (await super.openEngine(env, logger, tuning)) as Engine;
    this.engine = engine;
    const write = engine.write.bind(engine);
    const writeBatch = engine.writeBatch.bind(engine);
    return Object.assign(Object.create(engine) as Engine, {
      getSync: engine.getSync.bind(engine),
      get: engine.get.bind(engine),
      getCached: engine.getCached.bind(engine),
      prepareIterator: engine.prepareIterator.bind(engine),
      snapshot: engine.snapshot.bind(engine),
      iterator: engine.iterator.bind(engine),
      close: engine.close.bind(engine),
      write: (ops: readonly BatchOp[], options?: WriteOptions) => {
        this.writes.push(options);
        return write(ops, options);
      },
      writeBatch: (batch: WriteBatchBuilder, options?: WriteOptions) => {
        this.writes.push(options);
        return writeBatch(batch, options);
      },
    });
  }
}

async function encrypted(dir: string, extra: TdekvLevelOptions = {}): Promise<TdekvLevelOptions> {
  const { path } = await writeKeyFile(dir, 'master.key');
  return { dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path }, writeBufferSize: 8192, ...extra };
}

/** The error abstract-level wraps an open failure in, and its cause. */
function openFailure(check: (cause: unknown) => void): (err: unknown) => boolean {
  return (err) => {
    const e = err as { code?: unknown; cause?: unknown };
    assert.equal(e.code, 'LEVEL_DATABASE_NOT_OPEN', String(err));
    check(e.cause);
    return true;
  };
}

/** Every file under `root` and its bytes. */
async function allFiles(root: string): Promise<Array<{ path: string; bytes: Buffer }>> {
  const out: Array<{ path: string; bytes: Buffer }> = [];
  for (const d of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (!d.isFile()) continue;
    const path = join(d.parentPath, d.name);
    out.push({ path, bytes: await readFile(path) });
  }
  return out;
}

describe('TdekvLevel', () => {
  it('keeps data across close and reopen (memtable, flushed tables, compactions)', async () => {
    await withTempDir(async (dir) => {
      const location = join(dir, 'db');
      const options = await encrypted(dir);
      const expected = new Map<string, string>();
      let db = new TdekvLevel(location, options);
      for (let round = 0; round < 3; round++) {
        const ops = [];
        for (let i = 0; i < 400; i++) {
          const key = `k${String((i * 7919 + round) % 1000).padStart(4, '0')}`;
          if (i % 9 === 0) {
            ops.push({ type: 'del' as const, key });
            expected.delete(key);
          } else {
            const value = `v${round}-${i}-${'x'.repeat(i % 50)}`;
            ops.push({ type: 'put' as const, key, value });
            expected.set(key, value);
          }
        }
        await db.batch(ops);
        await db.close();
        db = new TdekvLevel(location, options);
        await db.open();
      }
      await db.put('last', 'in the memtable only');
      expected.set('last', 'in the memtable only');
      await db.close();

      db = new TdekvLevel(location, options);
      const sorted = [...expected.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      assert.deepEqual(await db.iterator().all(), sorted);
      assert.deepEqual(await db.iterator({ reverse: true, gte: 'k0500', limit: 5 }).all(), sorted.filter(([k]) => k >= 'k0500').reverse().slice(0, 5));
      assert.equal(await db.get('last'), 'in the memtable only');
      assert.equal(db.getSync('k0000'), expected.get('k0000'));
      await db.close();
    });
  });

  it('refuses a wrong master key file with MASTER_KEY_WRONG, and opens again with the right one', async () => {
    await withTempDir(async (dir) => {
      const location = join(dir, 'db');
      const options = await encrypted(dir);
      const db = new TdekvLevel(location, options);
      await db.put('a', '1');
      await db.close();

      const { path: wrong } = await writeKeyFile(dir, 'other.key');
      const bad = new TdekvLevel(location, { ...options, masterKey: { type: 'file', path: wrong } });
      await assert.rejects(
        bad.open(),
        openFailure((cause) => assert.ok(isTdekvError(cause, 'MASTER_KEY_WRONG'), String(cause))),
      );
      assert.equal(bad.status, 'closed');

      // The failed open released the data dir lock.
      const again = new TdekvLevel(location, options);
      assert.equal(await again.get('a'), '1');
      await again.close();
    });
  });

  it('closes the env when the engine fails to open', async () => {
    await withTempDir(async (dir) => {
      const location = join(dir, 'db');
      const options = await encrypted(dir);
      const db = new ProbeLevel(location, options);
      db.failEngineOpen = true;
      await assert.rejects(
        db.open(),
        openFailure((cause) => assert.match(String(cause), /engine open failed/)),
      );
      db.failEngineOpen = false;
      await db.open(); // the lock was released and the env closed
      await db.close();
    });
  });

  it('names the cause of a failed open (missing master key file) in the errors and logs it', async () => {
    await withTempDir(async (dir) => {
      const keyPath = join(dir, 'missing.key');
      const { logger, lines } = captureLogger();
      // The README's first steps: no open() call, the first operation waits for the implicit open.
      const db = new TdekvLevel(join(dir, 'db'), { dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path: keyPath }, logger });
      const namesMissingKey = (message: string): void => {
        assert.match(message, /^Database (is not open|failed to open): \[MASTER_KEY_UNAVAILABLE\] /);
        assert.ok(message.includes(keyPath), message);
      };
      await assert.rejects(db.put('user:1', 'Ada'), (err: Error) => {
        openFailure((cause) => assert.ok(isTdekvError(cause, 'MASTER_KEY_UNAVAILABLE'), String(cause)))(err);
        namesMissingKey(err.message);
        return true;
      });
      const failures = lines.filter((l) => l.msg === 'opening the database failed');
      assert.equal(failures.length, 1, JSON.stringify(lines));
      assert.equal(failures[0]!.level, 50);
      assert.equal((failures[0]!['err'] as { code?: unknown }).code, 'MASTER_KEY_UNAVAILABLE');
      assert.ok(String((failures[0]!['err'] as { message?: unknown }).message).includes(keyPath));

      await assert.rejects(db.open(), (err: Error & { code?: unknown; cause?: unknown }) => {
        assert.equal(err.code, 'LEVEL_DATABASE_NOT_OPEN');
        assert.ok(isTdekvError(err.cause, 'MASTER_KEY_UNAVAILABLE'), String(err.cause));
        namesMissingKey(err.message);
        assert.ok(err.stack?.startsWith(`${err.name}: ${err.message}`), err.stack);
        return true;
      });
      assert.equal(lines.filter((l) => l.msg === 'opening the database failed').length, 2);
      assert.equal(db.status, 'closed');

      await writeKeyFile(dir, 'missing.key');
      await db.open(); // the cause is forgotten once an open succeeds
      await db.put('user:1', 'Ada');
      await db.close();
    });
  });

  it('refuses a bad option with CONFIG_INVALID naming it', () => {
    assert.throws(
      () => new TdekvLevel('/never/opened', { dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path: '' } }),
      (err: unknown) => isTdekvError(err, 'CONFIG_INVALID') && err.message.includes('masterKey.path = ""') && err.message.includes('/never/opened'),
    );
  });

  it('createIfMissing: false refuses a missing database; errorIfExists refuses an existing one', async () => {
    await withTempDir(async (dir) => {
      const location = join(dir, 'db');
      const options = await encrypted(dir);
      const db = new TdekvLevel(location, { ...options, createIfMissing: false });
      await assert.rejects(
        db.open(),
        openFailure((cause) => {
          assert.ok(isTdekvError(cause, 'FILE_NOT_FOUND'), String(cause));
          assert.match(cause.message, /does not exist.*createIfMissing is false/);
        }),
      );
      await assert.rejects(access(location), 'nothing was created');

      await db.open({ createIfMissing: true });
      await db.close();
      await assert.rejects(
        db.open({ errorIfExists: true }),
        openFailure((cause) => {
          assert.ok(isTdekvError(cause, 'FILE_EXISTS'), String(cause));
          assert.match(cause.message, /already exists.*errorIfExists is true/);
        }),
      );
      await db.open({ createIfMissing: false });
      await db.close();
    });
  });

  it('passes the sync write option through to the engine', async () => {
    await withTempDir(async (dir) => {
      const db = new ProbeLevel(join(dir, 'db'), await encrypted(dir));
      await db.put('a', '1', { sync: true });
      await db.put('b', '2');
      await db.batch([{ type: 'del', key: 'a' }], { sync: true });
      await db.del('b', { sync: true });
      await db.batch().put('c', '3').write({ sync: true });
      assert.deepEqual(db.writes, [{ sync: true }, {}, { sync: true }, { sync: true }, { sync: true }]);
      await db.close();
    });
  });

  it('stores what a write was given, even if the caller reuses the buffers right after', async () => {
    await withTempDir(async (dir) => {
      const db = new TdekvLevel<Buffer, Buffer>(join(dir, 'db'), { ...(await encrypted(dir)), keyEncoding: 'buffer', valueEncoding: 'buffer' });
      await db.open();
      const key = Buffer.from('k1');
      const value = Buffer.from('first');
      const writes = [db.put(key, value)];
      key.write('k2');
      value.write('other');
      writes.push(db.batch([{ type: 'put', key, value }]));
      key.fill(0);
      value.fill(0);
      await Promise.all(writes);
      assert.deepEqual(
        (await db.iterator().all()).map(([k, v]) => [k.toString(), v.toString()]),
        [
          ['k1', 'first'],
          ['k2', 'other'],
        ],
      );
      await db.close();
    });
  });

  it('a chained batch keeps what each put was given, applies its puts and dels at once, in order, and clear() drops them', async () => {
    await withTempDir(async (dir) => {
      const options = await encrypted(dir);
      const db = new TdekvLevel<Buffer, Buffer>(join(dir, 'db'), { ...options, keyEncoding: 'buffer', valueEncoding: 'buffer' });
      await db.open();
      await db.put(Buffer.from('gone'), Buffer.from('x'));
      const batch = db.batch();
      const key = Buffer.from('k1');
      const big = Buffer.alloc(200, 0x61);
      batch.put(key, big);
      key.write('k2');
      big.fill(0x62);
      batch.put(key, Buffer.from('short'));
      batch.put(Buffer.from('k3'), Buffer.from('first'));
      batch.put(Buffer.from('k3'), Buffer.from('second'));
      batch.del(Buffer.from('gone'));
      key.fill(0);
      big.fill(0);
      assert.equal(batch.length, 5);
      // Nothing is visible before write().
      assert.equal(db.getSync(Buffer.from('k1')), undefined);
      assert.deepEqual(db.getSync(Buffer.from('gone')), Buffer.from('x'));
      await batch.write();
      assert.deepEqual(
        (await db.iterator().all()).map(([k, v]) => [k.toString(), v.toString()]),
        [
          ['k1', 'a'.repeat(200)],
          ['k2', 'short'],
          ['k3', 'second'],
        ],
      );
      const dropped = db.batch();
      dropped.put(Buffer.from('never'), Buffer.from('1'));
      dropped.clear();
      dropped.put(Buffer.from('after-clear'), Buffer.from('2'));
      await dropped.write();
      assert.equal(db.getSync(Buffer.from('never')), undefined);
      assert.deepEqual(db.getSync(Buffer.from('after-clear')), Buffer.from('2'));
      assert.throws(() => db.batch().put(Buffer.from('k'), undefined as unknown as Buffer), /value/i);
      await db.close();
      // And it is all in the write-ahead log or tables: a reopen reads the same.
      const again = new TdekvLevel<Buffer, Buffer>(join(dir, 'db'), { ...options, keyEncoding: 'buffer', valueEncoding: 'buffer' });
      await again.open();
      assert.equal((await again.keys().all()).map((k) => k.toString()).join(','), 'after-clear,k1,k2,k3');
      await again.close();
    });
  });

  for (const method of ['aes256-ctr', 'plaintext'] as const) {
    it(`${method === 'plaintext' ? 'leaves markers readable with plaintext (control)' : 'leaves no key or value in plaintext on disk with aes256-ctr'}`, async () => {
      await withTempDir(async (dir) => {
        const location = join(dir, 'db');
        const options = method === 'plaintext' ? { dataEncryptionMethod: 'plaintext' as const, writeBufferSize: 8192 } : await encrypted(dir);
        const keyMarker = `KEYMARK${randomBytes(8).toString('hex')}`;
        const valueMarker = `VALMARK${randomBytes(8).toString('hex')}`;
        const db = new ProbeLevel(location, options);
        // Enough to flush and compact tables, plus a tail left in the write-ahead log.
        for (let batch = 0; batch < 20; batch++) {
          await db.batch(
            Array.from({ length: 50 }, (_, i) => ({ type: 'put' as const, key: `${keyMarker}-${batch}-${i}`, value: `${valueMarker}-${batch}-${i}-${'v'.repeat(64)}` })),
          );
        }
        await db.engine!.compactRange();
        await db.sublevel('sub').put(keyMarker, valueMarker);
        await db.put(`${keyMarker}-tail`, valueMarker, { sync: true });
        const tables = db.engine!.liveTables().length;
        await db.close();
        assert.ok(tables > 0, 'the data reached tables');

        const markers = [keyMarker, valueMarker].flatMap((m) => [Buffer.from(m), Buffer.from(m, 'utf16le'), Buffer.from(m.slice(7), 'hex')]);
        const files = await allFiles(location);
        assert.ok(files.length > 3, `expected engine files, got ${files.map((f) => f.path).join(', ')}`);
        const found = files.filter((f) => markers.some((m) => f.bytes.includes(m))).map((f) => f.path);
        if (method === 'plaintext') assert.ok(found.length > 0, 'the scan finds markers in plaintext files');
        else assert.deepEqual(found, [], 'marker bytes found on disk');
        // Still readable through the class.
        const again = new TdekvLevel(location, options);
        assert.equal(await again.get(`${keyMarker}-3-7`), `${valueMarker}-3-7-${'v'.repeat(64)}`);
        assert.equal(await again.sublevel('sub').get(keyMarker), valueMarker);
        await again.close();
      });
    });
  }

  it('compactRange() after turning encryption on rewrites every table under the new method', async () => {
    await withTempDir(async (dir) => {
      const location = join(dir, 'db');
      const marker = 'PLAIN-MARKER-0123456789';
      const options = await encrypted(dir);
      const plain = new TdekvLevel(location, { ...options, dataEncryptionMethod: 'plaintext' });
      await plain.open();
      for (let i = 0; i < 300; i++) await plain.put(`k${i}`, `${marker}-${i}`);
      await plain.close();
      assert.ok((await allFiles(location)).some((f) => f.bytes.includes(marker)), 'control: plaintext tables hold the marker');
      const db = new TdekvLevel(location, options);
      await db.open();
      await db.compactRange();
      await db.flush();
      assert.equal(await db.get('k7'), `${marker}-7`);
      await db.close();
      const leaks = (await allFiles(location)).filter((f) => f.bytes.includes(marker)).map((f) => f.path);
      assert.deepEqual(leaks, [], 'no file holds plaintext after compactRange');
    });
  });

  it('reads old values from a snapshot, across flushes and compactions', async () => {
    await withTempDir(async (dir) => {
      const db = new ProbeLevel(join(dir, 'db'), await encrypted(dir));
      await db.batch(Array.from({ length: 200 }, (_, i) => ({ type: 'put' as const, key: `k${String(i).padStart(3, '0')}`, value: `old${i}` })));
      const snapshot = db.snapshot();
      await db.batch(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? { type: 'del' as const, key: `k${String(i).padStart(3, '0')}` } : { type: 'put' as const, key: `k${String(i).padStart(3, '0')}`, value: `new${i}` })));
      await db.put('k999', 'after');
      await db.engine!.compactRange();

      assert.equal(await db.get('k000'), undefined);
      assert.equal(await db.get('k000', { snapshot }), 'old0');
      assert.equal(db.getSync('k001', { snapshot }), 'old1');
      assert.deepEqual(await db.getMany(['k001', 'k002', 'k999'], { snapshot }), ['old1', 'old2', undefined]);
      assert.equal(await db.has('k999', { snapshot }), false);
      assert.deepEqual(await db.hasMany(['k000', 'k999']), [false, true]);
      const snapValues = await db.values({ snapshot }).all();
      assert.deepEqual(snapValues, Array.from({ length: 200 }, (_, i) => `old${i}`));
      assert.equal((await db.keys().all()).length, 101);

      const it = db.iterator({ snapshot, gte: 'k100' });
      assert.deepEqual(await it.next(), ['k100', 'old100']);
      assert.equal(db.engine!.stats().liveSnapshots, 1, 'the iterator reads the explicit snapshot, no implicit one');
      await snapshot.close();
      await assert.rejects(it.next(), { code: 'LEVEL_SNAPSHOT_NOT_OPEN' });
      await it.close();
      assert.equal(db.engine!.stats().liveSnapshots, 0, 'closing the snapshot released the engine snapshot');
      await db.close();
    });
  });

  it('seeks within the range, both directions', async () => {
    await withTempDir(async (dir) => {
      const db = new TdekvLevel(join(dir, 'db'), await encrypted(dir));
      await db.batch(['a', 'b', 'c', 'd', 'e'].map((key) => ({ type: 'put' as const, key, value: key.toUpperCase() })));
      const it = db.keys({ gt: 'a', lt: 'e' });
      it.seek('c');
      assert.deepEqual(await it.all(), ['c', 'd']);
      const rev = db.iterator({ reverse: true });
      rev.seek('bb');
      assert.deepEqual(await rev.nextv(10), [
        ['b', 'B'],
        ['a', 'A'],
      ]);
      rev.seek('z');
      assert.deepEqual(await rev.next(), ['e', 'E']);
      await rev.close();
      await db.close();
    });
  });

  it('clears a range in chunks, from a snapshot taken when clear() was called', async () => {
    await withTempDir(async (dir) => {
      const db = new ProbeLevel(join(dir, 'db'), await encrypted(dir));
      await db.batch(Array.from({ length: 2500 }, (_, i) => ({ type: 'put' as const, key: String(i).padStart(5, '0'), value: 'x' })));
      db.writes = [];
      const clearing = db.clear({ gte: '00100', limit: 2300 });
      await db.put('00050', 'kept');
      await db.put('02450', 'y'); // after clear() was called: outside its snapshot
      await clearing;
      assert.equal(db.writes.length, 2 + 3, 'two puts, and 2300 deletes in chunks of 1000');
      const keys = await db.keys().all();
      assert.deepEqual(keys.slice(99, 101), ['00099', '02400']);
      assert.equal(keys.length, 100 + 100);
      assert.equal(await db.get('02450'), 'y');
      await db.close();
    });
  });

  it('close() during a large clear() stops it between chunks and waits for it', async () => {
    await withTempDir(async (dir) => {
      const location = join(dir, 'db');
      const options = await encrypted(dir);
      const db = new TdekvLevel(location, options);
      const keys = Array.from({ length: 5000 }, (_, i) => String(i).padStart(5, '0'));
      await db.batch(keys.map((key) => ({ type: 'put' as const, key, value: 'x' })));
      const clearing = db.clear().then(
        () => 'done',
        (err: unknown) => err,
      );
      await db.close();
      const outcome = await clearing;
      if (outcome !== 'done') assert.ok(isTdekvError(outcome, 'CLOSED') && /during clear/.test(outcome.message), String(outcome));

      const again = new TdekvLevel(location, options);
      const left = await again.keys().all();
      assert.deepEqual(left, keys.slice(keys.length - left.length), 'chunks are deleted in order: what is left is a suffix');
      assert.equal(left.length % 1000, 0, 'whole chunks');
      await again.close();
    });
  });

  it('behaves like the reference model under random operations (engine with tiny memtables)', async () => {
    await withTempDir(async (dir) => {
      const keyArb = fc.constantFrom(...Array.from({ length: 40 }, (_, i) => `k${String(i).padStart(2, '0')}`));
      const op = fc.oneof(
        fc.record({ t: fc.constant('put' as const), key: keyArb, value: fc.string({ maxLength: 300 }) }),
        fc.record({ t: fc.constant('del' as const), key: keyArb }),
        fc.record({ t: fc.constant('batch' as const), ops: fc.array(fc.tuple(keyArb, fc.option(fc.string({ maxLength: 50 }))), { maxLength: 20 }) }),
        fc.record({ t: fc.constant('snapshot' as const) }),
        fc.record({ t: fc.constant('read' as const), gte: fc.option(keyArb), lt: fc.option(keyArb), reverse: fc.boolean(), limit: fc.integer({ min: -1, max: 10 }), seek: fc.option(keyArb) }),
        fc.record({ t: fc.constant('clear' as const), gte: fc.option(keyArb), lt: fc.option(keyArb) }),
        fc.record({ t: fc.constant('compact' as const) }),
        fc.record({ t: fc.constant('reopen' as const) }),
      );
      let run = 0;
      class ModelLevel extends TdekvLevel {
        model = new MemoryEngine();
        protected override async openEngine(): Promise<LevelEngine> {
          return this.model;
        }
      }
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 60 }), async (ops) => {
          const options = await encrypted(dir, { writeBufferSize: 4096, level0FileNumCompactionTrigger: 2, targetFileSizeBase: 4096, maxBytesForLevelBase: 8192 });
          const location = join(dir, `db-${++run}`);
          let real = new ProbeLevel(location, options);
          const model = new ModelLevel(join(dir, `model-${run}`), options);
          await real.open();
          await model.open();
          const snaps: Array<[Awaited<ReturnType<typeof real.snapshot>>, Awaited<ReturnType<typeof model.snapshot>>]> = [];
          try {
            for (const o of ops) {
              if (o.t === 'put') await Promise.all([real.put(o.key, o.value), model.put(o.key, o.value)]);
              else if (o.t === 'del') await Promise.all([real.del(o.key), model.del(o.key)]);
              else if (o.t === 'batch') {
                const b = o.ops.map(([key, value]) => (value === null ? { type: 'del' as const, key } : { type: 'put' as const, key, value }));
                await Promise.all([real.batch(b), model.batch(b)]);
              } else if (o.t === 'snapshot') snaps.push([real.snapshot(), model.snapshot()]);
              else if (o.t === 'compact') await real.engine!.compactRange();
              else if (o.t === 'reopen') {
                for (const [r, m] of snaps.splice(0)) await Promise.all([r.close(), m.close()]);
                await real.close();
                real = new ProbeLevel(location, options);
                await real.open();
              } else if (o.t === 'clear') {
                const range = { ...(o.gte !== null ? { gte: o.gte } : {}), ...(o.lt !== null ? { lt: o.lt } : {}) };
                await Promise.all([real.clear(range), model.clear(range)]);
              } else {
                const range = { reverse: o.reverse, limit: o.limit, ...(o.gte !== null ? { gte: o.gte } : {}), ...(o.lt !== null ? { lt: o.lt } : {}) };
                for (const [rs, ms] of [[undefined, undefined] as const, ...snaps]) {
                  const ri = real.iterator({ ...range, ...(rs ? { snapshot: rs } : {}) });
                  const mi = model.iterator({ ...range, ...(ms ? { snapshot: ms } : {}) });
                  if (o.seek !== null) {
                    ri.seek(o.seek);
                    mi.seek(o.seek);
                  }
                  assert.deepEqual(await ri.all(), await mi.all(), `iterator ${JSON.stringify({ ...range, seek: o.seek, snapshot: rs !== undefined })}`);
                  const keys = Array.from({ length: 40 }, (_, i) => `k${String(i).padStart(2, '0')}`);
                  const ro = rs ? { snapshot: rs } : {};
                  const mo = ms ? { snapshot: ms } : {};
                  assert.deepEqual(await real.getMany(keys, ro), await model.getMany(keys, mo), 'getMany');
                }
              }
            }
          } finally {
            for (const [r, m] of snaps) await Promise.all([r.close(), m.close()]);
            await real.close();
            await model.close();
          }
        }),
        { numRuns: 25 },
      );
    });
  });
});
