import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { Redis } from 'ioredis';
import { rejectsWith, sharedServer } from './support/server-process.js';

let c: Redis;
const shared = sharedServer((_, client) => {
  c = client;
});

const INT64_MAX = '9223372036854775807';
const INT64_MIN = '-9223372036854775808';
const NOT_INT = 'ERR value is not an integer or out of range';
const OVERFLOW = 'ERR increment or decrement would overflow';

async function ttl(key: string): Promise<number> {
  return (await c.call('TTL', key)) as number;
}
async function pttl(key: string): Promise<number> {
  return (await c.call('PTTL', key)) as number;
}

test('GET and SET, binary-safe', async () => {
  assert.equal(await c.call('GET', 'missing'), null);
  assert.equal(await c.call('SET', 'k', 'v'), 'OK');
  assert.equal(await c.call('GET', 'k'), 'v');
  assert.equal(await c.call('SET', 'k', 'v2'), 'OK');
  assert.equal(await c.call('GET', 'k'), 'v2');
  assert.equal(await c.call('SET', 'empty', ''), 'OK');
  assert.equal(await c.call('GET', 'empty'), '');
  assert.equal(await c.call('EXISTS', 'empty'), 1, 'an empty string is a value, not a missing key');

  const key = Buffer.from([0, 13, 10, 255, 0x2a, 0]);
  const value = Buffer.from([0, 1, 2, 13, 10, 36, 42, 255, 254, 0]);
  await c.callBuffer('SET', key, value);
  assert.deepEqual(await c.callBuffer('GET', key), value);
  assert.equal(await c.call('SET', 'ключ 🔑', 'значение ✓'), 'OK');
  assert.equal(await c.call('GET', 'ключ 🔑'), 'значение ✓');
});

test('the empty key and a 64 KiB key', async () => {
  assert.equal(await c.call('SET', '', 'empty key'), 'OK');
  assert.equal(await c.call('GET', ''), 'empty key');
  assert.equal(await c.call('EXISTS', ''), 1);
  const long = 'k'.repeat(64 * 1024);
  assert.equal(await c.call('SET', long, 'long key'), 'OK');
  assert.equal(await c.call('APPEND', long, '!'), 9);
  assert.equal(await c.call('GET', long), 'long key!');
  assert.deepEqual(((await c.call('KEYS', 'k*')) as string[]).map((k) => k.length), [long.length]);
  assert.equal(await c.call('DEL', '', long), 2);
  assert.equal(await c.call('DBSIZE'), 0);
});

test('SET and GET a 2 MiB value', async () => {
  const big = randomBytes(2 * 1024 * 1024);
  assert.equal(await c.callBuffer('SET', 'big', big).then(String), 'OK');
  const got = (await c.callBuffer('GET', 'big')) as Buffer;
  assert.equal(got.length, big.length);
  assert.ok(got.equals(big));
  assert.equal(await c.call('STRLEN', 'big'), big.length);
});

test('SET EX / PX / EXAT / PXAT set a TTL', async () => {
  await c.call('SET', 'ex', 'v', 'EX', '100');
  let t = await ttl('ex');
  assert.ok(t > 90 && t <= 100, `TTL ${t}`);
  await c.call('SET', 'px', 'v', 'PX', '100000');
  t = await pttl('px');
  assert.ok(t > 90_000 && t <= 100_000, `PTTL ${t}`);
  const now = Math.floor(Date.now() / 1000);
  await c.call('SET', 'exat', 'v', 'EXAT', String(now + 200));
  t = await ttl('exat');
  assert.ok(t > 190 && t <= 200, `TTL ${t}`);
  await c.call('SET', 'pxat', 'v', 'PXAT', String(Date.now() + 300_000));
  t = await pttl('pxat');
  assert.ok(t > 290_000 && t <= 300_000, `PTTL ${t}`);
  await c.call('SET', 'ex', 'plain');
  assert.equal(await ttl('ex'), -1, 'a plain SET drops the TTL');
  await c.call('SET', 'lower', 'v', 'ex', '50');
  assert.ok((await ttl('lower')) > 45, 'options are case-insensitive');
});

test('SET EXAT / PXAT in the past stores nothing visible', async () => {
  assert.equal(await c.call('SET', 'k', 'v', 'EXAT', '1'), 'OK');
  assert.equal(await c.call('GET', 'k'), null);
  assert.equal(await c.call('SET', 'k2', 'v', 'PXAT', String(Date.now() - 1000)), 'OK');
  assert.equal(await c.call('EXISTS', 'k2'), 0);
});

test('SET expire-time errors', async () => {
  await rejectsWith(c.call('SET', 'k', 'v', 'EX', '0'), "ERR invalid expire time in 'set' command");
  await rejectsWith(c.call('SET', 'k', 'v', 'EX', '-5'), "ERR invalid expire time in 'set' command");
  await rejectsWith(c.call('SET', 'k', 'v', 'PX', '0'), "ERR invalid expire time in 'set' command");
  await rejectsWith(c.call('SET', 'k', 'v', 'EXAT', '0'), "ERR invalid expire time in 'set' command");
  await rejectsWith(c.call('SET', 'k', 'v', 'EX', 'ten'), NOT_INT);
  await rejectsWith(c.call('SET', 'k', 'v', 'PX', '1.5'), NOT_INT);
  await rejectsWith(c.call('SET', 'k', 'v', 'EX'), 'ERR syntax error');
  assert.equal(await c.call('EXISTS', 'k'), 0, 'a failed SET writes nothing');
});

test('SET with an expire time that overflows milliseconds', async () => {
  // A valid 64-bit integer, but too large once turned into a millisecond deadline.
  await rejectsWith(c.call('SET', 'k', 'v', 'EX', '99999999999999999'), "ERR invalid expire time in 'set' command");
  await rejectsWith(c.call('SET', 'k', 'v', 'PX', '9223372036854775807'), "ERR invalid expire time in 'set' command");
  await rejectsWith(c.call('SETEX', 'k', '9223372036854775807', 'v'), "ERR invalid expire time in 'setex' command");
  assert.equal(await c.call('EXISTS', 'k'), 0);
  await c.call('SET', 'g', 'v');
  await rejectsWith(c.call('GETEX', 'g', 'EX', '9223372036854775807'), "ERR invalid expire time in 'getex' command");
  assert.equal(await ttl('g'), -1);
});

test('SET PXAT / EXAT and GETEX with big or big negative 64-bit times answer as Redis 7', async () => {
  assert.equal(await c.call('SET', 'k', 'v', 'PXAT', '9223372036854770000'), 'OK');
  assert.ok((await c.call('PTTL', 'k') as number) > 1e15, 'a TTL far in the future');
  assert.equal(await c.call('SET', 'k', 'v', 'EXAT', '9223372036854775'), 'OK');
  assert.ok((await ttl('k')) > 1e12);
  await rejectsWith(c.call('SET', 'k', 'v', 'EXAT', '9223372036854770000'), "ERR invalid expire time in 'set' command");
  await rejectsWith(c.call('SET', 'k', 'v', 'EXAT', '9223372036854776'), "ERR invalid expire time in 'set' command");
  await rejectsWith(c.call('SET', 'k', 'v', 'PXAT', '-9223372036854770000'), "ERR invalid expire time in 'set' command");
  await rejectsWith(c.call('SET', 'k', 'v', 'EXAT', '-1'), "ERR invalid expire time in 'set' command");
  await rejectsWith(c.call('SET', 'k', 'v', 'PX', '9223372036854770000'), "ERR invalid expire time in 'set' command");
  await rejectsWith(c.call('PSETEX', 'k', '9223372036854770000', 'v'), "ERR invalid expire time in 'psetex' command");
  await rejectsWith(c.call('SETEX', 'k', '9223372036854775', 'v'), "ERR invalid expire time in 'setex' command");
  await c.call('SET', 'g', 'v');
  assert.equal(await c.call('GETEX', 'g', 'PXAT', '9223372036854770000'), 'v');
  assert.ok((await c.call('PTTL', 'g') as number) > 1e15);
  assert.equal(await c.call('GETEX', 'g', 'EXAT', '9223372036854775'), 'v');
  await rejectsWith(c.call('GETEX', 'g', 'EXAT', '9223372036854776'), "ERR invalid expire time in 'getex' command");
  await rejectsWith(c.call('GETEX', 'g', 'PXAT', '-5'), "ERR invalid expire time in 'getex' command");
  assert.equal(await c.call('EXISTS', 'g'), 1);
});

test('SET option combinations that are syntax errors', async () => {
  for (const opts of [['NX', 'XX'], ['EX', '10', 'PX', '100'], ['EX', '10', 'KEEPTTL'], ['PXAT', '1', 'EXAT', '1'], ['KEEPTTL', 'PX', '5'], ['BOGUS']]) {
    await rejectsWith(c.call('SET', 'k', 'v', ...opts), 'ERR syntax error');
  }
  await rejectsWith(c.call('SET', 'k'), "ERR wrong number of arguments for 'set' command");
  assert.equal(await c.call('EXISTS', 'k'), 0);
});

test('SET NX / XX', async () => {
  assert.equal(await c.call('SET', 'k', 'v1', 'XX'), null);
  assert.equal(await c.call('EXISTS', 'k'), 0);
  assert.equal(await c.call('SET', 'k', 'v1', 'NX'), 'OK');
  assert.equal(await c.call('SET', 'k', 'v2', 'NX'), null);
  assert.equal(await c.call('GET', 'k'), 'v1');
  assert.equal(await c.call('SET', 'k', 'v3', 'XX'), 'OK');
  assert.equal(await c.call('GET', 'k'), 'v3');
  assert.equal(await c.call('SET', 'k', 'v4', 'XX', 'EX', '100'), 'OK');
  assert.ok((await ttl('k')) > 90);
});

test('SET KEEPTTL keeps the TTL, SET without it drops it', async () => {
  await c.call('SET', 'k', 'v', 'EX', '100');
  assert.equal(await c.call('SET', 'k', 'v2', 'KEEPTTL'), 'OK');
  assert.equal(await c.call('GET', 'k'), 'v2');
  assert.ok((await ttl('k')) > 90);
  await c.call('SET', 'k', 'v3');
  assert.equal(await ttl('k'), -1);
  assert.equal(await c.call('SET', 'fresh', 'v', 'KEEPTTL'), 'OK');
  assert.equal(await ttl('fresh'), -1);
});

test('SET GET returns the old value', async () => {
  assert.equal(await c.call('SET', 'k', 'v1', 'GET'), null);
  assert.equal(await c.call('SET', 'k', 'v2', 'GET'), 'v1');
  assert.equal(await c.call('GET', 'k'), 'v2');
  assert.equal(await c.call('SET', 'k', 'v3', 'NX', 'GET'), 'v2', 'NX GET returns the old value and does not set');
  assert.equal(await c.call('GET', 'k'), 'v2');
  assert.equal(await c.call('SET', 'n', 'v', 'XX', 'GET'), null);
  assert.equal(await c.call('EXISTS', 'n'), 0);
  assert.equal(await c.call('SET', 'k', 'v4', 'GET', 'EX', '100'), 'v2');
  assert.ok((await ttl('k')) > 90);
  await c.call('HSET', 'h', 'f', 'v');
  await rejectsWith(c.call('SET', 'h', 'v', 'GET'), 'WRONGTYPE Operation against a key holding the wrong kind of value');
  assert.equal(await c.call('TYPE', 'h'), 'hash', 'the failed SET GET left the hash alone');
});

test('MGET and MSET', async () => {
  assert.equal(await c.call('MSET', 'a', '1', 'b', '2', 'c', '3'), 'OK');
  await c.call('HSET', 'h', 'f', 'v');
  assert.deepEqual(await c.call('MGET', 'a', 'missing', 'c', 'h', 'a'), ['1', null, '3', null, '1']);
  await c.call('SET', 'a', 'x', 'EX', '100');
  await c.call('MSET', 'a', 'y', 'a', 'z');
  assert.equal(await c.call('GET', 'a'), 'z', 'the last pair for a key wins');
  assert.equal(await ttl('a'), -1, 'MSET drops TTLs');
  await rejectsWith(c.call('MSET', 'a', '1', 'b'), "ERR wrong number of arguments for 'mset' command");
  await rejectsWith(c.call('MGET'), "ERR wrong number of arguments for 'mget' command");
  await c.call('MSET', 'h', 'now-a-string');
  assert.equal(await c.call('TYPE', 'h'), 'string', 'MSET overwrites any type');
});

test('MSETNX sets all or nothing', async () => {
  assert.equal(await c.call('MSETNX', 'a', '1', 'b', '2'), 1);
  assert.equal(await c.call('MSETNX', 'b', 'x', 'c', '3'), 0);
  assert.deepEqual(await c.call('MGET', 'a', 'b', 'c'), ['1', '2', null]);
  await rejectsWith(c.call('MSETNX', 'a'), "ERR wrong number of arguments for 'msetnx' command");
});

test('SETNX, SETEX, PSETEX', async () => {
  assert.equal(await c.call('SETNX', 'k', 'v1'), 1);
  assert.equal(await c.call('SETNX', 'k', 'v2'), 0);
  assert.equal(await c.call('GET', 'k'), 'v1');

  assert.equal(await c.call('SETEX', 'k', '100', 'v3'), 'OK');
  assert.equal(await c.call('GET', 'k'), 'v3');
  const t = await ttl('k');
  assert.ok(t > 90 && t <= 100);
  await rejectsWith(c.call('SETEX', 'k', '0', 'v'), "ERR invalid expire time in 'setex' command");
  await rejectsWith(c.call('SETEX', 'k', '-1', 'v'), "ERR invalid expire time in 'setex' command");
  await rejectsWith(c.call('SETEX', 'k', 'x', 'v'), NOT_INT);

  assert.equal(await c.call('PSETEX', 'p', '100000', 'v'), 'OK');
  const pt = await pttl('p');
  assert.ok(pt > 90_000 && pt <= 100_000);
  await rejectsWith(c.call('PSETEX', 'p', '0', 'v'), "ERR invalid expire time in 'psetex' command");
  assert.equal(await c.call('GET', 'k'), 'v3');
});

test('GETDEL', async () => {
  await c.call('SET', 'k', 'v');
  assert.equal(await c.call('GETDEL', 'k'), 'v');
  assert.equal(await c.call('EXISTS', 'k'), 0);
  assert.equal(await c.call('GETDEL', 'k'), null);
  await c.call('HSET', 'h', 'f', 'v');
  await rejectsWith(c.call('GETDEL', 'h'), 'WRONGTYPE Operation against a key holding the wrong kind of value');
  assert.equal(await c.call('EXISTS', 'h'), 1);
});

test('GETEX with EX / PX / EXAT / PXAT / PERSIST', async () => {
  assert.equal(await c.call('GETEX', 'missing', 'EX', '10'), null);
  assert.equal(await c.call('EXISTS', 'missing'), 0);
  await c.call('SET', 'k', 'v');
  assert.equal(await c.call('GETEX', 'k'), 'v');
  assert.equal(await ttl('k'), -1, 'no option, no TTL change');
  assert.equal(await c.call('GETEX', 'k', 'EX', '100'), 'v');
  assert.ok((await ttl('k')) > 90);
  assert.equal(await c.call('GETEX', 'k', 'PX', '200000'), 'v');
  assert.ok((await pttl('k')) > 190_000);
  assert.equal(await c.call('GETEX', 'k', 'EXAT', String(Math.floor(Date.now() / 1000) + 300)), 'v');
  let t = await ttl('k');
  assert.ok(t > 290 && t <= 300, `TTL ${t}`);
  assert.equal(await c.call('GETEX', 'k', 'PXAT', String(Date.now() + 400_000)), 'v');
  t = await pttl('k');
  assert.ok(t > 390_000 && t <= 400_000, `PTTL ${t}`);
  assert.equal(await c.call('GETEX', 'k', 'PERSIST'), 'v');
  assert.equal(await ttl('k'), -1);
  assert.equal(await c.call('GETEX', 'k', 'PXAT', '1'), 'v', 'the value is returned, then the key expires');
  assert.equal(await c.call('EXISTS', 'k'), 0);
});

test('GETEX errors', async () => {
  await c.call('SET', 'k', 'v');
  await rejectsWith(c.call('GETEX', 'k', 'EX', '0'), "ERR invalid expire time in 'getex' command");
  await rejectsWith(c.call('GETEX', 'k', 'PX', '-1'), "ERR invalid expire time in 'getex' command");
  await rejectsWith(c.call('GETEX', 'k', 'PERSIST', 'EX', '10'), 'ERR syntax error');
  await rejectsWith(c.call('GETEX', 'k', 'EX', '10', 'PX', '10'), 'ERR syntax error');
  await rejectsWith(c.call('GETEX', 'k', 'KEEPTTL'), 'ERR syntax error');
  await rejectsWith(c.call('GETEX', 'k', 'EX'), 'ERR syntax error');
  await rejectsWith(c.call('GETEX', 'k', 'EX', 'soon'), NOT_INT);
  assert.equal(await ttl('k'), -1);
  await c.call('HSET', 'h', 'f', 'v');
  await rejectsWith(c.call('GETEX', 'h'), 'WRONGTYPE Operation against a key holding the wrong kind of value');
});

test('GETSET returns the old value and drops the TTL', async () => {
  assert.equal(await c.call('GETSET', 'k', 'v1'), null);
  await c.call('EXPIRE', 'k', '100');
  assert.equal(await c.call('GETSET', 'k', 'v2'), 'v1');
  assert.equal(await c.call('GET', 'k'), 'v2');
  assert.equal(await ttl('k'), -1);
});

test('APPEND and STRLEN', async () => {
  assert.equal(await c.call('STRLEN', 'k'), 0);
  assert.equal(await c.call('APPEND', 'k', 'Hello'), 5);
  assert.equal(await c.call('APPEND', 'k', ' World'), 11);
  assert.equal(await c.call('GET', 'k'), 'Hello World');
  assert.equal(await c.call('STRLEN', 'k'), 11);
  assert.equal(await c.call('APPEND', 'k', ''), 11);
  await c.call('EXPIRE', 'k', '100');
  await c.call('APPEND', 'k', '!');
  assert.ok((await ttl('k')) > 90, 'APPEND keeps the TTL');
  assert.equal(await c.call('STRLEN', 'ключ'), 0);
  await c.call('SET', 'u', 'é');
  assert.equal(await c.call('STRLEN', 'u'), 2, 'bytes, not characters');
});

test('GETRANGE', async () => {
  await c.call('SET', 'k', 'This is a string');
  assert.equal(await c.call('GETRANGE', 'k', '0', '3'), 'This');
  assert.equal(await c.call('GETRANGE', 'k', '-3', '-1'), 'ing');
  assert.equal(await c.call('GETRANGE', 'k', '0', '-1'), 'This is a string');
  assert.equal(await c.call('GETRANGE', 'k', '10', '100'), 'string');
  assert.equal(await c.call('GETRANGE', 'k', '5', '3'), '');
  assert.equal(await c.call('GETRANGE', 'k', '100', '200'), '');
  assert.equal(await c.call('GETRANGE', 'k', '-100', '3'), 'This');
  assert.equal(await c.call('GETRANGE', 'missing', '0', '-1'), '');
  await rejectsWith(c.call('GETRANGE', 'k', 'a', '1'), NOT_INT);
});

test('SETRANGE overwrites and zero-pads', async () => {
  await c.call('SET', 'k', 'Hello World');
  assert.equal(await c.call('SETRANGE', 'k', '6', 'Redis'), 11);
  assert.equal(await c.call('GET', 'k'), 'Hello Redis');
  assert.equal(await c.call('SETRANGE', 'k', '9', 'xxxx'), 13);
  assert.equal(await c.call('GET', 'k'), 'Hello Redxxxx');
  assert.equal(await c.call('SETRANGE', 'pad', '5', 'x'), 6);
  assert.deepEqual(await c.callBuffer('GET', 'pad'), Buffer.from([0, 0, 0, 0, 0, 0x78]));
  assert.equal(await c.call('SETRANGE', 'none', '0', ''), 0);
  assert.equal(await c.call('EXISTS', 'none'), 0, 'an empty SETRANGE on a missing key creates nothing');
  assert.equal(await c.call('SETRANGE', 'k', '100', ''), 13, 'an empty SETRANGE does not pad');
  await rejectsWith(c.call('SETRANGE', 'k', '-1', 'x'), 'ERR offset is out of range');
  await rejectsWith(c.call('SETRANGE', 'k', 'one', 'x'), NOT_INT);
});

test('INCR, DECR, INCRBY, DECRBY', async () => {
  assert.equal(await c.call('INCR', 'n'), 1);
  assert.equal(await c.call('INCR', 'n'), 2);
  assert.equal(await c.call('INCRBY', 'n', '40'), 42);
  assert.equal(await c.call('DECR', 'n'), 41);
  assert.equal(await c.call('DECRBY', 'n', '50'), -9);
  assert.equal(await c.call('INCRBY', 'n', '-1'), -10);
  assert.equal(await c.call('GET', 'n'), '-10');
  assert.equal(await c.call('DECR', 'fresh'), -1);
  await c.call('SET', 'n', '007');
  await rejectsWith(c.call('INCR', 'n'), NOT_INT);
  await c.call('SET', 'n', '10');
  await c.call('EXPIRE', 'n', '100');
  assert.equal(await c.call('INCR', 'n'), 11);
  assert.ok((await ttl('n')) > 90, 'INCR keeps the TTL');
});

test('INCR family: not an integer', async () => {
  for (const v of ['abc', '1.5', ' 1', '1 ', '', '+1', '0x10', '99999999999999999999']) {
    await c.call('SET', 'n', v);
    await rejectsWith(c.call('INCR', 'n'), NOT_INT);
  }
  await c.call('SET', 'n', '1');
  await rejectsWith(c.call('INCRBY', 'n', 'two'), NOT_INT);
  await rejectsWith(c.call('DECRBY', 'n', '1.0'), NOT_INT);
  assert.equal(await c.call('GET', 'n'), '1');
  await c.call('HSET', 'h', 'f', '1');
  await rejectsWith(c.call('INCR', 'h'), 'WRONGTYPE Operation against a key holding the wrong kind of value');
});

test('INCR family: 64-bit overflow', async () => {
  await c.call('SET', 'n', INT64_MAX);
  await rejectsWith(c.call('INCR', 'n'), OVERFLOW);
  await rejectsWith(c.call('INCRBY', 'n', '1'), OVERFLOW);
  assert.equal(await c.call('GET', 'n'), INT64_MAX);
  assert.equal(String(await c.call('DECRBY', 'n', INT64_MAX)), '0');
  await c.call('SET', 'n', INT64_MIN);
  await rejectsWith(c.call('DECR', 'n'), OVERFLOW);
  await rejectsWith(c.call('INCRBY', 'n', '-1'), OVERFLOW);
  await c.call('SET', 'n', '0');
  await rejectsWith(c.call('DECRBY', 'n', INT64_MIN), 'ERR decrement would overflow');
  // ioredis turns integers above 2^53 into strings only with stringNumbers, so read exact bytes.
  const raw = await shared.server.raw();
  assert.equal(await raw.command('SET', 'n', '9223372036854775806'), '+OK\r\n');
  assert.equal(await raw.command('INCR', 'n'), `:${INT64_MAX}\r\n`);
  assert.equal(await raw.command('INCRBY', 'm', INT64_MIN), `:${INT64_MIN}\r\n`);
});

test('INCRBYFLOAT formats like Redis', async () => {
  await c.call('SET', 'f', '10.5');
  assert.equal(await c.call('INCRBYFLOAT', 'f', '0.1'), '10.6');
  assert.equal(await c.call('GET', 'f'), '10.6');
  assert.equal(await c.call('INCRBYFLOAT', 'f', '-5.6'), '5');
  await c.call('SET', 'e', '5.0e3');
  assert.equal(await c.call('INCRBYFLOAT', 'e', '0'), '5000');
  assert.equal(await c.call('INCRBYFLOAT', 'e', '2.0e2'), '5200');
  assert.equal(await c.call('INCRBYFLOAT', 'new', '3'), '3');
  assert.equal(await c.call('INCRBYFLOAT', 'new', '-3.25'), '-0.25');
  assert.equal(await c.call('INCRBYFLOAT', 'small', '0.00001'), '0.00001');
  assert.equal(await c.call('INCRBYFLOAT', 'int', '1'), '1');
  assert.equal(await c.call('INCR', 'int'), 2, 'an integral float result is stored as an integer string');
});

test('INCRBYFLOAT 0.1 + 0.2 is "0.3" (Redis adds in long double and prints 17 fractional digits)', async () => {
  await c.call('SET', 'f', '0.1');
  assert.equal(await c.call('INCRBYFLOAT', 'f', '0.2'), '0.3');
  await c.call('SET', 'g', '1.1');
  assert.equal(await c.call('INCRBYFLOAT', 'g', '2.2'), '3.3');
  await c.call('SET', 'h', '0');
  assert.equal(await c.call('INCRBYFLOAT', 'h', '1e-17'), '0.00000000000000001');
  assert.equal(await c.call('INCRBYFLOAT', 'h', '-1e-17'), '0');
});

test('INCRBYFLOAT errors', async () => {
  await c.call('SET', 's', 'abc');
  await rejectsWith(c.call('INCRBYFLOAT', 's', '1'), 'ERR value is not a valid float');
  await c.call('SET', 'f', '1');
  await rejectsWith(c.call('INCRBYFLOAT', 'f', 'x'), 'ERR value is not a valid float');
  await rejectsWith(c.call('INCRBYFLOAT', 'f', 'nan'), 'ERR value is not a valid float');
  await rejectsWith(c.call('INCRBYFLOAT', 'f', 'inf'), 'ERR increment would produce NaN or Infinity');
  assert.equal(await c.call('GET', 'f'), '1');
});
