/**
 * tdekv only: the server on a real, small tmpfs with sync-writes = "always", run until the
 * disk is full. Clients must get an error reply (never a dropped connection), the process
 * must keep serving reads, /healthz must say why; once space is freed the same process takes
 * writes again by itself, and after a restart every acknowledged write reads back exactly.
 * A compaction without room is not started. Needs permission to mount (root here and in CI);
 * skipped with the reason otherwise.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readlink, rm, statfs, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { Redis } from 'ioredis';
import { TdekvError } from '../src/errors.js';
import { failureReason, refusalReply } from '../src/server/write-refusal.js';
import { makeTempDir, parseInfo, removeTempDir, startTdekv, target, waitUntil, type ServerHandle } from './support/server-process.js';

const MiB = 1024 * 1024;
const KiB = 1024;
/** The reply every write gets once the data dir cannot take more. */
const MISCONF = /^MISCONF tdekv cannot persist writes: no space left on device \(ENOSPC\)/;

/** A fresh temp dir with a tmpfs of `size` bytes mounted at `<dir>/disk`; `cleanup` unmounts and removes it. */
async function tmpfsDisk(t: TestContext, size: number): Promise<{ dir: string; disk: string; cleanup: () => Promise<void> } | undefined> {
  const dir = await makeTempDir('tdekv-it-diskfull-');
  const disk = join(dir, 'disk');
  await mkdir(disk);
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', disk], { encoding: 'utf8' });
  if (r.status !== 0) {
    await removeTempDir(dir);
    t.skip(`cannot mount a tmpfs (${(r.stderr || r.error?.message || `exit ${String(r.status)}`).trim()}); run as root to test a real disk-full`);
    return undefined;
  }
  const cleanup = async (): Promise<void> => {
    if (spawnSync('umount', [disk]).status !== 0) spawnSync('umount', ['-l', disk]);
    await removeTempDir(dir);
  };
  return { dir, disk, cleanup };
}

/** Leaves about `free` bytes free on the file system of `disk` with a filler file the test deletes later. */
async function fillLeaving(disk: string, free: number): Promise<string> {
  const s = await statfs(disk);
  const avail = s.bavail * s.bsize;
  const filler = join(disk, 'filler');
  await writeFile(filler, Buffer.alloc(Math.max(0, avail - free)));
  return filler;
}

async function healthz(server: ServerHandle): Promise<{ status: number; text: string }> {
  const r = await fetch(`http://127.0.0.1:${server.statusPort}/healthz`);
  return { status: r.status, text: await r.text() };
}

/** Names of the data dir's table files the process has open, from /proc (Linux). */
async function openTables(server: ServerHandle): Promise<string[]> {
  const fds = await readdir(`/proc/${server.pid}/fd`);
  const names: string[] = [];
  for (const fd of fds) {
    const target = await readlink(`/proc/${server.pid}/fd/${fd}`).catch(() => '');
    if (target.startsWith(server.dataDir! + '/') && target.endsWith('.sst')) names.push(basename(target));
  }
  return names.sort();
}

interface EngineStatus {
  levels: Array<{ level: number; files: number }>;
  memtableBytes: number;
  flushes: number;
  compactions: number;
  backgroundError?: string;
  backgroundErrorRecoverable?: boolean;
  noSpaceRecoveries: number;
  compactionPaused?: { needBytes: number; freeBytes: number; since: string };
}

async function engineStatus(server: ServerHandle): Promise<EngineStatus> {
  const r = await fetch(`http://127.0.0.1:${server.statusPort}/status`);
  return ((await r.json()) as { engine: EngineStatus }).engine;
}

/** A value of `bytes` hex characters: distinct per write, so a mix-up between keys shows. */
function value(bytes: number): string {
  return randomBytes(bytes / 2).toString('hex');
}

/** Sends `SET key value`; the reply is 'OK' or an error reply, never a dropped connection. */
async function set(c: Redis, key: string, v: string): Promise<'OK' | Error> {
  try {
    const r = await c.call('SET', key, v);
    assert.equal(r, 'OK');
    return 'OK';
  } catch (err) {
    assert.ok(err instanceof Error);
    assert.equal(err.name, 'ReplyError', `SET ${key}: expected an error reply, got ${err.name}: ${err.message}`);
    return err;
  }
}

/** After the first refused write: reads work, more writes get the same error, the process lives, /healthz says why. */
async function assertRefusingWrites(server: ServerHandle, c: Redis, acked: Map<string, string>, alive: () => boolean): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const r = await set(c, `after-full:${i}`, value(64));
    assert.ok(r instanceof Error, 'a write after the disk filled up was acknowledged');
    assert.match(r.message, MISCONF);
  }
  await assert.rejects(c.call('HSET', 'after-full:hash', 'f', 'v'), (e: Error) => MISCONF.test(e.message));
  assert.equal(await c.call('PING'), 'PONG');
  const sample = [...acked].slice(-5);
  assert.deepEqual(await c.call('MGET', ...sample.map(([k]) => k)), sample.map(([, v]) => v), 'reads after the failure');
  const h = await healthz(server);
  assert.equal(h.status, 503);
  assert.match(h.text, /no space left on device \(ENOSPC\)/);
  assert.match(h.text, /resume by themselves once space is freed/);
  const info = parseInfo((await c.call('INFO', 'persistence', 'engine')) as string);
  assert.equal(info.get('persistence')?.get('aof_last_write_status'), 'err');
  assert.equal(info.get('engine')?.get('writes_refused'), '1');
  assert.equal(info.get('engine')?.get('writes_refused_reason'), 'no space left on device (ENOSPC)');
  assert.equal(info.get('engine')?.get('writes_refused_recoverable'), '1');
  assert.ok(alive(), `the server exited after ENOSPC; log:\n${server.stderr()}`);
  // A table that failed to be written must be closed (and removed): only live tables stay open.
  // Each counted once: a compaction running on the worker thread opens its inputs a second time.
  const live = (await engineStatus(server)).levels.reduce((n, l) => n + l.files, 0);
  const open = [...new Set(await openTables(server))];
  assert.ok(open.length <= live, `open table files ${open.join(', ')} but only ${live} live tables: a failed write left a file open`);
  assert.doesNotMatch(server.stderr(), /Closing (a FileHandle|file descriptor)/, 'a failed write left a file open');
}

/**
 * After space was freed: the same process takes writes again without a restart (the engine
 * retries by itself), /healthz is back to 200, INFO and /status say it recovered.
 */
async function assertResumes(server: ServerHandle, c: Redis, acked: Map<string, string>, prefix: string): Promise<void> {
  await waitUntil(async () => (await set(c, `${prefix}:probe`, 'probe')) === 'OK', 'writes to resume after space was freed', 30_000, 50);
  acked.set(`${prefix}:probe`, 'probe');
  for (let i = 0; i < 50; i++) {
    const k = `${prefix}:${i}`;
    const v = value(4 * KiB);
    assert.equal(await set(c, k, v), 'OK', `write ${k} after space was freed`);
    acked.set(k, v);
  }
  assert.equal((await healthz(server)).status, 200);
  const e = await engineStatus(server);
  assert.equal(e.backgroundError, undefined);
  assert.ok(e.noSpaceRecoveries >= 1, 'the engine counted its recovery');
  const info = parseInfo((await c.call('INFO', 'persistence', 'engine')) as string);
  assert.equal(info.get('persistence')?.get('aof_last_write_status'), 'ok');
  assert.equal(info.get('engine')?.get('writes_refused'), '0');
}

/** Restarts on the freed disk and reads every acknowledged write back. */
async function assertAllAcknowledged(start: () => Promise<ServerHandle>, acked: Map<string, string>): Promise<void> {
  const s = await start();
  const c = s.client();
  const keys = [...acked.keys()];
  for (let i = 0; i < keys.length; i += 200) {
    const chunk = keys.slice(i, i + 200);
    const got = (await c.call('MGET', ...chunk)) as (string | null)[];
    chunk.forEach((k, j) => assert.equal(got[j], acked.get(k), `acknowledged ${k} after restart`));
  }
  assert.equal(await c.call('SET', 'after-restart', 'x'), 'OK', 'the restarted server takes writes');
  assert.equal((await healthz(s)).status, 200);
  assert.equal(await s.stop(), 0, `exit code of the restarted server; log:\n${s.stderr()}`);
}

describe('the refusal reply', () => {
  test('names the OS error under the engine error, the data dir and what to do, on one line', () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const walFailed = new TdekvError('IO_FAILED', 'write to 000001.log failed at offset 7', { cause: enospc });
    const later = new TdekvError('IO_FAILED', `a background flush or compaction failed earlier: ${walFailed.message}`, { cause: walFailed });
    assert.equal(failureReason(later), 'no space left on device (ENOSPC)');
    assert.equal(failureReason(Object.assign(new Error('x'), { code: 'EIO' })), 'I/O error (EIO)');
    assert.equal(failureReason(Object.assign(new Error('x'), { code: 'ENOTCONN' })), 'system error (ENOTCONN)');
    assert.equal(failureReason(new TdekvError('DATA_CORRUPTED', 'table 000004.sst damaged')), 'DATA_CORRUPTED');
    assert.equal(failureReason('weird'), 'unexpected engine failure');
    const reply = refusalReply(later, '/var/lib/tdekv', true);
    assert.match(reply, /^MISCONF tdekv cannot persist writes: no space left on device \(ENOSPC\) in \/var\/lib\/tdekv\. Writes resume by themselves once space is freed/);
    assert.doesNotMatch(reply, /restart it/);
    assert.doesNotMatch(reply, /[\r\n]/);
    const sticky = refusalReply(new TdekvError('IO_FAILED', 'x', { cause: Object.assign(new Error('x'), { code: 'EIO' }) }), '/var/lib/tdekv', false);
    assert.match(sticky, /^MISCONF tdekv cannot persist writes: I\/O error \(EIO\) in \/var\/lib\/tdekv\. .*restart/);
  });
});

describe('server on a full disk', { skip: target() !== 'tdekv' && 'tdekv only' }, () => {
  async function setup(t: TestContext, tuning: Record<string, number> = {}): Promise<{ disk: string; start: () => Promise<ServerHandle> } | undefined> {
    // Quick retries, so the tests see writes resume soon after space is freed.
    const engine = { ...tuning, 'no-space-retry-interval': '50ms', 'no-space-retry-max-interval': '400ms' };
    const d = await tmpfsDisk(t, 8 * MiB);
    if (d === undefined) return undefined;
    const servers: ServerHandle[] = [];
    // Servers first: a mount still in use cannot be unmounted.
    t.after(async () => {
      for (const s of servers) await s.kill();
      await d.cleanup();
    });
    const settings = { storage: { 'data-dir': join(d.disk, 'data'), 'sync-writes': 'always' }, engine };
    const start = async (): Promise<ServerHandle> => {
      const s = await startTdekv({ dir: d.dir, settings });
      servers.push(s);
      return s;
    };
    return { disk: d.disk, start };
  }

  function tracked(s: ServerHandle): () => boolean {
    let alive = true;
    void s.exited.then(() => {
      alive = false;
    });
    return () => alive;
  }

  test('WAL append hits ENOSPC: every waiting client gets an error reply; once space is freed the same process takes writes again; acknowledged writes survive a restart', async (t) => {
    const env = await setup(t);
    if (env === undefined) return;
    const s1 = await env.start();
    const alive = tracked(s1);
    const filler = await fillLeaving(env.disk, 2 * MiB);
    // Several clients with several writes each in flight: a failed batch holds replies of many connections.
    const clients = Array.from({ length: 4 }, () => s1.client());
    const acked = new Map<string, string>();
    const errors: Error[] = [];
    let n = 0;
    await Promise.all(
      clients.map(async (c, ci) => {
        while (errors.length === 0 && n < 4000) {
          const batch = Array.from({ length: 8 }, () => [`k:${ci}:${n++}`, value(4 * KiB)] as const);
          const replies = await Promise.all(batch.map(([k, v]) => set(c, k, v)));
          replies.forEach((r, j) => {
            if (r === 'OK') acked.set(batch[j]![0], batch[j]![1]);
            else errors.push(r);
          });
        }
      }),
    );
    assert.ok(errors.length > 0, `no write failed after ${n} writes of 4 KiB on an 8 MiB disk`);
    for (const e of errors) assert.match(e.message, MISCONF);
    assert.ok(acked.size > 100, `only ${acked.size} writes were acknowledged before the disk filled up`);
    for (const c of clients) assert.equal(await c.call('PING'), 'PONG', 'every client is still connected');
    await assertRefusingWrites(s1, clients[0]!, acked, alive);

    await rm(filler);
    await assertResumes(s1, clients[0]!, acked, 'resumed');
    assert.equal(await s1.stop(), 0);
    await assertAllAcknowledged(env.start, acked);
  });

  test('steady writes with frequent flushes and compactions until the disk is full: whatever write fails first, nothing acknowledged is lost', async (t) => {
    const env = await setup(t, { 'write-buffer-size': 64 * KiB, 'level0-file-num-compaction-trigger': 2, 'target-file-size-base': 64 * KiB });
    if (env === undefined) return;
    const s1 = await env.start();
    const alive = tracked(s1);
    const filler = await fillLeaving(env.disk, 3 * MiB);
    const clients = Array.from({ length: 3 }, () => s1.client());
    const acked = new Map<string, string>();
    const errors: Error[] = [];
    let n = 0;
    await Promise.all(
      clients.map(async (c, ci) => {
        while (errors.length === 0 && n < 20_000) {
          // Sizes vary so the write that meets the full disk falls in a WAL record, a table, a manifest or a dictionary record.
          const batch = Array.from({ length: 4 }, () => [`s:${ci}:${n++}`, value(2 * (64 + Math.floor(Math.random() * 3000)))] as const);
          const replies = await Promise.all(batch.map(([k, v]) => set(c, k, v)));
          replies.forEach((r, j) => {
            if (r === 'OK') acked.set(batch[j]![0], batch[j]![1]);
            else errors.push(r);
          });
        }
      }),
    );
    assert.ok(errors.length > 0, `no write failed after ${n} writes`);
    for (const e of errors) assert.match(e.message, MISCONF);
    await assertRefusingWrites(s1, clients[0]!, acked, alive);

    // Stopped while the disk is still full, as an operator restarting it would; a start on the
    // full disk may refuse (it must say why), but must not destroy anything.
    await s1.stop();
    try {
      const s2 = await env.start();
      assert.equal(await s2.client().call('PING'), 'PONG');
      await s2.stop();
    } catch (err) {
      assert.match(String(err), /ENOSPC|no space left/, 'a start on the full disk failed for another reason');
    }
    await rm(filler);
    await assertAllAcknowledged(env.start, acked);
  });

  /**
   * Fills the memtable to about 85% of the write buffer, leaves `free` bytes on the disk, then
   * writes past the buffer so the next write switches memtables and the background flush (and
   * then compaction) runs into the full disk.
   */
  async function fillThenOverflow(s: ServerHandle, c: Redis, acked: Map<string, string>, writeBuffer: number, free: number, prefix: string): Promise<string> {
    let i = 0;
    while ((await engineStatus(s)).memtableBytes < 0.85 * writeBuffer) {
      for (let j = 0; j < 8; j++, i++) {
        const k = `${prefix}:${i}`;
        const v = value(4 * KiB);
        assert.equal(await set(c, k, v), 'OK');
        acked.set(k, v);
      }
    }
    const filler = await fillLeaving(join(s.dataDir!, '..'), free);
    const mset: string[] = [];
    for (let j = 0; j < (0.25 * writeBuffer) / (4 * KiB); j++) mset.push(`${prefix}:mset:${j}`, value(4 * KiB));
    assert.equal(await c.call('MSET', ...mset), 'OK');
    for (let j = 0; j < mset.length; j += 2) acked.set(mset[j]!, mset[j + 1]!);
    // This write finds the memtable full: it switches to a new one, whose flush starts in the background.
    const r = await set(c, `${prefix}:switch`, 'switch');
    if (r === 'OK') acked.set(`${prefix}:switch`, 'switch');
    else assert.match(r.message, MISCONF);
    return filler;
  }

  test('a background flush hits ENOSPC: writes get an error reply, reads and the unflushed writes stay', async (t) => {
    const writeBuffer = 256 * KiB;
    const env = await setup(t, { 'write-buffer-size': writeBuffer });
    if (env === undefined) return;
    const s1 = await env.start();
    const alive = tracked(s1);
    const c = s1.client();
    const acked = new Map<string, string>();
    const filler = await fillThenOverflow(s1, c, acked, writeBuffer, 0.4 * writeBuffer, 'flush');
    await waitUntil(async () => (await healthz(s1)).status === 503, '/healthz to report the failed flush', 20_000);
    const e = await engineStatus(s1);
    assert.equal(e.flushes, 0, 'the flush failed');
    assert.match(e.backgroundError ?? '', /ENOSPC/);
    assert.equal(e.backgroundErrorRecoverable, true);
    await assertRefusingWrites(s1, c, acked, alive);

    await rm(filler);
    await assertResumes(s1, c, acked, 'resumed');
    assert.ok((await engineStatus(s1)).flushes >= 1, 'the memtable was flushed once there was room');
    assert.equal(await s1.stop(), 0);
    await assertAllAcknowledged(env.start, acked);
  });

  test('a compaction without room is not started: writes go on, /status shows it paused, and it runs once space is freed', async (t) => {
    const writeBuffer = 256 * KiB;
    const env = await setup(t, { 'write-buffer-size': writeBuffer, 'level0-file-num-compaction-trigger': 2 });
    if (env === undefined) return;
    const s1 = await env.start();
    const alive = tracked(s1);
    const c = s1.client();
    const acked = new Map<string, string>();
    // A first table on level 0, flushed while the disk has room.
    let i = 0;
    while ((await engineStatus(s1)).flushes === 0) {
      for (let j = 0; j < 8; j++, i++) {
        const k = `first:${i}`;
        const v = value(4 * KiB);
        assert.equal(await set(c, k, v), 'OK');
        acked.set(k, v);
      }
    }
    // The second flush fits; the compaction of the two tables (which needs both again, the
    // room of the next flush and a margin) does not, and is not started.
    const filler = await fillThenOverflow(s1, c, acked, writeBuffer, 1.8 * writeBuffer, 'second');
    await waitUntil(async () => (await engineStatus(s1)).compactionPaused !== undefined, 'the compaction to be paused', 20_000).catch(async (err: unknown) => {
      assert.fail(`${String(err)}; engine ${JSON.stringify(await engineStatus(s1))}`);
    });
    const e = await engineStatus(s1);
    assert.equal(e.flushes, 2, 'both flushes succeeded');
    assert.equal(e.compactions, 0, 'the compaction was not started');
    assert.equal(e.backgroundError, undefined);
    assert.ok(e.compactionPaused!.needBytes > e.compactionPaused!.freeBytes);
    const h = await healthz(s1);
    assert.equal(h.status, 200, h.text);
    const info = parseInfo((await c.call('INFO', 'engine')) as string).get('engine')!;
    assert.equal(info.get('compaction_paused'), '1');
    assert.equal(info.get('writes_refused'), '0');
    // Writes go on while the compaction waits (level 0 is far from its stop trigger).
    for (let j = 0; j < 10; j++) {
      const k = `paused:${j}`;
      const v = value(1 * KiB);
      assert.equal(await set(c, k, v), 'OK');
      acked.set(k, v);
    }
    assert.ok(alive());

    await rm(filler);
    await waitUntil(async () => (await engineStatus(s1)).compactions >= 1, 'the compaction to run once space was freed', 30_000, 50);
    assert.equal((await engineStatus(s1)).compactionPaused, undefined);
    assert.equal(await s1.stop(), 0);
    await assertAllAcknowledged(env.start, acked);
  });
});
