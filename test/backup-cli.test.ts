import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../src/config/config.js';
import { isTdekvError } from '../src/errors.js';
import { OfflineSource } from '../src/backup/offline-source.js';
import { runBackup } from '../src/backup/backup-run.js';
import { runRestore } from '../src/backup/restore-run.js';
import { backupCertificateCommand, createCertificateCommand, createMasterKeyCommand, restoreCertificateCommand } from '../src/cli/key.js';
import { CLI, runCli, type CliResult } from './support/cli.js';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { KeyStore } from '../src/masterkey/certificate/key-store.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { backupMachine, localStorage, readAll, rows, writeData, type BackupMachine } from './support/backup-fixture.js';

function ok(r: CliResult, what: string): void {
  assert.equal(r.code, 0, `${what} failed (${r.code}): ${r.stderr}`);
}

function progressLines(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{"progress"'))
    .map((l) => (JSON.parse(l) as { progress: Record<string, unknown> }).progress);
}

describe('tdekv backup / restore (the CLI, in child processes)', () => {
  let root: string;
  let src: BackupMachine;
  let store: string;
  let crypter: string;
  let expected: Map<string, string>;

  before(async () => {
    root = await tempDir('tdekv-backup-cli-');
    src = await backupMachine(root, 'source');
    await writeData(src, rows(800, 'cli'));
    expected = await readAll(src);
    store = join(root, 'store');
    crypter = (await writeKeyFile(root, 'crypter.key')).path;
  });
  after(() => cleanup(root));

  test('backup full --offline, list, verify, restore full on another machine with the key file; JSON progress lines', async () => {
    const b = await runCli(['backup', 'full', '--config', src.configPath, '--storage', store, '--offline', '--crypter.method', 'aes256-ctr', '--crypter.key-file', crypter, '--ratelimit', '512MiB', '--json']);
    ok(b, 'backup full');
    const result = JSON.parse(b.stdout) as { id: string; files: number; addedBytes: number };
    const events = progressLines(b.stderr);
    assert.ok(events.length >= 2, 'progress lines');
    assert.equal(events.at(-1)!['done'], true);
    assert.equal(events.at(-1)!['files'], result.files);
    assert.equal(events.at(-1)!['phase'], 'backup');

    const list = await runCli(['backup', 'list', '--storage', store, '--json']);
    ok(list, 'backup list');
    const listed = JSON.parse(list.stdout) as Array<{ id: string; complete: boolean; protector: string; method: string; addedBytes: number }>;
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.id, result.id);
    assert.equal(listed[0]!.complete, true);
    assert.equal(listed[0]!.method, 'aes256-ctr');
    assert.match(listed[0]!.protector, /key file .*crypter\.key/);

    const verify = await runCli(['backup', 'verify', '--storage', store, '--crypter.method', 'aes256-ctr', '--crypter.key-file', crypter]);
    ok(verify, 'backup verify');
    assert.match(verify.stdout, new RegExp(`${result.id}: ok .*manifest MAC checked`));
    const verifyNoKey = await runCli(['backup', 'verify', '--storage', store]);
    ok(verifyNoKey, 'backup verify without the key');
    assert.match(verifyNoKey.stdout, /MAC NOT checked/);

    const dst = await backupMachine(root, 'target');
    const refused = await runCli(['restore', 'full', '--config', dst.configPath, '--storage', store]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /wrapped by key file .*crypter\.key.*--crypter\.key-file.*\[BACKUP_KEY_UNAVAILABLE\]/);
    const r = await runCli(['restore', 'full', '--config', dst.configPath, '--storage', store, '--crypter.method', 'aes256-ctr', '--crypter.key-file', crypter]);
    ok(r, 'restore full');
    assert.equal(progressLines(r.stderr).at(-1)!['phase'], 'restore');
    assert.deepEqual(await readAll(dst), expected);

    const again = await runCli(['restore', 'full', '--config', dst.configPath, '--storage', store, '--crypter.method', 'aes256-ctr', '--crypter.key-file', crypter]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /is not empty.*\[BACKUP_REFUSED\]/);
  });

  test('backup full without --offline and no server running says so and points to --offline; prune keeps the newest', async () => {
    const online = await runCli(['backup', 'full', '--config', src.configPath, '--storage', store]);
    assert.equal(online.code, 1);
    assert.match(online.stderr, /no tdekv server answers at .*back up its data dir with --offline/);
    ok(await runCli(['backup', 'full', '--config', src.configPath, '--storage', store, '--offline', '--incremental', '--crypter.method', 'aes256-ctr', '--crypter.key-file', crypter]), 'incremental');
    const pruned = await runCli(['backup', 'prune', '--storage', store, '--keep', '1', '--json']);
    ok(pruned, 'prune');
    const p = JSON.parse(pruned.stdout) as { kept: string[]; removedBackups: string[] };
    assert.equal(p.kept.length, 1);
    assert.equal(p.removedBackups.length, 1);
    ok(await runCli(['backup', 'verify', '--storage', store, '--crypter.method', 'aes256-ctr', '--crypter.key-file', crypter]), 'verify after prune');
  });
});

describe('a restore killed with SIGKILL', () => {
  let root: string;
  before(async () => {
    root = await tempDir('tdekv-restore-kill-');
  });
  after(() => cleanup(root));

  test('leaves no data dir that opens with part of the data; the next run restores it whole', async () => {
    const m = await backupMachine(root, 'source');
    // Hundreds of small tables: the restore takes long enough to be killed in the middle.
    await writeData(m, rows(8000, 'kill'));
    const want = await readAll(m);
    const store = join(root, 'store');
    const keyFile = (await writeKeyFile(root, 'crypter.key')).path;
    const protector = ['--crypter.method', 'aes256-ctr', '--crypter.key-file', keyFile];
    ok(await runCli(['backup', 'full', '--config', m.configPath, '--storage', store, '--offline', ...protector]), 'backup full');
    const dst = await backupMachine(root, 'target');
    const child = spawn(process.execPath, [CLI, 'restore', 'full', '--config', dst.configPath, '--storage', store, ...protector], { stdio: ['ignore', 'ignore', 'pipe'] });
    let killedAt: Record<string, unknown> | undefined;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const line = stderr.split('\n').find((l) => l.startsWith('{"progress"'));
      if (killedAt === undefined && line !== undefined) {
        killedAt = (JSON.parse(line) as { progress: Record<string, unknown> }).progress;
        child.kill('SIGKILL');
      }
    });
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    assert.equal(signal, 'SIGKILL', `the restore ended by itself (code ${String(code)}) before it could be killed: ${stderr}`);
    assert.ok(killedAt !== undefined && killedAt['done'] !== true);
    // The target is absent or empty: a server started on it would find no database, never a partial one.
    const target = await readdir(dst.dataDir).catch(() => []);
    assert.deepEqual(target, [], `the target holds ${target.join(', ')} after the kill`);
    ok(await runCli(['restore', 'full', '--config', dst.configPath, '--storage', store, ...protector]), 'restore full again');
    assert.deepEqual(await readAll(dst), want);
  });
});

describe('the certificate protector (SQL Server\'s BACKUP … WITH ENCRYPTION (SERVER CERTIFICATE = …))', () => {
  const io = { out: () => {}, err: () => {} };
  let root: string;

  before(async () => {
    root = await tempDir('tdekv-backup-cert-');
  });
  after(() => cleanup(root));

  async function certMachine(name: string): Promise<BackupMachine & { keyStore: string; pw: string }> {
    const dir = join(root, name);
    await mkdir(dir, { recursive: true });
    const smk = (await writeKeyFile(dir, 'smk.key')).path;
    const keyStore = join(dir, 'keystore');
    const dataDir = join(dir, 'data');
    const configPath = join(dir, 'tdekv.toml');
    await writeFile(
      configPath,
      `[storage]\ndata-dir = ${JSON.stringify(dataDir)}\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "certificate"\nkey-store = ${JSON.stringify(keyStore)}\ncertificate = "tde"\n[security.encryption.service-master-key]\ntype = "file"\npath = ${JSON.stringify(smk)}\n`,
    );
    const pw = join(dir, 'pw');
    await writeFile(pw, `password of ${name}\n`, { mode: 0o600 });
    await createMasterKeyCommand({ config: configPath, passwordFile: pw }, io);
    await createCertificateCommand('tde', { config: configPath, subject: 'tde', validDays: 30 }, io);
    return { dir, configPath, config: await loadConfig(configPath), dataDir, keyPath: smk, keyStore, pw };
  }

  test('restores on another machine once the certificate is restored there; refused before, naming it; drop-certificate refused while a backup needs it', async () => {
    const a = await certMachine('a');
    await createCertificateCommand('bk', { config: a.configPath, subject: 'backups', validDays: 30 }, io);
    await writeData(a, rows(300, 'cert'));
    const want = await readAll(a);
    const storage = await localStorage(join(root, 'store'));
    const mk = a.config.security.encryption.masterKey;
    assert.equal(mk.type, 'certificate');
    if (mk.type !== 'certificate') return;
    const source = await OfflineSource.open(a.config);
    let id: string;
    try {
      ({ id } = await runBackup(source, storage, { protector: { kind: 'certificate', keyStore: mk.keyStore, certificate: 'bk', serviceMasterKey: mk.serviceMasterKey } }));
    } finally {
      await source.close();
    }
    const drop = await runCli(['key', 'drop-certificate', 'bk', '--config', a.configPath]);
    assert.equal(drop.code, 1);
    assert.match(drop.stderr, new RegExp(`a backup needs it \\(local://.*store ${id}.*\\[CERTIFICATE_IN_USE\\]`));

    const b = await certMachine('b');
    const bmk = b.config.security.encryption.masterKey;
    if (bmk.type !== 'certificate') return;
    const available = { masterKeys: [bmk], keyStore: { keyStore: bmk.keyStore, serviceMasterKey: bmk.serviceMasterKey } };
    await assert.rejects(runRestore(storage, b.config, { available }), (err: unknown) => {
      assert.ok(isTdekvError(err, 'BACKUP_KEY_UNAVAILABLE'), String(err));
      assert.match(err.message, /wrapped by certificate bk \(thumbprint [0-9A-F:]+\).*restore it with `tdekv key restore-certificate bk/);
      return true;
    });
    assert.equal((await readdir(b.dir)).includes('data'), false);
    const files = { file: join(root, 'bk.crt'), privateKeyFile: join(root, 'bk.pvk'), passwordFile: a.pw };
    await backupCertificateCommand('bk', { config: a.configPath, ...files }, io);
    await restoreCertificateCommand('bk', { config: b.configPath, ...files }, io);
    await runRestore(storage, b.config, { available });
    assert.deepEqual(await readAll(b), want);
    // b's key store knows the restored data dir by its real path, not the staging directory the restore built it in.
    assert.deepEqual((await new KeyStore(b.keyStore).protections()).map((p) => p.dataDir), [b.dataDir]);

    // Once the backups that need bk are pruned (and forgotten by a's key store), bk can be dropped.
    const again = await OfflineSource.open(a.config);
    try {
      await runBackup(again, storage, { protector: { kind: 'master-key', masterKey: mk } });
    } finally {
      await again.close();
    }
    const prune = await runCli(['backup', 'prune', '--storage', join(root, 'store'), '--keep', '1', '--config', a.configPath]);
    assert.equal(prune.code, 0, prune.stderr);
    const dropped = await runCli(['key', 'drop-certificate', 'bk', '--config', a.configPath]);
    assert.equal(dropped.code, 0, dropped.stderr);
  });
});
