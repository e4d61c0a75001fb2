/**
 * tdekv's drivers, both on an encrypted env opened as a user would (a file master key, kept
 * outside the data dir), with the same block cache:
 *
 * - `openTdekv`: the engine itself. Batches are `Engine.write(ops, { sync })`, single puts a
 *   one-op write, reads `getSync`, the scan one synchronous iterator.
 * - `openTdekvLevel`: `TdekvLevel`, the embedded API users call, through abstract-level's
 *   public methods as a user would write them, in their fastest form (docs/benchmarks.md,
 *   "How peers are configured"): a chained batch `batch().put(k, v)….write()` (no options
 *   without fsync, `{ sync: true }` with), `put(k, v)` likewise, `getSync`, and the scan
 *   `iterator().nextv(1000)`. The gap between the two lines is what abstract-level's
 *   encoding and option handling costs per operation.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_ENCRYPTION } from '../src/config/types.js';
import type { EncryptionMethod } from '../src/crypto/method.js';
import type { BatchOp } from '../src/engine/types.js';
import { openEnv } from '../src/env/open-env.js';
import { WAL_SYNC_MODES, type WalSyncMode } from '../src/engine/options.js';
import { abstractLevelDriver } from './abstract-level-driver.js';
import { BENCH_CACHE_BYTES, type Driver, type DriverOptions } from './engine-driver.js';


/**
 * The engine's placement options from the environment (default: the engine's):
 * TDEKV_BENCH_BACKGROUND_THREAD=true|false runs flush and compaction on the worker thread or
 * in-process; TDEKV_BENCH_WAL_SYNC=inline|thread-pool says where a sync write's fsync runs.
 */
function placementOptions(): { backgroundThread?: boolean; walSync?: WalSyncMode } {
  const out: { backgroundThread?: boolean; walSync?: WalSyncMode } = {};
  const v = process.env['TDEKV_BENCH_BACKGROUND_THREAD'];
  if (v !== undefined && v !== '') {
    if (v !== 'true' && v !== 'false') throw new Error(`TDEKV_BENCH_BACKGROUND_THREAD must be true or false, not ${JSON.stringify(v)}`);
    out.backgroundThread = v === 'true';
  }
  const w = process.env['TDEKV_BENCH_WAL_SYNC'];
  if (w !== undefined && w !== '') {
    if (!(WAL_SYNC_MODES as readonly string[]).includes(w)) throw new Error(`TDEKV_BENCH_WAL_SYNC must be one of ${WAL_SYNC_MODES.join(', ')}, not ${JSON.stringify(w)}`);
    out.walSync = w as WalSyncMode;
  }
  return out;
}

/** A fresh master key file beside (not inside) the data dir, which is returned, not yet created. */
async function prepare(options: DriverOptions): Promise<{ keyPath: string; dataDir: string }> {
  const keyPath = join(options.dir, 'master.key');
  await writeFile(keyPath, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  return { keyPath, dataDir: join(options.dir, 'data') };
}

export async function openTdekv(method: EncryptionMethod, options: DriverOptions): Promise<Driver> {
  const { Engine } = await import('../src/engine/engine.js');
  const { keyPath, dataDir } = await prepare(options);
  await mkdir(dataDir);
  const managed = await openEnv(dataDir, { ...DEFAULT_ENCRYPTION, dataEncryptionMethod: method, masterKey: { type: 'file', path: keyPath } });
  const engine = await Engine.open({ env: managed.env, blockCacheSize: BENCH_CACHE_BYTES, ...placementOptions() }).catch(async (err: unknown) => {
    await managed.close();
    throw err;
  });
  const writeOptions = { sync: options.sync };
  return {
    dataDir,
    writeBatch(keys, values) {
      const ops: BatchOp[] = new Array(keys.length);
      for (let i = 0; i < keys.length; i++) ops[i] = { type: 'put', key: keys[i]!, value: values[i]! };
      return engine.write(ops, writeOptions);
    },
    put: (key, value) => engine.write([{ type: 'put', key, value }], writeOptions),
    get: (key) => engine.getSync(key),
    scan(visit) {
      const it = engine.iterator();
      let n = 0;
      try {
        for (let e = it.next(); e !== undefined; e = it.next()) {
          visit(e[0], e[1]);
          n++;
        }
      } finally {
        it.close();
      }
      return n;
    },
    setSync(sync) {
      writeOptions.sync = sync;
    },
    async close() {
      await engine.close();
      await managed.close();
    },
    background: {
      stalls() {
        const s = engine.stats();
        return { writeSlowdowns: s.writeSlowdowns, writeStops: s.writeStops, flushes: s.flushes, compactions: s.compactions };
      },
      settle: () => engine.waitForBackgroundWork(),
    },
  };
}

export async function openTdekvLevel(method: EncryptionMethod, options: DriverOptions): Promise<Driver> {
  const { TdekvLevel } = await import('../src/level/tdekv-level.js');
  const { keyPath, dataDir } = await prepare(options);
  const db = new TdekvLevel<Buffer, Buffer>(dataDir, {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
    dataEncryptionMethod: method,
    masterKey: { type: 'file', path: keyPath },
    blockCacheSize: BENCH_CACHE_BYTES,
    ...placementOptions(),
  });
  await db.open();
  return abstractLevelDriver(db, dataDir, options.sync === true);
}
