/** tdekv only: restarts, crash durability, and what reaches the disk and the log. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { assertSameTree, snapshotTree, writeKeyFile } from './support/fs-helpers.js';
import { encodeCommand, makeTempDir, removeTempDir, runTdekvToExit, startTdekv, target, waitUntil, type ServerHandle, type TdekvOptions } from './support/server-process.js';

describe('server lifecycle', { skip: target() !== 'tdekv' && 'tdekv only' }, () => {
  const servers: ServerHandle[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const s of servers) await s.kill();
    for (const d of dirs) await removeTempDir(d);
  });
  async function start(options: TdekvOptions): Promise<ServerHandle> {
    const s = await startTdekv(options);
    servers.push(s);
    return s;
  }
  async function newDir(): Promise<string> {
    const d = await makeTempDir('tdekv-it-life-');
    dirs.push(d);
    return d;
  }

  test('SIGTERM, restart: data and TTLs survive, keys that expired while down are gone', async () => {
    const dir = await newDir();
    const s1 = await start({ dir });
    const c1 = s1.client();
    const plain = Array.from({ length: 200 }, (_, i) => [`plain:${i}`, `value-${i}`] as const);
    await c1.call('MSET', ...plain.flat());
    await c1.call('SET', 'ttl:string', 'lives an hour', 'EX', '3600');
    const fields = Array.from({ length: 50 }, (_, i) => [`f${i}`, `v${i}`] as const);
    await c1.call('HSET', 'hash', ...fields.flat());
    await c1.call('HSET', 'ttl:hash', 'a', '1');
    await c1.call('EXPIRE', 'ttl:hash', '3600');
    const binKey = Buffer.from([0, 1, 2, 255, 13, 10]);
    const binVal = randomBytes(100_000);
    await c1.callBuffer('SET', binKey, binVal);
    for (let i = 0; i < 5; i++) await c1.call('INCR', 'counter');
    await c1.call('SET', 'short:string', 'v', 'PX', '1000');
    await c1.call('HSET', 'short:hash', 'f', 'v');
    await c1.call('PEXPIRE', 'short:hash', '1000');
    const shortDeadline = Date.now() + 1000;
    await c1.call('SET', 'deleted', 'x');
    await c1.call('DEL', 'deleted');
    assert.equal(await c1.call('EXISTS', 'short:string', 'short:hash'), 2);

    assert.equal(await s1.stop(), 0, `exit code after SIGTERM; log:\n${s1.stderr()}`);
    // The short TTLs are wall-clock deadlines: this test is about what the restarted server
    // does with keys whose deadline passed while it was down, so it waits for that moment.
    await delay(Math.max(0, shortDeadline - Date.now() + 50));

    const s2 = await start({ dir });
    const c2 = s2.client();
    assert.deepEqual(await c2.call('MGET', ...plain.map(([k]) => k)), plain.map(([, v]) => v));
    assert.equal(await c2.call('GET', 'ttl:string'), 'lives an hour');
    const t1 = (await c2.call('TTL', 'ttl:string')) as number;
    assert.ok(t1 > 3580 && t1 <= 3600, `TTL after restart ${t1}`);
    const t2 = (await c2.call('TTL', 'ttl:hash')) as number;
    assert.ok(t2 > 3580 && t2 <= 3600, `hash TTL after restart ${t2}`);
    const all = (await c2.call('HGETALL', 'hash')) as string[];
    const got = new Map<string, string>();
    for (let i = 0; i < all.length; i += 2) got.set(all[i]!, all[i + 1]!);
    assert.deepEqual(got, new Map(fields));
    assert.equal(await c2.call('TTL', 'hash'), -1);
    assert.ok(((await c2.callBuffer('GET', binKey)) as Buffer).equals(binVal));
    assert.equal(await c2.call('GET', 'counter'), '5');
    assert.equal(await c2.call('EXISTS', 'short:string', 'short:hash', 'deleted'), 0);
    assert.equal(await c2.call('TTL', 'short:string'), -2);
    const expected = plain.length + 5; // ttl:string, hash, ttl:hash, the binary key, counter
    const keys = (await c2.call('KEYS', '*')) as string[];
    assert.equal(keys.length, expected, `KEYS after restart: ${keys.filter((k) => !k.startsWith('plain:')).join(', ')}`);
    await waitUntil(async () => (await c2.call('DBSIZE')) === expected, `DBSIZE ${expected} after restart`);
    assert.equal(await c2.call('INCR', 'counter'), 6, 'the restarted server takes writes');
    assert.equal(await s2.stop(), 0);
  });

  test('SIGKILL with sync-writes = "always" keeps every acknowledged write', async () => {
    const dir = await newDir();
    const settings = { storage: { 'sync-writes': 'always' } };
    const s1 = await start({ dir, settings });
    const c1 = s1.client();
    for (let i = 0; i < 100; i++) assert.equal(await c1.call('SET', `seq:${i}`, `v${i}`), 'OK');
    await c1.call('HSET', 'hash', 'a', '1', 'b', '2');
    await c1.call('SET', 'ttl', 'v', 'EX', '3600');
    assert.deepEqual(await c1.multi().set('tx:a', '1').set('tx:b', '2').exec(), [[null, 'OK'], [null, 'OK']]);

    // Writes keep flowing from a second client while the process is killed: every reply that
    // arrived before the connection dropped is a promise the server must keep.
    const writer = s1.client();
    const acked: number[] = [];
    let sent = 0;
    const flowing = (async () => {
      for (;;) {
        const batch = Array.from({ length: 50 }, (_, j) => sent + j);
        sent += batch.length;
        const results = await Promise.allSettled(batch.map((n) => writer.call('SET', `flow:${n}`, `value-${n}`)));
        results.forEach((r, j) => {
          if (r.status === 'fulfilled' && r.value === 'OK') acked.push(batch[j]!);
        });
        if (results.some((r) => r.status === 'rejected')) return;
      }
    })();
    await waitUntil(() => acked.length >= 500, '500 acknowledged writes', 20_000, 5);
    await s1.kill();
    await flowing;
    assert.ok(acked.length >= 500);

    const s2 = await start({ dir, settings });
    const c2 = s2.client();
    for (let i = 0; i < 100; i++) assert.equal(await c2.call('GET', `seq:${i}`), `v${i}`);
    assert.deepEqual(await c2.call('HMGET', 'hash', 'a', 'b'), ['1', '2']);
    assert.ok(((await c2.call('TTL', 'ttl')) as number) > 3500);
    assert.deepEqual(await c2.call('MGET', 'tx:a', 'tx:b'), ['1', '2']);
    const values = (await c2.call('MGET', ...acked.map((n) => `flow:${n}`))) as (string | null)[];
    const lost = acked.filter((n, i) => values[i] !== `value-${n}`);
    assert.deepEqual(lost, [], `${lost.length} of ${acked.length} acknowledged writes lost`);
    assert.equal(await s2.stop(), 0);
  });

  test('deletes, FLUSHALL, overwrites, PERSIST and RENAME stay done across SIGINT and SIGKILL restarts', async () => {
    const dir = await newDir();
    const settings = { storage: { 'sync-writes': 'always' } };
    const state = async (c: Redis, keys: string[], strings: Record<string, string>, hashes: Record<string, Record<string, string>>): Promise<void> => {
      assert.deepEqual(((await c.call('KEYS', '*')) as string[]).sort(), [...keys].sort());
      for (const [k, v] of Object.entries(strings)) assert.equal(await c.call('GET', k), v, `GET ${k}`);
      for (const [k, fields] of Object.entries(hashes)) {
        const flat = (await c.call('HGETALL', k)) as string[];
        const got: Record<string, string> = {};
        for (let i = 0; i < flat.length; i += 2) got[flat[i]!] = flat[i + 1]!;
        assert.deepEqual(got, fields, `HGETALL ${k}`);
      }
    };

    const s1 = await start({ dir, settings });
    const c1 = s1.client();
    await c1.call('MSET', ...Array.from({ length: 100 }, (_, i) => [`old:${i}`, 'x']).flat());
    await c1.call('HSET', 'old-hash', 'a', '1', 'b', '2');
    await c1.call('FLUSHALL');
    await c1.call('MSET', 'k1', 'v1', 'k2', 'v2', 'k3', 'v3', 'k4', 'v4');
    await c1.call('HSET', 'h', 'a', '1', 'b', '2', 'c', '3');
    await c1.call('HDEL', 'h', 'b');
    await c1.call('DEL', 'k2');
    await c1.call('SET', 'k3', 'v3-new');
    await c1.call('SET', 'k4', 'v4', 'EX', '3600');
    await c1.call('PERSIST', 'k4');
    await c1.call('RENAME', 'k1', 'k1-renamed');
    const phase1 = { keys: ['k1-renamed', 'k3', 'k4', 'h'], strings: { 'k1-renamed': 'v1', k3: 'v3-new', k4: 'v4' }, hashes: { h: { a: '1', c: '3' } } };
    await state(c1, phase1.keys, phase1.strings, phase1.hashes);
    assert.equal(await s1.stop('SIGINT'), 0, 'SIGINT also shuts down cleanly');

    const s2 = await start({ dir, settings });
    const c2 = s2.client();
    await state(c2, phase1.keys, phase1.strings, phase1.hashes);
    assert.equal(await c2.call('TTL', 'k4'), -1, 'PERSIST survived');
    // Now the same kinds of change over data that is on disk, then a crash: WAL replay must
    // apply the deletions too.
    await c2.call('DEL', 'k3');
    await c2.call('HDEL', 'h', 'a');
    await c2.call('RENAME', 'k1-renamed', 'k1');
    await c2.call('SET', 'k5', 'v5');
    await c2.call('HSET', 'h2', 'x', '1');
    await c2.call('EXPIRE', 'k4', '3600');
    await s2.kill();

    const s3 = await start({ dir, settings });
    const c3 = s3.client();
    await state(c3, ['k1', 'k4', 'k5', 'h', 'h2'], { k1: 'v1', k4: 'v4', k5: 'v5' }, { h: { c: '3' }, h2: { x: '1' } });
    assert.ok(((await c3.call('TTL', 'k4')) as number) > 3500);
    await c3.call('FLUSHALL');
    await c3.call('SET', 'only', '1');
    await s3.kill();

    const s4 = await start({ dir, settings });
    await state(s4.client(), ['only'], { only: '1' }, {});
    assert.equal(await s4.stop(), 0);
  });

  test('a wrong master key: the server refuses to start, says why, and changes nothing on disk', async () => {
    const dir = await newDir();
    const s1 = await start({ dir });
    await s1.client().call('SET', 'k', 'v');
    assert.equal(await s1.stop(), 0);
    const oldHex = (await readFile(join(dir, 'master.key'), 'utf8')).trim();
    const { hex: newHex } = await writeKeyFile(dir, 'master.key');
    const before = await snapshotTree(s1.dataDir!);
    const r = await runTdekvToExit({ dir });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /MASTER_KEY_WRONG|wrong master key/i);
    assert.doesNotMatch(r.stderr, /"msg":"ready"/);
    assert.ok(!r.stderr.includes(oldHex) && !r.stderr.includes(newHex), 'no key material in the log');
    assertSameTree(await snapshotTree(s1.dataDir!), before, 'data dir after the refused start');
  });

  test('a second server on the same data dir is refused while the first keeps serving', async () => {
    const dir = await newDir();
    const s1 = await start({ dir });
    const c1 = s1.client();
    await c1.call('SET', 'k', 'v');
    const r = await runTdekvToExit({ dir });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /DATA_DIR_LOCKED|lock/i);
    assert.equal(await c1.call('GET', 'k'), 'v');
    await c1.call('SET', 'k2', 'v2');
    assert.equal(await s1.stop(), 0);
  });

  /** Every file under `root` whose raw bytes contain `needle`. */
  async function filesContaining(root: string, needle: string): Promise<{ hits: string[]; files: number; bytes: number }> {
    const hits: string[] = [];
    let files = 0;
    let bytes = 0;
    const n = Buffer.from(needle);
    const walk = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.isFile()) {
          const b = await readFile(p);
          files++;
          bytes += b.length;
          if (b.includes(n)) hits.push(relative(root, p));
        }
      }
    };
    await walk(root);
    return { hits, files, bytes };
  }

  async function writeMarkers(c: Redis, marker: string): Promise<void> {
    await c.call('SET', `key:${marker}`, `value:${marker}`);
    await c.call('HSET', `hash:${marker}`, `field:${marker}`, `v:${marker}`, 'plain-field', `v2:${marker}`);
    await c.call('SET', `ttl:${marker}`, marker, 'EX', '3600');
    await c.call('APPEND', 'appended', marker);
    await c.call('SETRANGE', 'ranged', '3', marker);
    await c.call('SET', `gone:${marker}`, marker);
    await c.call('DEL', `gone:${marker}`);
    await c.call('HINCRBY', `counter:${marker}`, `n:${marker}`, '1');
    // Enough data for several memtable flushes (write-buffer-size below), so SSTables and
    // compaction output are scanned too, not only the WAL.
    const p = c.pipeline();
    const filler = `${marker}|`.repeat(20);
    for (let i = 0; i < 1500; i++) p.set(`bulk:${i}:${marker}`, `${i}:${filler}`);
    await p.exec();
    assert.equal(await c.call('GET', `key:${marker}`), `value:${marker}`);
  }

  const smallMemtable = { engine: { 'write-buffer-size': 32768 } };

  test('marker scan: no file under the data dir holds user data in clear', async () => {
    const marker = `TDEKVMARK${randomBytes(8).toString('hex')}`;
    const s = await start({ dir: await newDir(), settings: smallMemtable });
    await writeMarkers(s.client(), marker);
    assert.equal(await s.stop(), 0);
    const scan = await filesContaining(s.dataDir!, marker);
    assert.ok(scan.bytes > 200_000, `the data dir holds the data (${scan.files} files, ${scan.bytes} bytes)`);
    assert.deepEqual(scan.hits, [], 'files containing the marker in clear');
  });

  test('marker scan control: with data-encryption-method = "plaintext" the marker is found', async () => {
    const marker = `TDEKVMARK${randomBytes(8).toString('hex')}`;
    const s = await start({ dir: await newDir(), settings: { ...smallMemtable, security: { encryption: { 'data-encryption-method': 'plaintext' } } } });
    await writeMarkers(s.client(), marker);
    assert.equal(await s.stop(), 0);
    const scan = await filesContaining(s.dataDir!, marker);
    assert.ok(scan.hits.length > 0, `the scan finds plaintext markers (${scan.files} files scanned)`);
  });

  test('log scan: with debug logging, no key, value or bad request reaches the log', async () => {
    const marker = `LOGMARK${randomBytes(8).toString('hex')}`;
    const s = await start({ settings: { log: { level: 'debug' } } });
    const c = s.client();
    await c.call('SET', `key:${marker}`, `value:${marker}`);
    await c.call('GET', `key:${marker}`);
    await c.call('HSET', `hash:${marker}`, `field:${marker}`, marker);
    await c.call('CLIENT', 'SETNAME', `name${marker}`);
    await assert.rejects(c.call(`CMD${marker}`, marker));
    await assert.rejects(c.call('HSET', `key:${marker}`, 'f', marker));
    await assert.rejects(c.call('INCR', `key:${marker}`));
    await assert.rejects(c.call('AUTH', marker));
    await assert.rejects(c.call('SET', `key:${marker}`, marker, 'EX', marker));
    await assert.rejects(c.multi().set(`tx:${marker}`, marker).call(`NOPE${marker}`).exec());
    const raw1 = await s.raw();
    raw1.send(`*2\r\n$3\r\nGET\r\n$${marker}\r\n`);
    await raw1.readUntilClosed();
    const raw2 = await s.raw();
    raw2.send(encodeCommand('SET', `raw:${marker}`, marker));
    raw2.send(`GET "${marker}\r\n`);
    await raw2.readUntilClosed();
    assert.equal(await c.call('GET', `key:${marker}`), `value:${marker}`, 'the server is still serving');
    assert.equal(await s.stop(), 0);
    const log = s.stderr();
    assert.ok(
      log.split('\n').some((l) => /"level":(10|20)\b/.test(l)),
      'debug lines were logged (otherwise this scan proves nothing)',
    );
    const leaks = log.split('\n').filter((l) => l.includes(marker));
    assert.deepEqual(leaks, [], 'log lines containing the marker');
  });
});
