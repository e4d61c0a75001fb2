import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runBench } from './support/bench-run.js';
import { medianRatio, medianRun, opsPerSecond, roundOrder, roundRatios } from '../bench/engine-rounds.js';

/*
 * The engine bench's rounds decide its targets: the order must alternate, a row must be a run
 * that happened, and a verdict must be the median of the rounds' own ratios, not a ratio of
 * numbers taken from different rounds.
 */

const rate = (opsPerSec: number): { ops: number; ms: number } => ({ ops: opsPerSec, ms: 1000 });

test('rounds alternate the engine order', () => {
  assert.deepEqual(roundOrder(['a', 'b', 'c'], 1), ['a', 'b', 'c']);
  assert.deepEqual(roundOrder(['a', 'b', 'c'], 2), ['c', 'b', 'a']);
  assert.deepEqual(roundOrder(['a', 'b', 'c'], 3), ['a', 'b', 'c']);
});

test('a line reports its median run by ops/s; failed rounds are left out', () => {
  const runs = [rate(300), undefined, rate(100), rate(200)];
  // Three runs: the middle one. Four would take the lower middle, a run that happened.
  assert.equal(medianRun(runs), runs[3]);
  assert.equal(medianRun([rate(5), rate(9)])!.ops, 5);
  assert.equal(medianRun([undefined, undefined]), undefined);
  assert.equal(opsPerSecond({ ops: 500, ms: 250 }), 2000);
});

test('ratios are taken within a round, and their median averages an even count', () => {
  const a = [rate(100), rate(300), undefined, rate(80)];
  const b = [rate(50), rate(100), rate(70), undefined];
  assert.deepEqual(roundRatios(a, b), [2, 3, undefined, undefined]);
  assert.equal(medianRatio([2, 3, undefined]), 2.5);
  assert.equal(medianRatio([0.9, 1.4, 1.1]), 1.1);
  assert.equal(medianRatio([undefined]), undefined);
  // Not the ratio of the medians: (median a = 100) / (median b = 75) would say 1.33.
  assert.equal(medianRatio(roundRatios([rate(100), rate(90), rate(120)], [rate(50), rate(75), rate(100)])), 1.2);
});

test('the engine bench runs its rounds in alternating order and judges on the median of the printed ratios', { timeout: 240_000 }, async () => {
  const { code, out, err } = await runBench('engine', {
    TDEKV_BENCH_ENGINE_ROUNDS: '3',
    TDEKV_BENCH_ENGINES: 'tdekv-plaintext,tdekv-aes256-ctr',
    TDEKV_BENCH_KEYS: '3000',
    TDEKV_BENCH_GETS: '3000',
    TDEKV_BENCH_SYNC_KEYS: '1000',
    TDEKV_BENCH_SYNC_SECONDS: '2',
    TDEKV_BENCH_MIX_OPS: '3000',
    TDEKV_BENCH_MIX_SECONDS: '1',
  });
  assert.equal(code, 0, err);

  // Progress on stderr: which engine each round ran first.
  const firsts = err.split(/round \d of 3/).slice(1).map((part) => /(tdekv-[a-z0-9-]+): /.exec(part)?.[1]);
  assert.deepEqual(firsts, ['tdekv-plaintext', 'tdekv-aes256-ctr', 'tdekv-plaintext']);

  // The main table counts each workload's page faults per 1,000 ops for every line: a load of
  // fresh keys into an empty store faults in its memtable, so that cell cannot be 0.
  assert.match(out, /faults \/1k ops/);
  const lines = out.split('\n');
  const first = lines.findIndex((l) => l.startsWith('batched puts, nosync'));
  const loadRows = lines.slice(first, first + 2);
  assert.ok(first >= 0 && loadRows.every((l) => /tdekv (plaintext|aes256-ctr)\s+3,000\s/.test(l)), out);
  for (const row of loadRows) {
    const faults = Number(row.trim().split(/\s+/).at(-1));
    assert.ok(Number.isFinite(faults) && faults > 0, row);
  }

  // Every per-round row: three ratios and their median.
  const rows = out.split('\n').filter((l) => l.includes('tdekv aes256-ctr ÷ tdekv plaintext'));
  assert.equal(rows.length, 6, out);
  const medians = new Map<string, number>();
  for (const row of rows) {
    const nums = row.trim().split(/\s+/).slice(-4).map(Number);
    assert.equal(nums.length, 4);
    assert.ok(nums.every((x) => Number.isFinite(x) && x > 0), row);
    const [r1, r2, r3, med] = nums as [number, number, number, number];
    const expected = [r1, r2, r3].sort((x, y) => x - y)[1]!;
    assert.equal(med, expected, row);
    const workload = row.slice(0, row.indexOf('tdekv aes256-ctr')).trim();
    if (workload) medians.set(workload, med);
  }

  // The verdict for each workload prints that same median.
  for (const [workload, med] of medians) {
    const verdict = out.split('\n').find((l) => l.includes(`${workload}: aes256-ctr within 5% of tdekv plaintext`));
    assert.ok(verdict, `no verdict for ${workload}`);
    // The printed ratio is rounded: at 0.95 itself either verdict is right.
    const verdictWord = med > 0.95 ? 'PASS' : med < 0.95 ? 'MISS' : '(?:PASS|MISS)';
    assert.match(verdict, new RegExp(`^${verdictWord} .*: ${med.toFixed(2)}×`));
  }
});
