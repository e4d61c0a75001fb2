import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { pathExists } from '../src/keys/atomic-file.js';
import { createMetricsRegistry } from '../src/metrics/registry.js';
import { ServerStats } from '../src/server/server-stats.js';
import { scanningStatus } from './support/lifecycle-fixture.js';
import { exposedNames, openOpsFixture, writeSomeData, type OpsFixture } from './support/ops-fixture.js';

/*
 * docs/grafana-tdekv.json must only query metrics the code exports: the names in its
 * PromQL are compared with a scrape of a registry over a real env, engine and server.
 */

/** Beside the compiled tests (dist/test → docs/), or under the cwd when they were compiled elsewhere. */
async function dashboardPath(): Promise<string> {
  const candidates = [fileURLToPath(new URL('../../docs/grafana-tdekv.json', import.meta.url)), join(process.cwd(), 'docs', 'grafana-tdekv.json')];
  for (const path of candidates) if (await pathExists(path)) return path;
  throw new Error(`docs/grafana-tdekv.json not found at ${candidates.join(' or ')}`);
}

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ expr: string; refId: string; datasource?: { uid: string } }>;
  panels?: Panel[];
}

interface Dashboard {
  schemaVersion: number;
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: unknown; definition?: string }> };
}

let fx: OpsFixture;
let dashboard: Dashboard;
let exported: Set<string>;

before(async () => {
  dashboard = JSON.parse(await readFile(await dashboardPath(), 'utf8')) as Dashboard;
  fx = await openOpsFixture('tdekv-grafana-');
  await writeSomeData(fx.engine, 100);
  const server = new ServerStats();
  server.command('get').calls = 1;
  const lifecycle = scanningStatus();
  exported = exposedNames(await createMetricsRegistry({ env: fx.managed.env, engine: fx.engine, server, lifecycle: { status: () => lifecycle, scanBytesTotal: 1 } }).metrics());
});
after(() => fx?.close());

function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** Metric names in a PromQL expression: identifiers with our prefix (labels, functions and keywords have none). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map((m) => m[0]).filter((w) => w.startsWith('tdekv_'));
}

function expressions(): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  for (const p of allPanels(dashboard.panels)) for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
  for (const v of dashboard.templating.list) {
    if (v.type === 'query') out.push({ where: `variable $${v.name}`, expr: v.definition ?? JSON.stringify(v.query) });
  }
  return out;
}

describe('docs/grafana-tdekv.json', () => {
  test('is a Grafana dashboard with Encryption, Server and Engine rows', () => {
    assert.ok(dashboard.schemaVersion >= 36, `schemaVersion ${dashboard.schemaVersion}`);
    assert.equal(typeof dashboard.uid, 'string');
    const rows = dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title);
    for (const row of ['Encryption', 'Encryption scan', 'Server', 'Engine']) assert.ok(rows.includes(row), `no ${row} row`);
    const ids = allPanels(dashboard.panels).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids must be unique');
    for (const p of allPanels(dashboard.panels)) {
      assert.ok(p.gridPos.x >= 0 && p.gridPos.x + p.gridPos.w <= 24, `panel "${p.title}" is outside the grid`);
      if (p.type === 'row') continue;
      assert.equal(p.datasource?.uid, '${DS_PROMETHEUS}', `panel "${p.title}" must use the templated Prometheus data source`);
      assert.ok((p.targets ?? []).length > 0, `panel "${p.title}" has no query`);
    }
    assert.ok(dashboard.templating.list.some((v) => v.type === 'datasource' && v.name === 'DS_PROMETHEUS'));
  });

  test('queries only metrics the registry exports', () => {
    const missing: string[] = [];
    for (const { where, expr } of expressions()) {
      const names = metricNames(expr);
      assert.ok(names.length > 0, `${where} queries no tdekv_ metric: ${expr}`);
      for (const name of names) if (!exported.has(name)) missing.push(`${where}: ${name}`);
    }
    assert.deepEqual(missing, [], 'the dashboard uses metrics that the code does not export');
  });

  test('has the encryption scan panels: state, scan state, percent complete and rate', () => {
    const scanRow = dashboard.panels.findIndex((p) => p.type === 'row' && p.title === 'Encryption scan');
    const nextRow = dashboard.panels.findIndex((p, i) => i > scanRow && p.type === 'row');
    const inRow = dashboard.panels.slice(scanRow + 1, nextRow === -1 ? undefined : nextRow);
    const queried = new Set(inRow.flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(t.expr))));
    for (const name of ['tdekv_encryption_state', 'tdekv_encryption_scan_state', 'tdekv_encryption_scan_percent_complete', 'tdekv_encryption_scan_rate_bytes', 'tdekv_encryption_scan_bytes_total']) {
      assert.ok(queried.has(name), `the Encryption scan row does not show ${name}`);
    }
  });

  test('shows every encryption metric', () => {
    const used = new Set(expressions().flatMap((e) => metricNames(e.expr)));
    const encryption = [...exported].filter((n) => n.startsWith('tdekv_encryption_') && !/_(?:sum|count)$/.test(n) && !n.endsWith('_seconds'));
    for (const name of encryption) assert.ok(used.has(name), `${name} is not on the dashboard`);
  });
});
