import { join } from 'node:path';
import type { EncryptionMethod } from '../../src/crypto/method.js';
import { DEFAULT_ENCRYPTION, type EncryptionConfig } from '../../src/config/types.js';
import { openEnv, type ManagedEnv } from '../../src/env/open-env.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineTuning, WalSyncMode } from '../../src/engine/options.js';
import type { Logger } from '../../src/log/logger.js';

/** Tuning that makes flushes and compactions happen with a few hundred KiB of data. */
export const SMALL_TUNING: Partial<EngineTuning> = {
  writeBufferSize: 32 * 1024,
  blockSize: 512,
  targetFileSizeBase: 16 * 1024,
  maxBytesForLevelBase: 64 * 1024,
  level0FileNumCompactionTrigger: 2,
  blockCacheSize: 64 * 1024,
  maxOpenFiles: 16,
};

export function encryptionConfig(keyPath: string, method: EncryptionMethod = 'aes256-ctr'): EncryptionConfig {
  return { ...DEFAULT_ENCRYPTION, dataEncryptionMethod: method, masterKey: { type: 'file', path: keyPath } };
}

/** An engine on a real encrypted env in `root`/data; close() closes both. */
export interface TestDb {
  engine: Engine;
  managed: ManagedEnv;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * What a crash leaves: the env is closed first (its lock freed, every later write refused),
 * then the engine, whose flush then fails, so the memtable is never written and the next
 * open replays the WAL; the engine's own file handles are still closed, not left to the
 * garbage collector.
 */
export async function abandon(db: TestDb): Promise<void> {
  await db.managed.close();
  await db.engine.close().catch(() => undefined);
}

export async function openTestDb(
  root: string,
  keyPath: string,
  options: { method?: EncryptionMethod; tuning?: Partial<EngineTuning>; logger?: Logger; backgroundThread?: boolean; walSync?: WalSyncMode; dataDir?: string } = {},
): Promise<TestDb> {
  const dataDir = options.dataDir ?? join(root, 'data');
  const managed = await openEnv(dataDir, encryptionConfig(keyPath, options.method), options.logger ? { logger: options.logger } : {});
  let engine: Engine;
  try {
    engine = await Engine.open({
      env: managed.env,
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.tuning ?? SMALL_TUNING),
      ...(options.backgroundThread !== undefined ? { backgroundThread: options.backgroundThread } : {}),
      ...(options.walSync !== undefined ? { walSync: options.walSync } : {}),
    });
  } catch (err) {
    await managed.close();
    throw err;
  }
  return {
    engine,
    managed,
    dataDir,
    async close() {
      try {
        await engine.close();
      } finally {
        await managed.close();
      }
    },
  };
}

export const b = (s: string): Buffer => Buffer.from(s);

/** All entries of an engine iterator. */
export function collect(it: { next(): [Buffer, Buffer] | undefined; close(): void }): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let e = it.next(); e; e = it.next()) out.push([e[0].toString('latin1'), e[1].toString('latin1')]);
  it.close();
  return out;
}
