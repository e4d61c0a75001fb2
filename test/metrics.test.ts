import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { zeroize } from '../src/crypto/random.js';
import { openEnvFromConfig } from '../src/env/open-env.js';
import { META_DIR } from '../src/env/paths.js';
import { createMetricsRegistry } from '../src/metrics/registry.js';
import { ServerStats } from '../src/server/server-stats.js';
import { openOpsFixture, parseSamples, sampleOf, writeSomeData, type OpsFixture } from './support/ops-fixture.js';
import { KeyAdmin } from '../src/env/key-admin.js';

const DURATION = 'tdekv_encryption_write_read_file_duration_seconds';

let fx: OpsFixture;

before(async () => {
  fx = await openOpsFixture('tdekv-metrics-');
  await writeSomeData(fx.engine);
});
after(() => fx.close());

async function scrape(registry: ReturnType<typeof createMetricsRegistry>) {
  return parseSamples(await registry.metrics());
}

describe('encryption metrics', () => {
  test('count the dictionaries as the env sees them', async () => {
    const env = fx.managed.env;
    const samples = await scrape(createMetricsRegistry({ env }));
    const stats = env.stats();
    assert.ok(stats.files > 1, 'the fixture should have created files');
    assert.equal(sampleOf(samples, 'tdekv_encryption_is_initialized'), 1);
    assert.equal(sampleOf(samples, 'tdekv_encryption_file_num'), stats.files);
    assert.equal(sampleOf(samples, 'tdekv_encryption_file_num'), env.files().length);
    assert.equal(sampleOf(samples, 'tdekv_encryption_data_key_storage_total'), new KeyAdmin(env).dataKeys().length);
    assert.equal(new KeyAdmin(env).dataKeys().length, 1);

    const current = new KeyAdmin(env).currentDataKey()!;
    assert.equal(sampleOf(samples, 'tdekv_encryption_files', { method: 'aes256-ctr', key_id: String(current.id) }), stats.files);
    const age = sampleOf(samples, 'tdekv_encryption_current_data_key_age_seconds');
    assert.ok(age >= 0 && age < 600, `age ${age}`);
    assert.equal(sampleOf(samples, 'tdekv_encryption_current_data_key_exposed'), 0);
    assert.equal(sampleOf(samples, 'tdekv_encryption_info', { method: 'aes256-ctr', master_key_type: 'file' }), 1);
  });

  test('meta file sizes equal the files on disk', async () => {
    const env = fx.managed.env;
    const samples = await scrape(createMetricsRegistry({ env }));
    const sizes = samples.filter((s) => s.name === 'tdekv_encryption_meta_file_size_bytes');
    assert.deepEqual(sizes.map((s) => s.labels['name']).sort(), ['file.dict', 'file.dict.log', 'key.dict']);
    for (const s of sizes) {
      const onDisk = (await stat(join(env.dataDir, META_DIR, s.labels['name']!))).size;
      assert.ok(s.value > 0, `${s.labels['name']} is empty`);
      assert.equal(s.value, onDisk, s.labels['name']);
    }
  });

  test('time dictionary writes, and reads at open', async () => {
    const registry = createMetricsRegistry({ env: fx.managed.env });
    const count = async (labels: Record<string, string>) => {
      const found = (await scrape(registry)).filter((s) => s.name === `${DURATION}_count` && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      return found.reduce((n, s) => n + s.value, 0);
    };
    assert.equal(await count({}), 0, 'nothing is observed before the registry exists');
    await writeSomeData(fx.engine, 200);
    assert.ok((await count({ type: 'file.dict.log', operation: 'write' })) > 0, 'file dictionary appends are timed');
    await fx.managed.keyAdmin.rotateDataKey();
    assert.equal(await count({ type: 'key.dict', operation: 'write' }), 1, 'the key dictionary write of a rotation is timed');
    const text = await registry.metrics();
    assert.match(text, new RegExp(`^${DURATION}_bucket\\{le="0\\.0001",type="key\\.dict",operation="write"\\} \\d+$`, 'm'));

    // Reads happen at open: a second, read-only env on the same dir.
    const ro = await openEnvFromConfig(fx.config, { readOnly: true });
    await ro.close();
    assert.ok((await count({ type: 'key.dict', operation: 'read' })) >= 1);
    assert.ok((await count({ type: 'file.dict', operation: 'read' })) >= 1);
  });

  test('never contain key material', async () => {
    const env = fx.managed.env;
    const text = await createMetricsRegistry({ env, engine: fx.engine, server: new ServerStats() }).metrics();
    assert.ok(!text.toLowerCase().includes(fx.masterKeyHex), 'master key hex in metrics');
    for (const k of new KeyAdmin(env).exportDataKeys()) {
      assert.ok(!text.toLowerCase().includes(k.key.toString('hex')), `data key ${k.id} in metrics`);
      assert.ok(!text.includes(k.key.toString('base64')), `data key ${k.id} (base64) in metrics`);
      zeroize(k.key);
    }
  });
});

describe('engine metrics', () => {
  test('follow engine.stats()', async () => {
    const registry = createMetricsRegistry({ env: fx.managed.env, engine: fx.engine });
    const samples = await scrape(registry);
    const stats = fx.engine.stats();
    assert.ok(stats.flushes > 0);
    for (const l of stats.levels) {
      assert.equal(sampleOf(samples, 'tdekv_engine_level_files', { level: String(l.level) }), l.files);
      assert.equal(sampleOf(samples, 'tdekv_engine_level_bytes', { level: String(l.level) }), l.bytes);
    }
    const tables = samples.filter((s) => s.name === 'tdekv_engine_level_files').reduce((n, s) => n + s.value, 0);
    assert.equal(tables, fx.engine.liveTables().length);
    assert.equal(sampleOf(samples, 'tdekv_engine_flushes_total'), stats.flushes);
    assert.equal(sampleOf(samples, 'tdekv_engine_compactions_total'), stats.compactions);
    assert.equal(sampleOf(samples, 'tdekv_engine_compaction_read_bytes_total'), stats.compactionBytesRead);
    assert.equal(sampleOf(samples, 'tdekv_engine_compaction_written_bytes_total'), stats.compactionBytesWritten);
    assert.equal(sampleOf(samples, 'tdekv_engine_write_slowdowns_total'), stats.writeSlowdowns);
    assert.equal(sampleOf(samples, 'tdekv_engine_write_stops_total'), stats.writeStops);
    assert.equal(sampleOf(samples, 'tdekv_engine_last_sequence'), stats.lastSequence);
    assert.equal(sampleOf(samples, 'tdekv_engine_live_snapshots'), stats.liveSnapshots);
    assert.equal(sampleOf(samples, 'tdekv_engine_block_cache_capacity_bytes'), fx.engine.tuning.blockCacheSize);
    assert.equal(sampleOf(samples, 'tdekv_engine_block_cache_usage_bytes'), stats.blockCache.usage);
    assert.equal(sampleOf(samples, 'tdekv_engine_memtable_bytes'), stats.memtableBytes);
    assert.equal(sampleOf(samples, 'tdekv_engine_background_error'), 0);

    // Values are read at each scrape: more writes show up without touching the registry.
    const snapshot = fx.engine.snapshot();
    try {
      await fx.engine.put(Buffer.from('one-more'), Buffer.from('x'));
      const again = await scrape(registry);
      assert.equal(sampleOf(again, 'tdekv_engine_last_sequence'), fx.engine.stats().lastSequence);
      assert.equal(sampleOf(again, 'tdekv_engine_live_snapshots'), 1);
    } finally {
      snapshot.release();
    }
  });
});

describe('server metrics', () => {
  test('follow the ServerStats counters', async () => {
    const stats = new ServerStats();
    stats.connectedClients = 3;
    stats.totalConnections = 10;
    stats.rejectedConnections = 1;
    stats.totalCommands = 7;
    Object.assign(stats.command('get'), { calls: 5, failed: 1, usec: 2_500_000 });
    Object.assign(stats.command('set'), { calls: 2, failed: 0, usec: 1000 });
    stats.keyspaceHits = 4;
    stats.keyspaceMisses = 1;
    stats.expiredKeys = 2;
    stats.netInputBytes = 1234;
    stats.netOutputBytes = 5678;
    stats.writeBatches = 9;
    stats.protocolErrors = 1;
    stats.keys = () => 42;
    stats.expires = () => 6;
    stats.rowCache = () => ({ hits: 11, misses: 3, overflows: 2, entries: 8 });
    const registry = createMetricsRegistry({ env: fx.managed.env, server: stats });
    const s = await scrape(registry);
    assert.equal(sampleOf(s, 'tdekv_server_connected_clients'), 3);
    assert.equal(sampleOf(s, 'tdekv_server_connections_total'), 10);
    assert.equal(sampleOf(s, 'tdekv_server_rejected_connections_total'), 1);
    assert.equal(sampleOf(s, 'tdekv_server_commands_processed_total'), 7);
    assert.equal(sampleOf(s, 'tdekv_server_commands_total', { command: 'get' }), 5);
    assert.equal(sampleOf(s, 'tdekv_server_commands_total', { command: 'set' }), 2);
    assert.equal(sampleOf(s, 'tdekv_server_command_errors_total', { command: 'get' }), 1);
    assert.equal(sampleOf(s, 'tdekv_server_command_duration_seconds_total', { command: 'get' }), 2.5);
    assert.equal(sampleOf(s, 'tdekv_server_command_duration_seconds_total', { command: 'set' }), 0.001);
    assert.equal(sampleOf(s, 'tdekv_server_keyspace_hits_total'), 4);
    assert.equal(sampleOf(s, 'tdekv_server_keyspace_misses_total'), 1);
    assert.equal(sampleOf(s, 'tdekv_server_expired_keys_total'), 2);
    assert.equal(sampleOf(s, 'tdekv_server_net_input_bytes_total'), 1234);
    assert.equal(sampleOf(s, 'tdekv_server_net_output_bytes_total'), 5678);
    assert.equal(sampleOf(s, 'tdekv_server_write_batches_total'), 9);
    assert.equal(sampleOf(s, 'tdekv_server_protocol_errors_total'), 1);
    assert.equal(sampleOf(s, 'tdekv_server_keys'), 42);
    assert.equal(sampleOf(s, 'tdekv_server_expiring_keys'), 6);
    assert.equal(sampleOf(s, 'tdekv_server_row_cache_hits_total'), 11);
    assert.equal(sampleOf(s, 'tdekv_server_row_cache_misses_total'), 3);
    assert.equal(sampleOf(s, 'tdekv_server_row_cache_overflows_total'), 2);
    assert.equal(sampleOf(s, 'tdekv_server_row_cache_entries'), 8);
    assert.ok(sampleOf(s, 'tdekv_server_uptime_seconds') >= 0);

    stats.command('get').calls += 1;
    stats.connectedClients = 0;
    const again = await scrape(registry);
    assert.equal(sampleOf(again, 'tdekv_server_commands_total', { command: 'get' }), 6);
    assert.equal(sampleOf(again, 'tdekv_server_connected_clients'), 0);
  });

  test('types: counters end in _total, process metrics are prefixed tdekv_', async () => {
    const registry = createMetricsRegistry({ env: fx.managed.env, engine: fx.engine, server: new ServerStats() });
    const text = await registry.metrics();
    for (const m of text.matchAll(/^# TYPE (\S+) counter$/gm)) assert.match(m[1]!, /_total$/, `${m[1]} is a counter without _total`);
    for (const m of text.matchAll(/^# TYPE (\S+) /gm)) assert.match(m[1]!, /^tdekv_/, `${m[1]} has no tdekv_ prefix`);
    assert.match(text, /^tdekv_process_cpu_user_seconds_total /m);
    assert.match(text, /^tdekv_nodejs_heap_size_used_bytes /m);
    assert.match(registry.contentType, /^text\/plain; version=0\.0\.4/);
  });
});
