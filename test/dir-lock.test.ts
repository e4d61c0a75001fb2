import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { EncryptedEnv, type EnvOptions } from '../src/env/encrypted-env.js';
import { PlaintextMasterKey } from '../src/masterkey/plaintext.js';
import { isTdekvError } from '../src/errors.js';

const CHILD = fileURLToPath(new URL('./support/dir-lock-child.js', import.meta.url));

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

/** The next line the child prints on stdout. */
async function lineOf(child: ChildProcess): Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  try {
    const [line] = (await once(lines, 'line')) as [string];
    return line;
  } finally {
    lines.close();
  }
}

/** A child process holding the lock of `dir`'s data dir, until killed. */
async function holder(t: { after: (fn: () => void) => void }, dir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CHILD, 'hold', join(dir, 'encryption-meta', 'LOCK')], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => void child.kill('SIGKILL'));
  assert.equal(await lineOf(child), 'locked');
  return child;
}

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
  // The file stays (deleting it would let two openers lock two inodes); empty means nobody.
  assert.equal(await readFile(join(dir, 'encryption-meta', 'LOCK'), 'utf8'), '');
});

test('a lock held by a live process is refused naming its pid and host; the kernel frees it when that process is killed', async (t) => {
  const dir = await dataDir(t);
  await (await EncryptedEnv.open(options(dir))).close();
  const child = await holder(t, dir);
  await assert.rejects(
    EncryptedEnv.open(options(dir)),
    (err) => isTdekvError(err, 'DATA_DIR_LOCKED') && err.message.includes(`process ${child.pid} on host ${hostname()}`) && err.message.includes(join(dir, 'encryption-meta', 'LOCK')),
  );
  child.kill('SIGKILL');
  await once(child, 'exit');
  // The LOCK file still names the killed process; only the kernel lock counts.
  assert.equal(await readFile(join(dir, 'encryption-meta', 'LOCK'), 'utf8'), `${child.pid}\n${hostname()}\n`);
  const env = await EncryptedEnv.open(options(dir));
  await env.close();
});

test('a LOCK file naming this process (PID 1 restarted in a container) or a dead pid is taken over', async (t) => {
  const dir = await dataDir(t);
  await (await EncryptedEnv.open(options(dir))).close();
  const lockPath = join(dir, 'encryption-meta', 'LOCK');
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  for (const pid of [String(process.pid), '1', dead]) {
    await writeFile(lockPath, `${pid}\n${hostname()}\n`);
    const env = await EncryptedEnv.open(options(dir));
    assert.equal(await readFile(lockPath, 'utf8'), `${process.pid}\n${hostname()}\n`, `taken over from pid ${pid}`);
    await env.close();
  }
});

test('a LOCK file left by another host (a new pod on the same volume) is taken over when nobody holds the lock', async (t) => {
  const dir = await dataDir(t);
  await (await EncryptedEnv.open(options(dir))).close();
  const lockPath = join(dir, 'encryption-meta', 'LOCK');
  await writeFile(lockPath, `1\nsome-other-host\n`);
  const env = await EncryptedEnv.open(options(dir));
  await env.close();
});

test('many processes racing to open one data dir: never two writers at once', async (t) => {
  const root = await dataDir(t);
  const dir = join(root, 'data');
  await mkdir(dir);
  await (await EncryptedEnv.open(options(dir))).close();
  const CHILDREN = 4;
  const ROUNDS = 10;
  for (const stale of ['', `1\n${hostname()}\n`]) {
    // A LOCK left by a crash (or none at all) is where the old takeover raced.
    await writeFile(join(dir, 'encryption-meta', 'LOCK'), stale);
    const go = join(root, `go-${stale.length}`);
    const children = Array.from({ length: CHILDREN }, () => spawn(process.execPath, [CHILD, 'race', dir, String(ROUNDS), go], { stdio: ['ignore', 'pipe', 'inherit'] }));
    t.after(() => children.forEach((c) => c.kill('SIGKILL')));
    const results = children.map(async (c) => {
      const ready = lineOf(c);
      const exited = once(c, 'exit') as Promise<[number | null]>;
      assert.equal(await ready, 'ready');
      let out = '';
      c.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
      c.stdout!.resume();
      return async () => {
        const [code] = await exited;
        assert.equal(code, 0, `a racing opener failed (see its stderr above); it printed: ${out}`);
        return JSON.parse(out.trim()) as { opened: number; refused: number; overlaps: number };
      };
    });
    // All children are loaded before any starts, so that they race.
    const finish = await Promise.all(results);
    await writeFile(go, '');
    const counts = await Promise.all(finish.map((f) => f()));
    assert.equal(counts.reduce((n, c) => n + c.overlaps, 0), 0, `two writers held the data dir at once: ${JSON.stringify(counts)}`);
    assert.equal(counts.reduce((n, c) => n + c.opened, 0), CHILDREN * ROUNDS);
  }
  // The data dir is intact after all that.
  const env = await EncryptedEnv.open(options(dir));
  await env.close();
});

test('a failed first open leaves a new data dir empty', async (t) => {
  const dir = await dataDir(t);
  const failing = {
    ...new PlaintextMasterKey(),
    type: 'plaintext' as const,
    description: 'failing',
    protectsKeys: false,
    publicInfo: () => ({ type: 'plaintext' as const }),
    newWrappingKey: () => Promise.reject(new Error('KMS down')),
    recoverWrappingKey: () => Promise.reject(new Error('KMS down')),
    close: () => undefined,
  };
  await assert.rejects(EncryptedEnv.open({ ...options(dir), masterKey: failing }), /KMS down/);
  assert.deepEqual(await readdir(dir), []);
});
