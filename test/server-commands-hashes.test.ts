import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Redis } from 'ioredis';
import { rejectsWith, sharedServer } from './support/server-process.js';

let c: Redis;
sharedServer((_, client) => {
  c = client;
});

const WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value';

/** A flat field/value reply as sorted pairs: field order is the server's business. */
function pairs(flat: unknown): [string, string][] {
  const a = flat as string[];
  assert.equal(a.length % 2, 0, 'an even number of elements');
  const out: [string, string][] = [];
  for (let i = 0; i < a.length; i += 2) out.push([a[i]!, a[i + 1]!]);
  return out.sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
}

test('HSET with several pairs counts new fields only', async () => {
  assert.equal(await c.call('HSET', 'h', 'a', '1', 'b', '2', 'c', '3'), 3);
  assert.equal(await c.call('HSET', 'h', 'a', '10', 'd', '4'), 1);
  assert.equal(await c.call('HSET', 'h', 'a', '11', 'a', '12'), 0);
  assert.equal(await c.call('HGET', 'h', 'a'), '12', 'the last pair for a field wins');
  assert.deepEqual(pairs(await c.call('HGETALL', 'h')), [['a', '12'], ['b', '2'], ['c', '3'], ['d', '4']]);
  await rejectsWith(c.call('HSET', 'h', 'a'), "ERR wrong number of arguments for 'hset' command");
  await rejectsWith(c.call('HSET', 'h', 'a', '1', 'b'), "ERR wrong number of arguments for 'hset' command");
  assert.equal(await c.call('HMSET', 'h', 'e', '5', 'f', '6'), 'OK');
  assert.equal(await c.call('HLEN', 'h'), 6);
});

test('HSETNX', async () => {
  assert.equal(await c.call('HSETNX', 'h', 'f', 'v1'), 1);
  assert.equal(await c.call('HSETNX', 'h', 'f', 'v2'), 0);
  assert.equal(await c.call('HGET', 'h', 'f'), 'v1');
  assert.equal(await c.call('HSETNX', 'h', 'g', 'v3'), 1);
  assert.equal(await c.call('HLEN', 'h'), 2);
});

test('HGET, HMGET, HEXISTS, HSTRLEN on present and missing fields and keys', async () => {
  await c.call('HSET', 'h', 'a', 'apple', 'b', '', 'é', 'ünïcödé');
  assert.equal(await c.call('HGET', 'h', 'a'), 'apple');
  assert.equal(await c.call('HGET', 'h', 'b'), '');
  assert.equal(await c.call('HGET', 'h', 'zz'), null);
  assert.equal(await c.call('HGET', 'missing', 'a'), null);
  assert.deepEqual(await c.call('HMGET', 'h', 'a', 'zz', 'b', 'a'), ['apple', null, '', 'apple']);
  assert.deepEqual(await c.call('HMGET', 'missing', 'a', 'b'), [null, null]);
  assert.equal(await c.call('HEXISTS', 'h', 'a'), 1);
  assert.equal(await c.call('HEXISTS', 'h', 'b'), 1, 'an empty value is present');
  assert.equal(await c.call('HEXISTS', 'h', 'zz'), 0);
  assert.equal(await c.call('HEXISTS', 'missing', 'a'), 0);
  assert.equal(await c.call('HSTRLEN', 'h', 'a'), 5);
  assert.equal(await c.call('HSTRLEN', 'h', 'é'), Buffer.byteLength('ünïcödé'), 'bytes, not characters');
  assert.equal(await c.call('HSTRLEN', 'h', 'zz'), 0);
  assert.equal(await c.call('HSTRLEN', 'missing', 'a'), 0);
});

test('HDEL; deleting the last field deletes the key', async () => {
  await c.call('HSET', 'h', 'a', '1', 'b', '2', 'c', '3');
  assert.equal(await c.call('HDEL', 'h', 'a', 'zz', 'a'), 1);
  assert.equal(await c.call('HDEL', 'missing', 'a'), 0);
  assert.equal(await c.call('HLEN', 'h'), 2);
  assert.equal(await c.call('HDEL', 'h', 'b', 'c'), 2);
  assert.equal(await c.call('EXISTS', 'h'), 0);
  assert.equal(await c.call('TYPE', 'h'), 'none');
  assert.equal(await c.call('DBSIZE'), 0);
  await rejectsWith(c.call('HDEL', 'h'), "ERR wrong number of arguments for 'hdel' command");
});

test('HGETALL, HKEYS, HVALS, HLEN', async () => {
  assert.deepEqual(await c.call('HGETALL', 'missing'), []);
  assert.deepEqual(await c.call('HKEYS', 'missing'), []);
  assert.deepEqual(await c.call('HVALS', 'missing'), []);
  assert.equal(await c.call('HLEN', 'missing'), 0);
  const fields = Array.from({ length: 300 }, (_, i) => [`field:${i}`, `value:${i * 7}`] as [string, string]);
  assert.equal(await c.call('HSET', 'h', ...fields.flat()), 300);
  const expected = [...fields].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  assert.deepEqual(pairs(await c.call('HGETALL', 'h')), expected);
  const keys = (await c.call('HKEYS', 'h')) as string[];
  const vals = (await c.call('HVALS', 'h')) as string[];
  assert.deepEqual([...keys].sort(), expected.map(([f]) => f));
  assert.deepEqual([...vals].sort(), expected.map(([, v]) => v).sort());
  const all = (await c.call('HGETALL', 'h')) as string[];
  assert.deepEqual(keys, all.filter((_, i) => i % 2 === 0), 'HKEYS in HGETALL order');
  assert.deepEqual(vals, all.filter((_, i) => i % 2 === 1), 'HVALS in HGETALL order');
  assert.equal(await c.call('HLEN', 'h'), 300);
});

test('binary-safe fields and values', async () => {
  const field = Buffer.from([0, 13, 10, 255]);
  const value = Buffer.from([255, 0, 36, 13, 10, 0]);
  await c.callBuffer('HSET', 'h', field, value);
  assert.deepEqual(await c.callBuffer('HGET', 'h', field), value);
  const all = (await c.callBuffer('HGETALL', 'h')) as Buffer[];
  assert.deepEqual(all, [field, value]);
});

test('HINCRBY', async () => {
  assert.equal(await c.call('HINCRBY', 'h', 'n', '5'), 5);
  assert.equal(await c.call('HINCRBY', 'h', 'n', '-7'), -2);
  assert.equal(await c.call('HGET', 'h', 'n'), '-2');
  await c.call('HSET', 'h', 's', 'abc', 'big', '9223372036854775807', 'f', '1.5');
  await rejectsWith(c.call('HINCRBY', 'h', 's', '1'), 'ERR hash value is not an integer');
  await rejectsWith(c.call('HINCRBY', 'h', 'f', '1'), 'ERR hash value is not an integer');
  await rejectsWith(c.call('HINCRBY', 'h', 'n', 'x'), 'ERR value is not an integer or out of range');
  await rejectsWith(c.call('HINCRBY', 'h', 'big', '1'), 'ERR increment or decrement would overflow');
  assert.equal(await c.call('HGET', 'h', 'big'), '9223372036854775807');
});

test('HINCRBYFLOAT', async () => {
  await c.call('HSET', 'h', 'f', '10.5', 'e', '5.0e3', 's', 'abc');
  assert.equal(await c.call('HINCRBYFLOAT', 'h', 'f', '0.1'), '10.6');
  assert.equal(await c.call('HGET', 'h', 'f'), '10.6');
  assert.equal(await c.call('HINCRBYFLOAT', 'h', 'e', '0'), '5000');
  assert.equal(await c.call('HINCRBYFLOAT', 'h', 'new', '-2.5'), '-2.5');
  await rejectsWith(c.call('HINCRBYFLOAT', 'h', 's', '1'), 'ERR hash value is not a float');
  await rejectsWith(c.call('HINCRBYFLOAT', 'h', 'f', 'x'), 'ERR value is not a valid float');
  await rejectsWith(c.call('HINCRBYFLOAT', 'h', 'f', 'inf'), 'ERR value is NaN or Infinity');
  assert.equal(await c.call('HGET', 'h', 'f'), '10.6');
});

async function hscanAll(key: string, ...args: string[]): Promise<Map<string, string>> {
  const seen = new Map<string, string>();
  let cursor = '0';
  let calls = 0;
  do {
    const [next, flat] = (await c.call('HSCAN', key, cursor, ...args)) as [string, string[]];
    assert.equal(flat.length % 2, 0);
    for (let i = 0; i < flat.length; i += 2) seen.set(flat[i]!, flat[i + 1]!);
    cursor = next;
    calls++;
    assert.ok(calls < 10_000);
  } while (cursor !== '0');
  return seen;
}

test('HSCAN with MATCH and COUNT visits every field with its value', async () => {
  const fields = Array.from({ length: 500 }, (_, i) => [`f${i}`, `v${i}`] as [string, string]);
  await c.call('HSET', 'h', ...fields.flat());
  const all = await hscanAll('h', 'COUNT', '20');
  // COUNT is only a hint (Redis may answer a whole hash at once), so only the union is checked.
  assert.deepEqual([...all.entries()].sort(), [...fields].sort());
  const matched = await hscanAll('h', 'MATCH', 'f1?', 'COUNT', '50');
  assert.deepEqual([...matched.keys()].sort(), Array.from({ length: 10 }, (_, i) => `f1${i}`).sort());
  assert.equal(matched.get('f17'), 'v17');
  assert.deepEqual(await c.call('HSCAN', 'missing', '0'), ['0', []]);
  await rejectsWith(c.call('HSCAN', 'h', 'x'), 'ERR invalid cursor');
  await rejectsWith(c.call('HSCAN', 'h', '0', 'COUNT', '0'), 'ERR syntax error');
});

test('hash commands on a string key are WRONGTYPE', async () => {
  await c.call('SET', 's', 'v');
  const calls: string[][] = [
    ['HSET', 's', 'f', 'v'],
    ['HSETNX', 's', 'f', 'v'],
    ['HGET', 's', 'f'],
    ['HMGET', 's', 'f'],
    ['HDEL', 's', 'f'],
    ['HGETALL', 's'],
    ['HKEYS', 's'],
    ['HVALS', 's'],
    ['HLEN', 's'],
    ['HEXISTS', 's', 'f'],
    ['HSTRLEN', 's', 'f'],
    ['HINCRBY', 's', 'f', '1'],
    ['HINCRBYFLOAT', 's', 'f', '1'],
    ['HSCAN', 's', '0'],
  ];
  for (const [cmd, ...args] of calls) await rejectsWith(c.call(cmd!, ...args), WRONGTYPE);
  assert.equal(await c.call('GET', 's'), 'v', 'the string is untouched');
});

test('string commands on a hash key are WRONGTYPE', async () => {
  await c.call('HSET', 'h', 'f', '1');
  const calls: string[][] = [
    ['GET', 'h'],
    ['GETSET', 'h', 'v'],
    ['GETDEL', 'h'],
    ['GETEX', 'h', 'EX', '10'],
    ['APPEND', 'h', 'x'],
    ['STRLEN', 'h'],
    ['GETRANGE', 'h', '0', '1'],
    ['SETRANGE', 'h', '0', 'x'],
    ['INCR', 'h'],
    ['DECRBY', 'h', '2'],
    ['INCRBYFLOAT', 'h', '1.5'],
  ];
  for (const [cmd, ...args] of calls) await rejectsWith(c.call(cmd!, ...args), WRONGTYPE);
  assert.deepEqual(await c.call('MGET', 'h'), [null], 'MGET reports a non-string as missing');
  assert.equal(await c.call('SETNX', 'h', 'v'), 0);
  assert.equal(await c.call('HGET', 'h', 'f'), '1', 'the hash is untouched');
  assert.equal(await c.call('SET', 'h', 'v'), 'OK', 'SET replaces any type');
  assert.equal(await c.call('TYPE', 'h'), 'string');
});
