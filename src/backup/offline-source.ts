import { join } from 'node:path';
import { TdekvError, isTdekvError } from '../errors.js';
import type { TdekvConfig } from '../config/types.js';
import { DirLock, LOCK_NAME } from '../env/dir-lock.js';
import { openEnvFromConfig, type ManagedEnv } from '../env/open-env.js';
import { META_DIR } from '../env/paths.js';
import { EncryptedBufferSink, type FileFrame } from '../env/encrypted-buffer-sink.js';
import { readCurrentFile } from '../engine/current-file.js';
import { engineFsOf } from '../engine/engine-fs.js';
import { exportEngineFile } from '../engine/file-export.js';
import { ExportPool } from '../engine/export/export-pool.js';
import { CURRENT, parseFileName, tableName } from '../engine/file-names.js';
import { readLog } from '../engine/log-reader.js';
import { DEFAULT_ENGINE_TUNING } from '../engine/options.js';
import { replayManifest } from '../engine/version-set.js';
import type { MasterKeyConfig } from '../masterkey/master-key-config.js';
import type { BackupSource, BackupSourceFile, BackupSourceInfo } from './backup-source.js';

/** A master key's public identity from its settings, for the manifest: never key material. */
export function describeMasterKeyConfig(mk: MasterKeyConfig): string {
  switch (mk.type) {
    case 'plaintext':
      return 'plaintext';
    case 'file':
      return `file ${mk.path}`;
    case 'kms':
      return `kms key-id=${mk.keyId} region=${mk.region}`;
    case 'pkcs11':
      return `pkcs11 key-label=${mk.keyLabel}`;
    case 'certificate':
      return `certificate ${mk.certificate} in key store ${mk.keyStore}`;
  }
}

/**
 * The files of a stopped data dir's current version (CURRENT → manifest → its tables, plus the
 * write-ahead logs the manifest still needs), exported through a read-only env: every block
 * and record is checked under its live key and re-framed under the backup's. The
 * data dir lock is held for as long as the source is open, so a server cannot start and
 * change the files under the backup; a running server holding it refuses the backup.
 */
export class OfflineSource implements BackupSource {
  readonly #managed: ManagedEnv;
  readonly #lock: DirLock;
  readonly #files: BackupSourceFile[];
  readonly #info: BackupSourceInfo;
  /** Tables and logs are exported on worker threads, several at once (runBackup asks for several). */
  readonly #pool = new ExportPool();

  private constructor(managed: ManagedEnv, lock: DirLock, files: BackupSourceFile[], info: BackupSourceInfo) {
    this.#managed = managed;
    this.#lock = lock;
    this.#files = files;
    this.#info = info;
  }

  static async open(config: TdekvConfig): Promise<OfflineSource> {
    const dataDir = config.storage.dataDir;
    let lock: DirLock;
    try {
      lock = await DirLock.acquire(join(dataDir, META_DIR, LOCK_NAME));
    } catch (err) {
      if (isTdekvError(err, 'DATA_DIR_LOCKED')) {
        throw new TdekvError('BACKUP_REFUSED', `the server is running (${err.message}): run without --offline to back up the running server`, { cause: err });
      }
      if (isTdekvError(err) || (err as { code?: string }).code === 'ENOENT') {
        throw new TdekvError('FILE_NOT_FOUND', `${dataDir} is not a tdekv data dir (no ${META_DIR}/): check [storage] data-dir of --config`, { cause: err });
      }
      throw err;
    }
    let managed: ManagedEnv | undefined;
    try {
      managed = await openEnvFromConfig(config, { readOnly: true });
      const env = managed.env;
      if (!(await env.exists(CURRENT))) {
        throw new TdekvError('BACKUP_REFUSED', `${dataDir} holds no database yet (no ${CURRENT}): there is nothing to back up until the server (or the engine) has opened it once`);
      }
      const manifest = readCurrentFile(env);
      const file = env.openReadSync(manifest);
      let replay;
      try {
        replay = replayManifest(readLog(file).records, manifest, config.engine.numLevels ?? DEFAULT_ENGINE_TUNING.numLevels);
      } finally {
        file.close();
      }
      const names: Array<[string, BackupSourceFile['kind']]> = [[CURRENT, 'current'], [manifest, 'manifest']];
      for (const level of replay.levels) for (const t of level) names.push([tableName(t.number), 'table']);
      for (const n of await env.list('')) {
        const parsed = parseFileName(n);
        if (parsed?.kind === 'wal' && parsed.number >= replay.logNumber) names.push([n, 'wal']);
      }
      const files: BackupSourceFile[] = [];
      for (const [name, kind] of names) {
        const f = await env.openRead(name);
        const iv = env.fileInfo(name)?.iv;
        files.push({ name, kind, size: f.size, ...(kind === 'table' && iv ? { identity: `${name}:${iv.toString('hex')}:${f.size}` } : {}) });
        f.close();
      }
      const info: BackupSourceInfo = { method: env.method, masterKey: describeMasterKeyConfig(config.security.encryption.masterKey), origin: dataDir, sequence: replay.lastSequence };
      return new OfflineSource(managed, lock, files, info);
    } catch (err) {
      await managed?.close();
      await lock.release();
      throw err;
    }
  }

  info(): BackupSourceInfo {
    return this.#info;
  }

  files(): BackupSourceFile[] {
    return this.#files.map((f) => ({ ...f }));
  }

  async export(name: string, frame: FileFrame, onChunk: (ciphertext: Buffer) => void): Promise<number> {
    if (!this.#files.some((x) => x.name === name)) throw new TdekvError('INVALID_ARGUMENT', `${name} is not a file of the backed-up version`);
    const parsed = parseFileName(name);
    if (parsed === undefined || parsed.kind === 'manifest') {
      // CURRENT and the manifest are small: here.
      const sink = new EncryptedBufferSink(name, frame, onChunk);
      await exportEngineFile(engineFsOf(this.#managed.env), name, sink);
      return sink.size;
    }
    // The pool wipes the keys it posts: the frame's key is the backup's, used for every file.
    const chunks = await this.#pool.export(this.#managed.env.grantRead(name), { ...frame, key: Buffer.from(frame.key) }, parsed);
    let size = 0;
    for (const c of chunks) {
      onChunk(c);
      size += c.length;
    }
    return size;
  }

  async close(): Promise<void> {
    try {
      await this.#pool.close();
      await this.#managed.close();
    } finally {
      await this.#lock.release();
    }
  }
}
