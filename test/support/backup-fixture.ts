import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/config.js';
import type { TdekvConfig } from '../../src/config/types.js';
import { Engine } from '../../src/engine/engine.js';
import { openEnvFromConfig } from '../../src/env/open-env.js';
import { parseStorageUrl } from '../../src/backup/storage/storage-url.js';
import { openStorage } from '../../src/backup/storage/open-storage.js';
import type { BackupStorage } from '../../src/backup/storage/backup-storage.js';
import { SMALL_TUNING, collect } from './engine-helpers.js';
import { writeKeyFile } from './fs-helpers.js';

/** A "machine": its own master key file, data dir and config (file master key, aes256-ctr). */
export interface BackupMachine {
  dir: string;
  configPath: string;
  config: TdekvConfig;
  dataDir: string;
  keyPath: string;
}

export async function backupMachine(root: string, name: string, extra = ''): Promise<BackupMachine> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const keyPath = (await writeKeyFile(dir, 'master.key')).path;
  const dataDir = join(dir, 'data');
  const configPath = join(dir, 'tdekv.toml');
  await writeFile(
    configPath,
    `[storage]\ndata-dir = ${JSON.stringify(dataDir)}\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = ${JSON.stringify(keyPath)}\n${extra}`,
  );
  return { dir, configPath, config: await loadConfig(configPath), dataDir, keyPath };
}

/** Writes `puts` (and deletes `dels`) through an engine with small tables, so the store has several tables, a manifest and a WAL. */
export async function writeData(m: Pick<BackupMachine, 'config'>, puts: Array<[string, string]>, dels: string[] = []): Promise<void> {
  const managed = await openEnvFromConfig(m.config, { deferOpenWrites: true });
  try {
    // In-process: flushes and compactions then interleave with the writes the same way every
    // run, so the tables (and what an incremental backup must upload again) do not depend on
    // thread timing; a layout from a worker racing the writes varied by a file either way.
    const engine = await Engine.open({ env: managed.env, ...SMALL_TUNING, backgroundThread: false });
    try {
      for (let i = 0; i < puts.length; i += 50) await engine.write(puts.slice(i, i + 50).map(([k, v]) => ({ type: 'put' as const, key: Buffer.from(k), value: Buffer.from(v) })));
      for (const k of dels) await engine.del(Buffer.from(k));
      // Flushed and compacted here, not by close(): a close cancels a compaction its flush
      // started at whatever slice it has reached, which left a layout that varied run to run.
      await engine.flush();
      await engine.waitForBackgroundWork();
    } finally {
      await engine.close();
    }
  } finally {
    await managed.close();
  }
}

/** Everything the data dir holds, through the engine. */
export async function readAll(m: Pick<BackupMachine, 'config'>): Promise<Map<string, string>> {
  const managed = await openEnvFromConfig(m.config, { deferOpenWrites: true });
  try {
    const engine = await Engine.open({ env: managed.env, ...SMALL_TUNING });
    try {
      return new Map(collect(engine.iterator()));
    } finally {
      await engine.close();
    }
  } finally {
    await managed.close();
  }
}

export function rows(n: number, tag: string, from = 0): Array<[string, string]> {
  return Array.from({ length: n }, (_, i): [string, string] => [`key-${String(from + i).padStart(6, '0')}`, `${tag}-value-${from + i}-${'x'.repeat(150)}`]);
}

export async function localStorage(path: string): Promise<BackupStorage> {
  return openStorage(parseStorageUrl(path));
}
