/** The stock Redis command-line client against the server: the tool operators reach for first. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { encodeCommand, hasOpenssl, makeCerts, makeTempDir, removeTempDir, REDIS_CLI, startTarget, type ServerHandle, type TestCerts } from './support/server-process.js';

const NO_CLI = !existsSync(REDIS_CLI) && `${REDIS_CLI} is not installed (apt-get install redis-tools)`;

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function redisCli(port: number, args: string[], input?: string | Buffer): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    // redis-cli may exit (e.g. failed TLS handshake) before reading its stdin.
    child.stdin.on('error', () => {});
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input ?? '');
  });
}

describe('redis-cli', { skip: NO_CLI }, () => {
  let server: ServerHandle | undefined;
  let c: Redis;
  const run = (...args: string[]): Promise<CliRun> => redisCli(server!.port, args);
  /** stdout of a command that must succeed, without the trailing newline. */
  const out = async (...args: string[]): Promise<string> => {
    const r = await run(...args);
    assert.equal(r.code, 0, `redis-cli ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.replace(/\n$/, '');
  };

  before(async () => {
    server = await startTarget();
    c = server.client();
  });
  after(async () => {
    await server?.stop();
  });

  test('commands given as arguments', async () => {
    await c.flushall();
    assert.equal(await out('SET', 'greeting', 'hello world'), 'OK');
    assert.equal(await out('GET', 'greeting'), 'hello world');
    assert.equal(await out('GET', 'missing'), '');
    assert.equal(await out('HSET', 'user:1', 'name', 'Ada', 'lang', 'en'), '2');
    const fields = (await out('HGETALL', 'user:1')).split('\n');
    assert.deepEqual([fields.slice(0, 2), fields.slice(2, 4)].sort(), [['lang', 'en'], ['name', 'Ada']], 'field order is the server\'s business');
    assert.equal(await out('INCR', 'visits'), '1');
    assert.equal(await out('INCR', 'visits'), '2');
    assert.equal(await out('TTL', 'greeting'), '-1');
    assert.equal(await out('EXPIRE', 'greeting', '100'), '1');
    assert.match(await out('TTL', 'greeting'), /^(99|100)$/);
    assert.equal(await out('DEL', 'greeting', 'visits', 'nope'), '2');
    assert.equal(await out('TTL', 'greeting'), '-2');
    assert.equal(await c.call('HGET', 'user:1', 'name'), 'Ada', 'written by redis-cli, read by ioredis');
  });

  test('error replies are printed', async () => {
    await c.call('HSET', 'h', 'f', 'v');
    const r = await run('INCR', 'h');
    assert.match(r.stdout + r.stderr, /WRONGTYPE Operation against a key holding the wrong kind of value/);
    const u = await run('NOSUCHCMD');
    // tdekv leaves the name out of the error while redact-info-log is on (docs/server.md).
    assert.match(u.stdout + u.stderr, /ERR unknown command '(NOSUCHCMD|\?)'/);
  });

  test('--scan --pattern', async () => {
    await c.flushall();
    const users = Array.from({ length: 250 }, (_, i) => `user:${i}`);
    await c.call('MSET', ...users.flatMap((k) => [k, '1']), 'session:1', 'x', 'other', 'y');
    const r = await out('--scan', '--pattern', 'user:*');
    assert.deepEqual([...new Set(r.split('\n'))].sort(), [...users].sort());
    const all = await out('--scan');
    assert.equal(new Set(all.split('\n')).size, 252);
  });

  test('--pipe mass insertion', async () => {
    await c.flushall();
    const n = 3_000;
    const input = Buffer.concat(Array.from({ length: n }, (_, i) => encodeCommand('SET', `mass:${i}`, `value-${i}`)));
    const r = await redisCli(server!.port, ['--pipe'], input);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`errors: 0, replies: ${n}`), r.stdout);
    assert.equal(await out('DBSIZE'), String(n));
    assert.equal(await c.call('GET', 'mass:2999'), 'value-2999');
  });

  describe('over TLS', { skip: !hasOpenssl() && 'openssl is not installed' }, () => {
    let tlsServer: ServerHandle | undefined;
    let certDir: string | undefined;
    let certs: TestCerts;
    before(async () => {
      certDir = await makeTempDir('tdekv-it-certs-');
      certs = await makeCerts(certDir);
      tlsServer = await startTarget({ tls: { certPath: certs.serverCertPath, keyPath: certs.serverKeyPath } });
    });
    after(async () => {
      await tlsServer?.stop();
      if (certDir !== undefined) await removeTempDir(certDir);
    });

    test('--tls --cacert', async () => {
      const port = tlsServer!.port;
      const set = await redisCli(port, ['--tls', '--cacert', certs.caPath, 'SET', 'secure', 'yes']);
      assert.equal(set.stdout, 'OK\n', set.stderr);
      const get = await redisCli(port, ['--tls', '--cacert', certs.caPath, 'GET', 'secure']);
      assert.equal(get.stdout, 'yes\n', get.stderr);
    });

    test('plain text to the TLS port gets no reply', async () => {
      const r = await redisCli(tlsServer!.port, ['PING']);
      assert.doesNotMatch(r.stdout, /PONG/);
    });

    test('an untrusted server certificate is refused by redis-cli', async () => {
      const r = await redisCli(tlsServer!.port, ['--tls', '--cacert', join(certs.dir, 'stranger-ca.pem'), 'PING']);
      assert.doesNotMatch(r.stdout, /PONG/);
      assert.match(r.stderr + r.stdout, /SSL|certificate|verify/i);
    });
  });

  describe('with requirepass', () => {
    let authServer: ServerHandle | undefined;
    before(async () => {
      authServer = await startTarget({ requirepass: 's3cret' });
    });
    after(async () => {
      await authServer?.stop();
    });

    test('-a with the password', async () => {
      const r = await redisCli(authServer!.port, ['-a', 's3cret', '--no-auth-warning', 'SET', 'k', 'v']);
      assert.equal(r.stdout, 'OK\n', r.stderr);
      assert.equal(r.stderr, '', '--no-auth-warning keeps stderr quiet');
      const g = await redisCli(authServer!.port, ['-a', 's3cret', '--no-auth-warning', 'GET', 'k']);
      assert.equal(g.stdout, 'v\n');
    });

    test('without -a the command is refused', async () => {
      const r = await redisCli(authServer!.port, ['GET', 'k']);
      assert.match(r.stdout + r.stderr, /NOAUTH Authentication required\./);
      assert.doesNotMatch(r.stdout, /^v$/m);
    });

    test('a wrong password is reported', async () => {
      const r = await redisCli(authServer!.port, ['-a', 'wrong', '--no-auth-warning', 'GET', 'k']);
      assert.match(r.stdout + r.stderr, /WRONGPASS invalid username-password pair or user is disabled\./);
      assert.doesNotMatch(r.stdout, /^v$/m);
    });
  });
});
