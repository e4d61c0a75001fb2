import { after, describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { chmod, cp, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import fc from 'fast-check';
import { join } from 'node:path';
import { TdekvLevel } from '../src/level/tdekv-level.js';
import { isTdekvError, type TdekvErrorCode } from '../src/errors.js';
import { CLI, runCli, type CliResult } from './support/cli.js';
import { parseConfig } from '../src/config/config.js';
import { KmsMasterKey } from '../src/masterkey/kms.js';
import { KeyStore } from '../src/masterkey/certificate/key-store.js';
import { FakeKms } from './support/fake-kms.js';
import {
  backupCertificateCommand,
  createCertificateCommand,
  createMasterKeyCommand,
  openMasterKeyCommand,
  restoreCertificateCommand,
} from '../src/cli/key.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

// SQL Server's key hierarchy (issue 13 item 2) end to end, as the issue describes it: machines
// are directories with their own service master key file, key store, data dir and config.

function hasX509(): boolean {
  try {
    createRequire(import.meta.url).resolve('@peculiar/x509');
    return true;
  } catch {
    return false;
  }
}

const SKIP = hasX509() ? false : '@peculiar/x509 is not installed (npm install)';
// A regular dependency: in CI (.ci/run installs dependencies) a missing one is a failure, not a skip.
if (SKIP !== false && process.env['CI'] === 'true') throw new Error(`the key hierarchy tests cannot run in CI: ${SKIP}`);

interface Machine {
  dir: string;
  config: string;
  keyStore: string;
  dataDir: string;
  smk: string;
}

async function machine(root: string, name: string): Promise<Machine> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const smk = (await writeKeyFile(dir, 'smk.key')).path;
  const m: Machine = { dir, config: join(dir, 'tdekv.toml'), keyStore: join(dir, 'keystore'), dataDir: join(dir, 'data'), smk };
  await writeFile(
    m.config,
    [
      '[storage]',
      `data-dir = ${JSON.stringify(m.dataDir)}`,
      '[security.encryption]',
      'data-encryption-method = "aes256-ctr"',
      '[security.encryption.master-key]',
      'type = "certificate"',
      `key-store = ${JSON.stringify(m.keyStore)}`,
      'certificate = "tde"',
      '[security.encryption.service-master-key]',
      'type = "file"',
      `path = ${JSON.stringify(smk)}`,
      '[server]',
      'addr = "127.0.0.1:0"',
      'status-addr = "127.0.0.1:0"',
      '',
    ].join('\n'),
  );
  return m;
}

function level(m: Machine, certificate = 'tde', previous?: string): TdekvLevel {
  return new TdekvLevel(m.dataDir, {
    dataEncryptionMethod: 'aes256-ctr',
    masterKey: { type: 'certificate', keyStore: m.keyStore, certificate },
    ...(previous !== undefined ? { previousMasterKey: { type: 'certificate', keyStore: m.keyStore, certificate: previous } } : {}),
    serviceMasterKey: { type: 'file', path: m.smk },
  } as never);
}

async function key(m: Machine, ...args: string[]): Promise<CliResult> {
  return runCli(['key', ...args, '--config', m.config]);
}

function ok(r: CliResult, what: string): void {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
}

function refused(r: CliResult, codes: TdekvErrorCode[], ...words: string[]): void {
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.ok(codes.some((c) => r.stderr.includes(`[${c}]`)), `expected one of ${codes.join(', ')}: ${r.stderr}`);
  for (const w of words) assert.ok(r.stderr.includes(w), `expected ${JSON.stringify(w)} in: ${r.stderr}`);
}

/** The TdekvError behind an open failure (abstract-level wraps it). */
async function openError(db: TdekvLevel): Promise<Error> {
  try {
    await db.open();
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    assert.ok(isTdekvError(cause), `not a TdekvError: ${String(err)}`);
    return cause;
  }
  await db.close();
  assert.fail('the data dir opened');
}

const ROWS = 300;
const row = (i: number): [string, string] => [`key-${String(i).padStart(4, '0')}`, `value ${i} ${'x'.repeat(i % 50)}`];

async function readsEveryKey(m: Machine, certificate = 'tde', previous?: string): Promise<void> {
  const db = level(m, certificate, previous);
  await db.open();
  try {
    for (let i = 0; i < ROWS; i++) {
      const [k, v] = row(i);
      assert.equal(await db.get(k), v, k);
    }
  } finally {
    await db.close();
  }
}

async function listJson(m: Machine): Promise<{ certificates: Array<{ name: string; thumbprint: string; protectsDataDirs: string[] }>; masterKey: { serviceMasterKeys: Array<{ path?: string }> } }> {
  const r = await key(m, 'list', '--json');
  ok(r, 'list');
  return JSON.parse(r.stdout);
}

/** A machine with its own DMK (this password), certificate "tde" and a data dir holding ROWS rows. */
async function machineWithData(root: string, name: string, passwordFile: string): Promise<Machine> {
  const m = await machine(root, name);
  ok(await key(m, 'create-master-key', '--password-file', passwordFile), `${name}: create-master-key`);
  ok(await key(m, 'create-certificate', 'tde', '--subject', 'tdekv TDE certificate'), `${name}: create-certificate`);
  const db = level(m);
  await db.open();
  for (let i = 0; i < ROWS; i++) await db.put(...row(i));
  await db.close();
  return m;
}

describe('SQL Server key hierarchy: SMK → DMK → certificate → DEK', { skip: SKIP }, () => {
  let root: string;
  let a: Machine;
  let thumbprint: string;
  let certFile: string;
  let keyFile: string;
  let password: string;

  before(async () => {
    root = await tempDir('tdekv-hierarchy-');
    password = join(root, 'dmk-a.password');
    await writeFile(password, 'machine A dmk password\n', { mode: 0o600 });
    a = await machineWithData(root, 'a', password);
    await readsEveryKey(a);
    const list = await listJson(a);
    assert.equal(list.certificates.length, 1);
    thumbprint = list.certificates[0]!.thumbprint;
    assert.deepEqual(list.certificates[0]!.protectsDataDirs, [a.dataDir]);
    certFile = join(root, 'tde.crt');
    keyFile = join(root, 'tde.pvk');
    await writeFile(join(root, 'backup.password'), 'backup password\n', { mode: 0o600 });
    ok(await key(a, 'backup-certificate', 'tde', '--file', certFile, '--private-key-file', keyFile, '--password-file', join(root, 'backup.password')), 'backup');
  });

  after(async () => {
    if (root !== undefined) await cleanup(root);
  });

  test('the key store is owner-only: directories 0700, files 0600, no temporary files left; nothing in it is a secret in clear', async () => {
    const { stat } = await import('node:fs/promises');
    const mode = async (p: string): Promise<string> => ((await stat(p)).mode & 0o777).toString(8);
    assert.equal(await mode(a.keyStore), '700');
    assert.equal(await mode(join(a.keyStore, 'certificates')), '700');
    const files = [...(await readdir(a.keyStore)).filter((f) => f !== 'certificates'), ...(await readdir(join(a.keyStore, 'certificates'))).map((f) => join('certificates', f))];
    assert.deepEqual(files.sort(), ['certificates/tde.json', 'master-key.json', 'protected-data-dirs.json']);
    for (const f of files) assert.equal(await mode(join(a.keyStore, f)), '600', f);
    const text = (await Promise.all(files.map((f) => readFile(join(a.keyStore, f), 'utf8')))).join('\n');
    assert.ok(!text.includes('PRIVATE KEY') && !text.includes('machine A dmk password'), 'no private key or password in clear');
  });

  test('openssl agrees: the thumbprint is the certificate\'s SHA-1 fingerprint, and openssl pkcs8 decrypts the private-key backup with the password', () => {
    const x509 = spawnSync('openssl', ['x509', '-in', certFile, '-noout', '-fingerprint', '-sha1', '-subject'], { encoding: 'utf8' });
    assert.equal(x509.status, 0, x509.stderr);
    assert.match(x509.stdout, new RegExp(`^sha1 Fingerprint=${thumbprint}$`, 'mi'));
    assert.match(x509.stdout, /CN\s*=\s*tdekv TDE certificate/);
    const p8 = spawnSync('openssl', ['pkcs8', '-in', keyFile, '-passin', `file:${join(root, 'backup.password')}`], { encoding: 'utf8' });
    assert.equal(p8.status, 0, p8.stderr);
    assert.match(p8.stdout, /^-----BEGIN PRIVATE KEY-----/);
    const wrong = spawnSync('openssl', ['pkcs8', '-in', keyFile, '-passin', 'pass:not the password'], { encoding: 'utf8' });
    assert.notEqual(wrong.status, 0, 'a wrong password must not decrypt the backup');
    // The decrypted key belongs to the certificate: same modulus.
    const certMod = spawnSync('openssl', ['x509', '-in', certFile, '-noout', '-modulus'], { encoding: 'utf8' }).stdout;
    const keyMod = spawnSync('openssl', ['rsa', '-noout', '-modulus'], { input: p8.stdout, encoding: 'utf8' }).stdout;
    assert.ok(certMod.length > 700 && certMod === keyMod, 'RSA-3072 modulus of the key equals the certificate\'s');
  });

  test('machine B: the copied data dir does not open until the certificate is restored, naming its thumbprint and the command', async () => {
    const b = await machine(root, 'b');
    await writeFile(join(root, 'dmk-b.password'), 'machine B has its own password\n', { mode: 0o600 });
    ok(await key(b, 'create-master-key', '--password-file', join(root, 'dmk-b.password')), 'B create-master-key');
    await cp(a.dataDir, b.dataDir, { recursive: true });
    const err = await openError(level(b));
    assert.ok(isTdekvError(err, 'CERTIFICATE_MISSING'), err.message);
    assert.ok(err.message.includes(thumbprint) && err.message.includes('tdekv key restore-certificate tde'), err.message);
    assert.ok(err.message.includes('cannot be decrypted until the right certificate is available'), err.message);

    const backupPw = join(root, 'backup.password');
    const wrongPw = join(root, 'wrong.password');
    await writeFile(wrongPw, 'not the backup password\n', { mode: 0o600 });
    refused(await key(b, 'restore-certificate', 'tde', '--file', certFile, '--private-key-file', keyFile, '--password-file', wrongPw), ['CERTIFICATE_PASSWORD_WRONG'], keyFile);
    // A byte of the encrypted key changed, well inside the PEM body: refused, whether the
    // damage shows as bad padding, unparsable DER, or a key that no longer matches.
    const pem = await readFile(keyFile, 'utf8');
    const at = pem.indexOf('\n', 200) + 10;
    const tampered = join(root, 'tampered.pvk');
    await writeFile(tampered, pem.slice(0, at) + (pem[at] === 'A' ? 'B' : 'A') + pem.slice(at + 1));
    refused(await key(b, 'restore-certificate', 'tde', '--file', certFile, '--private-key-file', tampered, '--password-file', backupPw), ['CERTIFICATE_PASSWORD_WRONG', 'DATA_CORRUPTED'], 'nothing was changed');
    assert.deepEqual(await readdir(join(b.keyStore, 'certificates')).catch(() => []), [], 'nothing was added to the key store');

    ok(await key(b, 'restore-certificate', 'tde', '--file', certFile, '--private-key-file', keyFile, '--password-file', backupPw), 'B restore');
    await readsEveryKey(b);
    const list = await listJson(b);
    assert.deepEqual(list.certificates.map((c) => [c.name, c.thumbprint, c.protectsDataDirs]), [['tde', thumbprint, [b.dataDir]]]);
  });

  test('machine C: A\'s key store under another SMK opens only after open-master-key --add-service-master-key with the password', async () => {
    const c = await machine(root, 'c');
    await cp(a.keyStore, c.keyStore, { recursive: true });
    await cp(a.dataDir, c.dataDir, { recursive: true });
    const err = await openError(level(c));
    assert.ok(isTdekvError(err, 'DMK_UNAVAILABLE'), err.message);
    assert.ok(err.message.includes('tdekv key open-master-key --password-file PASSWORD_FILE --add-service-master-key'), err.message);
    refused(await key(c, 'create-certificate', 'other', '--subject', 'x'), ['DMK_UNAVAILABLE']);

    const wrong = join(root, 'wrong-dmk.password');
    await writeFile(wrong, 'machine A dmk passwore\n', { mode: 0o600 });
    const before = await readFile(join(c.keyStore, 'master-key.json'));
    refused(await key(c, 'open-master-key', '--password-file', wrong, '--add-service-master-key'), ['DMK_PASSWORD_WRONG'], 'nothing was changed');
    assert.deepEqual(await readFile(join(c.keyStore, 'master-key.json')), before);

    ok(await key(c, 'open-master-key', '--password-file', password, '--add-service-master-key'), 'open-master-key');
    await readsEveryKey(c);
    const smks = (await listJson(c)).masterKey.serviceMasterKeys.map((s) => s.path);
    assert.deepEqual(smks, [a.smk, c.smk], "A's protection stays (it still opens A's copy), C's is added");
  });

  test('a certificate that protects a DEK is not dropped; an unused one is', async () => {
    refused(await key(a, 'drop-certificate', 'tde'), ['CERTIFICATE_IN_USE'], a.dataDir);
    ok(await key(a, 'create-certificate', 'spare', '--subject', 'CN=spare, O=tdekv'), 'create spare');
    ok(await key(a, 'drop-certificate', 'spare'), 'drop spare');
    assert.deepEqual((await listJson(a)).certificates.map((c) => c.name), ['tde']);
    await readsEveryKey(a);
  });

  test('changing the certificate is a rotation through previous-master-key: key.dict is re-sealed, no data rewritten, then the old one may go', async () => {
    const r = await machineWithData(root, 'rot', password);
    ok(await key(r, 'create-certificate', 'tde2', '--subject', 'second'), 'create tde2');
    const err = await openError(level(r, 'tde2'));
    assert.ok(isTdekvError(err, 'MASTER_KEY_WRONG') && err.message.includes('previous-master-key'), err.message);
    const tables = (await readdir(r.dataDir)).filter((f) => f.endsWith('.sst'));
    const before = await Promise.all(tables.map((f) => readFile(join(r.dataDir, f))));
    const sealedBefore = await readFile(join(r.dataDir, 'encryption-meta', 'key.dict'));
    await readsEveryKey(r, 'tde2', 'tde');
    await readsEveryKey(r, 'tde2');
    assert.ok(tables.length > 0);
    assert.deepEqual(await Promise.all(tables.map((f) => readFile(join(r.dataDir, f)))), before, 'no table was rewritten');
    assert.notDeepEqual(await readFile(join(r.dataDir, 'encryption-meta', 'key.dict')), sealedBefore, 'key.dict was re-sealed');
    const list = await listJson(r);
    assert.deepEqual(Object.fromEntries(list.certificates.map((c) => [c.name, c.protectsDataDirs])), { tde: [], tde2: [r.dataDir] });
    const after = join(r.dir, 'tde2.toml');
    await writeFile(after, (await readFile(r.config, 'utf8')).replace('certificate = "tde"', 'certificate = "tde2"'));
    ok(await runCli(['key', 'drop-certificate', 'tde', '--config', after]), 'drop tde after rotating');
    await readsEveryKey(r, 'tde2');
  });

  test('a password file group or others can read is refused, naming the chmod, and nothing is created', async () => {
    const m = await machine(root, 'loose');
    const loose = join(m.dir, 'loose.password');
    await writeFile(loose, 'readable by everyone\n', { mode: 0o644 });
    await chmod(loose, 0o644);
    refused(await key(m, 'create-master-key', '--password-file', loose), ['INVALID_ARGUMENT'], 'mode 0644', `chmod 600 ${loose}`);
    assert.equal(await stat(m.keyStore).then(() => true, () => false), false, 'no key store was created');
    await chmod(loose, 0o600);
    ok(await key(m, 'create-master-key', '--password-file', loose), 'create-master-key once owner-only');
  });

  test('changing the certificate online is state 6 PROTECTION_CHANGE_IN_PROGRESS: key.dict re-sealed, no table rewritten, no restart', async () => {
    const r = await machineWithData(root, 'online', password);
    ok(await key(r, 'create-certificate', 'tde2', '--subject', 'second'), 'create tde2');
    const tables = (await readdir(r.dataDir)).filter((f) => f.endsWith('.sst'));
    const before = await Promise.all(tables.map((f) => readFile(join(r.dataDir, f))));
    const db = level(r);
    await db.open();
    try {
      assert.equal(db.encryption.status().masterKeyIdentity, 'certificate tde');
      const states: number[] = [];
      db.encryption.on('progress', (st) => states.push(st.encryptionState));
      const report = await db.encryption.reload({ masterKey: { type: 'certificate', keyStore: r.keyStore, certificate: 'tde2' } });
      assert.deepEqual(report.applied, ['master-key']);
      assert.ok(states.includes(6), `states seen: ${states.join(',')}`);
      assert.equal(report.status.encryptionState, 3);
      assert.equal(report.status.masterKeyIdentity, 'certificate tde2');
      assert.ok(report.status.history.some((h) => h.to === 6) && report.status.history.some((h) => h.from === 6 && h.to === 3));
      for (let i = 0; i < ROWS; i += 17) assert.equal(await db.get(row(i)[0]), row(i)[1]);
    } finally {
      await db.close();
    }
    assert.ok(tables.length > 0);
    assert.deepEqual(await Promise.all(tables.map((f) => readFile(join(r.dataDir, f)))), before, 'no table was rewritten');
    // The new certificate alone opens it now; the old one no longer does.
    await readsEveryKey(r, 'tde2');
    const err = await openError(level(r, 'tde'));
    assert.ok(isTdekvError(err, 'MASTER_KEY_WRONG'), err.message);
  });

  test('serve --dmk-password-file re-protects a moved key store by this machine\'s SMK; without it serve refuses, naming the recovery command', async () => {
    const d = await machine(root, 'd');
    await cp(a.keyStore, d.keyStore, { recursive: true });
    await cp(a.dataDir, d.dataDir, { recursive: true });
    const refusedServe = await runCli(['serve', '--config', d.config]);
    refused(refusedServe, ['DMK_UNAVAILABLE'], 'tdekv key open-master-key', '--dmk-password-file');
    assert.ok(!refusedServe.stderr.includes('machine A dmk password'));

    const child = spawn(process.execPath, [CLI, 'serve', '--config', d.config, '--dmk-password-file', password], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const ready = new Promise<boolean>((resolve) => {
      const onData = (chunk: Buffer): void => {
        log += chunk.toString();
        if (/"msg":"ready"/.test(log)) resolve(true);
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('close', () => resolve(false));
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.ok(await ready, `serve did not become ready:\n${log}`);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, log);
    assert.ok(log.includes('opened by password and is now protected'), log);
    assert.ok(!log.includes('machine A dmk password'), 'the password is never logged');
    await readsEveryKey(d);
  });

  test('config: type = "certificate" needs [security.encryption.service-master-key], which only it uses and which must be machine-bound', () => {
    const parse = (text: string): unknown => parseConfig(text, { source: 't.toml', baseDir: root });
    const cert = '[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "certificate"\nkey-store = "/ks"\ncertificate = "tde"\n';
    const smk = (type: string): string => `[security.encryption.service-master-key]\ntype = "${type}"\npath = "/smk.key"\n`;
    assert.throws(() => parse(cert), (e: Error) => e.message.includes('needs a service master key') && e.message.includes('[security.encryption.service-master-key]'));
    assert.throws(() => parse(cert + smk('certificate')), (e: Error) => e.message.includes('type'));
    assert.throws(() => parse(cert + smk('plaintext')), (e: Error) => e.message.includes('type'));
    const fileMk = '[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = "/mk.key"\n';
    assert.throws(() => parse(fileMk + smk('file')), (e: Error) => e.message.includes('no master key has type = "certificate"'));
    const ok = parse(cert + smk('file')) as { security: { encryption: Record<string, unknown> } };
    assert.deepEqual(ok.security.encryption['masterKey'], { type: 'certificate', keyStore: '/ks', certificate: 'tde', serviceMasterKey: { type: 'file', path: '/smk.key' } });
    assert.equal(ok.security.encryption['serviceMasterKey'], undefined);
  });
});

describe('key store with a KMS service master key', () => {
  const KEY_A = 'arn:aws:kms:eu-west-1:111122223333:key/aaaaaaaa-0000-0000-0000-00000000smk1';
  const KEY_C = 'arn:aws:kms:eu-west-1:111122223333:key/aaaaaaaa-0000-0000-0000-00000000smk2';

  test("another KMS key is another machine's SMK (DMK_UNAVAILABLE); an unreachable KMS says so instead", async () => {
    const dir = await tempDir('tdekv-keystore-kms-');
    const kms = await new FakeKms([KEY_A, KEY_C]).start();
    const smk = (keyId: string): KmsMasterKey => new KmsMasterKey({ type: 'kms', keyId, region: 'eu-west-1', endpoint: kms.url, timeoutMs: 2000, maxAttempts: 1 });
    const a = smk(KEY_A);
    const c = smk(KEY_C);
    const store = new KeyStore(join(dir, 'ks'));
    const password = Buffer.from('kms machine password');
    try {
      await store.createMasterKey(password, a);
      const opened = await store.openDmkBySmk(a);
      assert.equal(opened.dmk.length, 32);
      await assert.rejects(store.openDmkBySmk(c), (err: Error) => isTdekvError(err, 'DMK_UNAVAILABLE') && err.message.includes(KEY_C) && err.message.includes(KEY_A));
      await store.addSmkProtection((await store.openDmkByPassword(password)).dmk, c);
      assert.deepEqual((await store.openDmkBySmk(c)).dmk, opened.dmk);
      await assert.rejects(store.openDmkByPassword(Buffer.from('kms machine passwore')), (err: Error) => isTdekvError(err, 'DMK_PASSWORD_WRONG'));
      await kms.close();
      await assert.rejects(store.openDmkBySmk(a), (err: Error) => isTdekvError(err, 'MASTER_KEY_UNAVAILABLE'));
    } finally {
      a.close();
      c.close();
      await kms.close().catch(() => {});
      await cleanup(dir);
    }
  });
});

/** An operation and which eligible certificate it applies to (pick modulo the eligible ones; none eligible: skipped). */
interface Op {
  op: 'create' | 'backup' | 'lose-and-restore' | 'rotate' | 'new-smk';
  pick: number;
}

describe('property: create/backup/restore/rotate sequences keep the data readable', { skip: SKIP }, () => {
  const opArb: fc.Arbitrary<Op> = fc.record({
    op: fc.constantFrom<Op['op']>('create', 'backup', 'lose-and-restore', 'rotate', 'new-smk'),
    pick: fc.nat(5),
  });

  test('after every step the data dir opens under the current certificate and every row written so far reads back', async () => {
    const io = { out: () => {}, err: () => {} };
    let run = 0;
    const performed = new Set<Op['op']>();
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 6 }), async (ops) => {
        const root = await tempDir('tdekv-hierarchy-prop-');
        try {
          const m = await machine(root, `m${run++}`);
          const pw = join(root, 'pw');
          await writeFile(pw, 'property password\n', { mode: 0o600 });
          const config = (certificate: string): string => m.config.replace(/\.toml$/, `-${certificate}.toml`);
          const writeConfig = async (certificate: string): Promise<string> => {
            await writeFile(config(certificate), (await readFile(m.config, 'utf8')).replace('certificate = "tde"', `certificate = "${certificate}"`));
            return config(certificate);
          };
          await createMasterKeyCommand({ config: await writeConfig('c1'), passwordFile: pw }, io);
          await createCertificateCommand('c1', { config: config('c1'), subject: 'c1', validDays: 30 }, io);
          const model = { current: 'c1', inStore: new Set(['c1']), backups: new Set<string>(), rows: new Map<string, string>() };
          const step = async (certificate: string, previous: string | undefined, i: number): Promise<void> => {
            const db = level(m, certificate, previous);
            await db.open();
            try {
              for (const [k, v] of model.rows) assert.equal(await db.get(k), v, k);
              model.rows.set(`row-${i}`, `value ${i} under ${certificate}`);
              await db.put(`row-${i}`, model.rows.get(`row-${i}`)!);
            } finally {
              await db.close();
            }
          };
          await step('c1', undefined, 0);
          for (const [i, o] of ops.entries()) {
            const eligible = (names: Iterable<string>): string | undefined => {
              const list = [...names].sort();
              return list.length === 0 ? undefined : list[o.pick % list.length];
            };
            const cfg = await writeConfig(model.current);
            const pair = (name: string): { config: string; file: string; privateKeyFile: string; passwordFile: string } => ({
              config: cfg,
              file: join(root, `${name}.crt`),
              privateKeyFile: join(root, `${name}.pvk`),
              passwordFile: pw,
            });
            let name: string | undefined;
            if (o.op === 'create') {
              name = `c${model.inStore.size + 1}`;
              await createCertificateCommand(name, { config: cfg, subject: name, validDays: 30 }, io);
              model.inStore.add(name);
            } else if (o.op === 'backup' && (name = eligible([...model.inStore].filter((n) => !model.backups.has(n)))) !== undefined) {
              await backupCertificateCommand(name, pair(name), io);
              model.backups.add(name);
            } else if (o.op === 'lose-and-restore' && (name = eligible(model.backups)) !== undefined) {
              // The key store loses it (a disk, a mistake); the backup brings it back.
              await rm(join(m.keyStore, 'certificates', `${name}.json`));
              await restoreCertificateCommand(name, pair(name), io);
            } else if (o.op === 'rotate' && (name = eligible([...model.inStore].filter((n) => n !== model.current))) !== undefined) {
              await step(name, model.current, 100 + i);
              model.current = name;
            } else if (o.op === 'new-smk') {
              // The machine's SMK is replaced: the password re-protects the DMK.
              await rm(m.smk);
              await writeKeyFile(m.dir, 'smk.key');
              await openMasterKeyCommand({ config: cfg, passwordFile: pw, addServiceMasterKey: true }, io);
              name = 'smk';
            }
            if (name !== undefined) performed.add(o.op);
            await step(model.current, undefined, i + 1);
          }
        } finally {
          await cleanup(root);
        }
      }),
      // Fixed seed: the same sequences every run (each step costs an RSA-3072 key or a scrypt), chosen so that every operation occurs.
      { numRuns: 4, seed: 20, endOnFailure: true },
    );
    assert.deepEqual([...performed].sort(), ['backup', 'create', 'lose-and-restore', 'new-smk', 'rotate'], 'the seed must exercise every operation');
  });
});
