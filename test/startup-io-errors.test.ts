import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { isTdekvError } from '../src/errors.js';
import { startupIoError } from '../src/util/startup-io-error.js';
import { makeTempDir, removeTempDir, runTdekvToExit } from './support/server-process.js';

/** The one coded line every startup failure gives: no "unexpected error", no stack trace. */
function assertOneCodedLine(stderr: string, ...fragments: (string | RegExp)[]): void {
  assert.doesNotMatch(stderr, /unexpected error/, stderr);
  assert.doesNotMatch(stderr, /^\s+at /m, `a stack trace was printed:\n${stderr}`);
  const line = stderr.split('\n').find((l) => l.startsWith('tdekv: '));
  assert.ok(line !== undefined, stderr);
  assert.match(line, /\[IO_FAILED\]$/, line);
  for (const f of fragments) assert.ok(typeof f === 'string' ? line.includes(f) : f.test(line), `missing ${String(f)} in: ${line}`);
}

const serveWithDataDir = (dataDir: string): ReturnType<typeof runTdekvToExit> => runTdekvToExit({ settings: { storage: { 'data-dir': dataDir } } });

/** Mounts a tmpfs (tests run as root in a container that allows it); undefined when not allowed. */
function mountTmpfs(at: string, options: string): boolean {
  return spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', at], { stdio: 'ignore' }).status === 0;
}
function umount(at: string): void {
  spawnSync('umount', [at], { stdio: 'ignore' });
}

describe('tdekv serve with a data dir it cannot write (issue 10 item 6)', { concurrency: false }, () => {
  test('a data dir under a regular file: one coded line naming the path and the fix', async () => {
    const dir = await makeTempDir();
    try {
      await writeFile(join(dir, 'not-a-dir'), 'x');
      const dataDir = join(dir, 'not-a-dir', 'data');
      const r = await serveWithDataDir(dataDir);
      assert.equal(r.code, 1);
      assertOneCodedLine(r.stderr, dataDir, '[ENOTDIR]', 'not a directory', 'set [storage] data-dir');
    } finally {
      await removeTempDir(dir);
    }
  });

  test('a read-only file system, for a new and for an existing data dir', async (t) => {
    const dir = await makeTempDir();
    const mnt = join(dir, 'ro');
    await mkdir(mnt);
    try {
      if (!mountTmpfs(mnt, 'ro,size=1m')) {
        t.skip('cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)');
        return;
      }
      const fresh = await serveWithDataDir(join(mnt, 'data'));
      assert.equal(fresh.code, 1);
      assertOneCodedLine(fresh.stderr, join(mnt, 'data'), '[EROFS]', 'read-only', 'remount it read-write');
      umount(mnt);
      assert.ok(mountTmpfs(mnt, 'size=1m'));
      await mkdir(join(mnt, 'data'));
      assert.equal(spawnSync('mount', ['-o', 'remount,ro', mnt]).status, 0);
      const existing = await serveWithDataDir(join(mnt, 'data'));
      assert.equal(existing.code, 1);
      assertOneCodedLine(existing.stderr, join(mnt, 'data'), '[EROFS]');
    } finally {
      umount(mnt);
      await removeTempDir(dir);
    }
  });

  test('a disk still full at startup', async (t) => {
    const dir = await makeTempDir();
    const mnt = join(dir, 'full');
    await mkdir(mnt);
    try {
      if (!mountTmpfs(mnt, 'size=256k')) {
        t.skip('cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)');
        return;
      }
      await mkdir(join(mnt, 'data'));
      await writeFile(join(mnt, 'fill'), Buffer.alloc(512 * 1024)).catch(() => undefined);
      const r = await serveWithDataDir(join(mnt, 'data'));
      assert.equal(r.code, 1);
      assertOneCodedLine(r.stderr, join(mnt, 'data'), '[ENOSPC]', 'no space left', 'free space');
    } finally {
      umount(mnt);
      await removeTempDir(dir);
    }
  });

  test('the ports are checked before the data dir is created', async () => {
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    const dir = await makeTempDir();
    try {
      const dataDir = join(dir, 'fresh-data');
      const r = await runTdekvToExit({ settings: { server: { addr: `127.0.0.1:${port}` }, storage: { 'data-dir': dataDir } } });
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`server\\.addr = "127\\.0\\.0\\.1:${port}".*EADDRINUSE`));
      assert.equal(existsSync(dataDir), false, 'a failed start left a new data dir behind');
    } finally {
      busy.close();
      await removeTempDir(dir);
    }
  });
});

describe('startupIoError', () => {
  const fsError = (code: string, path?: string, syscall = 'open'): Error => Object.assign(new Error(`${code}: x`), { code, syscall, ...(path ? { path } : {}) });

  test('maps permission, read-only, full-disk, quota and not-a-directory errors to IO_FAILED naming the path and the fix', async () => {
    for (const [code, words] of [
      ['EACCES', 'chown or chmod'],
      ['EPERM', 'chown or chmod'],
      ['EROFS', 'remount it read-write'],
      ['ENOSPC', 'free space'],
      ['EDQUOT', 'free space'],
      ['ENOTDIR', 'move that file away'],
    ] as const) {
      const cause = fsError(code, '/srv/tdekv/data/LOCK');
      const mapped = await startupIoError(cause, '/srv/tdekv/data');
      assert.ok(isTdekvError(mapped, 'IO_FAILED'), `${code}: ${String(mapped)}`);
      assert.ok(mapped.message.includes('/srv/tdekv/data/LOCK') && mapped.message.includes(`[${code}]`) && mapped.message.includes(words), mapped.message);
      assert.ok(mapped.message.includes('[storage] data-dir'), mapped.message);
      assert.ok(!mapped.message.includes('\n'), 'one line');
      assert.equal(mapped.cause, cause);
    }
    const noDir = await startupIoError(fsError('EACCES', '/etc/master.key'));
    assert.ok(isTdekvError(noDir, 'IO_FAILED') && noDir.message.includes('or use another path') && !noDir.message.includes('data-dir'), String(noDir));
  });

  test('leaves other errors alone', async () => {
    const bug = new TypeError('a bug');
    assert.equal(await startupIoError(bug, '/d'), bug);
    const missing = fsError('ENOENT', '/d/CURRENT');
    assert.equal(await startupIoError(missing, '/d'), missing);
  });
});
