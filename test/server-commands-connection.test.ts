import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Redis } from 'ioredis';
import { parseInfo, parseResp, rejectsWith, serverVersion, sharedServer, startTdekv, target, tdekvOnly, type RespValue, type ServerHandle } from './support/server-process.js';

let c: Redis;
const shared = sharedServer((_, client) => {
  c = client;
});

const srv = (): ServerHandle => shared.server;

function mapKeys(v: RespValue): string[] {
  assert.equal(v.t, 'map');
  return (v as Extract<RespValue, { t: 'map' }>).v.map(([k]) => (k.t === 'bulk' ? k.v.toString() : k.t === 'simple' ? k.v : JSON.stringify(k)));
}

test('PING with and without an argument', async () => {
  assert.equal(await c.call('PING'), 'PONG');
  assert.equal(await c.call('PING', 'hello world'), 'hello world');
  await rejectsWith(c.call('PING', 'a', 'b'), "ERR wrong number of arguments for 'ping' command");
});

test('PING replies +PONG as a simple string and a bulk string with an argument', async () => {
  const raw = await srv().raw();
  assert.equal(await raw.command('PING'), '+PONG\r\n');
  assert.equal(await raw.command('PING', 'x y'), '$3\r\nx y\r\n');
});

test('ECHO', async () => {
  assert.equal(await c.call('ECHO', 'hi there'), 'hi there');
  assert.equal(await c.call('ECHO', ''), '');
  await rejectsWith(c.call('ECHO'), "ERR wrong number of arguments for 'echo' command");
});

test('QUIT replies OK and closes the connection', async () => {
  const raw = await srv().raw();
  assert.equal(await raw.command('QUIT'), '+OK\r\n');
  assert.equal(await raw.readUntilClosed(), '');
  const q = srv().client();
  assert.equal(await q.quit(), 'OK');
  assert.equal(await c.call('PING'), 'PONG', 'other connections are unaffected');
});

test('AUTH without a configured password: the default user takes any password, AUTH <password> is refused', async () => {
  await rejectsWith(
    c.call('AUTH', 'whatever'),
    'ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?',
  );
  // The default user is "nopass" when no password is set, so any password is accepted for it.
  assert.equal(await c.call('AUTH', 'default', 'whatever'), 'OK');
  await rejectsWith(c.call('AUTH', 'someone', 'whatever'), 'WRONGPASS invalid username-password pair or user is disabled.');
});

test('HELLO 2 returns the server properties as a flat array', async () => {
  const r = (await c.call('HELLO', '2')) as unknown[];
  assert.ok(Array.isArray(r));
  assert.deepEqual(
    r.filter((_, i) => i % 2 === 0),
    ['server', 'version', 'proto', 'id', 'mode', 'role', 'modules'],
  );
  assert.equal(r[5], 2);
  assert.equal(typeof r[7], 'number');
  assert.equal(r[9], 'standalone');
  assert.equal(r[11], 'master');
  assert.deepEqual(r[13], []);
});

test('HELLO with a bad version', async () => {
  await rejectsWith(c.call('HELLO', '4'), 'NOPROTO unsupported protocol version');
  await rejectsWith(c.call('HELLO', '1'), 'NOPROTO unsupported protocol version');
  await rejectsWith(c.call('HELLO', 'three'), 'ERR Protocol version is not an integer or out of range');
  assert.equal(await c.call('PING'), 'PONG');
});

test('HELLO 3 switches the connection to RESP3: map, null and map-typed replies', async () => {
  const raw = await srv().raw();
  const hello = await raw.command('HELLO', '3');
  assert.ok(hello.startsWith('%7\r\n$6\r\nserver\r\n'), hello);
  const parsed = parseResp(Buffer.from(hello, 'latin1'));
  assert.ok(parsed);
  assert.equal(parsed.end, hello.length);
  assert.deepEqual(mapKeys(parsed.value), ['server', 'version', 'proto', 'id', 'mode', 'role', 'modules']);
  assert.ok(hello.includes('$5\r\nproto\r\n:3\r\n'), hello);
  assert.ok(hello.includes('$4\r\nmode\r\n$10\r\nstandalone\r\n'), hello);
  assert.ok(hello.endsWith('$7\r\nmodules\r\n*0\r\n'), hello);
  const id = /\$2\r\nid\r\n:(\d+)\r\n/.exec(hello);
  assert.ok(id, hello);
  assert.equal(await raw.command('CLIENT', 'ID'), `:${id[1]}\r\n`, 'HELLO reports this connection id');

  assert.equal(await raw.command('GET', 'missing'), '_\r\n');
  assert.equal(await raw.command('SET', 'k', 'v'), '+OK\r\n');
  assert.equal(await raw.command('GET', 'k'), '$1\r\nv\r\n');
  assert.equal(await raw.command('MGET', 'k', 'missing'), '*2\r\n$1\r\nv\r\n_\r\n');
  assert.equal(await raw.command('HSET', 'h', 'a', '1', 'b', '2'), ':2\r\n');
  assert.equal(await raw.command('HGETALL', 'h'), '%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n');
  assert.equal(await raw.command('HGETALL', 'missing'), '%0\r\n');
  assert.equal(await raw.command('HGET', 'h', 'zz'), '_\r\n');
  assert.equal(await raw.command('CONFIG', 'GET', 'databases'), '%1\r\n$9\r\ndatabases\r\n$1\r\n1\r\n');
  assert.equal(await raw.command('GET'), "-ERR wrong number of arguments for 'get' command\r\n");

  const back = await raw.command('HELLO', '2');
  assert.ok(back.startsWith('*14\r\n'), back);
  assert.equal(await raw.command('GET', 'missing'), '$-1\r\n');
  assert.equal(await raw.command('HGETALL', 'h'), '*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n');
});

test('RESP3: verbatim INFO, bulk-string floats, nulls in EXEC and after an aborted EXEC', async () => {
  const raw = await srv().raw();
  await raw.command('HELLO', '3');
  const info = await raw.command('INFO', 'keyspace');
  assert.match(info, /^=\d+\r\ntxt:# Keyspace\r\n/, 'INFO is a verbatim string of type txt');
  assert.equal(await raw.command('SET', 'f', '1.5'), '+OK\r\n');
  assert.equal(await raw.command('INCRBYFLOAT', 'f', '1'), '$3\r\n2.5\r\n', 'INCRBYFLOAT stays a bulk string');
  assert.equal(await raw.command('HINCRBYFLOAT', 'h', 'x', '1.5'), '$3\r\n1.5\r\n');
  assert.equal(await raw.command('COMMAND', 'INFO', 'nosuchcommand'), '*1\r\n_\r\n');
  assert.equal(await raw.command('CLIENT', 'GETNAME'), '_\r\n');
  assert.equal(await raw.command('SET', 'k', 'v', 'GET'), '_\r\n');
  await raw.command('MULTI');
  await raw.command('HGETALL', 'h');
  await raw.command('GET', 'nope');
  assert.equal(await raw.command('EXEC'), '*2\r\n%1\r\n$1\r\nx\r\n$3\r\n1.5\r\n_\r\n');
  assert.equal(await raw.command('WATCH', 'f'), '+OK\r\n');
  await c.call('SET', 'f', '2');
  await raw.command('MULTI');
  await raw.command('GET', 'f');
  assert.equal(await raw.command('EXEC'), '_\r\n', 'an aborted EXEC is the RESP3 null');
});

test('HELLO 3 SETNAME names the connection', async () => {
  const raw = await srv().raw();
  const hello = await raw.command('HELLO', '3', 'SETNAME', 'resp3-conn');
  assert.ok(hello.startsWith('%7\r\n'), hello);
  assert.equal(await raw.command('CLIENT', 'GETNAME'), '$10\r\nresp3-conn\r\n');
});

test('SELECT 0 works; tdekv has one database, so SELECT 1 is out of range', async () => {
  // redis-server runs with `--databases 1` here, so both servers must agree.
  const s = srv().client();
  assert.equal(await s.call('SELECT', '0'), 'OK');
  await s.call('SET', 'k', 'v');
  await rejectsWith(s.call('SELECT', '1'), 'ERR DB index is out of range');
  await rejectsWith(s.call('SELECT', '-1'), 'ERR DB index is out of range');
  await rejectsWith(s.call('SELECT', 'one'), 'ERR value is not an integer or out of range');
  assert.equal(await s.call('GET', 'k'), 'v', 'a failed SELECT keeps the current database');
});

test('CLIENT SETNAME / GETNAME', async () => {
  const s = srv().client();
  assert.equal(await s.call('CLIENT', 'GETNAME'), null);
  assert.equal(await s.call('CLIENT', 'SETNAME', 'worker-1'), 'OK');
  assert.equal(await s.call('CLIENT', 'GETNAME'), 'worker-1');
  await rejectsWith(s.call('CLIENT', 'SETNAME', 'has space'), 'ERR Client names cannot contain spaces, newlines or special characters.');
  assert.equal(await s.call('CLIENT', 'GETNAME'), 'worker-1');
  assert.equal(await s.call('CLIENT', 'SETNAME', ''), 'OK', 'an empty name clears it');
  assert.equal(await s.call('CLIENT', 'GETNAME'), null);
  assert.equal(await c.call('CLIENT', 'GETNAME'), null, 'names are per connection');
});

test('CLIENT ID is a distinct positive integer per connection and stable on one', async () => {
  const a = (await c.call('CLIENT', 'ID')) as number;
  const b = (await srv().client().call('CLIENT', 'ID')) as number;
  assert.equal(typeof a, 'number');
  assert.ok(a > 0 && b > 0);
  assert.notEqual(a, b);
  assert.equal(await c.call('CLIENT', 'ID'), a);
});

test('CLIENT SETINFO lib-name / lib-ver', async (t) => {
  const [major, minor] = await serverVersion(c);
  if (target() === 'redis' && (major < 7 || (major === 7 && minor < 2))) {
    t.skip(`redis-server ${major}.${minor} predates CLIENT SETINFO (7.2)`);
    return;
  }
  assert.equal(await c.call('CLIENT', 'SETINFO', 'lib-name', 'my-lib'), 'OK');
  assert.equal(await c.call('CLIENT', 'SETINFO', 'LIB-VER', '1.2.3'), 'OK');
  await rejectsWith(c.call('CLIENT', 'SETINFO', 'lib-name', 'bad name'), /^ERR /);
  await rejectsWith(c.call('CLIENT', 'SETINFO', 'no-such-attr', 'x'), /^ERR /);
});

test('CLIENT with an unknown subcommand', async () => {
  await rejectsWith(c.call('CLIENT', 'NOSUCH'), "ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.");
});

test('COMMAND COUNT matches the COMMAND listing', async () => {
  const count = (await c.call('COMMAND', 'COUNT')) as number;
  assert.equal(typeof count, 'number');
  const all = (await c.call('COMMAND')) as unknown[][];
  assert.equal(all.length, count);
  const names = new Set(all.map((e) => e[0]));
  for (const name of ['get', 'set', 'hset', 'multi', 'exec', 'scan', 'hello', 'ping']) assert.ok(names.has(name), `COMMAND lists ${name}`);
});

test('COMMAND INFO: arity and key positions', async () => {
  const [get, set, mset, hset, missing] = (await c.call('COMMAND', 'INFO', 'get', 'SET', 'mset', 'hset', 'nosuchcommand')) as unknown[][];
  assert.ok(get && set && mset && hset);
  assert.deepEqual(get.slice(0, 2), ['get', 2]);
  assert.deepEqual(get.slice(3, 6), [1, 1, 1], 'first key, last key, step');
  assert.ok((get[2] as string[]).includes('readonly'));
  assert.deepEqual(set.slice(0, 2), ['set', -3]);
  assert.ok((set[2] as string[]).includes('write'));
  assert.deepEqual(mset.slice(0, 2), ['mset', -3]);
  assert.deepEqual(mset.slice(3, 6), [1, -1, 2]);
  assert.deepEqual(hset.slice(0, 2), ['hset', -4]);
  assert.equal(missing, null);
});

test('COMMAND LIST FILTERBY PATTERN / ACLCAT / MODULE filters, and any other argument is a syntax error', async () => {
  const all = (await c.call('COMMAND', 'LIST')) as string[];
  const list = async (...args: string[]): Promise<string[]> => ((await c.call('COMMAND', 'LIST', ...args)) as string[]).sort();
  assert.deepEqual(await list('FILTERBY', 'PATTERN', 'get*'), all.filter((n) => n.startsWith('get')).sort());
  assert.ok((await list('FILTERBY', 'PATTERN', 'get*')).includes('getex'));
  assert.deepEqual(await list('filterby', 'pattern', 'GET*'), await list('FILTERBY', 'PATTERN', 'get*'), 'the pattern ignores case');
  assert.deepEqual(await list('FILTERBY', 'PATTERN', 'xyz*'), []);
  const hash = await list('FILTERBY', 'ACLCAT', 'hash');
  for (const n of ['hset', 'hget', 'hgetall', 'hdel', 'hscan']) assert.ok(hash.includes(n), `@hash has ${n}`);
  assert.ok(hash.every((n) => n.startsWith('h')), hash.join(' '));
  assert.deepEqual(await list('FILTERBY', 'ACLCAT', 'HASH'), hash);
  assert.deepEqual(await list('FILTERBY', 'ACLCAT', 'transaction'), ['discard', 'exec', 'multi', 'unwatch', 'watch']);
  assert.deepEqual(await list('FILTERBY', 'ACLCAT', 'nosuch'), []);
  assert.deepEqual(await list('FILTERBY', 'MODULE', 'nosuch'), []);
  for (const bad of [['bad_arg'], ['FILTERBY'], ['FILTERBY', 'PATTERN'], ['FILTERBY', 'PATTERN', 'get*', 'extra'], ['FILTERBY', 'bogus', 'x'], ['bad', 'PATTERN', 'x']]) {
    await rejectsWith(c.call('COMMAND', 'LIST', ...bad), 'ERR syntax error');
  }
  // COMMAND INFO carries the same categories, in Redis's order.
  const [get, flushall] = (await c.call('COMMAND', 'INFO', 'get', 'flushall')) as unknown[][];
  assert.deepEqual(get![6], ['@read', '@string', '@fast']);
  assert.deepEqual(flushall![6], ['@keyspace', '@write', '@slow', '@dangerous']);
});

test('COMMAND DOCS returns a name → doc map', async () => {
  const r = (await c.call('COMMAND', 'DOCS', 'get')) as unknown[];
  assert.equal(r.length, 2);
  assert.equal(r[0], 'get');
  const doc = r[1] as unknown[];
  assert.ok(Array.isArray(doc));
  const summary = doc.indexOf('summary');
  assert.ok(summary >= 0 && summary % 2 === 0, 'summary is a key');
  assert.equal(typeof doc[summary + 1], 'string');
  const group = doc.indexOf('group');
  assert.ok(group >= 0);
  assert.equal(doc[group + 1], 'string');
});

test('INFO has the server, clients, memory, persistence and keyspace sections', async () => {
  await c.call('SET', 'a', '1');
  await c.call('SET', 'b', '2', 'EX', '100');
  const info = parseInfo((await c.call('INFO')) as string);
  for (const s of ['server', 'clients', 'memory', 'persistence', 'keyspace']) assert.ok(info.has(s), `INFO has # ${s}; got ${[...info.keys()].join(', ')}`);
  assert.match(info.get('server')!.get('redis_version') ?? '', /^\d+\.\d+\.\d+/);
  assert.match(info.get('server')!.get('tcp_port') ?? '', new RegExp(`^${srv().port}$`));
  assert.ok(Number(info.get('clients')!.get('connected_clients')) >= 1);
  assert.match(info.get('memory')!.get('used_memory') ?? '', /^\d+$/);
  assert.equal(info.get('persistence')!.get('loading'), '0');
  // The server's defaults: fsyncs on the thread pool, flushes and compactions on the worker thread.
  assert.equal(info.get('persistence')!.get('wal_sync'), 'thread-pool');
  assert.equal(info.get('persistence')!.get('background_thread'), 'yes');
  assert.match(info.get('keyspace')!.get('db0') ?? '', /^keys=2,expires=1,avg_ttl=\d+/);
});

test('INFO <section> returns only that section', async () => {
  const text = (await c.call('INFO', 'server')) as string;
  assert.ok(text.startsWith('# Server\r\n'), text.slice(0, 40));
  assert.deepEqual([...parseInfo(text).keys()], ['server']);
  assert.deepEqual([...parseInfo((await c.call('INFO', 'KEYSPACE')) as string).keys()], ['keyspace']);
  assert.equal(parseInfo((await c.call('INFO', 'keyspace')) as string).get('keyspace')!.size, 0, 'no db0 line when empty');
});

test('INFO with several sections: "all" and "default" add their groups, in Redis\'s order whatever the order asked', async () => {
  // Sections both servers have (Redis also prints Modules, Errorstats..., tdekv Encryption, Engine).
  const common = ['server', 'clients', 'memory', 'persistence', 'stats', 'replication', 'cpu', 'commandstats', 'keyspace'];
  const headers = async (...args: string[]): Promise<string[]> => {
    const text = (await c.call('INFO', ...args)) as string;
    return text.split('\r\n').filter((l) => l.startsWith('# ') && common.includes(l.slice(2).toLowerCase())).map((l) => l.slice(2));
  };
  const defaults = ['Server', 'Clients', 'Memory', 'Persistence', 'Stats', 'Replication', 'CPU', 'Keyspace'];
  const all = ['Server', 'Clients', 'Memory', 'Persistence', 'Stats', 'Replication', 'CPU', 'Commandstats', 'Keyspace'];
  assert.deepEqual(await headers(), defaults);
  assert.deepEqual(await headers('default'), defaults);
  assert.deepEqual(await headers('cpu', 'default'), defaults);
  assert.deepEqual(await headers('cpu', 'all'), all);
  assert.deepEqual(await headers('all'), all);
  assert.deepEqual(await headers('everything'), all);
  assert.deepEqual(await headers('commandstats', 'default'), all);
  assert.deepEqual(await headers('keyspace', 'cpu'), ['CPU', 'Keyspace']);
  assert.deepEqual(await headers('cpu', 'CPU'), ['CPU']);
  assert.deepEqual(await headers('bogus', 'cpu'), ['CPU']);
  assert.equal(await c.call('INFO', 'bogus'), '', 'an unknown section alone is an empty reply');
  const raw = await srv().raw();
  assert.equal(await raw.command('INFO', 'nosuch', 'neither'), '$0\r\n\r\n');
  raw.destroy();
});

test('INFO clients counts connections', async () => {
  const before = Number(parseInfo((await c.call('INFO', 'clients')) as string).get('clients')!.get('connected_clients'));
  const other = srv().client();
  await other.call('PING');
  const during = Number(parseInfo((await c.call('INFO', 'clients')) as string).get('clients')!.get('connected_clients'));
  assert.equal(during, before + 1);
});

test('INFO stats counts keyspace hits and misses', async () => {
  const stats = async (): Promise<Map<string, string>> => parseInfo((await c.call('INFO', 'stats')) as string).get('stats')!;
  await c.call('SET', 'k', 'v');
  await c.call('HSET', 'h', 'f', 'v');
  const before = await stats();
  await c.call('GET', 'k');
  await c.call('GET', 'missing');
  await c.call('HGET', 'h', 'f');
  await c.call('HGET', 'nope', 'f');
  await c.call('MGET', 'k', 'missing');
  const after = await stats();
  const delta = (name: string): number => Number(after.get(name)) - Number(before.get(name));
  assert.equal(delta('keyspace_hits'), 3);
  assert.equal(delta('keyspace_misses'), 3);
  assert.ok(delta('total_commands_processed') >= 6);
});

test('INFO stats counts row cache hits and misses, absences included', tdekvOnly(), async () => {
  const stats = async (): Promise<Map<string, string>> => parseInfo((await c.call('INFO', 'stats')) as string).get('stats')!;
  await c.call('SET', 'rc-k', 'v');
  const before = await stats();
  await c.call('GET', 'rc-k'); // written through the cache: a hit
  await c.call('GET', 'rc-never-written'); // a miss, then cached as absent
  await c.call('GET', 'rc-never-written'); // the cached absence: a hit
  const after = await stats();
  const delta = (name: string): number => Number(after.get(name)) - Number(before.get(name));
  assert.equal(delta('row_cache_hits'), 2);
  assert.equal(delta('row_cache_misses'), 1);
  assert.equal(after.get('row_cache_overflows'), '0');
});

test('INFO has an Encryption section', tdekvOnly(), async () => {
  const all = parseInfo((await c.call('INFO')) as string);
  assert.equal(all.get('encryption')?.get('encryption_method'), 'aes256-ctr');
  const only = parseInfo((await c.call('INFO', 'encryption')) as string);
  assert.deepEqual([...only.keys()], ['encryption']);
  assert.equal(only.get('encryption')!.get('encryption_method'), 'aes256-ctr');
  assert.doesNotMatch((await c.call('INFO', 'everything')) as string, /[0-9a-f]{64}/, 'no key material');
});

test('CONFIG GET: exact names, glob patterns, unknown names', async () => {
  const maxclients = (await c.call('CONFIG', 'GET', 'maxclients')) as string[];
  assert.equal(maxclients.length, 2);
  assert.equal(maxclients[0], 'maxclients');
  assert.match(maxclients[1]!, /^\d+$/);
  assert.deepEqual(await c.call('CONFIG', 'GET', 'databases'), ['databases', '1']);
  const save = (await c.call('CONFIG', 'GET', 'save')) as string[];
  assert.equal(save[0], 'save');
  assert.equal(typeof save[1], 'string');
  const aof = (await c.call('CONFIG', 'GET', 'appendonly')) as string[];
  assert.equal(aof[0], 'appendonly');
  assert.match(aof[1]!, /^(yes|no)$/);
  const maxes = (await c.call('CONFIG', 'GET', 'max*')) as string[];
  assert.equal(maxes.length % 2, 0);
  const names = maxes.filter((_, i) => i % 2 === 0);
  assert.ok(names.includes('maxclients'), names.join(','));
  for (const n of names) assert.match(n, /^max/);
  assert.deepEqual(await c.call('CONFIG', 'GET', 'no-such-setting'), []);
  await rejectsWith(c.call('CONFIG', 'GET'), "ERR wrong number of arguments for 'config|get' command");
});

test('DBSIZE, FLUSHDB, FLUSHALL', async () => {
  assert.equal(await c.call('DBSIZE'), 0);
  await c.call('MSET', 'a', '1', 'b', '2');
  await c.call('HSET', 'h', 'f', 'v');
  assert.equal(await c.call('DBSIZE'), 3);
  assert.equal(await c.call('FLUSHDB'), 'OK');
  assert.equal(await c.call('DBSIZE'), 0);
  assert.equal(await c.call('GET', 'a'), null);
  await c.call('SET', 'x', '1');
  assert.equal(await c.call('FLUSHALL', 'SYNC'), 'OK');
  assert.equal(await c.call('DBSIZE'), 0);
  await c.call('SET', 'x', '1');
  assert.equal(await c.call('FLUSHDB', 'ASYNC'), 'OK');
  assert.equal(await c.call('EXISTS', 'x'), 0);
  await rejectsWith(c.call('FLUSHALL', 'NOW'), 'ERR syntax error');
});

test('with redact-info-log = false, unknown-command errors echo the request as Redis does', tdekvOnly(), async () => {
  const s = await startTdekv({ settings: { security: { 'redact-info-log': false } } });
  try {
    const k = s.client();
    await rejectsWith(k.call('NOSUCHCMD', 'a', 'b'), "ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b' ");
    await rejectsWith(k.call('nosuchcmd'), "ERR unknown command 'nosuchcmd', with args beginning with: ");
  } finally {
    await s.stop();
  }
});

/** Unknown commands with long, multi-line, NUL-holding or non-ASCII names and arguments, and Redis's replies. */
const UNKNOWN_CASES: Array<[Array<string | Buffer>, string]> = [
  [['x'.repeat(200)], `-ERR unknown command '${'x'.repeat(128)}', with args beginning with: \r\n`],
  [[Buffer.from('ab\r\ncd')], "-ERR unknown command 'ab  cd', with args beginning with: \r\n"],
  [[Buffer.from([0x6e, 0x00, 0x6f])], "-ERR unknown command 'n', with args beginning with: \r\n"],
  [[Buffer.from('caf\u00e9\u0001')], `-ERR unknown command '${Buffer.from('caf\u00e9\u0001').toString('latin1')}', with args beginning with: \r\n`],
  [['nosuch', 'a'.repeat(200), 'b'], `-ERR unknown command 'nosuch', with args beginning with: '${'a'.repeat(128)}' \r\n`],
  [['nosuch', 'a'.repeat(100), 'b'.repeat(100), 'c'], `-ERR unknown command 'nosuch', with args beginning with: '${'a'.repeat(100)}' '${'b'.repeat(25)}' \r\n`],
  [['nosuch', 'a\r\nb', Buffer.from([0, 0x41])], "-ERR unknown command 'nosuch', with args beginning with: 'a  b' '' \r\n"],
  [["it's"], "-ERR unknown command 'it's', with args beginning with: \r\n"],
];

test('with redact-info-log = false, unknown-command errors are byte for byte Redis\'s (128-byte cuts, NULs, CR/LF, non-ASCII)', async () => {
  const s = target() === 'redis' ? undefined : await startTdekv({ settings: { security: { 'redact-info-log': false } } });
  try {
    const raw = await (s ?? srv()).raw();
    for (const [args, reply] of UNKNOWN_CASES) assert.equal(await raw.command(...args), reply, JSON.stringify(args));
    raw.destroy();
  } finally {
    await s?.stop();
  }
});

test('with redact-info-log = true, unknown-command errors show the name (128 printable bytes at most), never the arguments', tdekvOnly(), async () => {
  const s = await startTdekv({ settings: { security: { 'redact-info-log': true } } });
  try {
    const raw = await s.raw();
    assert.equal(await raw.command('NOSUCHCMD', 'secret', 'data'), "-ERR unknown command 'NOSUCHCMD', with args beginning with: \r\n");
    assert.equal(await raw.command('gett', 'k'), "-ERR unknown command 'gett', with args beginning with: \r\n", 'a typo can be seen');
    assert.equal(await raw.command('y'.repeat(300)), `-ERR unknown command '${'y'.repeat(128)}', with args beginning with: \r\n`);
    assert.equal(await raw.command(Buffer.from('caf\u00e9\r\n\u0001x')), "-ERR unknown command 'caf?????x', with args beginning with: \r\n");
    assert.equal(await raw.command(Buffer.from([0x6e, 0x00, 0x6f])), "-ERR unknown command 'n', with args beginning with: \r\n");
    const noisy = await raw.command('nosuch', 'a'.repeat(200), 'password123');
    assert.ok(!noisy.includes('aaa') && !noisy.includes('password123'), noisy);
    raw.destroy();
  } finally {
    await s.stop();
  }
});

test('unknown commands and wrong arity', async () => {
  if (target() === 'redis') {
    await rejectsWith(c.call('NOSUCHCMD', 'a', 'b'), "ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b' ");
    await rejectsWith(c.call('nosuchcmd'), "ERR unknown command 'nosuchcmd', with args beginning with: ");
  } else {
    // redact-info-log is on by default with encryption: tdekv leaves the arguments out
    // (docs/server.md, "Differences from Redis").
    await rejectsWith(c.call('NOSUCHCMD', 'a', 'b'), "ERR unknown command 'NOSUCHCMD', with args beginning with: ");
  }
  await rejectsWith(c.call('GET'), "ERR wrong number of arguments for 'get' command");
  await rejectsWith(c.call('get', 'a', 'b'), "ERR wrong number of arguments for 'get' command");
  assert.equal(await c.call('PING'), 'PONG', 'the connection survives command errors');
});
