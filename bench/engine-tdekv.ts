/**
 * tdekv's driver: the engine on an encrypted env opened as a user would (a file master key,
 * kept outside the data dir). Batches are `Engine.write(ops, { sync })`, single puts a
 * one-op write, reads `getSync`, the scan one synchronous iterator.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_ENCRYPTION } from '../src/config/types.js';
import type { EncryptionMethod } from '../src/crypto/method.js';
import type { BatchOp } from '../src/engine/types.js';
import { openEnv } from '../src/env/open-env.js';
import { BENCH_CACHE_BYTES, type Driver, type DriverOptions } from './engine-driver.js';

export async function openTdekv(method: EncryptionMethod, options: DriverOptions): Promise<Driver> {
  const { Engine } = await import('../src/engine/engine.js');
  const keyPath = join(options.dir, 'master.key');
  await writeFile(keyPath, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const dataDir = join(options.dir, 'data');
  await mkdir(dataDir);
  const managed = await openEnv(dataDir, { ...DEFAULT_ENCRYPTION, dataEncryptionMethod: method, masterKey: { type: 'file', path: keyPath } });
  const engine = await Engine.open({ env: managed.env, blockCacheSize: BENCH_CACHE_BYTES }).catch(async (err: unknown) => {
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
  };
}
