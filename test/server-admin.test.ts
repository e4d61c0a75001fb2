import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { isLoopback } from '../src/server/server.js';
import { encodeCommand, rejectsWith, runTdekvToExit, startRedis, startTdekv, target, tdekvOnly, waitUntil, type ServerHandle } from './support/server-process.js';

// `[security] admin-password` against a Redis 7 ACL with the same two users: `default` lacking
// the admin commands, and `admin` with everything (issue 12, part 3).

const ADMIN_PASSWORD = 'admin-s3cret';
const WRONGPASS = 'WRONGPASS invalid username-password pair or user is disabled.';
const noperm = (cmd: string): string => `-NOPERM this user has no permissions to run the '${cmd}' command\r\n`;

/** tdekv with admin-password, or redis-server with the equivalent ACL users. */
async function startWithAdmin(): Promise<ServerHandle> {
  if (target() === 'redis') {
    const acl = ['~*', '&*', '+@all'];
    return startRedis({
      args: ['--user', 'default', 'on', 'nopass', ...acl, '-flushall', '-flushdb', '-shutdown', '-config', '-debug', '--user', 'admin', 'on', `>${ADMIN_PASSWORD}`, ...acl],
    });
  }
  return startTdekv({ settings: { security: { 'admin-password': ADMIN_PASSWORD } } });
}

function shared(start: () => Promise<ServerHandle>): () => ServerHandle {
  let server: ServerHandle | undefined;
  before(async () => {
    server = await start();
  });
  after(async () => {
    await server?.stop();
  });
  return () => {
    assert.ok(server, 'server did not start');
    return server;
  };
}

describe('admin-password set: the admin commands need AUTH admin', () => {
  const srv = shared(startWithAdmin);

  test('a connection that is not admin gets NOPERM, byte for byte, for each gated command', async () => {
    const raw = await srv().raw();
    assert.equal(await raw.command('FLUSHALL'), noperm('flushall'));
    assert.equal(await raw.command('flushdb', 'ASYNC'), noperm('flushdb'));
    assert.equal(await raw.command('CONFIG', 'GET', 'port'), noperm('config|get'));
    assert.equal(await raw.command('config', 'ReSeTsTaT'), noperm('config|resetstat'));
    assert.equal(await raw.command('SHUTDOWN'), noperm('shutdown'));
    // Redis answers unknown subcommands and wrong arities before it checks rights.
    assert.equal(await raw.command('CONFIG', 'NOSUCH'), "-ERR unknown subcommand 'NOSUCH'. Try CONFIG HELP.\r\n");
    assert.equal(await raw.command('CONFIG'), "-ERR wrong number of arguments for 'config' command\r\n");
    // Data commands are not affected.
    assert.equal(await raw.command('SET', 'k', 'v'), '+OK\r\n');
    assert.equal(await raw.command('GET', 'k'), '$1\r\nv\r\n');
  });

  test('every ENCRYPTION subcommand is refused to a non-admin', tdekvOnly(), async () => {
    const raw = await srv().raw();
    for (const sub of ['status', 'reload', 'regenerate', 'suspend', 'resume', 'retire', 'help']) {
      assert.equal(await raw.command('ENCRYPTION', sub.toUpperCase()), noperm(`encryption|${sub}`), sub);
    }
    assert.equal(await raw.command('DEBUG', 'SLEEP', '0'), noperm('debug'));
  });

  test('a refused command inside MULTI aborts the transaction, as Redis does', async () => {
    const raw = await srv().raw();
    assert.equal(await raw.command('MULTI'), '+OK\r\n');
    assert.equal(await raw.command('SET', 'm', '1'), '+QUEUED\r\n');
    assert.equal(await raw.command('FLUSHALL'), noperm('flushall'));
    assert.equal(await raw.command('EXEC'), '-EXECABORT Transaction discarded because of previous errors.\r\n');
  });

  test('AUTH admin with a wrong password is WRONGPASS and changes nothing', async () => {
    const c = srv().client();
    await rejectsWith(c.call('AUTH', 'admin', 'wrong'), WRONGPASS);
    await rejectsWith(c.call('AUTH', 'Admin', ADMIN_PASSWORD), WRONGPASS);
    await rejectsWith(c.call('FLUSHDB'), /^NOPERM this user has no permissions to run the 'flushdb' command$/);
  });

  test('AUTH admin <password> makes the connection admin; AUTH default switches back', async () => {
    const c = srv().client();
    assert.equal(await c.call('AUTH', 'admin', ADMIN_PASSWORD), 'OK');
    assert.equal(await c.call('SET', 'a', '1'), 'OK');
    assert.equal(await c.call('FLUSHDB'), 'OK');
    assert.equal(await c.call('FLUSHALL'), 'OK');
    assert.equal(((await c.call('CONFIG', 'GET', 'maxclients')) as string[])[0], 'maxclients');
    // The default user has no password here (nopass): any password logs in as it, without the admin rights.
    assert.equal(await c.call('AUTH', 'default', 'anything'), 'OK');
    await rejectsWith(c.call('FLUSHALL'), /^NOPERM /);
  });

  test('HELLO 3 AUTH admin <password>, and ioredis with username "admin"', async () => {
    const raw = await srv().raw();
    const hello = await raw.command('HELLO', '3', 'AUTH', 'admin', ADMIN_PASSWORD);
    assert.match(hello, /^%7\r\n/);
    assert.equal(await raw.command('FLUSHDB'), '+OK\r\n');
    const c = srv().client({ username: 'admin', password: ADMIN_PASSWORD });
    assert.equal(await c.flushall(), 'OK');
  });

  test('admin ENCRYPTION HELP in the style of CONFIG HELP; unknown subcommands named', tdekvOnly(), async () => {
    const c: Redis = srv().client({ username: 'admin', password: ADMIN_PASSWORD });
    const help = (await c.call('ENCRYPTION', 'HELP')) as string[];
    assert.equal(help[0], 'ENCRYPTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:');
    for (const sub of ['STATUS', 'RELOAD', 'REGENERATE', 'SUSPEND', 'RESUME', 'RETIRE', 'HELP']) assert.ok(help.includes(sub), `${sub} in ${help.join('\n')}`);
    assert.equal(help.at(-1), '    Print this help.');
    await rejectsWith(c.call('ENCRYPTION', 'NOSUCH'), "ERR unknown subcommand 'NOSUCH'. Try ENCRYPTION HELP.");
    await rejectsWith(c.call('ENCRYPTION', 'STATUS', 'extra'), "ERR wrong number of arguments for 'encryption|status' command");
    await rejectsWith(c.call('ENCRYPTION'), "ERR wrong number of arguments for 'encryption' command");
    const raw = await srv().raw();
    await raw.command('AUTH', 'admin', ADMIN_PASSWORD);
    assert.equal(await raw.command('MULTI'), '+OK\r\n');
    assert.equal(await raw.command('ENCRYPTION', 'STATUS'), '-ERR Command not allowed inside a transaction\r\n');
    assert.equal(await raw.command('DISCARD'), '+OK\r\n');
  });

  test('COMMAND INFO lists ENCRYPTION as an admin command', tdekvOnly(), async () => {
    const c = srv().client();
    const [info] = (await c.call('COMMAND', 'INFO', 'encryption')) as [[string, number, string[], number, number, number, string[]]];
    assert.equal(info[0], 'encryption');
    assert.equal(info[1], -2);
    assert.ok(info[2].includes('admin') && info[2].includes('no_multi'), info[2].join(','));
    assert.deepEqual(info[6], ['@admin', '@slow', '@dangerous']);
  });
});

describe('admin-password not set: behaves as Redis without ACLs', () => {
  const srv = shared(() => (target() === 'redis' ? startRedis() : startTdekv()));

  test('every connection may run the admin commands; AUTH admin is WRONGPASS', async () => {
    const raw = await srv().raw();
    assert.equal(await raw.command('FLUSHALL'), '+OK\r\n');
    assert.equal(await raw.command('FLUSHDB'), '+OK\r\n');
    assert.match(await raw.command('CONFIG', 'GET', 'maxclients'), /^\*2\r\n\$10\r\nmaxclients\r\n/);
    assert.equal(await raw.command('AUTH', 'admin', ADMIN_PASSWORD), `-${WRONGPASS}\r\n`);
  });

  test('ENCRYPTION HELP works for anyone', tdekvOnly(), async () => {
    const raw = await srv().raw();
    assert.match(await raw.command('ENCRYPTION', 'HELP'), /^\*17\r\n\+ENCRYPTION <subcommand>/);
  });

  test('no warning on a loopback listener', tdekvOnly(), () => {
    assert.doesNotMatch(srv().stderr(), /admin-password is not set/);
  });
});

describe('admin-password with requirepass', { skip: target() !== 'tdekv' && 'tdekv only' }, () => {
  const srv = shared(() => startTdekv({ requirepass: 'data-pass', settings: { security: { 'admin-password': ADMIN_PASSWORD } } }));

  test('AUTH admin alone authenticates; AUTH <requirepass> is not admin', async () => {
    const admin = await srv().raw();
    assert.equal(await admin.command('GET', 'k'), '-NOAUTH Authentication required.\r\n');
    assert.equal(await admin.command('AUTH', 'admin', ADMIN_PASSWORD), '+OK\r\n');
    assert.equal(await admin.command('FLUSHALL'), '+OK\r\n');
    const user = await srv().raw();
    assert.equal(await user.command('AUTH', 'data-pass'), '+OK\r\n');
    assert.equal(await user.command('SET', 'k', 'v'), '+OK\r\n');
    assert.equal(await user.command('FLUSHALL'), noperm('flushall'));
    assert.equal(await user.command('AUTH', 'admin', 'data-pass'), `-${WRONGPASS}\r\n`);
    assert.equal(await user.command('FLUSHALL'), noperm('flushall'), 'a failed AUTH keeps the user');
  });
});

describe('admin-password configuration', tdekvOnly(), () => {
  test('the same password as requirepass is refused without showing it', async () => {
    const r = await runTdekvToExit({ requirepass: 'same-pw', settings: { security: { 'admin-password': 'same-pw' } } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /security\.admin-password is the same as security\.requirepass/);
    assert.doesNotMatch(r.stderr, /same-pw/);
  });

  test('an empty admin-password is refused without showing it', async () => {
    const r = await runTdekvToExit({ settings: { security: { 'admin-password': '' } } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /security\.admin-password \(value not shown\)/);
  });

  test('no admin-password on a non-loopback listener logs a warning at startup', async () => {
    const s = await startTdekv({ settings: { server: { addr: '0.0.0.0:0' } } });
    try {
      assert.match(s.stderr(), /security\.admin-password is not set and server\.addr is not a loopback address/);
    } finally {
      await s.stop();
    }
    const quiet = await startTdekv({ settings: { server: { addr: '0.0.0.0:0' }, security: { 'admin-password': ADMIN_PASSWORD } } });
    try {
      assert.doesNotMatch(quiet.stderr(), /admin-password is not set/);
    } finally {
      await quiet.stop();
    }
  });

  test('isLoopback', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost']) assert.equal(isLoopback(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', '128.0.0.1']) assert.equal(isLoopback(h), false, h);
  });
});

describe('a client repeating refused commands cannot flood the log', tdekvOnly(), () => {
  const srv = shared(startWithAdmin);

  test('500 wrong AUTHs and 500 NOPERMs in one burst: a log line or two each, naming how many were held back; INFO counts every failed AUTH', async () => {
    const raw = await srv().raw();
    const burst: Buffer[] = [];
    for (let i = 0; i < 500; i++) burst.push(encodeCommand('AUTH', 'admin', `wrong-${i}`), encodeCommand('FLUSHALL'));
    raw.send(Buffer.concat(burst));
    for (let i = 0; i < 1000; i++) await raw.reply();
    // The log is written asynchronously: wait for the first line of each kind.
    await waitUntil(() => srv().stderr().includes('AUTH failed') && srv().stderr().includes('command refused'), 'both log lines', 10_000, 20);
    await new Promise((r) => setTimeout(r, 200));
    const log = srv().stderr();
    const authLines = log.split('\n').filter((l) => l.includes('AUTH failed'));
    const refusedLines = log.split('\n').filter((l) => l.includes('command refused'));
    assert.ok(authLines.length >= 1 && authLines.length <= 3, `${authLines.length} AUTH lines`);
    assert.ok(refusedLines.length >= 1 && refusedLines.length <= 3, `${refusedLines.length} NOPERM lines`);
    // A later line says how many were held back before it.
    await new Promise((r) => setTimeout(r, 1100));
    raw.send(encodeCommand('AUTH', 'admin', 'wrong-again'));
    await raw.reply();
    await waitUntil(() => srv().stderr().includes('wrong-again') || /"suppressed":\d+/.test(srv().stderr()), 'the next AUTH line', 10_000, 20);
    const later = srv().stderr().split('\n').filter((l) => l.includes('AUTH failed')).at(-1)!;
    assert.match(later, /"suppressed":\d+/);
    const admin = srv().client({ username: 'admin', password: ADMIN_PASSWORD });
    const info = (await admin.info('stats')).match(/acl_access_denied_auth:(\d+)/);
    assert.ok(info && Number(info[1]) >= 501, `acl_access_denied_auth ${info?.[1]}`);
  });
});
