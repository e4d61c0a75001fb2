/** The lifecycle's status as metrics and as INFO's `# Encryption` lines (the status page has its own browser test). */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createMetricsRegistry } from '../src/metrics/registry.js';
import { encryptionInfo, infoText, lifecycleInfo, type InfoSources } from '../src/server/info.js';
import { ServerStats } from '../src/server/server-stats.js';
import { scanningStatus } from './support/lifecycle-fixture.js';
import { openOpsFixture, parseSamples, sampleOf, type OpsFixture } from './support/ops-fixture.js';
import { parseInfo } from './support/server-process.js';

let fx: OpsFixture;
before(async () => {
  fx = await openOpsFixture('tdekv-lifecycle-obs-');
});
after(() => fx?.close());

describe('lifecycle metrics', () => {
  test('state, scan state, percent, rate, remaining bytes, files off key and retired keys', async () => {
    const status = scanningStatus();
    const samples = parseSamples(await createMetricsRegistry({ env: fx.managed.env, lifecycle: { status: () => status, scanBytesTotal: 0 } }).metrics());
    assert.equal(sampleOf(samples, 'tdekv_encryption_state'), 2);
    assert.equal(sampleOf(samples, 'tdekv_encryption_scan_state'), 1);
    assert.equal(sampleOf(samples, 'tdekv_encryption_scan_percent_complete'), 42.5);
    assert.equal(sampleOf(samples, 'tdekv_encryption_scan_rate_bytes'), 64 * 1024 * 1024);
    assert.equal(sampleOf(samples, 'tdekv_encryption_scan_remaining_bytes'), 575 * 1024 * 1024);
    assert.equal(sampleOf(samples, 'tdekv_encryption_files_off_current_key'), 17);
    assert.equal(sampleOf(samples, 'tdekv_encryption_retired_data_keys'), 2);
  });

  test('tdekv_encryption_scan_bytes_total is a counter of the bytes the lifecycle rewrote since the start', async () => {
    const source = { status: () => scanningStatus(), scanBytesTotal: 0 };
    const registry = createMetricsRegistry({ env: fx.managed.env, lifecycle: source });
    const scrape = async () => sampleOf(parseSamples(await registry.metrics()), 'tdekv_encryption_scan_bytes_total');
    assert.match(await registry.metrics(), /^# TYPE tdekv_encryption_scan_bytes_total counter$/m);
    assert.equal(await scrape(), 0);
    source.scanBytesTotal = 4096;
    assert.equal(await scrape(), 4096);
    source.scanBytesTotal = 12288;
    assert.equal(await scrape(), 12288);
  });

  test('not registered without a lifecycle', async () => {
    const text = await createMetricsRegistry({ env: fx.managed.env }).metrics();
    assert.doesNotMatch(text, /tdekv_encryption_state\b/);
  });
});

describe('INFO encryption', () => {
  test('has every lifecycle field as snake_case lines, after the existing ones', () => {
    const info = new Map(encryptionInfo(fx.managed.env, fx.config, Date.now(), scanningStatus()));
    assert.equal(info.get('encryption_method'), 'aes256-ctr');
    assert.equal(info.get('encryption_state'), 2);
    assert.equal(info.get('encryption_state_desc'), 'ENCRYPTION_IN_PROGRESS');
    assert.equal(info.get('encryption_scan_state'), 1);
    assert.equal(info.get('encryption_scan_state_desc'), 'RUNNING');
    assert.equal(info.get('percent_complete'), '42.50');
    assert.equal(info.get('scan_modify_date'), '2026-12-03T16:00:00.000Z');
    assert.equal(info.get('scan_bytes_done'), 425 * 1024 * 1024);
    assert.equal(info.get('scan_rate_bytes_per_sec'), 64 * 1024 * 1024);
    assert.equal(info.get('scan_eta_seconds'), 9);
    assert.equal(info.get('scan_auto'), 'yes');
    assert.equal(info.get('scan_error'), '');
    assert.equal(info.get('files_off_current_key'), 17);
    assert.equal(info.get('key_algorithm'), 'AES');
    assert.equal(info.get('key_length'), 256);
    assert.equal(info.get('master_key_identity'), '/etc/tdekv/master.key');
    assert.equal(info.get('last_retired_data_keys'), '3,4');
    for (const [k] of info) assert.match(k, /^[a-z0-9_]+$/, `${k} is snake_case`);
    assert.equal(new Map(encryptionInfo(fx.managed.env, fx.config)).get('encryption_state'), undefined, 'no lifecycle, no lifecycle lines');
  });

  test('unknowns are empty, and an error with line breaks stays on one line', () => {
    const lines = lifecycleInfo(
      scanningStatus({ scanState: 3, scanStateDesc: 'ABORTED', etaSeconds: null, scanError: 'write failed\r\nEIO', scanModifyDate: null, keyAlgorithm: null, keyLength: null }),
    );
    const info = new Map(lines);
    assert.equal(info.get('scan_eta_seconds'), '');
    assert.equal(info.get('scan_error'), 'write failed EIO');
    assert.equal(info.get('scan_modify_date'), '');
    assert.equal(info.get('key_algorithm'), '');
    assert.equal(info.get('key_length'), 0);
    for (const [, v] of lines) assert.doesNotMatch(String(v), /[\r\n]/);
  });

  test('INFO encryption prints the section alone, with the lifecycle lines', () => {
    const src = {
      stats: new ServerStats(),
      encryption: () => lifecycleInfo(scanningStatus()),
    } as unknown as InfoSources;
    const sections = parseInfo(infoText(src, ['encryption']));
    assert.deepEqual([...sections.keys()], ['encryption']);
    assert.equal(sections.get('encryption')!.get('encryption_state_desc'), 'ENCRYPTION_IN_PROGRESS');
    assert.equal(sections.get('encryption')!.get('scan_modify_date'), '2026-12-03T16:00:00.000Z', 'a value with colons survives');
  });
});
