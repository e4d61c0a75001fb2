/**
 * The status page (`GET /` on the status port) in a real browser: Debian's chromium driven by
 * playwright-core. What the page shows is checked as rendered text, so a mistake in its
 * script (or a Content-Security-Policy that blocks it) fails here, not in a user's browser.
 */
import assert from 'node:assert/strict';
import { accessSync, constants, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { Browser, Page } from 'playwright-core';
import { loadConfig } from '../src/config/config.js';
import type { LifecycleStatus } from '../src/lifecycle/lifecycle-status.js';
import { createMetricsRegistry } from '../src/metrics/registry.js';
import { startStatusServer, type StatusServer } from '../src/server/http/status-server.js';
import { TdekvServer } from '../src/server/server.js';
import { statusReport, type StatusReport } from '../src/server/status-report.js';
import { runCli } from './support/cli.js';
import { captureLogger, writeKeyFile } from './support/fs-helpers.js';
import { scanningStatus } from './support/lifecycle-fixture.js';
import { openOpsFixture, parseSamples, sampleOf, writeSomeData, type OpsFixture } from './support/ops-fixture.js';
import { makeTempDir, parseInfo, removeTempDir, startTdekv, waitUntil, type ServerHandle } from './support/server-process.js';

const CHROMIUM = process.env['TDEKV_CHROMIUM'] ?? '/usr/bin/chromium';

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Why the browser tests cannot run here, or false. */
function skipReason(): string | false {
  if (!isExecutableFile(CHROMIUM)) return `chromium is not installed (${CHROMIUM}): apt-get install chromium, as .ci/run does (or set TDEKV_CHROMIUM)`;
  try {
    createRequire(import.meta.url).resolve('playwright-core');
  } catch {
    return 'the dev dependency playwright-core is not installed (npm install)';
  }
  return false;
}

// CI installs chromium (.ci/run): there a missing browser is a failure, not a skip.
const SKIP = skipReason();
if (SKIP !== false && process.env['CI'] === 'true') throw new Error(`the status page browser tests cannot run in CI: ${SKIP}`);

let browser: Browser | undefined;

async function launch(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  // As root (CI containers) chromium refuses to start with its sandbox.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
}

/** Opens the page; console errors (a CSP violation is one) and page errors are collected for the caller to check. */
async function openPage(url: string, viewport = { width: 1024, height: 768 }): Promise<{ page: Page; errors: string[] }> {
  assert.ok(browser);
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  // Nothing but the status port may be asked for: no CDN, fonts or images.
  page.on('request', (r) => {
    if (!r.url().startsWith(new URL(url).origin)) errors.push(`external request: ${r.url()}`);
  });
  await page.goto(url);
  return { page, errors };
}

const textOf = (page: Page, id: string): Promise<string> => page.locator(`#${id}`).innerText();

/** Waits (the page refreshes every 2 s) until element `id` reads `expected`; on timeout says what it read. */
async function waitForText(page: Page, id: string, expected: string | RegExp): Promise<void> {
  const pattern = typeof expected === 'string' ? new RegExp(`^${expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) : expected;
  try {
    await page.waitForFunction(([sel, src, flags]) => new RegExp(src!, flags).test(document.getElementById(sel!)?.textContent ?? ''), [id, pattern.source, pattern.flags] as const, {
      timeout: 30_000,
    });
  } catch (err) {
    throw new Error(`#${id} did not come to match ${String(pattern)}: it reads ${JSON.stringify(await page.locator(`#${id}`).textContent())}`, { cause: err });
  }
}

describe('status page in chromium', { skip: SKIP }, () => {
  before(async () => {
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
  });

  describe('rendering a status document', () => {
    let fx: OpsFixture;
    let server: StatusServer;
    let lifecycle: LifecycleStatus | undefined = scanningStatus();
    before(async () => {
      fx = await openOpsFixture('tdekv-page-');
      await writeSomeData(fx.engine);
      const env = fx.managed.env;
      server = await startStatusServer({
        host: '127.0.0.1',
        port: 0,
        registry: createMetricsRegistry({ env, engine: fx.engine, lifecycle: { status: () => lifecycle ?? scanningStatus(), scanBytesTotal: 0 } }),
        status: () => statusReport(env, fx.engine, undefined, Date.now(), lifecycle),
        healthy: () => ({ ok: true }),
        logger: captureLogger().logger,
      });
    });
    after(async () => {
      await server?.close();
      await fx?.close();
    });
    const url = () => `http://127.0.0.1:${server.port}/`;

    test('shows the state and scan in words, the percentage, ETA, keys, files, master key and history', async () => {
      lifecycle = scanningStatus();
      const { page, errors } = await openPage(url());
      await waitForText(page, 'state', 'Encryption in progress');
      assert.equal(await textOf(page, 'scan'), 'Running');
      assert.equal(await textOf(page, 'percent'), '42.5%');
      assert.equal(await page.locator('#bar').evaluate((e) => (e as HTMLProgressElement).value), 42.5);
      assert.equal(await textOf(page, 'eta'), 'ETA 9 s');
      assert.match(await textOf(page, 'state-code'), /encryption_state 2 · ENCRYPTION_IN_PROGRESS/);
      assert.match(await textOf(page, 'bytes'), /425\.0 MiB of 1000\.0 MiB rewritten, 575\.0 MiB to go, 64\.0 MiB\/s/);
      assert.match(await textOf(page, 'master'), /file[\s\S]*\/etc\/tdekv\/master\.key/);
      assert.match(await textOf(page, 'retired'), /3, 4/);

      const keys = fx.managed.env;
      const rows = await page.locator('#keys tbody tr').allInnerTexts();
      const status = await statusReport(keys, fx.engine);
      assert.equal(rows.length, status.encryption.dataKeys.length);
      assert.match(rows[0]!, new RegExp(`^${status.encryption.currentDataKey!.id} \\(current\\)\\s+aes256-ctr\\s+\\d+ s\\s+\\d+\\s+no$`));
      const files = await page.locator('#files tbody tr').allInnerTexts();
      assert.ok(files.some((r) => /^aes256-ctr\s+\d+$/.test(r)), files.join(' | '));
      assert.ok(files.some((r) => r.startsWith('total')));
      const history = await page.locator('#history li').allInnerTexts();
      // Newest first.
      assert.match(history[0]!, /Unencrypted → Encryption in progress \(data-encryption-method plaintext -> aes256-ctr\)/);
      assert.equal(history.length, 2);
      assert.match(await page.title(), /Encryption in progress 42\.5%/);
      assert.deepEqual(errors, []);
      await page.context().close();
    });

    test('refreshes itself: a finished scan shows Encrypted and 100%', async () => {
      lifecycle = scanningStatus();
      const { page, errors } = await openPage(url());
      await waitForText(page, 'percent', '42.5%');
      lifecycle = scanningStatus({
        encryptionState: 3,
        encryptionStateDesc: 'ENCRYPTED',
        scanState: 4,
        scanStateDesc: 'COMPLETED',
        percentComplete: 100,
        scanBytesDone: 1000 * 1024 * 1024,
        scanBytesRemaining: 0,
        scanRateBytesPerSec: 0,
        etaSeconds: null,
        filesOffCurrentKey: 0,
      });
      await waitForText(page, 'state', 'Encrypted');
      assert.equal(await textOf(page, 'scan'), 'Completed');
      assert.equal(await textOf(page, 'percent'), '100.0%');
      assert.equal(await textOf(page, 'eta'), '');
      assert.deepEqual(errors, []);
      await page.context().close();
    });

    test('renders markup in the data as text (an aborted scan whose error holds HTML)', async () => {
      lifecycle = scanningStatus({ scanState: 3, scanStateDesc: 'ABORTED', scanError: '<img src=x id=injected onerror="document.title=1">EIO' });
      const { page, errors } = await openPage(url());
      await waitForText(page, 'scan', 'Aborted');
      assert.equal(await textOf(page, 'scan-error'), 'Scan aborted: <img src=x id=injected onerror="document.title=1">EIO');
      assert.equal(await page.locator('#injected').count(), 0);
      assert.deepEqual(errors, []);
      await page.context().close();
    });

    test('fits a phone screen: nothing wider than the viewport', async () => {
      lifecycle = scanningStatus();
      const { page, errors } = await openPage(url(), { width: 360, height: 740 });
      await waitForText(page, 'state', 'Encryption in progress');
      const widths = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, view: window.innerWidth }));
      assert.ok(widths.page <= widths.view, `the page is ${widths.page}px wide on a ${widths.view}px screen`);
      assert.equal(await page.locator('meta[name=viewport]').count(), 1);
      assert.deepEqual(errors, []);
      await page.context().close();
    });

    test('says so when /status cannot be read, and keeps the last figures', async () => {
      lifecycle = scanningStatus();
      const { page } = await openPage(url());
      await waitForText(page, 'percent', '42.5%');
      // Without a lifecycle in /status the page says the server does not report one.
      lifecycle = undefined;
      await page.waitForSelector('#no-lifecycle:not([hidden])', { timeout: 30_000 });
      assert.equal(await textOf(page, 'state'), '—');
      await page.route('**/status', (route) => route.fulfill({ status: 500, body: 'internal error' }));
      await page.waitForSelector('#problem:not([hidden])', { timeout: 30_000 });
      assert.match(await textOf(page, 'problem'), /Cannot read \/status \(HTTP 500\)/);
      assert.notEqual(await textOf(page, 'method'), '');
      await page.context().close();
    });
  });

  describe('against a real server', () => {
    let dir: string;
    let server: ServerHandle | undefined;
    const seen: string[] = [];
    before(async () => {
      dir = await makeTempDir('tdekv-page-it-');
      server = await startTdekv({ dir });
    });
    after(async () => {
      await server?.stop();
      await removeTempDir(dir);
    });

    test('shows the method, master key and data keys, and no key hex anywhere in the page', async () => {
      assert.ok(server?.statusPort);
      const c = server.client();
      for (let i = 0; i < 200; i++) await c.call('SET', `marker-${i}`, 'v'.repeat(100));
      const { page, errors } = await openPage(`http://127.0.0.1:${server.statusPort}/`);
      await waitForText(page, 'method', 'aes256-ctr');
      assert.match(await textOf(page, 'master'), /Type\s+file/);
      assert.ok((await page.locator('#keys tbody tr').count()) >= 1);
      seen.push(await page.content(), await page.locator('body').innerText());
      assert.deepEqual(errors, []);
      await page.context().close();

      // The keys, read as the other tests read them: the master key file, and ctl's dump of
      // every data key (which needs the server stopped: it holds the data dir's lock).
      await server.stop();
      server = undefined;
      const secrets = [(await readFile(join(dir, 'master.key'), 'utf8')).trim().toLowerCase()];
      const dump = await runCli(['ctl', '--config', join(dir, 'tdekv.toml'), 'encryption-meta', 'dump-key', '--i-consent']);
      assert.equal(dump.code, 0, dump.stderr);
      for (const m of dump.stdout.matchAll(/key=([0-9a-f]{32,})/g)) secrets.push(m[1]!);
      assert.ok(secrets.length >= 2, 'the master key and at least one data key');
      for (const text of seen) for (const hex of secrets) assert.ok(!text.toLowerCase().includes(hex), 'key hex on the status page');
    });
  });

  describe('during a real encryption scan (plaintext -> aes256-ctr, in-process server)', () => {
    let dir: string;
    let server: TdekvServer | undefined;
    let client: Redis | undefined;
    const seen: string[] = [];
    /**
     * Small tables. The data is first compacted out of level 0 (trigger 1); the server that
     * scans never compacts level 0 by itself (trigger 100), so the scan's own steps rewrite the
     * tables, one per step, and the percentage moves in steps.
     */
    const config = (rateLimit: string, level0Trigger: number) => `[server]
addr = "127.0.0.1:0"
status-addr = "127.0.0.1:0"
[storage]
data-dir = "data"
sync-writes = "no"
row-cache-size = 0
[engine]
write-buffer-size = "16KiB"
target-file-size-base = "8KiB"
max-bytes-for-level-base = "4MiB"
level0-file-num-compaction-trigger = ${level0Trigger}
level0-slowdown-writes-trigger = 200
level0-stop-writes-trigger = 300
[security.encryption]
data-encryption-method = "plaintext"
scan-rate-limit = "${rateLimit}"
[security.encryption.master-key]
type = "file"
path = "master.key"
`;
    before(async () => {
      dir = await makeTempDir('tdekv-page-scan-');
      await writeKeyFile(dir);
      await writeFile(join(dir, 'tdekv.toml'), config('1', 1));
      server = await TdekvServer.start(await loadConfig(join(dir, 'tdekv.toml')), captureLogger().logger);
    });
    const restart = async (text: string): Promise<TdekvServer> => {
      client?.disconnect();
      client = undefined;
      await server?.stop();
      server = undefined;
      await writeFile(join(dir, 'tdekv.toml'), text);
      server = await TdekvServer.start(await loadConfig(join(dir, 'tdekv.toml')), captureLogger().logger);
      return server;
    };
    after(async () => {
      client?.disconnect();
      await server?.stop();
      await removeTempDir(dir);
    });

    test('shows state 2 and the percentage while the scan runs, then Suspended, then Encrypted at 100%', async () => {
      assert.ok(server);
      const { addr } = server.addresses();
      const status = async (): Promise<StatusReport> => (await (await fetch(`http://127.0.0.1:${server!.addresses().statusAddr.port}/status`)).json()) as StatusReport;
      client = new Redis({ port: addr.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
      await client.connect();
      for (let i = 0; i < 3000; i += 100) {
        const batch = client.pipeline();
        for (let j = i; j < i + 100; j++) batch.set(`marker-${String(j).padStart(5, '0')}`, 'plaintext-value-'.repeat(6));
        await batch.exec();
      }
      const level0Empty = async (): Promise<void> =>
        waitUntil(
          async () => {
            const levels = (await status()).engine!.levels;
            return levels[0]!.files === 0 && levels.slice(1).reduce((n, l) => n + l.files, 0) >= 4;
          },
          'the tables to leave level 0',
          30_000,
          50,
        );
      await level0Empty();
      // The server's records span the whole key range, so any level-0 table overlaps every
      // level-1 table, and a scan step that merges level 0 rewrites them all. The last writes
      // come back from the log as a level-0 table at the next open: one more open with
      // trigger 1 and no writes compacts it and leaves the log empty.
      server = await restart(config('1', 1));
      await level0Empty();
      // 1 byte/s: after its first table the scan waits (for hours) until suspended, so the page sees it mid-scan.
      server = await restart(config('1', 100));
      assert.equal((await status()).engine!.levels[0]!.files, 0);
      // 0 (no data key yet) or 1: plaintext either way.
      assert.ok([0, 1].includes(server.encryption.status().encryptionState));

      const { page, errors } = await openPage(`http://127.0.0.1:${server.addresses().statusAddr.port}/`);
      await waitForText(page, 'state', /^(?:No encryption key|Unencrypted)$/);
      const changed = await server.encryption.setMethod('aes256-ctr');
      assert.equal(changed.encryptionState, 2, JSON.stringify(changed));
      await waitForText(page, 'state', 'Encryption in progress');
      // The first table rewritten: a percentage above 0 and below 100.
      await waitForText(page, 'percent', /^(?:[1-9]\d?)\.\d%$|^0\.[1-9]%$/);
      assert.match(await textOf(page, 'state-code'), /encryption_state 2 · ENCRYPTION_IN_PROGRESS/);
      assert.equal(await textOf(page, 'scan'), 'Running');
      const lc = server.encryption.status();
      assert.equal(lc.encryptionState, 2);
      assert.ok(lc.percentComplete > 0 && lc.percentComplete < 100, `percentComplete ${lc.percentComplete}`);
      // (The lifecycle core records this change's `from` as 3 today; the page shows whatever it records.)
      // The same state in the metrics and in INFO encryption.
      const samples = parseSamples(await (await fetch(`http://127.0.0.1:${server.addresses().statusAddr.port}/metrics`)).text());
      assert.equal(sampleOf(samples, 'tdekv_encryption_state'), 2);
      assert.equal(sampleOf(samples, 'tdekv_encryption_scan_state'), 1);
      assert.equal(sampleOf(samples, 'tdekv_encryption_scan_percent_complete'), lc.percentComplete);
      assert.ok(sampleOf(samples, 'tdekv_encryption_scan_bytes_total') > 0);
      client = new Redis({ port: server.addresses().addr.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
      await client.connect();
      const info = parseInfo((await client.call('INFO', 'encryption')) as string).get('encryption')!;
      assert.equal(info.get('encryption_state'), '2');
      assert.equal(info.get('encryption_scan_state_desc'), 'RUNNING');
      assert.equal(info.get('percent_complete'), lc.percentComplete.toFixed(2));
      assert.match(await textOf(page, 'history'), /→ Encryption in progress \(data-encryption-method plaintext -> aes256-ctr\)/);
      seen.push(await page.content(), await page.locator('body').innerText());

      await server.encryption.suspend();
      await waitForText(page, 'scan', 'Suspended');
      assert.equal(await textOf(page, 'state'), 'Encryption in progress');

      // No limit, and on: the rest is rewritten and the database reaches state 3.
      await writeFile(join(dir, 'tdekv.toml'), config('0', 100).replace('"plaintext"', '"aes256-ctr"'));
      await server.encryption.reload((await loadConfig(join(dir, 'tdekv.toml'))).security.encryption);
      await server.encryption.resume();
      await waitForText(page, 'state', 'Encrypted');
      assert.equal(await textOf(page, 'percent'), '100.0%');
      assert.equal(await textOf(page, 'scan'), 'Completed');
      assert.match((await page.locator('#history li').allInnerTexts())[0]!, /Encryption in progress → Encrypted/);
      seen.push(await page.content(), await page.locator('body').innerText());
      assert.deepEqual(errors, []);
      await page.context().close();

      // No key hex in anything the page showed: the master key file and every data key (ctl's dump, server stopped).
      client?.disconnect();
      client = undefined;
      await server.stop();
      server = undefined;
      const secrets = [(await readFile(join(dir, 'master.key'), 'utf8')).trim().toLowerCase()];
      const dump = await runCli(['ctl', '--config', join(dir, 'tdekv.toml'), 'encryption-meta', 'dump-key', '--i-consent']);
      assert.equal(dump.code, 0, dump.stderr);
      for (const m of dump.stdout.matchAll(/key=([0-9a-f]{32,})/g)) secrets.push(m[1]!);
      assert.ok(secrets.length >= 2, 'the master key and at least one data key');
      for (const text of seen) for (const hex of secrets) assert.ok(!text.toLowerCase().includes(hex), 'key hex on the status page');
    });
  });
});
