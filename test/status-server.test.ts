import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { zeroize } from '../src/crypto/random.js';
import { isTdekvError } from '../src/errors.js';
import { createMetricsRegistry } from '../src/metrics/registry.js';
import { startStatusServer, type StatusServer } from '../src/server/http/status-server.js';
import { ServerStats } from '../src/server/server-stats.js';
import { masterKeyStatus, statusReport, type StatusReport } from '../src/server/status-report.js';
import { KmsMasterKey } from '../src/masterkey/kms.js';
import { captureLogger } from './support/fs-helpers.js';
import { openOpsFixture, parseSamples, sampleOf, writeSomeData, type OpsFixture } from './support/ops-fixture.js';
import { KeyAdmin } from '../src/env/key-admin.js';

let fx: OpsFixture;
let server: StatusServer;
let health: { ok: boolean; reason?: string } = { ok: true };
let failStatus = false;
const stats = new ServerStats();
const log = captureLogger();

before(async () => {
  fx = await openOpsFixture('tdekv-status-');
  await writeSomeData(fx.engine);
  // Flushes and compactions done: the dictionaries' sizes /status reports stay put while it is compared.
  await fx.engine.waitForBackgroundWork();
  stats.connectedClients = 2;
  stats.keys = () => 400;
  const env = fx.managed.env;
  server = await startStatusServer({
    host: '127.0.0.1',
    port: 0,
    registry: createMetricsRegistry({ env, engine: fx.engine, server: stats }),
    status: () => {
      if (failStatus) throw new Error(`cannot read ${env.dataDir}/secret-path`);
      return statusReport(env, fx.engine, stats);
    },
    healthy: () => health,
    logger: log.logger,
  });
});
after(async () => {
  await server.close();
  await fx.close();
});

const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;

describe('status server', () => {
  test('listens on the picked port', () => {
    assert.ok(server.port > 0);
    assert.equal(server.host, '127.0.0.1');
  });

  test('GET /metrics serves the Prometheus text format', async () => {
    const res = await fetch(url('/metrics'));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4; charset=utf-8$/);
    const samples = parseSamples(await res.text());
    assert.equal(sampleOf(samples, 'tdekv_encryption_file_num'), fx.managed.env.stats().files);
    assert.equal(sampleOf(samples, 'tdekv_server_connected_clients'), 2);
    assert.ok(samples.some((s) => s.name === 'tdekv_engine_level_files'));
  });

  test('GET /status reports encryption, engine and server state', async () => {
    const res = await fetch(url('/status'));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const body = (await res.json()) as StatusReport;
    const env = fx.managed.env;
    const current = new KeyAdmin(env).currentDataKey()!;
    assert.equal(body.encryption.method, 'aes256-ctr');
    assert.equal(body.encryption.initialized, true);
    assert.equal(body.encryption.masterKey.type, 'file');
    assert.equal(body.encryption.masterKey.protectsKeys, true);
    assert.equal(body.encryption.currentDataKey?.id, current.id);
    assert.ok(body.encryption.currentDataKey!.ageSeconds >= 0);
    assert.equal(body.encryption.dataKeyCount, 1);
    assert.equal(body.encryption.files.total, env.stats().files);
    assert.equal(body.encryption.files.byMethod['aes256-ctr'], env.stats().files);
    assert.equal(body.encryption.files.byKeyId[String(current.id)], env.stats().files);
    assert.deepEqual(body.encryption.metaFileSizes, await env.metaFileSizes());
    assert.equal(body.engine?.levels.length, fx.engine.stats().levels.length);
    assert.equal(body.server?.connectedClients, 2);
    assert.equal(body.server?.keys, 400);
    assert.ok(body.server!.uptimeSeconds >= 0);
  });

  test('/status and /metrics hold no key material', async () => {
    const bodies = [await (await fetch(url('/status'))).text(), await (await fetch(url('/metrics'))).text()];
    const keys = fx.managed.keyAdmin.exportDataKeys();
    try {
      assert.ok(keys.length > 0);
      for (const body of bodies) {
        const lower = body.toLowerCase();
        assert.ok(!lower.includes(fx.masterKeyHex), 'master key hex found');
        for (const k of keys) {
          assert.ok(!lower.includes(k.key.toString('hex')), `data key ${k.id} found (hex)`);
          assert.ok(!body.includes(k.key.toString('base64')), `data key ${k.id} found (base64)`);
        }
      }
      // Nothing key-shaped at all: no run of 32+ hex digits (key ids are decimal, IVs are not published).
      assert.doesNotMatch(bodies[0]!, /[0-9a-f]{32}/i);
    } finally {
      for (const k of keys) zeroize(k.key);
    }
  });

  test('GET /healthz: 200 ok, or 503 with the reason', async () => {
    let res = await fetch(url('/healthz'));
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'ok\n');
    health = { ok: false, reason: 'engine background error: disk full' };
    try {
      res = await fetch(url('/healthz'));
      assert.equal(res.status, 503);
      assert.equal(await res.text(), 'engine background error: disk full\n');
    } finally {
      health = { ok: true };
    }
  });

  test('GET / serves the status page: self-contained, under a CSP that allows only its own script and style', async () => {
    const res = await fetch(url('/'));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html; charset=utf-8$/);
    const html = await res.text();
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /connect-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
    const hash = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;
    const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
    const styles = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!);
    assert.equal(scripts.length, 1);
    assert.equal(styles.length, 1);
    assert.ok(csp.includes(`script-src ${hash(scripts[0]!)}`), 'the CSP names the hash of the inline script');
    assert.ok(csp.includes(`style-src ${hash(styles[0]!)}`), 'the CSP names the hash of the inline style');
    // Nothing fetched from anywhere else, and no script or style outside the two hashed blocks.
    assert.doesNotMatch(html, /https?:|\/\/[a-z]|<link|<img|<iframe|<script [^>]*src|\son[a-z]+=|\sstyle=/i);
    assert.match(html, /<meta name="viewport" content="width=device-width, initial-scale=1">/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const head = await fetch(url('/'), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(html)));
    assert.equal(await head.text(), '');
  });

  test('HEAD answers with headers only', async () => {
    const res = await fetch(url('/healthz'), { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), '3');
    assert.equal(await res.text(), '');
  });

  test('unknown paths are 404, other methods 405', async () => {
    let res = await fetch(url('/nope'));
    assert.equal(res.status, 404);
    assert.match(await res.text(), /\/metrics/);
    res = await fetch(url('/metrics?x=1'));
    assert.equal(res.status, 200, 'a query string does not change the path');
    await res.text();
    for (const method of ['POST', 'PUT', 'DELETE']) {
      res = await fetch(url('/metrics'), { method });
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get('allow'), 'GET, HEAD');
      await res.text();
    }
  });

  test('a failing /status is a 500 that keeps the reason in the log', async () => {
    failStatus = true;
    try {
      const res = await fetch(url('/status'));
      assert.equal(res.status, 500);
      assert.doesNotMatch(await res.text(), /secret-path/);
      assert.ok(log.lines.some((l) => l.level === 50 && JSON.stringify(l).includes('secret-path')));
    } finally {
      failStatus = false;
    }
  });

  test('a port in use is an error naming status-addr', async () => {
    await assert.rejects(
      startStatusServer({
        host: '127.0.0.1',
        port: server.port,
        registry: createMetricsRegistry({ env: fx.managed.env }),
        status: () => ({}),
        healthy: () => ({ ok: true }),
        logger: log.logger,
      }),
      (err: unknown) => isTdekvError(err, 'IO_FAILED') && /EADDRINUSE/.test(err.message) && /status-addr/.test(err.message),
    );
  });

  test('close() stops listening, also with a keep-alive connection open, and can be called twice', async () => {
    const other = await startStatusServer({
      host: '127.0.0.1',
      port: 0,
      registry: createMetricsRegistry({ env: fx.managed.env }),
      status: () => ({}),
      healthy: () => ({ ok: true }),
      logger: log.logger,
    });
    const res = await fetch(`http://127.0.0.1:${other.port}/healthz`, { keepalive: true });
    await res.text();
    await Promise.all([other.close(), other.close()]);
    await assert.rejects(fetch(`http://127.0.0.1:${other.port}/healthz`));
  });
});

describe('statusReport', () => {
  test('works without engine and server', async () => {
    const report = await statusReport(fx.managed.env);
    assert.equal(report.engine, undefined);
    assert.equal(report.server, undefined);
    assert.equal(report.encryption.dataKeys.length, report.encryption.dataKeyCount);
  });

  test('reports a kms master key by key id, region and endpoint, without endpoint credentials', () => {
    const kms = new KmsMasterKey({ type: 'kms', keyId: 'arn:aws:kms:eu-west-1:111:key/abc', region: 'eu-west-1', endpoint: 'https://user:pw@kms.example.com', timeoutMs: 1000, maxAttempts: 1 });
    try {
      const status = masterKeyStatus(kms);
      assert.deepEqual(
        { ...status, description: undefined },
        { type: 'kms', protectsKeys: true, keyId: 'arn:aws:kms:eu-west-1:111:key/abc', region: 'eu-west-1', endpoint: 'https://kms.example.com', description: undefined },
      );
      assert.doesNotMatch(status.description, /pw/);
    } finally {
      kms.close();
    }
    const regional = new KmsMasterKey({ type: 'kms', keyId: 'k', region: 'us-west-2', timeoutMs: 1000, maxAttempts: 1 });
    try {
      assert.deepEqual({ ...masterKeyStatus(regional), description: undefined }, { type: 'kms', protectsKeys: true, keyId: 'k', region: 'us-west-2', description: undefined });
    } finally {
      regional.close();
    }
  });
});
