import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { runCli } from './support/cli.js';
import { loadConfig } from '../src/config/config.js';
import { openEnvFromConfig } from '../src/env/open-env.js';
import { Engine } from '../src/engine/engine.js';

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tdekv-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A data dir with two encrypted files, set up through the library. */
async function fixture(dir: string): Promise<{ config: string; content: Buffer }> {
  const keyPath = join(dir, 'master.key');
  const gen = await runCli(['keygen', '--out', keyPath]);
  assert.equal(gen.code, 0, gen.stderr);
  const config = join(dir, 'tdekv.toml');
  await writeFile(
    config,
    `[storage]\ndata-dir = "data"\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = "master.key"\n`,
  );
  const managed = await openEnvFromConfig(await loadConfig(config));
  const content = randomBytes(3 * 1024 * 1024 + 17);
  await managed.env.mkdir('db');
  await managed.env.writeFile('db/000001.sst', content);
  await managed.env.writeFile('NOTES', Buffer.from('not a database file\n'));
  await managed.close();
  return { config, content };
}

test('keygen writes a 0600 key file of 64 hex + newline and refuses to overwrite it', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'k');
  const first = await runCli(['keygen', '--out', path]);
  assert.equal(first.code, 0, first.stderr);
  const text = await readFile(path, 'latin1');
  assert.match(text, /^[0-9a-f]{64}\n$/);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  const again = await runCli(['keygen', '--out', path]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already exists/);
  assert.equal(await readFile(path, 'latin1'), text, 'existing key untouched');
  const printed = await runCli(['keygen']);
  assert.match(printed.stdout, /^[0-9a-f]{64}\n$/);
  assert.notEqual(printed.stdout, text);
});

test('ctl encryption-meta dump-file lists method, key id and IV of each file, or one', async (t) => {
  const dir = await tempDir(t);
  const { config } = await fixture(dir);
  const all = await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-file']);
  assert.equal(all.code, 0, all.stderr);
  const lines = all.stdout.trim().split('\n');
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^NOTES\tmethod=aes256-ctr\tkey-id=\d+\tiv=[0-9a-f]{32}$/);
  assert.match(lines[1]!, /^db\/000001\.sst\tmethod=aes256-ctr/);
  const one = await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-file', '--path', join(dir, 'data', 'db', '000001.sst'), '--json']);
  assert.equal(one.code, 0, one.stderr);
  const parsed = JSON.parse(one.stdout) as Array<{ path: string; method: string; iv: string }>;
  assert.equal(parsed.length, 1);
  assert.equal(parsed[0]!.path, 'db/000001.sst');
  const missing = await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-file', '--path', 'nope']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /nope is not in the file dictionary/);
});

test('ctl dump-key prints keys only after "I consent" or --i-consent', async (t) => {
  const dir = await tempDir(t);
  const { config } = await fixture(dir);
  const refused = await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-key'], { input: 'yes\n' });
  assert.equal(refused.code, 1);
  assert.equal(refused.stdout, '');
  assert.match(refused.stderr, /WARNING: this prints data keys in clear/);
  assert.match(refused.stderr, /consent not given/);
  const noInput = await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-key']);
  assert.equal(noInput.code, 1);
  assert.equal(noInput.stdout, '');
  const typed = await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-key'], { input: 'I consent\n' });
  assert.equal(typed.code, 0, typed.stderr);
  assert.match(typed.stdout, /^\d+\tmethod=aes256-ctr\tcreated=\S+\texposed=false\tkey=[0-9a-f]{64}$/m);
  const id = typed.stdout.split('\t')[0]!;
  const flag = await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-key', '--ids', id, '--i-consent']);
  assert.equal(flag.code, 0, flag.stderr);
  // The first dump was recorded: the key now reads as exposed.
  assert.equal(flag.stdout, typed.stdout.replace('exposed=false', 'exposed=true'));
  assert.match(typed.stderr, /data-key-dumped/);
  const bad = await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-key', '--ids', '1,x', '--i-consent']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--ids must be/);
  const unknown = await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-key', '--ids', '12345', '--i-consent']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /data key 12345 is not in the key dictionary/);
});

test('ctl decrypt-file writes the plaintext to a new 0600 file and never overwrites', async (t) => {
  const dir = await tempDir(t);
  const { config, content } = await fixture(dir);
  const out = join(dir, 'plain.bin');
  const r = await runCli(['ctl', '--config', config, 'encryption-meta', 'decrypt-file', '--path', 'db/000001.sst', '--out-file', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await readFile(out), content);
  assert.equal((await stat(out)).mode & 0o777, 0o600);
  const onDisk = await readFile(join(dir, 'data', 'db', '000001.sst'));
  assert.equal(onDisk.length, content.length);
  assert.notDeepEqual(onDisk.subarray(0, 4096), content.subarray(0, 4096));
  const again = await runCli(['ctl', '--config', config, 'encryption-meta', 'decrypt-file', '--path', 'db/000001.sst', '--out-file', out]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /never overwrites/);
});

test('ctl is read-only and --data-dir overrides the config; wrong key is reported clearly', async (t) => {
  const dir = await tempDir(t);
  const { config } = await fixture(dir);
  const metaBefore = await readFile(join(dir, 'data', 'encryption-meta', 'file.dict.log'));
  const moved = join(dir, 'moved');
  const { rename } = await import('node:fs/promises');
  await rename(join(dir, 'data'), moved);
  const r = await runCli(['ctl', '--config', config, '--data-dir', moved, 'encryption-meta', 'dump-file']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n').length, 2);
  assert.deepEqual(await readFile(join(moved, 'encryption-meta', 'file.dict.log')), metaBefore);
  await writeFile(join(dir, 'master.key'), randomBytes(32).toString('hex') + '\n');
  const wrong = await runCli(['ctl', '--config', config, '--data-dir', moved, 'encryption-meta', 'dump-file']);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /wrong master key .*authentication failed/);
  assert.match(wrong.stderr, /MASTER_KEY_WRONG/);
});

test('bad config and bad usage fail with a message naming the problem', async (t) => {
  const dir = await tempDir(t);
  const config = join(dir, 'bad.toml');
  await writeFile(config, '[security.encryption]\ndata-encryption-method = "aes512"\n');
  const r = await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-file']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /security\.encryption\.data-encryption-method/);
  assert.match(r.stderr, /aes256-ctr/);
  const usage = await runCli(['ctl', 'encryption-meta', 'dump-file']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--config/);
});

test('init with --generate-master-key creates the key file, dictionaries and prints status', async (t) => {
  const dir = await tempDir(t);
  const config = join(dir, 'tdekv.toml');
  await writeFile(config, `[storage]\ndata-dir = "d"\n[security.encryption]\ndata-encryption-method = "sm4-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = "mk"\n`);
  const missing = await runCli(['init', '--config', config]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /master key file .*mk does not exist/);
  const r = await runCli(['init', '--config', config, '--generate-master-key']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /method\s+sm4-ctr/);
  assert.match(r.stdout, /data key\s+id \d+/);
  assert.match(r.stderr, /tmpfs or in a KMS/);
  assert.equal((await stat(join(dir, 'mk'))).mode & 0o777, 0o600);
  await stat(join(dir, 'd', 'encryption-meta', 'key.dict'));
});

test('init refuses a data dir holding unknown files until --adopt-plaintext-files', async (t) => {
  const dir = await tempDir(t);
  const config = join(dir, 'tdekv.toml');
  await writeFile(config, `[storage]\ndata-dir = "d"\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = "mk"\n`);
  assert.equal((await runCli(['keygen', '--out', join(dir, 'mk')])).code, 0);
  const { mkdir } = await import('node:fs/promises');
  await mkdir(join(dir, 'd'));
  await writeFile(join(dir, 'd', 'old.log'), 'plain bytes');
  const refused = await runCli(['init', '--config', config]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /holds 1 file\(s\) \(old\.log\)/);
  assert.match(refused.stderr, /--adopt-plaintext-files/);
  const adopted = await runCli(['init', '--config', config, '--adopt-plaintext-files']);
  assert.equal(adopted.code, 0, adopted.stderr);
  assert.match(adopted.stdout, /files\s+1 \(plaintext: 1\)/);
  const dump = await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-file']);
  assert.match(dump.stdout, /^old\.log\tmethod=plaintext\tkey-id=0\t/);
});

/** Data key ids, from `ctl encryption-meta status --json` (which never prints key material). */
async function keyIds(config: string): Promise<string[]> {
  const r = await runCli(['ctl', '--config', config, 'encryption-meta', 'status', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { dataKeys: Array<{ id: number }> }).dataKeys.map((k) => String(k.id));
}

test('data-key rotate and retire: new files use the new key, unused keys go, a running writer blocks both', async (t) => {
  const dir = await tempDir(t);
  const { config } = await fixture(dir);
  // Key ids from status: dump-key would mark the key exposed (issue 9 item 16).
  const keysBefore = await keyIds(config);
  assert.equal(keysBefore.length, 1);
  const oldId = keysBefore[0]!;

  const rotated = await runCli(['data-key', 'rotate', '--config', config]);
  assert.equal(rotated.code, 0, rotated.stderr);
  const m = /data key rotated: (\d+) -> (\d+) \(aes256-ctr\)/.exec(rotated.stdout);
  assert.ok(m, rotated.stdout);
  assert.equal(m[1], oldId);
  const newId = m[2]!;
  assert.notEqual(newId, oldId);

  const nothing = await runCli(['data-key', 'retire', '--config', config]);
  assert.equal(nothing.code, 0, nothing.stderr);
  assert.match(nothing.stdout, /no data key to retire/);

  // Once no file uses the old key, it can go.
  const managed = await openEnvFromConfig(await loadConfig(config));
  for (const [path] of managed.env.files()) await managed.env.remove(path);
  const retireWhileOpen = await runCli(['data-key', 'retire', '--config', config]);
  assert.equal(retireWhileOpen.code, 1);
  assert.match(retireWhileOpen.stderr, /data dir is in use/);
  await managed.close();
  const retired = await runCli(['data-key', 'retire', '--config', config]);
  assert.equal(retired.code, 0, retired.stderr);
  assert.equal(retired.stdout.trim(), `retired data keys: ${oldId}`);
  assert.deepEqual(await keyIds(config), [newId]);
});

test('ctl encryption-meta status shows keys, ages and file counts, never key material', async (t) => {
  const dir = await tempDir(t);
  const { config } = await fixture(dir);
  const secrets = (await runCli(['ctl', '--config', config, 'encryption-meta', 'dump-key', '--i-consent'])).stdout;
  const keyHex = /key=([0-9a-f]{64})/.exec(secrets)![1]!;
  const text = await runCli(['ctl', '--config', config, 'encryption-meta', 'status']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /method\s+aes256-ctr/);
  assert.match(text.stdout, /files\s+2 \(aes256-ctr: 2\)/);
  // The dump above marked the key exposed.
  assert.match(text.stdout, /key \d+\taes256-ctr\tcreated \S+\t2 file\(s\)\texposed\tcurrent/);
  const json = await runCli(['ctl', '--config', config, 'encryption-meta', 'status', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const s = JSON.parse(json.stdout) as { encrypted: boolean; masterKey: { type: string }; currentDataKey: { id: number }; dataKeys: Array<{ id: number; files: number }>; metaFileSizes: Record<string, number> };
  assert.equal(s.encrypted, true);
  assert.equal(s.masterKey.type, 'file');
  assert.deepEqual(s.dataKeys.map((k) => [k.id, k.files]), [[s.currentDataKey.id, 2]]);
  assert.ok(s.metaFileSizes['key.dict']! > 0 && s.metaFileSizes['file.dict']! > 0);
  for (const out of [text.stdout, json.stdout, text.stderr]) assert.ok(!out.includes(keyHex), 'no key material in status');
});

test('data-key reencrypt --retire moves every file to the current key, with progress, and drops the old key', async (t) => {
  const dir = await tempDir(t);
  const { config, content } = await fixture(dir);
  assert.equal((await runCli(['data-key', 'rotate', '--config', config])).code, 0);
  const r = await runCli(['data-key', 'reencrypt', '--config', config, '--retire']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /re-encrypted 1\/2 files/);
  assert.match(r.stderr, /re-encrypted 2\/2 files \(3\.0 MiB\)/);
  const m = /2 file\(s\) re-encrypted; every file now uses aes256-ctr with data key (\d+)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.match(r.stdout, /retired data keys: \d+/);
  assert.deepEqual(await keyIds(config), [m[1]]);
  const out = join(dir, 'plain');
  assert.equal((await runCli(['ctl', '--config', config, 'encryption-meta', 'decrypt-file', '--path', 'db/000001.sst', '--out-file', out])).code, 0);
  assert.deepEqual(await readFile(out), content);
  const again = await runCli(['data-key', 'reencrypt', '--config', config]);
  assert.match(again.stdout, /^0 file\(s\) re-encrypted/);
});

test('data-key reencrypt rewrites a database through the engine: every table, log, manifest and CURRENT on the new key, authenticated, and every value intact', async (t) => {
  const dir = await tempDir(t);
  const { config } = await fixture(dir);
  const keyOf = (i: number) => Buffer.from(`k${String(i).padStart(5, '0')}`);
  const valueOf = (i: number) => Buffer.from(`value-${i}-${'v'.repeat(i % 50)}`);
  {
    const managed = await openEnvFromConfig(await loadConfig(config));
    const engine = await Engine.open({ env: managed.env });
    for (let i = 0; i < 2000; i += 100) await engine.write(Array.from({ length: 100 }, (_, j) => ({ type: 'put' as const, key: keyOf(i + j), value: valueOf(i + j) })));
    await engine.flush();
    await engine.put(keyOf(5000), valueOf(5000), { sync: true });
    await engine.close();
    await managed.close();
  }
  assert.equal((await runCli(['data-key', 'rotate', '--config', config])).code, 0);
  const r = await runCli(['data-key', 'reencrypt', '--config', config, '--retire']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /rewrote the database's tables and logs under the current key/);
  assert.match(r.stdout, /retired data keys: \d+/);
  const managed = await openEnvFromConfig(await loadConfig(config));
  try {
    const current = managed.keyAdmin.currentDataKey()!;
    const engineFiles = managed.env.files().filter(([p]) => /^(\d{6}\.(sst|log)|MANIFEST-\d+|CURRENT)$/.test(p));
    assert.ok(engineFiles.some(([p]) => p.endsWith('.sst')) && engineFiles.some(([p]) => p === 'CURRENT'), engineFiles.map(([p]) => p).join());
    for (const [p, info] of engineFiles) {
      assert.equal(info.keyId, current.id, `${p} is on the current key`);
      assert.equal(info.authenticated, true, `${p} carries tags`);
    }
    const engine = await Engine.open({ env: managed.env });
    try {
      for (const i of [0, 1, 999, 1999, 5000]) assert.ok(engine.getSync(keyOf(i))?.equals(valueOf(i)), `key ${i}`);
    } finally {
      await engine.close();
    }
  } finally {
    await managed.close();
  }
});

test('ctl decrypt-file refuses an --out-file inside the data dir, however it is spelled, and writes nothing (issue 9 item 18)', async (t) => {
  const dir = await tempDir(t);
  const { config } = await fixture(dir);
  const data = join(dir, 'data');
  const { symlink, readdir } = await import('node:fs/promises');
  await symlink(data, join(dir, 'data-link'));
  const listing = async (): Promise<string[]> => (await readdir(data, { recursive: true })).map(String).sort();
  const before = await listing();
  for (const out of [
    join(data, 'plain.bin'),
    join(data, 'encryption-meta', 'plain.bin'),
    join(data, 'db', 'new-dir', 'plain.bin'),
    join(dir, 'data-link', 'plain.bin'),
    join(dir, 'elsewhere', '..', 'data', 'plain.bin'),
  ]) {
    const r = await runCli(['ctl', '--config', config, 'encryption-meta', 'decrypt-file', '--path', 'db/000001.sst', '--out-file', out]);
    assert.equal(r.code, 1, `${out}: ${r.stdout}`);
    assert.match(r.stderr, /--out-file .* is inside the data dir/, out);
    assert.match(r.stderr, /Choose a path outside the data dir/);
    assert.match(r.stderr, /INVALID_PATH/);
  }
  assert.deepEqual(await listing(), before);
  const beside = await runCli(['ctl', '--config', config, 'encryption-meta', 'decrypt-file', '--path', 'db/000001.sst', '--out-file', join(dir, 'data-plain.bin')]);
  assert.equal(beside.code, 0, beside.stderr);
});

test('the CLI refuses a master key file others can read, inside the data dir, or all-zero (issue 9 item 17)', async (t) => {
  const dir = await tempDir(t);
  const { config } = await fixture(dir);
  const { chmod, copyFile } = await import('node:fs/promises');
  const key = join(dir, 'master.key');
  const list = ['ctl', '--config', config, 'encryption-meta', 'dump-file'];

  await chmod(key, 0o644);
  const open = await runCli(list);
  assert.equal(open.code, 1);
  assert.ok(open.stderr.includes(`master key file ${key} has mode 0644`), open.stderr);
  assert.ok(open.stderr.includes(`chmod 600 ${key}`), open.stderr);
  assert.match(open.stderr, /MASTER_KEY_INVALID/);
  await writeFile(config, (await readFile(config, 'utf8')) + 'allow-insecure-permissions = true\n');
  assert.equal((await runCli(list)).code, 0, 'the explicit override is honoured');
  await chmod(key, 0o600);

  await copyFile(key, join(dir, 'data', 'master.key'));
  await writeFile(config, (await readFile(config, 'utf8')).replace('path = "master.key"', 'path = "data/master.key"'));
  const inside = await runCli(list);
  assert.equal(inside.code, 1);
  assert.match(inside.stderr, /data\/master\.key is inside the data dir .*Move the key outside/);
});

test('keygen prints and writes a fresh random key each time (bytes, not a string)', async (t) => {
  const dir = await tempDir(t);
  const a = await runCli(['keygen']);
  const b = await runCli(['keygen']);
  assert.match(a.stdout, /^[0-9a-f]{64}\n$/);
  assert.notEqual(a.stdout, b.stdout);
  assert.notEqual(a.stdout, '0'.repeat(64) + '\n');
  const path = join(dir, 'k');
  assert.equal((await runCli(['keygen', '--out', path])).code, 0);
  assert.match(await readFile(path, 'latin1'), /^[0-9a-f]{64}\n$/);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
});

test('init --generate-master-key refuses to generate the key inside the data dir, and writes nothing', async (t) => {
  const dir = await tempDir(t);
  const config = join(dir, 'tdekv.toml');
  await writeFile(config, `[storage]\ndata-dir = "d"\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = "d/mk"\n`);
  const r = await runCli(['init', '--config', config, '--generate-master-key']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /d\/mk is inside the data dir/);
  await assert.rejects(stat(join(dir, 'd')), /ENOENT/);
});
