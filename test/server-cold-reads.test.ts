import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, read as fsRead, writeSync, constants as fsConstants } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config/config.js';
import { TdekvServer } from '../src/server/server.js';
import type { FileOp } from '../src/util/file-io.js';
import { fileOpsDuring } from './support/file-ops.js';
import { captureLogger, cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';
import fc from 'fast-check';
import { cp } from 'node:fs/promises';
import { encodeCommand, parseInfo, RawConnection } from './support/server-process.js';

// An in-process server (the file-fault seam sees its reads) on loopback, with real clients:
// a command whose key is only on disk waits for its read on the thread pool, and then runs.

const KEYS = 3000;
const FIELDS = 300;
const valueOf = (i: number): string => `value-${i}-${'x'.repeat(i % 50)}`;

function config(rowCacheSize: string, blockCacheSize = '64MiB', readAhead = 'always'): string {
  return `[server]
addr = "127.0.0.1:0"
status-addr = "127.0.0.1:0"
read-ahead = "${readAhead}"
[storage]
data-dir = "data"
sync-writes = "no"
row-cache-size = "${rowCacheSize}"
[engine]
write-buffer-size = "64KiB"
target-file-size-base = "32KiB"
block-cache-size = "${blockCacheSize}"
# The data stays in level-0 tables: no compaction runs (one starting before the background
# thread has loaded would run, and read, on the event loop).
level0-file-num-compaction-trigger = 100
level0-slowdown-writes-trigger = 200
level0-stop-writes-trigger = 300
[security.encryption]
data-encryption-method = "aes256-ctr"
[security.encryption.master-key]
type = "file"
path = "master.key"
`;
}

/** The table reads made while `fn` runs: readSync on the event loop, pread on the thread pool. */
async function readsDuring(fn: () => Promise<void>): Promise<{ readSync: number; pread: number }> {
  const ops: FileOp[] = (await fileOpsDuring(fn)).filter((op) => op === 'readSync' || op === 'pread');
  return { readSync: ops.filter((op) => op === 'readSync').length, pread: ops.filter((op) => op === 'pread').length };
}

async function waitedForDisk(c: Redis): Promise<number> {
  return Number(parseInfo(await c.info('stats')).get('stats')!.get('commands_waited_for_disk'));
}

/**
 * Occupies every thread of libuv's pool with a read of a FIFO nobody writes to, until
 * `release()`: a read from disk queued meanwhile cannot finish, however fast the disk is.
 */
let fifos = 0;
function occupyThreadPool(dir: string): { release: () => Promise<void> } {
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const fifo = join(dir, `pool-${++fifos}.fifo`);
  execFileSync('mkfifo', [fifo]);
  // O_RDWR: Linux opens a FIFO at once this way, with no writer yet.
  const fd = openSync(fifo, fsConstants.O_RDWR);
  const reads = Array.from({ length: threads }, () => new Promise<void>((resolve) => fsRead(fd, Buffer.alloc(1), 0, 1, null, () => resolve())));
  return {
    release: async () => {
      for (let i = 0; i < threads; i++) writeSync(fd, 'x');
      await Promise.all(reads);
      closeSync(fd);
    },
  };
}

for (const rowCache of ['64MiB', '0']) {
  describe(`server: commands whose keys are only on disk (row-cache-size ${rowCache})`, () => {
    let dir: string;
    let server: TdekvServer | undefined;
    const clients: Redis[] = [];

    const start = async (text = config(rowCache)): Promise<TdekvServer> => {
      await writeFile(join(dir, 'tdekv.toml'), text);
      server = await TdekvServer.start(await loadConfig(join(dir, 'tdekv.toml')), captureLogger().logger);
      return server;
    };
    const connect = async (): Promise<Redis> => {
      const c = new Redis({ port: server!.addresses().addr.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
      await c.connect();
      clients.push(c);
      return c;
    };
    /** Stops the server (its memtable is flushed to a table) and starts it again: nothing of the data is in memory. */
    const restart = async (text?: string): Promise<void> => {
      for (const c of clients.splice(0)) c.disconnect();
      await server?.stop();
      server = undefined;
      await start(text);
    };

    before(async () => {
      dir = await tempDir('tdekv-cold-reads-');
      await writeKeyFile(dir);
      await start();
      const c = await connect();
      for (let i = 0; i < KEYS; i += 500) {
        const args: string[] = [];
        for (let j = i; j < i + 500; j++) args.push(`k:${j}`, valueOf(j));
        await c.mset(...args);
      }
      for (let i = 0; i < FIELDS; i += 100) {
        const args: string[] = [];
        for (let j = i; j < i + 100; j++) args.push(`f:${j}`, valueOf(j));
        await c.hset('h', ...args);
      }
      await c.set('n', '41');
      await c.pexpire('k:7', 3_600_000);
    });
    after(async () => {
      for (const c of clients.splice(0)) c.disconnect();
      await server?.stop();
      await cleanup(dir);
    });

    test('every key-reading command reads on the thread pool, never with a read on the event loop, and replies as before', async () => {
      await restart();
      const c = await connect();
      const reads = await readsDuring(async () => {
        // First, while nothing is in memory: EXEC waits for the keys of every queued command.
        const exec = await c.multi().get('k:30').hget('h', 'f:31').exists('k:2032').exec();
        assert.deepEqual(exec, [[null, valueOf(30)], [null, valueOf(31)], [null, 1]]);
        assert.equal(await c.get('k:1'), valueOf(1));
        assert.deepEqual(await c.mget('k:2', 'k:1500', 'missing', 'k:2999'), [valueOf(2), valueOf(1500), null, valueOf(2999)]);
        assert.equal(await c.strlen('k:10'), valueOf(10).length);
        assert.equal(await c.exists('k:11', 'k:12', 'nope'), 2);
        assert.ok((await c.pttl('k:7')) > 3_000_000);
        assert.equal(await c.type('h'), 'hash');
        assert.equal(await c.hget('h', 'f:5'), valueOf(5));
        assert.deepEqual(await c.hmget('h', 'f:6', 'f:299', 'f:none'), [valueOf(6), valueOf(299), null]);
        assert.equal(await c.hexists('h', 'f:250'), 1);
        const all = await c.hgetall('h');
        assert.equal(Object.keys(all).length, FIELDS);
        assert.equal(all['f:123'], valueOf(123));
        assert.equal((await c.hkeys('h')).length, FIELDS);
        assert.equal(await c.incr('n'), 42);
        assert.equal(await c.set('k:20', 'new', 'XX', 'GET'), valueOf(20));
        assert.equal(await c.setnx('k:21', 'no'), 0);
        assert.equal(await c.del('k:22', 'k:23'), 2);
        assert.equal(await c.hincrby('h', 'f:counter', 3), 3);
      });
      assert.equal(reads.readSync, 0, `reads on the event loop: ${reads.readSync} (and ${reads.pread} on the thread pool)`);
      assert.ok(reads.pread > 0, 'the keys were on disk');
      const waited = await waitedForDisk(c);
      assert.ok(waited > 0, `commands waited for the disk: ${waited}`);
      // What they wrote is there.
      assert.equal(await c.get('k:20'), 'new');
      assert.equal(await c.get('k:21'), valueOf(21));
      assert.equal(await c.exists('k:22', 'k:23'), 0);
    });

    test('a pipeline that mixes waiting and ready commands gets its replies in order, each as if run alone', async () => {
      await restart();
      const c = await connect();
      const p = c.pipeline();
      p.get('k:100');
      p.set('k:100', 'one');
      p.get('k:100');
      p.get('k:101');
      p.append('k:102', '!');
      p.get('k:102');
      p.ping();
      p.hget('h', 'f:100');
      p.hset('h', 'f:100', 'two');
      p.hget('h', 'f:100');
      p.get('k:2500');
      const replies = (await p.exec())!.map(([err, v]) => (err === null ? v : `error: ${err.message}`));
      assert.deepEqual(replies, [valueOf(100), 'OK', 'one', valueOf(101), valueOf(102).length + 1, `${valueOf(102)}!`, 'PONG', valueOf(100), 0, 'two', valueOf(2500)]);
    });

    test('a waiting client holds only itself: other clients are served meanwhile, and its command runs when the read is in', async () => {
      await restart();
      const waiter = await connect();
      const other = await connect();
      // Read while the pool is free: this key's block is in memory from now on.
      assert.equal(await other.get('k:0'), valueOf(0));
      const pool = occupyThreadPool(dir);
      let released = false;
      try {
        const before = await waitedForDisk(other);
        let answered = false;
        const reply = waiter.get('k:2000').then((v) => {
          answered = true;
          return v;
        });
        // The other client's INFO is answered while the waiter's GET waits for the disk.
        for (let i = 0; i < 200 && (await waitedForDisk(other)) === before; i++) await new Promise((r) => setTimeout(r, 5));
        assert.ok((await waitedForDisk(other)) > before || answered, `the GET waited for the disk (${before} → ${await waitedForDisk(other)}, answered ${answered})`);
        assert.equal(await other.get('k:0'), valueOf(0));
        assert.equal(await other.ping(), 'PONG');
        assert.equal(answered, false, 'the GET cannot finish before its read');
        released = true;
        await pool.release();
        assert.equal(await reply, valueOf(2000));
      } finally {
        if (!released) await pool.release();
      }
    });

    test('a write waiting for its read when the server stops is run and kept', async () => {
      await restart();
      const c = await connect();
      const pool = occupyThreadPool(dir);
      let released = false;
      try {
        const before = await waitedForDisk(c);
        const reply = c.set('k:1234', 'kept');
        const probe = await connect();
        for (let i = 0; i < 200 && (await waitedForDisk(probe)) === before; i++) await new Promise((r) => setTimeout(r, 5));
        const stopped = server!.stop();
        released = true;
        await pool.release();
        assert.equal(await reply, 'OK');
        await stopped;
      } finally {
        if (!released) await pool.release();
      }
      server = undefined;
      await restart();
      assert.equal(await (await connect()).get('k:1234'), 'kept');
    });

    test('active expiry reads the expiry index and the records on the thread pool', async () => {
      const c0 = await connect();
      // Due after the restart below (a loaded machine may take a while), so that the cycle
      // that removes them runs inside the window watched.
      const at = Date.now() + 3000;
      for (let i = 0; i < 50; i++) await c0.set(`e:${i}`, valueOf(i), 'PXAT', at + i);
      await restart();
      const c = await connect();
      const expired = async (): Promise<number> => Number(parseInfo(await c.info('stats')).get('stats')!.get('expired_keys'));
      assert.equal(await expired(), 0, 'none was due before the watch began');
      const reads = await readsDuring(async () => {
        for (let i = 0; i < 1000 && (await expired()) < 50; i++) await new Promise((r) => setTimeout(r, 10));
      });
      assert.equal(await expired(), 50, 'the expiry cycle removed every key (none was touched)');
      assert.equal(reads.readSync, 0, `reads on the event loop: ${reads.readSync} (and ${reads.pread} on the thread pool)`);
      assert.ok(reads.pread > 0);
    });

    test('an MGET of thousands of cold keys starts a bounded number of reads ahead and reads the rest itself', async () => {
      await restart();
      const c = await connect();
      const keys = Array.from({ length: KEYS }, (_, i) => i);
      let got: Array<string | null> = [];
      const reads = await readsDuring(async () => {
        got = await c.mget(...keys.map((i) => `k:${i}`));
      });
      assert.equal(got.length, KEYS);
      assert.equal(got[1777], valueOf(1777));
      assert.equal(got[2999], valueOf(2999));
      // 128 keys' reads, each a block or a table's open (footer, index, filter, properties), and
      // active expiry's; without the bound, one per key (3,130 here).
      assert.ok(reads.pread > 0 && reads.pread < 1000, `reads started ahead: ${reads.pread}`);
      assert.ok(reads.readSync > 0, 'the rest read by the command');
    });

    test('a failed read ahead costs nothing but the wait: the command reads for itself and replies', async () => {
      await restart();
      const c = await connect();
      let failed = 0;
      const { setFileFaults } = await import('../src/util/file-io.js');
      // Only tables are read here (their descriptors were opened before, so no path is known).
      setFileFaults((op) => {
        if (op === 'pread') {
          failed++;
          return 'EIO';
        }
        return undefined;
      });
      try {
        assert.equal(await c.get('k:2222'), valueOf(2222));
        assert.deepEqual(await c.hmget('h', 'f:222', 'f:1'), [valueOf(222), valueOf(1)]);
      } finally {
        setFileFaults(undefined);
      }
      assert.ok(failed > 0, 'the reads ahead were made, and failed');
    });
  });
}

describe('server: read-ahead changes when a command runs, never its reply', () => {
  test('random pipelines over cold keys get the same bytes from a server that reads ahead and one that does not', async () => {
    const base = await tempDir('tdekv-cold-reads-diff-');
    const servers: TdekvServer[] = [];
    const conns: RawConnection[] = [];
    try {
      const a = join(base, 'a');
      const b = join(base, 'b');
      await writeKeyFile(base);
      const write = async (dir: string, mode: string): Promise<void> => {
        await writeFile(join(dir, 'tdekv.toml'), config('64MiB', '64MiB', mode).replace('path = "master.key"', `path = "${join(base, 'master.key')}"`));
      };
      const { mkdir } = await import('node:fs/promises');
      await mkdir(a);
      await write(a, 'never');
      // The same data in both: loaded once, flushed to tables, copied.
      const loader = await TdekvServer.start(await loadConfig(join(a, 'tdekv.toml')), captureLogger().logger);
      const c = new Redis({ port: loader.addresses().addr.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
      for (let i = 0; i < KEYS; i += 500) {
        const args: string[] = [];
        for (let j = i; j < i + 500; j++) args.push(`k:${j}`, valueOf(j));
        await c.mset(...args);
      }
      for (let h = 0; h < 5; h++) {
        const args: string[] = [];
        for (let f = 0; f < 100; f++) args.push(`f:${f}`, valueOf(h * 100 + f));
        await c.hset(`h:${h}`, ...args);
      }
      for (let i = 0; i < 10; i++) await c.set(`c:${i}`, String(i * 7));
      c.disconnect();
      await loader.stop();
      await cp(a, b, { recursive: true });
      await write(b, 'always');
      for (const dir of [a, b]) servers.push(await TdekvServer.start(await loadConfig(join(dir, 'tdekv.toml')), captureLogger().logger));
      for (const s of servers) conns.push(await RawConnection.open(s.addresses().addr.port));

      const key = fc.oneof(
        fc.integer({ min: 0, max: KEYS - 1 }).map((i) => `k:${i}`),
        fc.integer({ min: 0, max: 9 }).map((i) => `n:${i}`),
      );
      const hash = fc.integer({ min: 0, max: 5 }).map((i) => `h:${i}`);
      const field = fc.integer({ min: 0, max: 110 }).map((i) => `f:${i}`);
      const counter = fc.integer({ min: 0, max: 11 }).map((i) => `c:${i}`);
      const value = fc.stringMatching(/^[a-z0-9]{0,12}$/);
      const command: fc.Arbitrary<string[][]> = fc.oneof(
        key.map((k) => [['GET', k]]),
        fc.tuple(key, value).map(([k, v]) => [['SET', k, v]]),
        fc.tuple(key, value).map(([k, v]) => [['SET', k, v, 'XX', 'GET']]),
        fc.tuple(key, key).map(([k, l]) => [['DEL', k, l]]),
        fc.tuple(key, key, key).map(([k, l, m]) => [['EXISTS', k, l, m]]),
        fc.tuple(key, key, key).map(([k, l, m]) => [['MGET', k, l, m]]),
        fc.tuple(key, value).map(([k, v]) => [['APPEND', k, v]]),
        key.map((k) => [['STRLEN', k]]),
        key.map((k) => [['TYPE', k]]),
        counter.map((k) => [['INCR', k]]),
        fc.tuple(hash, field).map(([h, f]) => [['HGET', h, f]]),
        fc.tuple(hash, field, value).map(([h, f, v]) => [['HSET', h, f, v]]),
        fc.tuple(hash, field).map(([h, f]) => [['HDEL', h, f]]),
        fc.tuple(hash, field, field).map(([h, f, g]) => [['HMGET', h, f, g]]),
        hash.map((h) => [['HGETALL', h]]),
        hash.map((h) => [['HLEN', h]]),
        key.map((k) => [['EXPIREAT', k, '4102444800']]),
        key.map((k) => [['EXPIRETIME', k]]),
        key.map((k) => [['PERSIST', k]]),
        fc.tuple(key, key, value).map(([k, l, v]) => [['MULTI'], ['GET', k], ['SET', l, v], ['HGET', 'h:1', 'f:3'], ['EXEC']]),
        fc.constant<string[][]>([['PING']]),
      );
      // Pipelines of 1 to 24 commands (a MULTI block counts as one), generated from a fixed seed.
      const script = fc.sample(fc.array(fc.array(command, { minLength: 1, maxLength: 24 }), { minLength: 80, maxLength: 80 }), { seed: 20261205, numRuns: 1 })[0]!;
      let sent = 0;
      for (const batch of script) {
        const commands = batch.flat();
        const bytes = Buffer.concat(commands.map((args) => encodeCommand(...args)));
        for (const conn of conns) conn.send(bytes);
        for (const args of commands) {
          const [never, always] = await Promise.all(conns.map((conn) => conn.reply()));
          assert.equal(always!.raw.toString('latin1'), never!.raw.toString('latin1'), `reply to ${args.join(' ')} (command ${sent})`);
          sent++;
        }
      }
      assert.ok(sent > 400, `${sent} commands`);
      assert.equal(await waitedForDiskRaw(conns[0]!), 0, 'the server that does not read ahead never waited');
      assert.ok((await waitedForDiskRaw(conns[1]!)) > 20, 'the other one waited for the disk, many times');
    } finally {
      for (const conn of conns) conn.destroy();
      for (const s of servers) await s.stop();
      await cleanup(base);
    }
  });
});

async function waitedForDiskRaw(conn: RawConnection): Promise<number> {
  conn.send(encodeCommand('INFO', 'stats'));
  const text = (await conn.reply()).raw.toString('latin1');
  return Number(/commands_waited_for_disk:(\d+)/.exec(text)?.[1]);
}

describe('server: read-ahead = "auto" reads ahead only while the reads on the event loop are slow', () => {
  test('fast (page-cached) reads stay on the event loop; slow ones send the commands after them to the thread pool', async () => {
    const dir = await tempDir('tdekv-cold-reads-auto-');
    let server: TdekvServer | undefined;
    let c: Redis | undefined;
    const { setFileFaults } = await import('../src/util/file-io.js');
    try {
      await writeKeyFile(dir);
      await writeFile(join(dir, 'tdekv.toml'), config('0', '64MiB', 'auto'));
      server = await TdekvServer.start(await loadConfig(join(dir, 'tdekv.toml')), captureLogger().logger);
      c = new Redis({ port: server.addresses().addr.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
      for (let i = 0; i < KEYS; i += 500) {
        const args: string[] = [];
        for (let j = i; j < i + 500; j++) args.push(`k:${j}`, valueOf(j));
        await c.mset(...args);
      }
      c.disconnect();
      await server.stop();
      server = await TdekvServer.start(await loadConfig(join(dir, 'tdekv.toml')), captureLogger().logger);
      c = new Redis({ port: server.addresses().addr.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
      // Every key once, in an order that jumps between tables (997 and KEYS are coprime).
      const keys = Array.from({ length: KEYS }, (_, i) => (i * 997) % KEYS);
      const fast = await readsDuring(async () => {
        for (const i of keys.slice(0, 20)) assert.equal(await c!.get(`k:${i}`), valueOf(i));
      });
      assert.ok(fast.readSync > 0, 'page-cached reads are made by the commands themselves');
      assert.equal(fast.pread, 0);
      assert.equal(await waitedForDisk(c), 0);
      // A disk that takes 2 ms a read: after a few such reads, commands wait for theirs on the thread pool.
      // (The engine tells a disk read from a read that waited for the CPU by the process's
      // block input count, which a spin does not move: each slow read here moves it.)
      let slowReads = 0;
      let preads = 0;
      let slowBeforeSwitch = -1;
      const resourceUsage = process.resourceUsage;
      let blockReads = 0;
      process.resourceUsage = () => ({ ...resourceUsage(), fsRead: blockReads });
      setFileFaults((op) => {
        if (op === 'pread') {
          // The thread pool's reads come from the disk too: the engine stays slow while they do.
          if (preads === 0) slowBeforeSwitch = slowReads;
          preads++;
          blockReads += 8;
        }
        if (op !== 'readSync') return undefined;
        slowReads++;
        blockReads += 8;
        const until = performance.now() + 2;
        while (performance.now() < until);
        return undefined;
      });
      try {
        // Until a few commands after the switch: where in this walk the blocks not read yet
        // come depends on how the load was cut into tables, so a fixed list of keys may run out
        // of them (a CI run once did, right after the switch).
        let afterSwitch = 0;
        for (const i of keys.slice(20)) {
          assert.equal(await c.get(`k:${i}`), valueOf(i));
          if (preads > 0 && ++afterSwitch === 5) break;
        }
      } finally {
        setFileFaults(undefined);
        process.resourceUsage = resourceUsage;
      }
      // Only the first switch is counted: a loaded machine may time reads again later.
      assert.ok(slowBeforeSwitch >= 3 && slowBeforeSwitch <= 8, `slow reads on the event loop before the switch: ${slowBeforeSwitch} (${slowReads} in all)`);
      assert.ok(preads > 0 && (await waitedForDisk(c)) > 0, 'the commands after them waited for reads on the thread pool');
    } finally {
      c?.disconnect();
      await server?.stop();
      await cleanup(dir);
    }
  });
});

describe('server: a table changed on disk, read ahead', () => {
  test('the GET gets an error naming the damage, the server serves on, and the clean keys still read', async () => {
    const dir = await tempDir('tdekv-cold-reads-damage-');
    let server: TdekvServer | undefined;
    let c: Redis | undefined;
    try {
      await writeKeyFile(dir);
      await writeFile(join(dir, 'tdekv.toml'), config('64MiB'));
      server = await TdekvServer.start(await loadConfig(join(dir, 'tdekv.toml')), captureLogger().logger);
      c = new Redis({ port: server.addresses().addr.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
      const args: string[] = [];
      for (let i = 0; i < 2000; i++) args.push(`k:${i}`, valueOf(i));
      await c.mset(...args);
      c.disconnect();
      await server.stop();
      // Without the key: one byte in the middle of every table flipped (a data block of records;
      // the first block, which the server reads as it starts, is left alone).
      const { readdir, stat } = await import('node:fs/promises');
      const { flipByte } = await import('./support/fs-helpers.js');
      const tables = (await readdir(join(dir, 'data'))).filter((f) => f.endsWith('.sst'));
      assert.ok(tables.length > 0);
      for (const t of tables) await flipByte(join(dir, 'data', t), Math.floor((await stat(join(dir, 'data', t))).size / 2), 0x01);
      server = await TdekvServer.start(await loadConfig(join(dir, 'tdekv.toml')), captureLogger().logger);
      c = new Redis({ port: server.addresses().addr.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
      // Some key lies in the damaged block: its GET fails with the damage named; others read.
      const failures: string[] = [];
      let good = 0;
      for (let i = 0; i < 2000; i += 7) {
        try {
          assert.equal(await c.get(`k:${i}`), valueOf(i));
          good++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
      assert.ok(failures.length > 0, 'a GET read the damaged block');
      assert.ok(failures.every((m) => /is damaged: .*authentication tag/.test(m) && /\.sst/.test(m)), failures[0]);
      assert.ok(good > 0, 'keys outside the damaged block still read');
      assert.ok((await waitedForDisk(c)) > 0, 'the GETs read ahead');
      assert.equal(await c.ping(), 'PONG');
      assert.equal(await c.set('z', 'fresh'), 'OK');
      assert.equal(await c.get('z'), 'fresh');
    } finally {
      c?.disconnect();
      await server?.stop().catch(() => undefined);
      await cleanup(dir);
    }
  });
});

describe('server: without a block cache nothing is read ahead', () => {
  test('commands read for themselves (what was read ahead would not be kept)', async () => {
    const dir = await tempDir('tdekv-cold-reads-nocache-');
    let server: TdekvServer | undefined;
    let c: Redis | undefined;
    try {
      await writeKeyFile(dir);
      await writeFile(join(dir, 'tdekv.toml'), config('64MiB', '0'));
      server = await TdekvServer.start(await loadConfig(join(dir, 'tdekv.toml')), captureLogger().logger);
      c = new Redis({ port: server.addresses().addr.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
      await c.mset('a', '1', 'b', '2');
      c.disconnect();
      await server.stop();
      server = await TdekvServer.start(await loadConfig(join(dir, 'tdekv.toml')), captureLogger().logger);
      c = new Redis({ port: server.addresses().addr.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
      const reads = await readsDuring(async () => {
        assert.deepEqual(await c!.mget('a', 'b'), ['1', '2']);
      });
      assert.equal(reads.pread, 0);
      assert.ok(reads.readSync > 0);
      assert.equal(await waitedForDisk(c), 0);
    } finally {
      c?.disconnect();
      await server?.stop();
      await cleanup(dir);
    }
  });
});
