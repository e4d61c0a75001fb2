import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { OnlineBackupSource } from './online-backup-source.js';
import { addAdminConnectionOptions, type AdminConnectionOptions } from './admin-connection.js';
import { TdekvError } from '../errors.js';
import { loadConfig } from '../config/config.js';
import { parseSize } from '../config/size.js';
import type { TdekvConfig } from '../config/types.js';
import { createLogger } from '../log/logger.js';
import type { BackupProgress } from '../backup/backup-progress.js';
import type { BackupSource } from '../backup/backup-source.js';
import { runBackup } from '../backup/backup-run.js';
import { runList } from '../backup/list-run.js';
import { OfflineSource } from '../backup/offline-source.js';
import type { AvailableProtectors, ProtectorChoice } from '../backup/protector.js';
import { runPrune } from '../backup/prune-run.js';
import { runRestore } from '../backup/restore-run.js';
import { runVerify } from '../backup/verify-run.js';
import type { BackupStorage } from '../backup/storage/backup-storage.js';
import { openStorage } from '../backup/storage/open-storage.js';
import { STORAGE_FLAGS, parseStorageUrl, storageFlagsFromOptions } from '../backup/storage/storage-url.js';
import type { Output } from './ctl.js';

/** commander camel-cases on `-` only, so `--crypter.key-file` arrives as `crypter.keyFile`. */
interface CrypterOptions {
  'crypter.method'?: string;
  'crypter.keyFile'?: string;
}

interface CommonOptions extends CrypterOptions {
  storage: string;
  json?: boolean;
  [flag: string]: unknown;
}

interface BackupFullOptions extends CommonOptions, AdminConnectionOptions {
  ratelimit?: string;
  incremental?: boolean;
  offline?: boolean;
  certificate?: string;
}

interface RestoreFullOptions extends CommonOptions {
  config: string;
  backup?: string;
}

function addStorageFlags(cmd: Command): Command {
  cmd.requiredOption('--storage <url>', 'where backups live: local:///path or a path, s3://bucket/prefix, azure://container/prefix');
  for (const f of STORAGE_FLAGS) cmd.option(f.flags, f.description);
  return cmd;
}

function addCrypterFlags(cmd: Command, restore: boolean): Command {
  return cmd
    .option('--crypter.method <method>', restore ? 'with --crypter.key-file: the method the backup was taken with (aes256-ctr)' : 'protect the backup key with a key file instead of the master key: aes256-ctr')
    .option('--crypter.key-file <file>', restore ? 'the key file the backup\'s key is wrapped by' : 'with --crypter.method: the key file (64 hex characters and a newline, as `tdekv keygen` writes) that wraps the backup key');
}

export function registerBackupCommands(root: Command, io: Output): void {
  const backup = root.command('backup').description('encrypted backups (docs/backup.md): take, verify, list and prune them');
  const full = backup
    .command('full')
    .description('take a backup: every file of one version re-encrypted under a fresh backup key wrapped by a protector')
    .requiredOption('--config <file>', 'TOML configuration of the database to back up')
    .option('--offline', 'back up a stopped data dir (refused while a server runs on it); without it, the running server of --config')
    .option('--incremental', 'reference the tables the latest backup at --storage already holds; upload only the rest')
    .option('--ratelimit <size>', 'upload at most this many bytes a second, e.g. 64MiB')
    .option('--certificate <name>', 'protect the backup key with this certificate of the config\'s key store (BACKUP … WITH ENCRYPTION (SERVER CERTIFICATE = …))')
    .option('--json', 'print the result as JSON');
  addAdminConnectionOptions(full, 'online: ');
  addCrypterFlags(addStorageFlags(full), false).action(async (opts: BackupFullOptions) => backupFull(opts, io));

  addStorageFlags(
    backup
      .command('verify')
      .description('read every object of every backup (or one) and check it against its manifest, without restoring')
      .option('--config <file>', 'TOML configuration whose master key or key store opens the backup keys, so the manifests\' MACs are checked too')
      .option('--backup <id>', 'only this backup')
      .option('--json', 'print the result as JSON'),
  );
  addCrypterFlags(backup.commands.find((c) => c.name() === 'verify')!, true).action(async (opts: CommonOptions & { config?: string; backup?: string }) => backupVerify(opts, io));

  addStorageFlags(backup.command('list').description('the backups at a storage: time, size, added bytes, method, protector, complete or not').option('--json', 'print JSON')).action(
    async (opts: CommonOptions) => backupList(opts, io),
  );

  addStorageFlags(
    backup
      .command('prune')
      .description('keep the newest N complete backups; remove the others and every object no kept backup needs')
      .requiredOption('--keep <n>', 'how many of the newest complete backups to keep', (v: string) => Number(v))
      .option('--config <file>', 'type = "certificate": forget the removed backups in this key store, so drop-certificate no longer counts them')
      .option('--json', 'print JSON'),
  ).action(async (opts: CommonOptions & { keep: number; config?: string }) => backupPrune(opts, io));

  const restore = root.command('restore').description('restore a backup (docs/backup.md)');
  const rfull = restore
    .command('full')
    .description('restore a backup into an empty data dir ([storage] data-dir of --config), under the config\'s master key')
    .requiredOption('--config <file>', 'TOML configuration of the restored database')
    .option('--backup <id>', 'the backup to restore (default: the latest complete one)')
    .option('--json', 'print the result as JSON');
  addCrypterFlags(addStorageFlags(rfull), true).action(async (opts: RestoreFullOptions) => restoreFull(opts, io));
}

async function withStorage<T>(opts: CommonOptions, fn: (storage: BackupStorage) => Promise<T>): Promise<T> {
  const storage = await openStorage(parseStorageUrl(opts.storage, { flags: storageFlagsFromOptions(opts) }));
  try {
    return await fn(storage);
  } finally {
    await storage.close();
  }
}

function keyFileOf(opts: CrypterOptions): string | undefined {
  const method = opts['crypter.method'];
  const file = opts['crypter.keyFile'];
  if (method !== undefined && method !== 'aes256-ctr') {
    throw new TdekvError('INVALID_ARGUMENT', `--crypter.method ${method} is not supported: the key file protector wraps with a 256-bit key, use --crypter.method aes256-ctr`);
  }
  if (method !== undefined && file === undefined) throw new TdekvError('INVALID_ARGUMENT', '--crypter.method needs --crypter.key-file FILE (64 hex characters and a newline, as `tdekv keygen --out FILE` writes)');
  return file;
}

function availableFrom(config: TdekvConfig | undefined, opts: CrypterOptions): AvailableProtectors {
  const keyFile = keyFileOf(opts);
  if (!config) return keyFile !== undefined ? { keyFile } : {};
  const enc = config.security.encryption;
  const mk = enc.masterKey;
  return {
    masterKeys: [mk, ...(enc.previousMasterKey ? [enc.previousMasterKey] : [])],
    ...(mk.type === 'certificate' ? { keyStore: { keyStore: mk.keyStore, serviceMasterKey: mk.serviceMasterKey } } : {}),
    ...(keyFile !== undefined ? { keyFile } : {}),
  };
}

function protectorFrom(config: TdekvConfig, opts: BackupFullOptions): ProtectorChoice {
  const keyFile = keyFileOf(opts);
  if (keyFile !== undefined && opts.certificate !== undefined) throw new TdekvError('INVALID_ARGUMENT', 'give one protector: --certificate NAME or --crypter.method aes256-ctr --crypter.key-file FILE, not both');
  if (keyFile !== undefined) {
    if (opts['crypter.method'] === undefined) throw new TdekvError('INVALID_ARGUMENT', '--crypter.key-file needs --crypter.method aes256-ctr (as BR\'s crypter flags)');
    return { kind: 'key-file', method: 'aes256-ctr', path: keyFile };
  }
  const mk = config.security.encryption.masterKey;
  if (opts.certificate !== undefined) {
    if (mk.type !== 'certificate') {
      throw new TdekvError(
        'CONFIG_INVALID',
        `--certificate ${opts.certificate}: ${opts.config} has [security.encryption.master-key] type = "${mk.type}"; a certificate protector needs the key store of a type = "certificate" master key (key-store, and a [security.encryption.service-master-key])`,
      );
    }
    return { kind: 'certificate', keyStore: mk.keyStore, certificate: opts.certificate, serviceMasterKey: mk.serviceMasterKey };
  }
  if (mk.type === 'plaintext') throw new TdekvError('CONFIG_INVALID', `${opts.config} has a plaintext master key, which protects nothing: give --certificate NAME or --crypter.method aes256-ctr --crypter.key-file FILE`);
  return { kind: 'master-key', masterKey: mk };
}

/** A bar on a terminal (stderr), JSON lines on stderr otherwise (logs, pipes, CI). */
export function progressReporter(io: Output): { onProgress: (p: BackupProgress) => void; stop(): void } {
  if (!process.stderr.isTTY) return { onProgress: (p) => io.err(JSON.stringify({ progress: p })), stop: () => {} };
  const bar = new cliProgress.SingleBar(
    { format: '{phase} [{bar}] {percentage}% | {files}/{filesTotal} files | {done_text} of {total_text} | {rate_text}/s | ETA {eta_text}', hideCursor: true, barsize: 30, fps: 5 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    onProgress(p) {
      const payload = { phase: p.phase, files: p.files, filesTotal: p.filesTotal, done_text: fmt(p.bytes), total_text: fmt(p.bytesTotal), rate_text: fmt(p.rate), eta_text: p.etaSeconds === undefined ? '-' : `${p.etaSeconds}s` };
      if (!started) {
        bar.start(Math.max(p.bytesTotal, 1), p.bytes, payload);
        started = true;
      } else {
        bar.setTotal(Math.max(p.bytesTotal, 1));
        bar.update(p.bytes, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

function fmt(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)}${units[i]}`;
}

function rateOf(text: string | undefined): number {
  if (text === undefined) return 0;
  try {
    return parseSize(text);
  } catch (err) {
    throw new TdekvError('INVALID_ARGUMENT', `--ratelimit ${text}: ${err instanceof Error ? err.message : String(err)} (bytes a second, e.g. 64MiB)`);
  }
}

async function backupFull(opts: BackupFullOptions, io: Output): Promise<void> {
  const config = await loadConfig(opts.config);
  const protector = protectorFrom(config, opts);
  const rateLimit = rateOf(opts.ratelimit);
  // Online: the server pins a version and holds the encryption scan off until the source is closed.
  const source: BackupSource = opts.offline ? await OfflineSource.open(config) : await OnlineBackupSource.connect(config, opts);
  const progress = progressReporter(io);
  try {
    const { id, manifest } = await withStorage(opts, (storage) =>
      runBackup(source, storage, { protector, rateLimit, onProgress: progress.onProgress, ...(opts.incremental ? { incremental: true, available: availableFrom(config, opts) } : {}) }),
    );
    progress.stop();
    const t = manifest.totals;
    if (opts.json) io.out(JSON.stringify({ id, parent: manifest.parent ?? null, files: t.files, bytes: t.bytes, addedFiles: t.addedFiles, addedBytes: t.addedBytes, sequence: manifest.sequence ?? null }));
    else io.out(`backup ${id} complete: ${t.files} files, ${fmt(t.bytes)} (${fmt(t.addedBytes)} uploaded${manifest.parent ? `, incremental on ${manifest.parent}` : ''})`);
  } finally {
    progress.stop();
    await source.close();
  }
}

async function restoreFull(opts: RestoreFullOptions, io: Output): Promise<void> {
  const config = await loadConfig(opts.config);
  const progress = progressReporter(io);
  try {
    const r = await withStorage(opts, (storage) =>
      runRestore(storage, config, { available: availableFrom(config, opts), onProgress: progress.onProgress, logger: createLogger(), ...(opts.backup !== undefined ? { backupId: opts.backup } : {}) }),
    );
    progress.stop();
    if (opts.json) io.out(JSON.stringify(r));
    else io.out(`restored backup ${r.id} into ${r.dataDir}: ${r.files} files, ${fmt(r.bytes)}; its keys are now wrapped by the master key of ${opts.config}`);
  } finally {
    progress.stop();
  }
}

async function backupVerify(opts: CommonOptions & { config?: string; backup?: string }, io: Output): Promise<void> {
  const config = opts.config !== undefined ? await loadConfig(opts.config) : undefined;
  const progress = progressReporter(io);
  let result;
  try {
    result = await withStorage(opts, (storage) =>
      runVerify(storage, { available: availableFrom(config, opts), onProgress: progress.onProgress, ...(opts.backup !== undefined ? { backupId: opts.backup } : {}) }),
    );
  } finally {
    progress.stop();
  }
  if (opts.json) io.out(JSON.stringify(result));
  else {
    for (const b of result.backups) {
      io.out(`${b.id}: ${b.problems.length === 0 ? 'ok' : 'DAMAGED'} (${b.objects} objects, ${fmt(b.bytes)}; manifest MAC ${b.macChecked ? 'checked' : 'NOT checked'})`);
      if (b.macNote) io.out(`  ${b.macNote}`);
      for (const p of b.problems) io.out(`  ${p}`);
    }
    if (result.backups.length === 0) io.out(`no complete backup at ${opts.storage}`);
  }
  if (!result.ok) {
    const first = result.backups.flatMap((b) => b.problems)[0] ?? '';
    throw new TdekvError('BACKUP_DAMAGED', `verify found damage: ${first}`);
  }
}

async function backupList(opts: CommonOptions, io: Output): Promise<void> {
  const rows = await withStorage(opts, (storage) => runList(storage));
  if (opts.json) {
    io.out(JSON.stringify(rows));
    return;
  }
  if (rows.length === 0) io.out(`no backups at ${opts.storage}`);
  for (const r of rows) {
    if (!r.complete || r.damaged) {
      io.out(`${r.id}  ${r.damaged ? `DAMAGED: ${r.damaged}` : 'incomplete (no manifest: stopped or still running)'}`);
      continue;
    }
    io.out(`${r.id}  ${r.createdAt}  ${fmt(r.bytes ?? 0)} (+${fmt(r.addedBytes ?? 0)})  ${r.files} files  method ${r.method}  protector ${r.protector}${r.parent ? `  incremental on ${r.parent}` : ''}`);
  }
}

async function backupPrune(opts: CommonOptions & { keep: number; config?: string }, io: Output): Promise<void> {
  const mk = opts.config !== undefined ? (await loadConfig(opts.config)).security.encryption.masterKey : undefined;
  const r = await withStorage(opts, (storage) => runPrune(storage, opts.keep, mk?.type === 'certificate' ? { keyStore: mk.keyStore } : {}));
  if (opts.json) io.out(JSON.stringify(r));
  else io.out(`kept ${r.kept.length} backups; removed ${r.removedBackups.length} backups and ${r.removedObjects} objects (${fmt(r.removedBytes)})`);
}


