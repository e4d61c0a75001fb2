import assert from 'node:assert/strict';
import { test } from 'node:test';
import { summarizeBatches } from '../bench/batch-latency.js';
import type { BulkLoadResult } from '../bench/bulk-load-child.js';
import { MAX_PAUSE_MS, verdict } from '../bench/bulk-load-bench.js';
import { runBench } from './support/bench-run.js';

/*
 * The bulk-load bench decides the engine issue's load target ("zero write stops, no pause
 * over 1 s"): its batch statistics, its verdict over rounds, and the bench run end to end.
 */

test('batch statistics: nearest-rank percentiles, the longest batch, and the counts over 100 ms and 1 s', () => {
  const ms = Array.from({ length: 1000 }, (_, i) => i + 1); // 1 … 1000 ms
  ms[10] = 1500; // one batch over a second replaces 11 ms
  const s = summarizeBatches(ms);
  assert.equal(s.batches, 1000);
  assert.equal(s.max, 1500);
  assert.equal(s.p50, 501); // 11 left the low half, so rank 500 is 501
  assert.equal(s.p99, 991);
  assert.equal(s.p999, 1000);
  assert.equal(s.over100ms, 901); // 101 … 1000 and the 1500
  assert.equal(s.over1s, 1);
  assert.deepEqual(summarizeBatches([]), { batches: 0, p50: 0, p99: 0, p999: 0, max: 0, over100ms: 0, over1s: 0 });
});

function result(maxMs: number, writeStops?: number): BulkLoadResult {
  return {
    ops: 1000,
    ms: 10,
    latency: { ...summarizeBatches([1, 2, maxMs]) },
    ...(writeStops === undefined ? {} : { stalls: { writeStops, writeSlowdowns: 3, flushes: 1, compactions: 0 } }),
    maxRssKiB: 1,
  };
}

test('the verdict needs every round to pass: no stop, no batch over the limit, no failed round', () => {
  assert.equal(verdict([result(20, 0), result(30, 0), result(25, 0)]).pass, true);
  // One round with a stop, or one batch over the limit, misses even if the median round passes.
  assert.equal(verdict([result(20, 0), result(30, 1), result(25, 0)]).pass, false);
  assert.equal(verdict([result(20, 0), result(MAX_PAUSE_MS + 1, 0), result(25, 0)]).pass, false);
  assert.match(verdict([result(20, 0), result(MAX_PAUSE_MS + 1, 0)]).why, /longest batch 1001 ms over 2 of 2/);
  assert.equal(verdict([result(20, 0), new Error('child crashed')]).pass, false);
  assert.equal(verdict([undefined]).pass, false);
  // A store whose stops cannot be observed is judged on its pauses alone, and says so.
  const level = verdict([result(20), result(40)]);
  assert.equal(level.pass, true);
  assert.match(level.why, /write stops not observable/);
});

test('the bulk-load bench loads, reads back and reports each tdekv line with its stalls', { timeout: 240_000 }, async () => {
  const { code, out, err } = await runBench('bulk-load', { TDEKV_BENCH_LOAD_KEYS: '40000', TDEKV_BENCH_LOAD_ROUNDS: '2', TDEKV_BENCH_LOAD_ENGINES: 'tdekv-aes256-ctr,tdekv-level-aes256-ctr' });
  assert.equal(code, 0, err);
  assert.doesNotMatch(out, /FAILED/, out);
  const row = (engine: string): string[] => {
    const line = out.split('\n').find((l) => l.startsWith(`${engine} `));
    assert.ok(line, `a row for ${engine}:\n${out}`);
    return line.trim().split(/\s{2,}/);
  };
  const engineRow = row('tdekv-aes256-ctr');
  assert.equal(engineRow[1], '40,000');
  assert.ok(Number(engineRow[3]!.replace(/,/g, '')) > 0, engineRow.join(' | '));
  // One stop count and one slowdown count per round for the Engine line; none observable through TdekvLevel.
  assert.match(engineRow[8]!, /^\d+\/\d+$/);
  assert.match(engineRow[9]!, /^\d+\/\d+$/);
  assert.equal(row('tdekv-level-aes256-ctr')[8], 'n/a');
  assert.match(out, /^(PASS|MISS) {2}tdekv-aes256-ctr: longest batch \d+ ms over 2 of 2 round\(s\)/m);
  assert.match(out, /^(PASS|MISS) {2}tdekv-level-aes256-ctr: .*write stops not observable/m);
  // Two rounds in alternating order.
  assert.equal((err.match(/bulk load, round \d of 2/g) ?? []).length, 2);
});
