import { fileIo } from '../util/file-io.js';
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { syncDir } from '../keys/atomic-file.js';
import { KeyStore } from '../masterkey/certificate/key-store.js';
import { TdekvError, errnoCode, isTdekvError } from '../errors.js';
import { zeroize } from '../crypto/random.js';
import type { TdekvConfig } from '../config/types.js';
import { openEnvFromConfig, type ManagedEnv } from '../env/open-env.js';
import { Engine } from '../engine/engine.js';
import type { Logger } from '../log/logger.js';
import type { BackupStorage } from './storage/backup-storage.js';
import { KeyRing } from './backup-key.js';
import { objectDamaged, type BackupObject, type ManifestBody } from './backup-format.js';
import { findBackup } from './backup-catalog.js';
import { openBackupKeys } from './backup-keys-open.js';
import { ProgressCounter, type BackupProgress } from './backup-progress.js';
import type { AvailableProtectors } from './protector.js';

export interface RestoreOptions {
  /** Default: the latest complete backup. */
  backupId?: string;
  available: AvailableProtectors;
  onProgress?: (p: BackupProgress) => void;
  logger?: Logger;
}

export interface RestoreResult {
  id: string;
  dataDir: string;
  files: number;
  bytes: number;
}

/** Files in the order restore puts them: CURRENT last, so a restore cut short never names a manifest. */
const ORDER: Record<BackupObject['kind'], number> = { table: 0, wal: 1, manifest: 2, current: 3 };

/**
 * Restores a backup into an empty data dir under the target config: a fresh env (its own key
 * dictionary under the target's master key), the backup's keys imported into it (the data
 * keys re-wrapped under the target's master key), then every object checked against its
 * SHA-256 and put in place unchanged. The engine is opened at the end to prove the data dir
 * starts. Any failure removes everything the restore made; a restore killed half way leaves
 * only a staging directory beside the target, which the next run removes.
 */
/** Tables restored at once. */
const RESTORE_LANES = 3;

export async function runRestore(storage: BackupStorage, config: TdekvConfig, options: RestoreOptions): Promise<RestoreResult> {
  const dataDir = config.storage.dataDir;
  await checkEmptyTarget(dataDir);
  const manifest = await findBackup(storage, options.backupId);
  const body = manifest.body;
  const ring = new KeyRing();
  // Everything is built in a sibling directory and renamed into place at the end: a restore
  // killed half way leaves the target as it was (and a staging directory the next run removes),
  // never a data dir that opens with part of the data.
  const staging = stagingDirOf(dataDir);
  await fileIo.rm(staging, { recursive: true, force: true });
  const staged: TdekvConfig = { ...config, storage: { ...config.storage, dataDir: staging } };
  let managed: ManagedEnv | undefined;
  try {
    const { nameKey } = await openBackupKeys(manifest, options.available, ring);
    zeroize(nameKey);
    await fileIo.mkdir(staging, { recursive: true });
    managed = await openEnvFromConfig(staged, { ...(options.logger ? { logger: options.logger } : {}) });
    const createdAtMs = Date.parse(body.createdAt) || Date.now();
    for (const keyId of new Set(body.objects.map((o) => o.keyId))) {
      await managed.keyAdmin.importDataKey({ id: keyId, method: 'aes256-ctr', key: ring.get(keyId), createdAtMs, exposed: false });
    }
    const objects = [...body.objects].sort((a, b) => ORDER[a.kind] - ORDER[b.kind]);
    const progress = new ProgressCounter('restore', objects.length, body.totals.bytes, options.onProgress);
    const env = managed.env;
    const restoreOne = async (o: BackupObject): Promise<void> => {
      await env.importFile(o.file, { method: 'aes256-ctr', keyId: o.keyId, iv: Buffer.from(o.iv, 'hex'), authenticated: true }, checkedObject(storage, body, o, progress));
      progress.fileDone(o.file);
    };
    // Tables a few at a time (each is a read, a hash and a write with its own sync: they overlap);
    // the logs, the manifest and CURRENT after them, in order.
    const tables = objects.filter((o) => o.kind === 'table');
    let next = 0;
    // The first failure stops every lane before the staging directory is removed.
    let failure: { err: unknown } | undefined;
    const lane = async (): Promise<void> => {
      while (failure === undefined && next < tables.length) {
        const o = tables[next++]!;
        try {
          await restoreOne(o);
        } catch (err) {
          failure ??= { err };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(RESTORE_LANES, tables.length) }, lane));
    if (failure !== undefined) throw failure.err;
    for (const o of objects) if (o.kind !== 'table') await restoreOne(o);
    progress.finish();
    await managed.close();
    managed = undefined;
    // An empty target directory is replaced (rename(2) replaces an empty directory); it was checked empty above.
    await fileIo.rename(staging, dataDir);
    await syncDir(dirname(dataDir));
    const mk = config.security.encryption.masterKey;
    // The key store learnt the staging path as a data dir its certificate protects; the open below records the real one.
    if (mk.type === 'certificate') await new KeyStore(mk.keyStore).removeProtection(staging);
    try {
      await checkEngineStarts(config, options.logger);
    } catch (err) {
      await fileIo.rm(dataDir, { recursive: true, force: true });
      throw err;
    }
    return { id: body.id, dataDir, files: objects.length, bytes: progress.bytes };
  } catch (err) {
    await managed?.close().catch(() => undefined);
    await fileIo.rm(staging, { recursive: true, force: true });
    throw err;
  } finally {
    ring.wipe();
  }
}

/** The reserved sibling a restore builds in. */
export function stagingDirOf(dataDir: string): string {
  return join(dirname(dataDir), `.${basename(dataDir)}.tdekv-restore`);
}

/** Missing or empty, or refused (naming what it holds) and left untouched. */
async function checkEmptyTarget(dataDir: string): Promise<void> {
  let names: string[];
  try {
    names = await fileIo.readdir(dataDir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  if (names.length > 0) {
    const shown = names.sort().slice(0, 5).join(', ') + (names.length > 5 ? ', …' : '');
    throw new TdekvError('BACKUP_REFUSED', `restore target ${dataDir} is not empty (it holds ${shown}): restore into an empty or new data dir ([storage] data-dir of --config); nothing was changed`);
  }
}

/** The object's bytes as they stream in, checked against the manifest: a mismatch throws at the end, and the env removes the file. */
async function* checkedObject(storage: BackupStorage, body: ManifestBody, o: BackupObject, progress: ProgressCounter): AsyncGenerator<Buffer> {
  let stream;
  try {
    stream = await storage.get(o.object);
  } catch (err) {
    if (isTdekvError(err, 'BACKUP_OBJECT_MISSING')) throw objectDamaged(body.id, o, 'is missing from the storage');
    throw err;
  }
  const sha = createHash('sha256');
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > o.size) throw objectDamaged(body.id, o, `is longer than the ${o.size} bytes the manifest records`);
    sha.update(chunk);
    progress.add(chunk.length, o.file);
    yield chunk;
  }
  if (size !== o.size) throw objectDamaged(body.id, o, `is ${size} bytes where the manifest records ${o.size}`);
  if (sha.digest('hex') !== o.sha256) throw objectDamaged(body.id, o, 'fails its SHA-256 check');
}

async function checkEngineStarts(config: TdekvConfig, logger: Logger | undefined): Promise<void> {
  const managed = await openEnvFromConfig(config, { deferOpenWrites: true, ...(logger ? { logger } : {}) });
  try {
    const engine = await Engine.open({ env: managed.env, walRecoveryMode: config.storage.walRecoveryMode, ...config.engine, ...(logger ? { logger } : {}) });
    await engine.close();
  } finally {
    await managed.close();
  }
}
