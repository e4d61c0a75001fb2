import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { access, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { EncryptedEnv, type EnvOptions } from '../src/env/encrypted-env.js';
import { PlaintextMasterKey } from '../src/masterkey/plaintext.js';
import { isTdekvError } from '../src/errors.js';

async function dataDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tdekv-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const options = (dir: string): EnvOptions => ({
  dataDir: dir,
  method: 'aes256-ctr',
  rotationPeriodMs: 3600_000,
  masterKey: new PlaintextMasterKey(),
  fileDictionaryLog: true,
  fileDictionaryRewriteThreshold: 100,
});

test('a second writer on the same data dir is refused until the first closes', async (t) => {
  const dir = await dataDir(t);
  const first = await EncryptedEnv.open(options(dir));
  await assert.rejects(EncryptedEnv.open(options(dir)), (err) => isTdekvError(err, 'DATA_DIR_LOCKED') && /in use/.test(err.message) && err.message.includes(String(process.pid)));
  // A read-only inspector (tdekv ctl) may look while the writer runs.
  const reader = await EncryptedEnv.open({ ...options(dir), readOnly: true });
  await reader.close();
  await first.close();
  const second = await EncryptedEnv.open(options(dir));
  await second.close();
  await assert.rejects(access(join(dir, 'encryption-meta', 'LOCK')), 'lock released on close');
});

test('a lock held by a live process names it; one left by a dead process is taken over', async (t) => {
  const dir = await dataDir(t);
  const env = await EncryptedEnv.open(options(dir));
  await env.close();
  const lockPath = join(dir, 'encryption-meta', 'LOCK');

  const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
  t.after(() => sleeper.kill('SIGKILL'));
  await writeFile(lockPath, `${sleeper.pid}\n${hostname()}\n`);
  await assert.rejects(EncryptedEnv.open(options(dir)), (err) => isTdekvError(err, 'DATA_DIR_LOCKED') && err.message.includes(`process ${sleeper.pid}`));

  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  await writeFile(lockPath, `${dead.stdout.toString()}\n${hostname()}\n`);
  const reopened = await EncryptedEnv.open(options(dir));
  await reopened.close();

  await writeFile(lockPath, `1\nsome-other-host\n`);
  await assert.rejects(EncryptedEnv.open(options(dir)), (err) => isTdekvError(err, 'DATA_DIR_LOCKED') && /some-other-host/.test(err.message));
});

test('a failed first open leaves a new data dir empty', async (t) => {
  const dir = await dataDir(t);
  const failing = {
    ...new PlaintextMasterKey(),
    type: 'plaintext' as const,
    description: 'failing',
    protectsKeys: false,
    newWrappingKey: () => Promise.reject(new Error('KMS down')),
    recoverWrappingKey: () => Promise.reject(new Error('KMS down')),
    close: () => undefined,
  };
  await assert.rejects(EncryptedEnv.open({ ...options(dir), masterKey: failing }), /KMS down/);
  assert.deepEqual(await readdir(dir), []);
});
