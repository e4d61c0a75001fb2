import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Redis } from 'ioredis';
import { rejectsWith, sharedServer, waitUntil } from './support/server-process.js';

let c: Redis;
const shared = sharedServer((_, client) => {
  c = client;
});

const sorted = (xs: unknown): string[] => [...(xs as string[])].sort();

async function ttl(key: string): Promise<number> {
  return (await c.call('TTL', key)) as number;
}
async function pttl(key: string): Promise<number> {
  return (await c.call('PTTL', key)) as number;
}

/** Follows SCAN to cursor "0"; returns every key seen and the number of calls. */
async function scanAll(...args: string[]): Promise<{ keys: string[]; calls: number }> {
  const keys: string[] = [];
  let cursor = '0';
  let calls = 0;
  do {
    const [next, batch] = (await c.call('SCAN', cursor, ...args)) as [string, string[]];
    assert.equal(typeof next, 'string', 'the cursor is a bulk string');
    assert.ok(Array.isArray(batch));
    keys.push(...batch);
    cursor = next;
    calls++;
    assert.ok(calls < 10_000, 'SCAN terminates');
  } while (cursor !== '0');
  return { keys, calls };
}

test('keys that are prefixes of one another, empty, or hold NUL and 0xff bytes stay separate', async () => {
  const b = (...parts: (string | number[])[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
  const strings = [b(''), b([0]), b('a', [0]), b('a', [0], 'b'), b('ab'), b('a', [0xff]), b([0xff]), b([0xff, 0xff]), b('h', [0], 'f')];
  const hashFields = [b(''), b([0]), b('b'), b('b', [0]), b([0xff])];
  for (const k of strings) await c.callBuffer('SET', k, `value of ${k.toString('hex')}`);
  for (const f of hashFields) await c.callBuffer('HSET', 'a', f, `field ${f.toString('hex')}`);
  await c.callBuffer('HSET', 'h', 'f', 'hash h');
  const hex = (xs: unknown): string[] => (xs as Buffer[]).map((x) => x.toString('hex')).sort();
  const allKeys = [...strings, b('a'), b('h')].map((k) => k.toString('hex')).sort();

  for (const k of strings) assert.equal(String(await c.callBuffer('GET', k)), `value of ${k.toString('hex')}`, `GET ${k.toString('hex')}`);
  const fields = (await c.callBuffer('HGETALL', 'a')) as Buffer[];
  assert.deepEqual(hex(fields.filter((_, i) => i % 2 === 0)), hashFields.map((f) => f.toString('hex')).sort());
  assert.deepEqual(await c.call('HGETALL', 'h'), ['f', 'hash h']);
  assert.equal(await c.call('DBSIZE'), allKeys.length);
  assert.deepEqual(hex(await c.callBuffer('KEYS', '*')), allKeys);
  const scanned: Buffer[] = [];
  let cursor = '0';
  do {
    const [next, batch] = (await c.callBuffer('SCAN', cursor, 'COUNT', '3')) as [Buffer, Buffer[]];
    scanned.push(...batch);
    cursor = next.toString();
  } while (cursor !== '0');
  assert.deepEqual([...new Set(scanned.map((k) => k.toString('hex')))].sort(), allKeys);
  assert.deepEqual(hex(await c.callBuffer('KEYS', 'a*')), [b('a'), b('a', [0]), b('a', [0], 'b'), b('ab'), b('a', [0xff])].map((k) => k.toString('hex')).sort());

  assert.equal(await c.call('DEL', 'a'), 1);
  assert.equal(await c.call('DBSIZE'), allKeys.length - 1, 'deleting hash "a" removed nothing else');
  for (const k of strings) assert.equal(await c.callBuffer('EXISTS', k), 1);
  assert.equal(await c.call('DEL', ''), 1);
  assert.equal(await c.callBuffer('GET', b([0])).then(String), `value of 00`);
  assert.equal(await c.call('HLEN', 'a'), 0);
  await c.call('SET', 'a', 'now a string');
  await rejectsWith(c.call('HGET', 'a', 'b'), 'WRONGTYPE Operation against a key holding the wrong kind of value');
  assert.equal(await c.callBuffer('GET', b('a', [0], 'b')).then(String), `value of ${b('a', [0], 'b').toString('hex')}`);
});

test('SCAN returns every key that exists for the whole iteration while others come and go', async () => {
  const stable = Array.from({ length: 400 }, (_, i) => `stable:${String(i).padStart(3, '0')}`);
  await c.call('MSET', ...stable.flatMap((k) => [k, 'v']));
  const seen = new Set<string>();
  let cursor = '0';
  let round = 0;
  do {
    const [next, batch] = (await c.call('SCAN', cursor, 'COUNT', '20')) as [string, string[]];
    for (const k of batch) seen.add(k);
    cursor = next;
    // Churn on both sides of the keys still to come.
    await c.call('SET', `churn:${round}`, 'x');
    await c.call('SET', `a-churn:${round}`, 'x');
    await c.call('SET', `zz-churn:${round}`, 'x');
    if (round > 0) await c.call('DEL', `churn:${round - 1}`, `zz-churn:${round - 1}`);
    round++;
  } while (cursor !== '0');
  for (const k of stable) assert.ok(seen.has(k), `SCAN missed ${k}`);
  for (const k of seen) assert.match(k, /^(stable|churn|a-churn|zz-churn):/);
});

test('DEL and UNLINK count the keys removed', async () => {
  await c.call('MSET', 'a', '1', 'b', '2', 'c', '3');
  await c.call('HSET', 'h', 'f', 'v');
  assert.equal(await c.call('DEL', 'a', 'missing', 'a', 'h'), 2, 'a duplicate is removed once');
  assert.equal(await c.call('EXISTS', 'a', 'h'), 0);
  assert.equal(await c.call('UNLINK', 'b', 'c', 'nope'), 2);
  assert.equal(await c.call('DBSIZE'), 0);
  assert.equal(await c.call('DEL', 'missing'), 0);
  await rejectsWith(c.call('DEL'), "ERR wrong number of arguments for 'del' command");
});

test('EXISTS counts every argument, duplicates included', async () => {
  await c.call('MSET', 'a', '1', 'b', '2');
  await c.call('HSET', 'h', 'f', 'v');
  assert.equal(await c.call('EXISTS', 'a'), 1);
  assert.equal(await c.call('EXISTS', 'missing'), 0);
  assert.equal(await c.call('EXISTS', 'a', 'a', 'b', 'missing', 'h', 'a'), 5);
});

test('TYPE', async () => {
  await c.call('SET', 's', 'v');
  await c.call('HSET', 'h', 'f', 'v');
  assert.equal(await c.call('TYPE', 's'), 'string');
  assert.equal(await c.call('TYPE', 'h'), 'hash');
  assert.equal(await c.call('TYPE', 'missing'), 'none');
  const raw = await shared.server.raw();
  assert.equal(await raw.command('TYPE', 'h'), '+hash\r\n', 'a status reply');
});

const GLOB_KEYS = ['hello', 'hallo', 'hxllo', 'hllo', 'heeeello', 'hbllo', 'h[llo', 'h*x', 'hax', 'user:1', 'user:2', 'user:10', 'a\\b'];

test('KEYS glob patterns', async () => {
  await c.call('MSET', ...GLOB_KEYS.flatMap((k) => [k, 'v']));
  const cases: [string, string[]][] = [
    ['*', GLOB_KEYS],
    ['h?llo', ['hello', 'hallo', 'hxllo', 'hbllo', 'h[llo']],
    ['h*llo', ['hello', 'hallo', 'hxllo', 'hllo', 'heeeello', 'hbllo', 'h[llo']],
    ['h[ae]llo', ['hello', 'hallo']],
    ['h[^e]llo', ['hallo', 'hxllo', 'hbllo', 'h[llo']],
    ['h[a-b]llo', ['hallo', 'hbllo']],
    ['h\\[llo', ['h[llo']],
    ['h\\*x', ['h*x']],
    ['h*x', ['h*x', 'hax']],
    ['user:?', ['user:1', 'user:2']],
    ['user:*', ['user:1', 'user:2', 'user:10']],
    ['a\\\\b', ['a\\b']],
    ['hello', ['hello']],
    ['nomatch*', []],
  ];
  for (const [pattern, expected] of cases) {
    assert.deepEqual(sorted(await c.call('KEYS', pattern)), [...expected].sort(), `KEYS ${pattern}`);
  }
});

// CVE-2022-36021: this KEYS froze the whole server (each extra `a*` cost ~15x; hours at 20).
test('pathological MATCH patterns answer at once in KEYS, SCAN and HSCAN', { timeout: 60_000 }, async () => {
  const forty = 'a'.repeat(40);
  const evil = 'a*'.repeat(20) + 'b';
  await c.call('SET', forty, '1');
  await c.call('HSET', 'glob:hash', forty, '1');
  const other = shared.server.client();
  const [keys, scan, hscan, pong] = await Promise.all([
    c.call('KEYS', evil),
    scanAll('MATCH', evil, 'COUNT', '1000'),
    c.call('HSCAN', 'glob:hash', '0', 'MATCH', evil),
    other.call('PING'),
  ]);
  assert.deepEqual(keys, []);
  assert.deepEqual(scan.keys, []);
  assert.deepEqual(hscan, ['0', []]);
  assert.equal(pong, 'PONG');
  assert.deepEqual(await c.call('KEYS', 'a*'.repeat(20)), [forty]);
  await c.call('DEL', forty, 'glob:hash');
});

test('SCAN visits exactly the key set', async () => {
  const strings = Array.from({ length: 300 }, (_, i) => `s:${i}`);
  const hashes = Array.from({ length: 40 }, (_, i) => `h:${i}`);
  await c.call('MSET', ...strings.flatMap((k) => [k, 'v']));
  for (const h of hashes) await c.call('HSET', h, 'f', 'v');
  const all = await scanAll('COUNT', '10');
  assert.deepEqual([...new Set(all.keys)].sort(), [...strings, ...hashes].sort());
  assert.ok(all.calls > 1, 'COUNT 10 over 340 keys takes several calls');
  const one = (await c.call('SCAN', '0', 'COUNT', '1000')) as [string, string[]];
  assert.ok(one[1].length <= 340);

  const matched = await scanAll('MATCH', 'h:*', 'COUNT', '50');
  assert.deepEqual([...new Set(matched.keys)].sort(), [...hashes].sort());
  const typed = await scanAll('TYPE', 'hash', 'COUNT', '25');
  assert.deepEqual([...new Set(typed.keys)].sort(), [...hashes].sort());
  const typedStrings = await scanAll('TYPE', 'string', 'MATCH', 's:1*');
  assert.deepEqual([...new Set(typedStrings.keys)].sort(), strings.filter((k) => k.startsWith('s:1')).sort());
  assert.deepEqual((await scanAll('MATCH', 'none:*')).keys, []);
});

test('SCAN on an empty database and argument errors', async () => {
  assert.deepEqual(await c.call('SCAN', '0'), ['0', []]);
  await rejectsWith(c.call('SCAN', 'abc'), 'ERR invalid cursor');
  await rejectsWith(c.call('SCAN', '0', 'COUNT', '0'), 'ERR syntax error');
  await rejectsWith(c.call('SCAN', '0', 'COUNT', 'x'), 'ERR value is not an integer or out of range');
  await rejectsWith(c.call('SCAN', '0', 'MATCH'), 'ERR syntax error');
  await rejectsWith(c.call('SCAN', '0', 'BOGUS', 'x'), 'ERR syntax error');
});

test('ioredis scanStream sees every key once the stream ends', async () => {
  const keys = Array.from({ length: 1000 }, (_, i) => `k:${i}`);
  await c.call('MSET', ...keys.flatMap((k) => [k, String(k.length)]));
  await c.call('MSET', 'other:1', 'x', 'other:2', 'y');
  const seen = new Set<string>();
  for await (const batch of c.scanStream({ match: 'k:*', count: 100 })) for (const k of batch as string[]) seen.add(k);
  assert.equal(seen.size, keys.length);
  assert.deepEqual([...seen].sort(), [...keys].sort());
});

test('RENAME moves the value and its TTL', async () => {
  await c.call('SET', 'a', 'v', 'EX', '100');
  assert.equal(await c.call('RENAME', 'a', 'b'), 'OK');
  assert.equal(await c.call('EXISTS', 'a'), 0);
  assert.equal(await c.call('GET', 'b'), 'v');
  assert.ok((await ttl('b')) > 90);
  await c.call('HSET', 'h', 'f', 'v');
  assert.equal(await c.call('RENAME', 'h', 'b'), 'OK', 'RENAME replaces a destination of another type');
  assert.equal(await c.call('TYPE', 'b'), 'hash');
  assert.equal(await ttl('b'), -1, 'the destination takes the source TTL (none)');
  assert.equal(await c.call('RENAME', 'b', 'b'), 'OK');
  assert.equal(await c.call('HGET', 'b', 'f'), 'v');
  await rejectsWith(c.call('RENAME', 'missing', 'x'), 'ERR no such key');
  assert.equal(await c.call('EXISTS', 'x'), 0);
});

test('RENAMENX only renames onto a missing key', async () => {
  await c.call('MSET', 'a', '1', 'b', '2');
  assert.equal(await c.call('RENAMENX', 'a', 'b'), 0);
  assert.deepEqual(await c.call('MGET', 'a', 'b'), ['1', '2']);
  assert.equal(await c.call('RENAMENX', 'a', 'c'), 1);
  assert.deepEqual(await c.call('MGET', 'a', 'c'), [null, '1']);
  await rejectsWith(c.call('RENAMENX', 'missing', 'z'), 'ERR no such key');
});

test('EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL, PERSIST', async () => {
  assert.equal(await ttl('missing'), -2);
  assert.equal(await pttl('missing'), -2);
  assert.equal(await c.call('EXPIRE', 'missing', '10'), 0);
  await c.call('SET', 'k', 'v');
  assert.equal(await ttl('k'), -1);
  assert.equal(await pttl('k'), -1);
  assert.equal(await c.call('EXPIRE', 'k', '100'), 1);
  let t = await ttl('k');
  assert.ok(t > 90 && t <= 100, `TTL ${t}`);
  assert.equal(await c.call('PEXPIRE', 'k', '200000'), 1);
  t = await pttl('k');
  assert.ok(t > 190_000 && t <= 200_000, `PTTL ${t}`);
  assert.equal(await c.call('EXPIREAT', 'k', String(Math.floor(Date.now() / 1000) + 300)), 1);
  t = await ttl('k');
  assert.ok(t > 290 && t <= 300, `TTL ${t}`);
  assert.equal(await c.call('PEXPIREAT', 'k', String(Date.now() + 400_000)), 1);
  t = await pttl('k');
  assert.ok(t > 390_000 && t <= 400_000, `PTTL ${t}`);
  assert.equal(await c.call('PERSIST', 'k'), 1);
  assert.equal(await ttl('k'), -1);
  assert.equal(await c.call('PERSIST', 'k'), 0);
  assert.equal(await c.call('PERSIST', 'missing'), 0);
  await c.call('HSET', 'h', 'f', 'v');
  assert.equal(await c.call('EXPIRE', 'h', '50'), 1);
  assert.ok((await ttl('h')) > 45, 'hashes expire too');
});

test('EXPIRE with zero, negative or past times deletes the key', async () => {
  await c.call('MSET', 'a', '1', 'b', '2', 'c', '3', 'd', '4');
  assert.equal(await c.call('EXPIRE', 'a', '0'), 1);
  assert.equal(await c.call('PEXPIRE', 'b', '-10'), 1);
  assert.equal(await c.call('EXPIREAT', 'c', '1'), 1);
  assert.equal(await c.call('PEXPIREAT', 'd', String(Date.now() - 5000)), 1);
  assert.deepEqual(await c.call('MGET', 'a', 'b', 'c', 'd'), [null, null, null, null]);
  assert.equal(await c.call('DBSIZE'), 0);
});

test('EXPIRE argument errors', async () => {
  await c.call('SET', 'k', 'v');
  await rejectsWith(c.call('EXPIRE', 'k', 'soon'), 'ERR value is not an integer or out of range');
  await rejectsWith(c.call('PEXPIRE', 'k', '1.5'), 'ERR value is not an integer or out of range');
  await rejectsWith(c.call('EXPIRE', 'k', '10', 'BOGUS'), 'ERR Unsupported option BOGUS');
  assert.equal(await ttl('k'), -1);
});

test('EXPIRE with a time that overflows milliseconds', async () => {
  await c.call('SET', 'k', 'v');
  // Valid 64-bit integers whose millisecond deadline does not fit in 64 bits.
  await rejectsWith(c.call('EXPIRE', 'k', '9223372036854775807'), "ERR invalid expire time in 'expire' command");
  await rejectsWith(c.call('EXPIREAT', 'k', '9223372036854775807'), "ERR invalid expire time in 'expireat' command");
  await rejectsWith(c.call('PEXPIRE', 'k', '9223372036854775000'), "ERR invalid expire time in 'pexpire' command");
  assert.equal(await ttl('k'), -1);
});

test('EXPIREAT / PEXPIREAT / PEXPIRE with big or big negative 64-bit times answer as Redis 7: a past time deletes the key', async () => {
  // A deadline far in the future is accepted and leaves the key with a TTL.
  await c.call('SET', 'k', 'v');
  assert.equal(await c.call('PEXPIREAT', 'k', '9223372036854770000'), 1);
  assert.equal(await c.call('EXISTS', 'k'), 1);
  assert.ok((await pttl('k')) > 1e15, 'a TTL far in the future');
  assert.equal(await c.call('PEXPIREAT', 'k', '9223372036854775807'), 1);
  assert.equal(await c.call('EXISTS', 'k'), 1);
  assert.equal(await c.call('EXPIREAT', 'k', '9223372036854775'), 1, 'the largest seconds that fit in ms');
  assert.equal(await c.call('EXISTS', 'k'), 1);
  // A deadline before the epoch is in the past: the key goes.
  for (const [cmd, n] of [
    ['PEXPIREAT', '-9223372036854770000'],
    ['PEXPIREAT', '-9223372036854775808'],
    ['PEXPIREAT', '0'],
    ['EXPIREAT', '-9223372036854775'],
    ['PEXPIRE', '-9223372036854775808'],
  ] as const) {
    await c.call('SET', 'k', 'v');
    assert.equal(await c.call(cmd, 'k', n), 1, `${cmd} ${n}`);
    assert.equal(await c.call('EXISTS', 'k'), 0, `${cmd} ${n} deleted the key`);
  }
  // Seconds whose milliseconds leave the 64-bit range are refused, the key untouched.
  await c.call('SET', 'k', 'v');
  await rejectsWith(c.call('EXPIREAT', 'k', '9223372036854776'), "ERR invalid expire time in 'expireat' command");
  await rejectsWith(c.call('EXPIREAT', 'k', '-9223372036854776'), "ERR invalid expire time in 'expireat' command");
  await rejectsWith(c.call('EXPIRE', 'k', '-9223372036854770000'), "ERR invalid expire time in 'expire' command");
  await rejectsWith(c.call('PEXPIREAT', 'k', '9223372036854775808'), 'ERR value is not an integer or out of range');
  assert.equal(await ttl('k'), -1);
});

test('EXPIRE NX / XX / GT / LT', async () => {
  await c.call('SET', 'k', 'v');
  assert.equal(await c.call('EXPIRE', 'k', '100', 'XX'), 0, 'XX: no TTL yet');
  assert.equal(await c.call('EXPIRE', 'k', '100', 'GT'), 0, 'GT: no TTL counts as infinite');
  assert.equal(await ttl('k'), -1);
  assert.equal(await c.call('EXPIRE', 'k', '100', 'NX'), 1);
  assert.equal(await c.call('EXPIRE', 'k', '200', 'NX'), 0);
  assert.equal(await c.call('EXPIRE', 'k', '200', 'XX'), 1);
  assert.ok((await ttl('k')) > 190);
  assert.equal(await c.call('EXPIRE', 'k', '100', 'GT'), 0);
  assert.equal(await c.call('EXPIRE', 'k', '300', 'GT'), 1);
  assert.ok((await ttl('k')) > 290);
  assert.equal(await c.call('EXPIRE', 'k', '400', 'LT'), 0);
  assert.equal(await c.call('PEXPIRE', 'k', '150000', 'LT'), 1);
  const t = await ttl('k');
  assert.ok(t > 140 && t <= 150, `TTL ${t}`);
  await c.call('SET', 'p', 'v');
  assert.equal(await c.call('EXPIRE', 'p', '100', 'LT'), 1, 'LT: any TTL is below infinite');
  assert.equal(await c.call('EXPIREAT', 'p', String(Math.floor(Date.now() / 1000) + 1000), 'GT'), 1);
  assert.equal(await c.call('PEXPIREAT', 'p', String(Date.now() + 10_000), 'gt'), 0);
  await rejectsWith(c.call('EXPIRE', 'k', '10', 'NX', 'XX'), 'ERR NX and XX, GT or LT options at the same time are not compatible');
  await rejectsWith(c.call('EXPIRE', 'k', '10', 'NX', 'GT'), 'ERR NX and XX, GT or LT options at the same time are not compatible');
  await rejectsWith(c.call('EXPIRE', 'k', '10', 'GT', 'LT'), 'ERR GT and LT options at the same time are not compatible');
});

test('keys disappear once their TTL passes', async () => {
  await c.call('SET', 'long', 'v', 'EX', '3600');
  await c.call('SET', 'forever', 'v');
  // One transaction, so the keys are checked at the instant they get their 50 ms TTL,
  // however slow the machine: a TTL that is ignored or far too short shows up here.
  const created = await c.multi().set('short', 'v', 'PX', 50).hset('hshort', 'f', 'v').pexpire('hshort', 50).exists('short', 'hshort').exec();
  assert.deepEqual(created?.[3], [null, 2]);
  await waitUntil(async () => (await c.call('EXISTS', 'short', 'hshort')) === 0, 'short-TTL keys to expire', 3_000);
  assert.equal(await c.call('GET', 'short'), null);
  assert.deepEqual(await c.call('HGETALL', 'hshort'), []);
  assert.equal(await ttl('short'), -2);
  assert.equal(await c.call('TYPE', 'hshort'), 'none');
  assert.deepEqual(sorted(await c.call('KEYS', '*')), ['forever', 'long']);
  assert.deepEqual([...new Set((await scanAll()).keys)].sort(), ['forever', 'long']);
  assert.equal(await c.call('GET', 'long'), 'v');
});

test('expired keys leave DBSIZE without being touched', async () => {
  const keys = Array.from({ length: 20 }, (_, i) => `e:${i}`);
  for (const k of keys) await c.call('SET', k, 'v', 'PX', '30');
  await c.call('SET', 'stay', 'v');
  // Nothing reads the expiring keys again, so only the server's own expiry can shrink DBSIZE.
  await waitUntil(async () => (await c.call('DBSIZE')) === 1, 'DBSIZE to drop to 1', 5_000, 50);
});

/**
 * Gives `key` a 30 ms TTL through `setup` and returns once it has passed, judged by a
 * sentinel key with the same TTL so that `key` itself is never touched before the check.
 */
async function expireUntouched(setup: (m: ReturnType<Redis['multi']>) => void): Promise<void> {
  const m = c.multi();
  setup(m);
  m.set('sentinel', 'x', 'PX', 30);
  await m.exec();
  await waitUntil(async () => (await c.call('EXISTS', 'sentinel')) === 0, 'the sentinel to expire', 3_000);
}

test('writes to an expired key start from nothing', async () => {
  await expireUntouched((m) => m.hset('h', 'a', '1', 'b', '2').pexpire('h', 30));
  assert.equal(await c.call('HSET', 'h', 'c', '3'), 1);
  assert.deepEqual(await c.call('HGETALL', 'h'), ['c', '3'], 'no field of the expired hash comes back');
  assert.equal(await c.call('TTL', 'h'), -1, 'nor its TTL');

  await expireUntouched((m) => m.set('s', 'old', 'PX', 30));
  assert.equal(await c.call('APPEND', 's', 'new'), 3);
  assert.equal(await c.call('GET', 's'), 'new');

  await expireUntouched((m) => m.set('n', '41', 'PX', 30));
  assert.equal(await c.call('INCR', 'n'), 1);
  assert.equal(await c.call('TTL', 'n'), -1);

  await expireUntouched((m) => m.hset('hn', 'f', '41').pexpire('hn', 30));
  assert.equal(await c.call('HINCRBY', 'hn', 'f', '1'), 1);
  assert.equal(await c.call('HLEN', 'hn'), 1);

  await expireUntouched((m) => m.set('r', 'abcdef', 'PX', 30));
  assert.equal(await c.call('SETRANGE', 'r', '2', 'X'), 3);
  assert.deepEqual(await c.callBuffer('GET', 'r'), Buffer.from([0, 0, 0x58]));

  await expireUntouched((m) => m.set('hs', 'string', 'PX', 30));
  assert.equal(await c.call('HSET', 'hs', 'f', 'v'), 1, 'an expired string does not make HSET a WRONGTYPE');
});

test('an expired key counts as missing everywhere', async () => {
  await expireUntouched((m) => m.set('a', '1', 'PX', 30).set('b', '1', 'PX', 30).set('c', '1', 'PX', 30).set('d', '1', 'PX', 30).set('e', '1', 'PX', 30).set('src', '1', 'PX', 30).hset('h', 'f', 'v').pexpire('h', 30));
  assert.equal(await c.call('EXPIRE', 'a', '100'), 0);
  assert.equal(await c.call('PERSIST', 'a'), 0);
  assert.equal(await c.call('TTL', 'a'), -2);
  assert.equal(await c.call('GETEX', 'a', 'PERSIST'), null);
  assert.equal(await c.call('SETNX', 'b', 'new'), 1);
  assert.equal(await c.call('SET', 'c', 'new', 'NX'), 'OK');
  assert.equal(await c.call('SET', 'd', 'new', 'XX'), null);
  assert.equal(await c.call('MSETNX', 'e', 'new', 'z', 'new'), 1);
  await rejectsWith(c.call('RENAME', 'src', 'dst'), 'ERR no such key');
  await c.call('SET', 'live', 'v');
  await expireUntouched((m) => m.set('dst2', 'x', 'PX', 30));
  assert.equal(await c.call('RENAMENX', 'live', 'dst2'), 1, 'an expired destination does not block RENAMENX');
  assert.equal(await c.call('HLEN', 'h'), 0);
  assert.equal(await c.call('HEXISTS', 'h', 'f'), 0);
  assert.equal(await c.call('STRLEN', 'a'), 0);
  assert.equal(await c.call('EXISTS', 'a', 'h', 'src'), 0);
  assert.deepEqual(((await c.call('KEYS', '*')) as string[]).sort(), ['b', 'c', 'dst2', 'e', 'z']);
});

test('a SCAN cursor can be continued on another connection', async () => {
  // Connection pools send successive SCAN calls over whichever connection is free.
  const keys = Array.from({ length: 200 }, (_, i) => `pool:${i}`);
  await c.call('MSET', ...keys.flatMap((k) => [k, 'v']));
  const conns = [c, shared.server.client(), shared.server.client()];
  const seen = new Set<string>();
  let cursor = '0';
  let i = 0;
  do {
    const [next, batch] = (await conns[i++ % conns.length]!.call('SCAN', cursor, 'COUNT', '15')) as [string, string[]];
    for (const k of batch) seen.add(k);
    cursor = next;
  } while (cursor !== '0');
  assert.ok(i > 3);
  assert.deepEqual([...seen].sort(), [...keys].sort());
});

test('MSET and MGET with 10,000 keys in one command', async () => {
  const keys = Array.from({ length: 10_000 }, (_, i) => `bulk:${i}`);
  assert.equal(await c.call('MSET', ...keys.flatMap((k, i) => [k, `v${i}`])), 'OK');
  assert.equal(await c.call('DBSIZE'), 10_000);
  const values = (await c.call('MGET', ...keys)) as string[];
  assert.equal(values.length, 10_000);
  values.forEach((v, i) => assert.equal(v, `v${i}`));
  assert.equal(await c.call('DEL', ...keys), 10_000);
  assert.equal(await c.call('DBSIZE'), 0);
});
