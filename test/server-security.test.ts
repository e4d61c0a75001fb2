import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import {
  hasOpenssl,
  makeTempDir,
  removeTempDir,
  makeCerts,
  parseInfo,
  rejectsWith,
  runTdekvToExit,
  serverVersion,
  startTarget,
  target,
  tdekvOnly,
  waitUntil,
  type ServerHandle,
  type TestCerts,
} from './support/server-process.js';

const NOAUTH = 'NOAUTH Authentication required.';
const WRONGPASS = 'WRONGPASS invalid username-password pair or user is disabled.';

describe('requirepass', () => {
  let server: ServerHandle | undefined;
  before(async () => {
    server = await startTarget({ requirepass: 's3cret' });
  });
  after(async () => {
    await server?.stop();
  });
  const srv = (): ServerHandle => {
    assert.ok(server, 'server did not start');
    return server;
  };
  // ioredis's ready check sends INFO, which NOAUTH would turn into a dropped connection.
  const unauthenticated = (): Redis => srv().client({ enableReadyCheck: false });

  test('commands before AUTH are refused', async () => {
    const c = unauthenticated();
    await rejectsWith(c.call('GET', 'k'), NOAUTH);
    await rejectsWith(c.call('SET', 'k', 'v'), NOAUTH);
    await rejectsWith(c.call('PING'), NOAUTH);
    await rejectsWith(c.call('MULTI'), NOAUTH);
    await rejectsWith(
      c.call('HELLO', '3'),
      // Redis 7.0 says "HELLO AUTH", 7.2 and later "HELLO <proto> AUTH".
      /^NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO (<proto> )?AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time$/,
    );
    assert.equal(await c.call('AUTH', 's3cret'), 'OK');
    assert.equal(await c.call('GET', 'k'), null, 'the refused SET wrote nothing');
  });

  test('a wrong password is refused and leaves the connection unauthenticated', async () => {
    const c = unauthenticated();
    await rejectsWith(c.call('AUTH', 'wrong'), WRONGPASS);
    await rejectsWith(c.call('AUTH', 'default', 'wrong'), WRONGPASS);
    await rejectsWith(c.call('AUTH', 'nobody', 's3cret'), WRONGPASS);
    await rejectsWith(c.call('AUTH', 'S3CRET'), WRONGPASS);
    await rejectsWith(c.call('GET', 'k'), NOAUTH);
    await rejectsWith(c.call('AUTH', 'a', 'b', 'c'), 'ERR syntax error');
  });

  test('AUTH <password> and AUTH default <password>', async () => {
    const a = unauthenticated();
    assert.equal(await a.call('AUTH', 's3cret'), 'OK');
    assert.equal(await a.call('SET', 'k', 'v'), 'OK');
    const b = unauthenticated();
    assert.equal(await b.call('AUTH', 'default', 's3cret'), 'OK');
    assert.equal(await b.call('GET', 'k'), 'v');
    await rejectsWith(unauthenticated().call('GET', 'k'), NOAUTH);
  });

  test('ioredis with password and with username + password', async () => {
    assert.equal(await srv().client({ password: 's3cret' }).call('PING'), 'PONG');
    assert.equal(await srv().client({ username: 'default', password: 's3cret' }).call('PING'), 'PONG');
  });

  test('HELLO 3 AUTH default <password> authenticates and switches to RESP3', async () => {
    const raw = await srv().raw();
    assert.equal(await raw.command('HELLO', '3', 'AUTH', 'default', 'wrong'), `-${WRONGPASS}\r\n`);
    assert.equal(await raw.command('GET', 'k'), `-${NOAUTH}\r\n`);
    const hello = await raw.command('HELLO', '3', 'AUTH', 'default', 's3cret');
    assert.ok(hello.startsWith('%7\r\n'), hello);
    assert.equal(await raw.command('GET', 'nope'), '_\r\n');
    const hello2 = await (await srv().raw()).command('HELLO', '2', 'AUTH', 'default', 's3cret');
    assert.ok(hello2.startsWith('*14\r\n'), hello2);
  });

  test('before AUTH, requests are limited to 10 arguments of 16 KiB (Redis 7); after it, not', async () => {
    const big = 'x'.repeat(20_000);
    const raw = await srv().raw();
    assert.equal(await raw.command('SET', 'k', big), '-ERR Protocol error: unauthenticated bulk length\r\n');
    await raw.readUntilClosed();
    const many = await srv().raw();
    assert.equal(await many.command('DEL', ...Array.from({ length: 10 }, (_, i) => `k${i}`)), '-ERR Protocol error: unauthenticated multibulk length\r\n');
    await many.readUntilClosed();
    const authed = await srv().raw();
    assert.equal(await authed.command('AUTH', 's3cret'), '+OK\r\n');
    assert.equal(await authed.command('SET', 'k0', big), '+OK\r\n');
    assert.equal(await authed.command('DEL', ...Array.from({ length: 10 }, (_, i) => `k${i}`)), ':1\r\n');
  });

  test('QUIT works before AUTH', async () => {
    const raw = await srv().raw();
    assert.equal(await raw.command('QUIT'), '+OK\r\n');
    await raw.readUntilClosed();
  });

  const deniedAuth = async (): Promise<number> => {
    const info = parseInfo(String(await srv().client({ password: 's3cret' }).call('INFO', 'stats')));
    return Number(info.get('stats')?.get('acl_access_denied_auth'));
  };

  test('failed AUTH and HELLO AUTH attempts are counted in INFO stats as acl_access_denied_auth', async (t) => {
    const [major, minor] = await serverVersion(srv().client({ password: 's3cret' }));
    if (major * 100 + minor < 702) {
      t.skip('the field is Redis 7.2\'s; this redis-server is older');
      return;
    }
    const before = await deniedAuth();
    assert.ok(Number.isInteger(before), 'INFO stats has acl_access_denied_auth');
    const c = unauthenticated();
    await rejectsWith(c.call('AUTH', 'wrong'), WRONGPASS);
    await rejectsWith(c.call('AUTH', 'nobody', 's3cret'), WRONGPASS);
    assert.equal(await (await srv().raw()).command('HELLO', '3', 'AUTH', 'default', 'wrong'), `-${WRONGPASS}\r\n`);
    assert.equal(await c.call('AUTH', 's3cret'), 'OK');
    assert.equal(await deniedAuth(), before + 3, 'three refusals; the good AUTH is not counted');
  });

  test('a failed AUTH is logged with the client address and user name, never the password, and counted in /metrics', tdekvOnly(), async () => {
    const metric = async (): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${srv().statusPort!}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('tdekv_server_auth_failures_total '));
      assert.ok(line !== undefined, 'tdekv_server_auth_failures_total is exported');
      return Number(line.split(' ')[1]);
    };
    const before = await metric();
    const c = unauthenticated();
    await rejectsWith(c.call('AUTH', 'guess-one-pw'), WRONGPASS);
    // Failed AUTHs are logged at most once a second (docs/server.md): the second one waits for its own line.
    await new Promise((r) => setTimeout(r, 1100));
    await rejectsWith(c.call('AUTH', 'mallory', 'guess-two-pw'), WRONGPASS);
    assert.equal(await metric(), before + 2);
    await waitUntil(() => srv().stderr().includes('"user":"mallory"'), 'the second AUTH line', 10_000, 20);
    const lines = srv()
      .stderr()
      .split('\n')
      .filter((l) => l.includes('AUTH failed'))
      .map((l) => JSON.parse(l) as { level: number; addr: string; user: string });
    assert.ok(lines.some((l) => l.user === 'default' && /^127\.0\.0\.1:\d+$/.test(l.addr) && l.level === 40), JSON.stringify(lines));
    assert.ok(lines.some((l) => l.user === 'mallory'), JSON.stringify(lines));
    assert.doesNotMatch(srv().stderr(), /guess-(one|two)-pw/);
  });

  test('the password never reaches the log', tdekvOnly(), async () => {
    assert.equal(await unauthenticated().call('AUTH', 's3cret'), 'OK');
    assert.equal(await unauthenticated().call('AUTH', 'default', 's3cret'), 'OK');
    assert.doesNotMatch(srv().stderr(), /s3cret/);
  });
});

describe('TLS', { skip: !hasOpenssl() && 'openssl is not installed' }, () => {
  let certDir: string | undefined;
  let certs: TestCerts;
  let serverOnly: ServerHandle | undefined;
  let mutual: ServerHandle | undefined;

  before(async () => {
    certDir = await makeTempDir('tdekv-it-certs-');
    certs = await makeCerts(certDir);
    [serverOnly, mutual] = await Promise.all([
      startTarget({ tls: { certPath: certs.serverCertPath, keyPath: certs.serverKeyPath } }),
      startTarget({ tls: { certPath: certs.serverCertPath, keyPath: certs.serverKeyPath, caPath: certs.caPath } }),
    ]);
  });
  after(async () => {
    await Promise.all([serverOnly?.stop(), mutual?.stop()]);
    if (certDir !== undefined) await removeTempDir(certDir);
  });

  test('cert + key: a client that trusts the CA talks TLS', async () => {
    const c = serverOnly!.client({ tls: { ca: certs.ca } });
    assert.equal(await c.call('SET', 'k', 'over tls'), 'OK');
    assert.equal(await c.call('GET', 'k'), 'over tls');
    const raw = await serverOnly!.raw({ tls: { ca: certs.ca } });
    assert.equal(await raw.command('PING'), '+PONG\r\n');
  });

  test('cert + key: a client that does not trust the server certificate fails', async () => {
    const c = serverOnly!.client({ tls: {} });
    await assert.rejects(c.call('PING'));
  });

  test('cert + key: a plain-text client gets no reply', async () => {
    const raw = await serverOnly!.raw();
    raw.send('*1\r\n$4\r\nPING\r\n');
    const got = await raw.readUntilClosed(10_000);
    assert.doesNotMatch(got, /PONG/);
  });

  test('mutual TLS: a client certificate signed by the CA is accepted', async () => {
    const c = mutual!.client({ tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } });
    assert.equal(await c.call('SET', 'm', 'mutual'), 'OK');
    assert.equal(await c.call('GET', 'm'), 'mutual');
  });

  test('mutual TLS: without a client certificate the connection fails', async () => {
    const c = mutual!.client({ tls: { ca: certs.ca } });
    await assert.rejects(c.call('PING'));
  });

  test('mutual TLS: a certificate from another CA is refused', async () => {
    const c = mutual!.client({ tls: { ca: certs.ca, cert: certs.strangerCert, key: certs.strangerKey } });
    await assert.rejects(c.call('PING'));
  });
});

// Each case is a process that starts and exits on its own, so they run side by side.
describe('bad configuration', { skip: target() !== 'tdekv' && 'tdekv only', concurrency: true }, () => {
  test('an unparsable server.addr', async () => {
    const r = await runTdekvToExit({ settings: { server: { addr: 'nonsense' } } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /server\.addr/);
    assert.doesNotMatch(r.stderr, /"msg":"ready"/);
  });

  test('an unknown [server] setting', async () => {
    const r = await runTdekvToExit({ settings: { server: { 'no-such-setting': 1 } } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no-such-setting/);
  });

  test('a TLS certificate that does not exist', async () => {
    const r = await runTdekvToExit({ settings: { security: { 'cert-path': '/nonexistent/server.pem', 'key-path': '/nonexistent/server.key' } } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cert-path|\/nonexistent\/server\.pem/);
  });

  test('an address already in use', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    try {
      const port = (blocker.address() as { port: number }).port;
      const r = await runTdekvToExit({ settings: { server: { addr: `127.0.0.1:${port}` } } });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`EADDRINUSE|in use|127\\.0\\.0\\.1:${port}`));
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
