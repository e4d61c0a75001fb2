import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeMap, humanBytes, plainView, progressLine, type WireStatus } from '../src/cli/encryption.js';
import { runCli } from './support/cli.js';
import { freePort, hasOpenssl, makeCerts, makeTempDir, removeTempDir, startTdekv, type ServerHandle, type TestCerts } from './support/server-process.js';

// `tdekv encryption …` against a real server process, and with none (issue 12, part 3).

const ADMIN = 'cli-admin-pw';

describe('tdekv encryption with no server running', () => {
  let dir = '';
  before(async () => {
    dir = await makeTempDir('tdekv-cli-enc-');
  });
  after(async () => {
    await removeTempDir(dir);
  });

  test('says that no server answers, where, and names the offline commands', async () => {
    const port = await freePort();
    const config = join(dir, 'tdekv.toml');
    await writeFile(config, `[server]\naddr = "127.0.0.1:${port}"\n[security.encryption]\ndata-encryption-method = "plaintext"\n`);
    const r = await runCli(['encryption', 'status', '--config', config]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`no tdekv server answers at 127\\.0\\.0\\.1:${port} \\(server\\.addr of .*tdekv\\.toml; ECONNREFUSED\\)`));
    assert.match(r.stderr, /tdekv data-key reencrypt\|rotate\|retire --config/);
    assert.match(r.stderr, /\[SERVER_UNREACHABLE\]$/m);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
  });

  test('port 0 in server.addr asks for --addr', async () => {
    const config = join(dir, 'port0.toml');
    await writeFile(config, `[server]\naddr = "127.0.0.1:0"\n[security.encryption]\ndata-encryption-method = "plaintext"\n`);
    const r = await runCli(['encryption', 'status', '--config', config]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /has port 0 .*pass --addr host:port/);
  });
});

describe('tdekv encryption against a running server', () => {
  let server: ServerHandle | undefined;
  before(async () => {
    const port = await freePort();
    server = await startTdekv({
      settings: {
        server: { addr: `127.0.0.1:${port}` },
        security: { 'admin-password': ADMIN, encryption: { 'scan-rate-limit': '256KiB' } },
        engine: { 'write-buffer-size': '32KiB', 'target-file-size-base': '32KiB' },
      },
    });
  });
  after(async () => {
    await server?.stop();
  });
  const srv = (): ServerHandle => {
    assert.ok(server, 'server did not start');
    return server;
  };

  test('status prints every field; --json is machine-readable', async () => {
    const r = await runCli(['encryption', 'status', '--config', srv().configPath!]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^encryption_state_desc\s+ENCRYPTED$/m);
    assert.match(r.stdout, /^encryption_method\s+aes256-ctr$/m);
    assert.match(r.stdout, /^master_key_type\s+file$/m);
    const j = await runCli(['encryption', 'status', '--json', '--config', srv().configPath!]);
    assert.equal(j.code, 0, j.stderr);
    const s = JSON.parse(j.stdout) as Record<string, unknown>;
    assert.equal(s['encryption_state'], 3);
    assert.equal(s['key_length'], 256);
    assert.ok(Array.isArray(s['history']));
  });

  test('status --watch with no scan running returns at once', async () => {
    const r = await runCli(['encryption', 'status', '--watch', '--config', srv().configPath!]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^encryption_scan_state_desc\s+(NONE|COMPLETED)$/m);
  });

  test('a wrong admin-password, or none, is refused with what to fix', async () => {
    const dir = await makeTempDir('tdekv-cli-enc-');
    try {
      const base = `[server]\naddr = "127.0.0.1:${srv().port}"\n[security.encryption]\ndata-encryption-method = "plaintext"\n`;
      await writeFile(join(dir, 'wrong.toml'), `[security]\nadmin-password = "not-it"\n${base}`);
      const wrong = await runCli(['encryption', 'status', '--config', join(dir, 'wrong.toml')]);
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /the server refused the password of security\.admin-password: WRONGPASS/);
      assert.doesNotMatch(wrong.stderr, /not-it/);
      await writeFile(join(dir, 'none.toml'), base);
      const none = await runCli(['encryption', 'status', '--config', join(dir, 'none.toml')]);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /NOPERM this user has no permissions to run the 'encryption\|status' command\. Set \[security\] admin-password/);
    } finally {
      await removeTempDir(dir);
    }
  });

  test('regenerate shows the scan (plain lines off a TTY) and exits when it completes', async () => {
    const c = srv().client({ username: 'admin', password: ADMIN });
    const value = 'x'.repeat(256);
    for (let i = 0; i < 2000; i += 100) {
      const p = c.pipeline();
      for (let j = i; j < i + 100; j++) p.set(`k${j}`, value);
      await p.exec();
    }
    const r = await runCli(['encryption', 'regenerate', '--interval', '100', '--config', srv().configPath!]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^encryption_scan_state_desc\s+COMPLETED$/m);
    assert.match(r.stdout, /^encryption_state_desc\s+ENCRYPTED$/m);
    const lines = r.stderr.split('\n').filter((l) => /^KEY_CHANGE_IN_PROGRESS\/RUNNING /.test(l));
    assert.ok(lines.length >= 1, `progress lines while the scan ran:\n${r.stderr}`);
    const percents = lines.map((l) => Number(/ (\d+\.\d\d)% /.exec(l)![1]));
    for (let i = 1; i < percents.length; i++) assert.ok(percents[i]! >= percents[i - 1]!, percents.join(','));
    assert.match(lines[0]!, / of .*\/s, ETA /);
    assert.equal(await c.get('k1999'), value);
  });
});

describe('tdekv encryption over TLS', { skip: !hasOpenssl() && 'openssl is not installed' }, () => {
  let certs: TestCerts | undefined;
  let dir = '';
  let pinned: ServerHandle | undefined;
  let mutual: ServerHandle | undefined;
  before(async () => {
    dir = await makeTempDir('tdekv-cli-enc-tls-');
    certs = await makeCerts(join(dir, 'certs'));
    const tls = { certPath: certs.serverCertPath, keyPath: certs.serverKeyPath };
    pinned = await startTdekv({ tls, settings: { server: { addr: `127.0.0.1:${await freePort()}` } } });
    mutual = await startTdekv({ tls: { ...tls, caPath: certs.caPath }, settings: { server: { addr: `127.0.0.1:${await freePort()}` } } });
  });
  after(async () => {
    await pinned?.stop();
    await mutual?.stop();
    await removeTempDir(dir);
  });

  test('trusts exactly the server certificate of the config (pinned), or the CA given', async () => {
    const r = await runCli(['encryption', 'status', '--config', pinned!.configPath!]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^encryption_state_desc\s+ENCRYPTED$/m);
    const ca = await runCli(['encryption', 'status', '--tls-ca', certs!.caPath, '--config', pinned!.configPath!]);
    assert.equal(ca.code, 0, ca.stderr);
    // A certificate that is not the pinned one is refused: the stranger CA did not sign the server's.
    const other = await runCli(['encryption', 'status', '--tls-ca', join(dir, 'certs', 'stranger-ca.pem'), '--config', pinned!.configPath!]);
    assert.equal(other.code, 1);
  });

  test('with ca-path on the server, a client certificate is asked for and used', async () => {
    const missing = await runCli(['encryption', 'status', '--config', mutual!.configPath!]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /pass --tls-cert and --tls-key/);
    const r = await runCli(['encryption', 'status', '--tls-cert', certs!.clientCertPath, '--tls-key', certs!.clientKeyPath, '--config', mutual!.configPath!]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^encryption_scan_state_desc\s+/m);
  });
});

describe('progress formatting', () => {
  const status: WireStatus = {
    encryption_state_desc: 'ENCRYPTION_IN_PROGRESS',
    encryption_scan_state_desc: 'RUNNING',
    percent_complete: '42.10',
    scan_bytes_done: 1_258_291,
    scan_bytes_total: 3_145_728,
    scan_rate_bytes_per_sec: 524_288,
    eta_seconds: 4,
  };

  test('one plain line: state, percent, bytes, rate, ETA', () => {
    assert.equal(progressLine(status), 'ENCRYPTION_IN_PROGRESS/RUNNING 42.10% 1.2 MiB of 3.0 MiB, 512.0 KiB/s, ETA 4 s');
    assert.equal(progressLine({ ...status, eta_seconds: null }), 'ENCRYPTION_IN_PROGRESS/RUNNING 42.10% 1.2 MiB of 3.0 MiB, 512.0 KiB/s, ETA unknown');
    assert.equal(humanBytes(1023), '1023 B');
    assert.equal(humanBytes(5 * 2 ** 30), '5.0 GiB');
  });

  test('plain view prints a line only when it changed', () => {
    const lines: string[] = [];
    const v = plainView({ out: () => undefined, err: (l) => lines.push(l) });
    v.update(status);
    v.update(status);
    v.update({ ...status, percent_complete: '50.00' });
    v.stop();
    assert.equal(lines.length, 2);
  });

  test('decodeMap reads a RESP2 flat array', () => {
    assert.deepEqual(decodeMap(['a', 1, 'b', null]), { a: 1, b: null });
    assert.throws(() => decodeMap(['a']), /unexpected reply/);
  });
});
