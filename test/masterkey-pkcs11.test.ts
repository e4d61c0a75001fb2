import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Pkcs11MasterKey } from '../src/masterkey/pkcs11.js';
import { DEFAULT_PKCS11_TIMEOUT_MS, type Pkcs11MasterKeyConfig } from '../src/masterkey/master-key-config.js';
import { parseConfig } from '../src/config/config.js';
import type { Pkcs11Lib } from '../src/masterkey/pkcs11-binding.js';
import type { TdekvErrorCode } from '../src/errors.js';
import { DataKeyStore } from '../src/keys/data-key-store.js';
import { KmsMasterKey } from '../src/masterkey/kms.js';
import { silentLogger } from '../src/log/logger.js';
import { FakeKms } from './support/fake-kms.js';
import { runCli } from './support/cli.js';
import { expectCode } from './support/fs-helpers.js';
import { makeTempDir, runTdekvToExit, startTdekv, type ServerHandle } from './support/server-process.js';

const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const TOKEN = 'tdekv-test';
// Long and distinctive so that finding it anywhere is a leak, not a coincidence in random bytes.
const PIN = 'pin-4b7e1d-never-in-a-log';
const SO_PIN = 'so-pin-5678';
const MARKER = 'pkcs11-user-data-marker-93f1';

/** Why the suite cannot run here, or false. */
function skipReason(): string | false {
  if (!existsSync(MODULE) || spawnSync('softhsm2-util', ['--version']).status !== 0) {
    return `SoftHSM2 is not installed (${MODULE}, softhsm2-util): apt-get install softhsm2 opensc, as .ci/run does`;
  }
  if (spawnSync('pkcs11-tool', ['--help']).error !== undefined) return 'pkcs11-tool is not installed: apt-get install opensc, as .ci/run does';
  try {
    createRequire(import.meta.url).resolve('pkcs11js');
  } catch {
    return 'the optional dependency pkcs11js is not installed (npm install builds it when a C++ compiler is present)';
  }
  return false;
}

// CI installs SoftHSM2, opensc and a compiler (.ci/run): there a missing piece is a failure, not a skip.
const SKIP = skipReason();
if (SKIP !== false && process.env['CI'] === 'true') throw new Error(`the PKCS#11 tests cannot run in CI: ${SKIP}`);

// Needs neither SoftHSM2 nor the binding: the settings are read the same everywhere.
test('[security.encryption.master-key] type = "pkcs11": settings, defaults, relative paths, and no PIN key', () => {
  const opts = { source: '/etc/tdekv/tdekv.toml', baseDir: '/etc/tdekv' };
  const head = '[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "pkcs11"\n';
  const config = parseConfig(`${head}module = "${MODULE}"\ntoken-label = "t"\nkey-label = "k"\npin-file = "pin"\n`, opts);
  assert.deepEqual(config.security.encryption.masterKey, {
    type: 'pkcs11',
    module: MODULE,
    tokenLabel: 't',
    keyLabel: 'k',
    pinFile: '/etc/tdekv/pin',
    timeoutMs: DEFAULT_PKCS11_TIMEOUT_MS,
  });
  const bySlot = parseConfig(`${head}module = "${MODULE}"\nslot = 7\nkey-label = "k"\ntimeout = "3s"\n`, opts);
  assert.deepEqual(bySlot.security.encryption.masterKey, { type: 'pkcs11', module: MODULE, slot: 7, keyLabel: 'k', timeoutMs: 3000 });
  assert.throws(() => parseConfig(`${head}module = "${MODULE}"\ntoken-label = "t"\nkey-label = "k"\npin = "${PIN}"\n`, opts), (err: Error) => {
    expectCode('CONFIG_INVALID', 'security.encryption.master-key.pin')(err);
    assert.ok(!err.message.includes(PIN), 'the refused PIN is not echoed');
    return true;
  });
  assert.throws(() => parseConfig(`${head}token-label = "t"\nkey-label = "k"\n`, opts), expectCode('CONFIG_INVALID', 'module'));
});

describe('pkcs11 master key on a throwaway SoftHSM2 token', { skip: SKIP }, () => {
  let dir: string;
  let pinFile: string;

  function cfg(overrides: Partial<Pkcs11MasterKeyConfig> = {}): Pkcs11MasterKeyConfig {
    return { type: 'pkcs11', module: MODULE, tokenLabel: TOKEN, keyLabel: 'mk1', pinFile, timeoutMs: 10_000, ...overrides };
  }

  function tool(args: string[]): string {
    const r = spawnSync('pkcs11-tool', ['--module', MODULE, '--token-label', TOKEN, '--login', '--pin', PIN, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 0, `pkcs11-tool ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  async function keygen(label: string, extra: string[] = []): Promise<{ code: number | null; stderr: string }> {
    return runCli(['keygen', '--pkcs11', '--module', MODULE, '--token-label', TOKEN, '--key-label', label, '--pin-file', pinFile, ...extra]);
  }

  function tomlKey(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return { type: 'pkcs11', path: undefined, module: MODULE, 'token-label': TOKEN, 'key-label': 'mk1', 'pin-file': pinFile, ...overrides };
  }

  before(async () => {
    dir = await makeTempDir('tdekv-pkcs11-');
    const tokens = join(dir, 'tokens');
    mkdirSync(tokens);
    writeFileSync(join(dir, 'softhsm2.conf'), `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    // Inherited by every child (keygen, servers, pkcs11-tool): all see only this token dir.
    process.env['SOFTHSM2_CONF'] = join(dir, 'softhsm2.conf');
    const init = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', TOKEN, '--pin', PIN, '--so-pin', SO_PIN], { encoding: 'utf8' });
    assert.equal(init.status, 0, init.stderr);
    pinFile = join(dir, 'pin');
    writeFileSync(pinFile, PIN + '\n', { mode: 0o600 });
    chmodSync(pinFile, 0o600);
  });

  after(async () => {
    delete process.env['SOFTHSM2_CONF'];
    await rm(dir, { recursive: true, force: true });
  });

  test('keygen --pkcs11 creates a sensitive, never-extractable AES-256 key, and never replaces one', async () => {
    const made = await keygen('mk1');
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stderr, /created a non-extractable AES-256 key labelled "mk1"/);
    const listed = tool(['--list-objects', '--type', 'secrkey']);
    const entry = listed.slice(listed.indexOf('label:      mk1'));
    assert.match(listed, /AES length 32/);
    assert.match(entry, /never extractable/);
    assert.match(entry, /sensitive/);
    const again = await keygen('mk1');
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already holds a secret key labelled "mk1".*\[FILE_EXISTS\]/s);
    assert.equal((await keygen('mk2')).code, 0);
    assert.ok(!made.stderr.includes(PIN) && !again.stderr.includes(PIN));
  });

  test('seal and unseal happen in the token: round trip, tamper and wrong key', async () => {
    const a = await Pkcs11MasterKey.open(cfg());
    const b = await Pkcs11MasterKey.open(cfg({ keyLabel: 'mk2' }));
    try {
      assert.equal(a.type, 'pkcs11');
      assert.deepEqual(a.publicInfo(), { type: 'pkcs11', module: MODULE, tokenLabel: TOKEN, keyLabel: 'mk1' });
      assert.ok(!a.description.includes(PIN));
      const { key, envelope } = await a.newWrappingKey();
      assert.equal(key.length, 32);
      assert.equal(envelope.length, 2 + 12 + 32 + 16);
      assert.equal(envelope.indexOf(key), -1, 'the envelope must not contain the key');
      assert.deepEqual(await a.recoverWrappingKey(envelope), key);
      const tampered = Buffer.from(envelope);
      tampered[20]! ^= 1;
      await assert.rejects(a.recoverWrappingKey(tampered), expectCode('MASTER_KEY_WRONG', 'key-label="mk1"', 'previous-master-key'));
      await assert.rejects(b.recoverWrappingKey(envelope), expectCode('MASTER_KEY_WRONG', 'key-label="mk2"'));
      // The failed decrypts left the session usable.
      assert.deepEqual(await a.recoverWrappingKey(envelope), key);
      await assert.rejects(a.recoverWrappingKey(envelope.subarray(1)), expectCode('KEY_DICTIONARY_DAMAGED'));
    } finally {
      a.close();
      b.close();
    }
  });

  test('a session closed under it (a token error) is re-opened and logged in again', async () => {
    const mk = await Pkcs11MasterKey.open(cfg());
    // A second handle on the same loaded library, as another part of the process (or a token
    // reset) would have: closing all sessions on the slot also logs this process out.
    const { PKCS11 } = createRequire(import.meta.url)('pkcs11js') as { PKCS11: new () => Pkcs11Lib & { C_CloseAllSessions(slot: Buffer): void } };
    const other = new PKCS11();
    other.load(MODULE);
    try {
      const { key, envelope } = await mk.newWrappingKey();
      const slot = other.C_GetSlotList(true).find((s) => other.C_GetTokenInfo(s).label.trim() === TOKEN)!;
      other.C_CloseAllSessions(slot);
      assert.deepEqual(await mk.recoverWrappingKey(envelope), key);
    } finally {
      mk.close();
      other.close();
    }
  });

  test('a token that does not answer: timeout, one retry on a fresh session, then MASTER_KEY_UNAVAILABLE', async () => {
    // The binding tdekv loads is this very module object: a PKCS11 whose C_Decrypt never calls
    // back stands in for a hung HSM, without any real waiting beyond the 100 ms timeout.
    const binding = createRequire(import.meta.url)('pkcs11js') as { PKCS11: new () => Pkcs11Lib };
    const Real = binding.PKCS11;
    let hangs = 0;
    let decrypts = 0;
    binding.PKCS11 = class extends Real {
      constructor() {
        super();
        const decrypt = this.C_Decrypt.bind(this);
        this.C_Decrypt = (session, data, out, cb) => {
          decrypts++;
          if (hangs > 0) hangs--;
          else decrypt(session, data, out, cb);
        };
      }
    };
    try {
      const mk = await Pkcs11MasterKey.open(cfg({ timeoutMs: 100 }));
      try {
        const { key, envelope } = await mk.newWrappingKey();
        hangs = 1;
        assert.deepEqual(await mk.recoverWrappingKey(envelope), key, 'the retry on a fresh session answers');
        assert.equal(decrypts, 2);
        hangs = 2;
        await assert.rejects(mk.recoverWrappingKey(envelope), expectCode('MASTER_KEY_UNAVAILABLE', 'did not answer C_Decrypt within 100 ms', 'timeout'));
        assert.equal(decrypts, 4);
        assert.deepEqual(await mk.recoverWrappingKey(envelope), key, 'usable again once the token answers');
      } finally {
        mk.close();
      }
    } finally {
      binding.PKCS11 = Real;
    }
  });

  test('rotation kms → pkcs11: the previous KMS key opens the key dictionary, which is re-sealed by the token alone', async () => {
    const KMS_KEY = 'arn:aws:kms:eu-west-1:111122223333:key/aaaaaaaa-0000-0000-0000-0000000000p1';
    const kms = await new FakeKms([KMS_KEY]).start();
    const path = join(await makeTempDir('tdekv-pkcs11-kms-'), 'key.dict');
    const previous = new KmsMasterKey({ type: 'kms', keyId: KMS_KEY, region: 'eu-west-1', endpoint: kms.url, timeoutMs: 2000, maxAttempts: 2 });
    const hsm = await Pkcs11MasterKey.open(cfg({ keyLabel: 'mk2' }));
    const keys = (s: DataKeyStore): string[] => s.exportKeys().map((k) => `${k.id}:${k.method}:${k.key.toString('hex')}`).sort();
    try {
      const first = await DataKeyStore.open({ path, masterKey: previous, logger: silentLogger() });
      await first.rotate('aes256-ctr');
      await first.rotate('aes128-ctr');
      const before = keys(first);
      first.close();
      const during = await DataKeyStore.open({ path, masterKey: hsm, previousMasterKey: previous, logger: silentLogger() });
      assert.deepEqual(keys(during), before);
      during.close();
      await kms.close();
      // KMS is gone: only the token can open it now.
      const after = await DataKeyStore.open({ path, masterKey: hsm, logger: silentLogger() });
      assert.deepEqual(keys(after), before);
      after.close();
    } finally {
      previous.close();
      hsm.close();
      await kms.close().catch(() => {});
    }
  });

  test('each misconfiguration is a coded error naming what to fix, never the PIN', async () => {
    writeFileSync(join(dir, 'wrong-pin'), 'not-the-pin\n', { mode: 0o600 });
    writeFileSync(join(dir, 'open-pin'), PIN + '\n', { mode: 0o644 });
    chmodSync(join(dir, 'open-pin'), 0o644);
    tool(['--keygen', '--key-type', 'AES:16', '--label', 'short', '--usage-decrypt', '--sensitive']);
    tool(['--keygen', '--key-type', 'GENERIC:32', '--label', 'generic', '--usage-decrypt', '--sensitive']);
    tool(['--keygen', '--key-type', 'AES:32', '--label', 'extractable', '--usage-decrypt', '--extractable']);
    const cases: Array<[string, Partial<Pkcs11MasterKeyConfig>, TdekvErrorCode, string[]]> = [
      ['wrong PIN', { pinFile: join(dir, 'wrong-pin') }, 'MASTER_KEY_UNAVAILABLE', ['CKR_PIN_INCORRECT', 'pin-file or TDEKV_PKCS11_PIN']],
      ['missing token', { tokenLabel: 'no-such-token' }, 'MASTER_KEY_UNAVAILABLE', ['no token with token-label="no-such-token"', `"${TOKEN}"`]],
      ['missing slot', { tokenLabel: undefined, slot: 4242 }, 'MASTER_KEY_UNAVAILABLE', ['no token with slot=4242']],
      ['missing key', { keyLabel: 'no-such-key' }, 'MASTER_KEY_UNAVAILABLE', ['no secret key labelled "no-such-key"', 'tdekv keygen --pkcs11']],
      ['missing module', { module: join(dir, 'nope.so') }, 'MASTER_KEY_UNAVAILABLE', ['nope.so does not exist', 'module']],
      ['not a module', { module: pinFile }, 'MASTER_KEY_UNAVAILABLE', ['could not be loaded']],
      ['AES-128 key', { keyLabel: 'short' }, 'MASTER_KEY_INVALID', ['is AES-128, not AES-256']],
      ['non-AES key', { keyLabel: 'generic' }, 'MASTER_KEY_INVALID', ['is not an AES key']],
      ['extractable key', { keyLabel: 'extractable' }, 'MASTER_KEY_INVALID', ['is extractable']],
      ['readable PIN file', { pinFile: join(dir, 'open-pin') }, 'MASTER_KEY_INVALID', ['chmod 600']],
      ['both token-label and slot', { slot: 1 }, 'CONFIG_INVALID', ['exactly one of token-label and slot']],
    ];
    for (const [what, overrides, code, words] of cases) {
      await assert.rejects(Pkcs11MasterKey.open(cfg(overrides)), (err: Error) => {
        expectCode(code, ...words)(err);
        assert.ok(!err.message.includes(PIN), `${what}: the PIN is in the message`);
        return true;
      }, what);
    }
    // No PIN anywhere: the error names both ways to give one.
    const saved = process.env['TDEKV_PKCS11_PIN'];
    delete process.env['TDEKV_PKCS11_PIN'];
    try {
      await assert.rejects(Pkcs11MasterKey.open(cfg({ pinFile: undefined })), expectCode('MASTER_KEY_UNAVAILABLE', 'pin-file', 'TDEKV_PKCS11_PIN'));
      process.env['TDEKV_PKCS11_PIN'] = PIN;
      (await Pkcs11MasterKey.open(cfg({ pinFile: undefined }))).close();
    } finally {
      if (saved === undefined) delete process.env['TDEKV_PKCS11_PIN'];
      else process.env['TDEKV_PKCS11_PIN'] = saved;
    }
    // The key being rotated away from may be extractable: that can be the reason to rotate.
    (await Pkcs11MasterKey.open(cfg({ keyLabel: 'extractable' }), { previous: true })).close();
  });

  test('a PIN in the TOML is refused', async () => {
    const work = await makeTempDir('tdekv-pkcs11-cfg-');
    writeFileSync(join(work, 'tdekv.toml'), `[storage]\ndata-dir = "data"\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n` +
      `[security.encryption.master-key]\ntype = "pkcs11"\nmodule = "${MODULE}"\ntoken-label = "${TOKEN}"\nkey-label = "mk1"\npin = "${PIN}"\n`);
    const r = await runCli(['init', '--config', join(work, 'tdekv.toml')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /pin/);
    assert.ok(!r.stderr.includes(PIN), 'the refused PIN is not echoed');
    assert.equal(existsSync(join(work, 'data')), false);
  });

  test('init with a wrong PIN, a missing key or a missing module fails and writes nothing', async () => {
    const work = await makeTempDir('tdekv-pkcs11-init-');
    writeFileSync(join(dir, 'wrong-pin'), 'not-the-pin\n', { mode: 0o600 });
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ 'pin-file': join(dir, 'wrong-pin') }, 'CKR_PIN_INCORRECT'],
      [{ 'key-label': 'no-such-key' }, 'no secret key labelled'],
      [{ module: join(dir, 'nope.so') }, 'does not exist'],
    ];
    for (const [overrides, words] of bad) {
      const key = tomlKey(overrides);
      const lines = Object.entries(key).filter(([, v]) => v !== undefined).map(([k, v]) => `${k} = ${JSON.stringify(v)}`);
      writeFileSync(join(work, 'tdekv.toml'), `[storage]\ndata-dir = "data"\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\n${lines.join('\n')}\n`);
      const r = await runCli(['init', '--config', join(work, 'tdekv.toml')]);
      assert.notEqual(r.code, 0, words);
      assert.ok(r.stderr.includes(words), `${words}: ${r.stderr}`);
      assert.match(r.stderr, /nothing on disk was changed/);
      assert.deepEqual((await readdir(work)).sort(), ['tdekv.toml'], `${words}: nothing written`);
    }
  });

  test('a server with type = "pkcs11": write, restart, read back; status names the key; no PIN or data in files and logs', async () => {
    const work = await makeTempDir('tdekv-pkcs11-srv-');
    const settings = { security: { encryption: { 'data-encryption-method': 'aes256-ctr', 'master-key': tomlKey() } } };
    const logs: string[] = [];
    let server: ServerHandle | undefined = await startTdekv({ dir: work, settings });
    try {
      const c = server.client();
      for (let i = 0; i < 50; i++) await c.set(`k${i}`, `${MARKER}-${i}`);
      const status = (await (await fetch(`http://127.0.0.1:${server.statusPort!}/status`)).json()) as Record<string, unknown>;
      const text = JSON.stringify(status);
      assert.match(text, /"type":"pkcs11"/);
      assert.match(text, new RegExp(`"keyLabel":"mk1"`));
      assert.ok(!text.includes(PIN), 'no PIN in /status');
      assert.equal(await server.stop(), 0);
      logs.push(server.stderr());
      server = await startTdekv({ dir: work, settings });
      const c2 = server.client();
      for (let i = 0; i < 50; i++) assert.equal(await c2.get(`k${i}`), `${MARKER}-${i}`);
      assert.equal(await server.stop(), 0);
      logs.push(server.stderr());
      server = undefined;
    } finally {
      await server?.stop();
    }
    for (const log of logs) {
      assert.ok(!log.includes(PIN), 'no PIN in the logs');
      assert.ok(!log.includes(MARKER), 'no user data in the logs');
    }
    const leaks = await scan(join(work, 'data'), [Buffer.from(PIN), Buffer.from(MARKER)]);
    assert.deepEqual(leaks, [], 'no PIN or user data in the data dir');
  });

  test('rotation file → pkcs11 and pkcs11 → pkcs11 via previous-master-key, then the new key alone', async () => {
    const work = await makeTempDir('tdekv-pkcs11-rot-');
    const enc = (mk: Record<string, unknown>, prev?: Record<string, unknown>): Record<string, unknown> => ({
      security: { encryption: { 'data-encryption-method': 'aes256-ctr', 'master-key': mk, ...(prev ? { 'previous-master-key': prev } : {}) } },
    });
    const fileKey = { type: 'file', path: join(work, 'master.key') };
    let server = await startTdekv({ dir: work, settings: enc(fileKey) });
    await server.client().set('before', MARKER);
    assert.equal(await server.stop(), 0);
    server = await startTdekv({ dir: work, settings: enc(tomlKey({ 'key-label': 'mk2' }), fileKey) });
    assert.equal(await server.client().get('before'), MARKER);
    await server.client().set('during', MARKER);
    assert.equal(await server.stop(), 0);
    // The file key can now be destroyed: the key dictionary is sealed by the token alone.
    await rm(join(work, 'master.key'));
    server = await startTdekv({ dir: work, settings: enc(tomlKey({ 'key-label': 'mk2' })) });
    assert.equal(await server.client().get('before'), MARKER);
    assert.equal(await server.client().get('during'), MARKER);
    assert.equal(await server.stop(), 0);
    // pkcs11 → pkcs11: a new key on the same token; both are open at once during the rotation.
    server = await startTdekv({ dir: work, settings: enc(tomlKey({ 'key-label': 'mk1' }), tomlKey({ 'key-label': 'mk2' })) });
    assert.equal(await server.client().get('before'), MARKER);
    assert.equal(await server.stop(), 0);
    server = await startTdekv({ dir: work, settings: enc(tomlKey({ 'key-label': 'mk1' })) });
    assert.equal(await server.client().get('during'), MARKER);
    assert.equal(await server.stop(), 0);
    // Re-sealed under mk1: the key rotated away from no longer opens it.
    const stale = await runTdekvToExit({ dir: work, settings: enc(tomlKey({ 'key-label': 'mk2' })) });
    assert.notEqual(stale.code, 0);
    assert.match(stale.stderr, /MASTER_KEY_WRONG/);
    assert.ok(!stale.stderr.includes(PIN));
  });
});

/** Files under `root` that contain any of `needles`. */
async function scan(root: string, needles: Buffer[]): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const bytes = await readFile(path);
    for (const n of needles) if (bytes.includes(n)) found.push(`${path}: ${n.toString()}`);
  }
  return found;
}
