/**
 * `npm run bench -- bulk-load`: the engine issue's load target, "a 3M-key random load with
 * zero write stops and no catch-up pause longer than 1 s". Each store loads
 * TDEKV_BENCH_LOAD_KEYS (default 3,000,000) new keys of 16 bytes in random key order, 100-byte
 * values, in batches of TDEKV_BENCH_BATCH (1000) puts without fsync, each awaited before the
 * next, in its own process on a fresh dir (bulk-load-child.ts). Every batch is timed: the
 * longest is the longest pause the writer saw. tdekv's Engine also reports its write stops
 * and slowdowns and how long its flushes and compactions take to finish once the writer
 * stops. Stores: TDEKV_BENCH_LOAD_ENGINES (default tdekv-aes256-ctr, tdekv-level-aes256-ctr,
 * classic-level), TDEKV_BENCH_LOAD_ROUNDS (3) rounds in alternating order.
 */
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { intFromEnv } from './bench-env.js';
import type { BulkLoadJob, BulkLoadResult } from './bulk-load-child.js';
import { runChild } from './child-process.js';
import { ENGINES, type EngineName } from './engine-driver.js';
import { medianRun, opsPerSecond, roundOrder } from './engine-rounds.js';
import type { Bench, BenchContext } from './run.js';

const CHILD = fileURLToPath(new URL('./bulk-load-child.js', import.meta.url));
const DEFAULT_ENGINES: readonly EngineName[] = ['tdekv-aes256-ctr', 'tdekv-level-aes256-ctr', 'classic-level'];
/** The target: no batch of the load waits longer than this. */
export const MAX_PAUSE_MS = 1000;

interface Config {
  keys: number;
  batch: number;
  engines: EngineName[];
  rounds: number;
  childTimeoutSeconds: number;
}

function config(): Config {
  const raw = process.env['TDEKV_BENCH_LOAD_ENGINES'];
  const engines = raw === undefined || raw.trim() === '' ? [...DEFAULT_ENGINES] : raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = engines.filter((e) => !(ENGINES as readonly string[]).includes(e));
  if (unknown.length > 0) throw new Error(`TDEKV_BENCH_LOAD_ENGINES: unknown ${unknown.join(', ')}; allowed: ${ENGINES.join(', ')}`);
  return {
    keys: intFromEnv('TDEKV_BENCH_LOAD_KEYS', 3_000_000),
    batch: intFromEnv('TDEKV_BENCH_BATCH', 1000),
    engines: engines as EngineName[],
    rounds: intFromEnv('TDEKV_BENCH_LOAD_ROUNDS', 3),
    childTimeoutSeconds: intFromEnv('TDEKV_BENCH_CHILD_TIMEOUT_SECONDS', 600),
  };
}

type Round = Map<EngineName, BulkLoadResult | Error>;

/** The verdict of one store over all rounds: every round must meet the target, not the median one. */
export function verdict(runs: ReadonlyArray<BulkLoadResult | Error | undefined>): { pass: boolean; why: string } {
  const done = runs.filter((r): r is BulkLoadResult => r !== undefined && !(r instanceof Error));
  if (done.length === 0) return { pass: false, why: 'no round finished' };
  const longest = Math.max(...done.map((r) => r.latency.max));
  const stops = done.map((r) => r.stalls?.writeStops);
  const stopText = stops.every((s) => s === undefined) ? 'write stops not observable' : `write stops per round ${stops.map((s) => s ?? '-').join(', ')}`;
  const pass = done.length === runs.length && longest <= MAX_PAUSE_MS && stops.every((s) => s === undefined || s === 0);
  return { pass, why: `longest batch ${longest.toFixed(0)} ms over ${done.length} of ${runs.length} round(s) (target ≤ ${MAX_PAUSE_MS} ms); ${stopText} (target 0)` };
}

async function runRound(ctx: BenchContext, cfg: Config, order: readonly EngineName[]): Promise<{ results: Round; load: number[] }> {
  const results: Round = new Map();
  const load: number[] = [];
  for (const engine of order) {
    const dir = await ctx.tempDir(`bulk-load-${engine}`);
    load.push(loadavg()[0]!);
    try {
      const job: BulkLoadJob = { engine, dir, keys: cfg.keys, batch: cfg.batch };
      results.set(engine, await runChild<BulkLoadJob, BulkLoadResult>(ctx, CHILD, job, cfg.childTimeoutSeconds));
    } catch (err) {
      results.set(engine, err instanceof Error ? err : new Error(String(err)));
      ctx.progress(`${engine}: FAILED: ${String(err).split('\n')[0]}`);
    } finally {
      load.push(loadavg()[0]!);
      await ctx.removeTempDir(dir);
    }
  }
  return { results, load };
}

async function run(ctx: BenchContext): Promise<void> {
  const cfg = config();
  const n = (x: number): string => Math.round(x).toLocaleString('en-US');
  const rounds: Round[] = [];
  const loads: number[] = [];
  for (let round = 1; round <= cfg.rounds; round++) {
    ctx.progress(`bulk load, round ${round} of ${cfg.rounds}`);
    const r = await runRound(ctx, cfg, roundOrder(cfg.engines, round));
    rounds.push(r.results);
    loads.push(...r.load);
  }
  const ok = (x: BulkLoadResult | Error | undefined): BulkLoadResult | undefined => (x === undefined || x instanceof Error ? undefined : x);
  const rows: string[][] = [];
  for (const engine of cfg.engines) {
    const runs = rounds.map((r) => ok(r.get(engine)));
    const m = medianRun(runs);
    if (!m) {
      rows.push([engine, 'failed', '', '', '', '', '', '', '', '', '']);
      continue;
    }
    const done = runs.filter((r): r is BulkLoadResult => r !== undefined);
    rows.push([
      engine,
      n(m.ops),
      (m.ms / 1000).toFixed(1),
      n(opsPerSecond(m)),
      m.latency.p50.toFixed(1),
      m.latency.p999.toFixed(1),
      Math.max(...done.map((r) => r.latency.max)).toFixed(0),
      String(Math.max(...done.map((r) => r.latency.over100ms))),
      m.stalls ? `${done.map((r) => r.stalls!.writeStops).join('/')}` : 'n/a',
      m.stalls ? `${done.map((r) => r.stalls!.writeSlowdowns).join('/')}` : 'n/a',
      m.catchUpMs === undefined ? 'n/a' : `${done.map((r) => (r.catchUpMs! / 1000).toFixed(1)).join('/')}`,
      ((Math.max(...done.map((r) => r.maxRssKiB)) * 1024) / 2 ** 20).toFixed(0),
    ]);
  }
  ctx.table({
    title: `bulk load — ${n(cfg.keys)} new keys in batches of ${cfg.batch}, no fsync`,
    notes: [
      `16-byte keys in random key order (the engine bench's data set), 100-byte values; each store in its own process on a`,
      `  fresh dir, ${cfg.rounds} round(s) in alternating order (TDEKV_BENCH_LOAD_ROUNDS); tdekv lines aes256-ctr with the bench's`,
      `  16 MiB write buffer and cache settings; TdekvLevel and classic-level through a chained batch, as in the engine bench.`,
      `puts/s, p50 and p99.9 batch: the median run by puts/s. longest batch and batches > 100 ms: the worst of the rounds.`,
      `stops / slowdowns (Engine only, one number per round): writes that waited for a flush or compaction to finish, and`,
      `  writes delayed 1 ms each while the background caught up. catch-up s: from the last acknowledged batch until no`,
      `  flush or compaction was pending. Every store reads back a sample of keys after its load.`,
      `loadavg ${Math.min(...loads).toFixed(1)} – ${Math.max(...loads).toFixed(1)} as the stores' processes started and ended.`,
    ],
    columns: ['engine', 'puts', 'time s', 'puts/s', 'p50 batch ms', 'p99.9 batch ms', 'longest batch ms', 'batches > 100 ms', 'stops', 'slowdowns', 'catch-up s', 'peak RSS MiB'],
    rows,
  });
  rounds.forEach((r, i) => {
    for (const [engine, x] of r) if (x instanceof Error) ctx.line(`FAILED round ${i + 1}: ${engine}: ${x.message.split('\n').slice(0, 3).join(' | ')}`);
  });
  ctx.line();
  ctx.line(`targets (the engine architecture issue: a ${n(cfg.keys)}-key random load with zero write stops and no pause over 1 s, every round):`);
  for (const engine of cfg.engines.filter((e) => e.startsWith('tdekv-'))) {
    const v = verdict(rounds.map((r) => r.get(engine)));
    ctx.line(`${v.pass ? 'PASS' : 'MISS'}  ${engine}: ${v.why}`);
  }
}

export const bench: Bench = {
  name: 'bulk-load',
  description: 'a large random load without fsync: write stops, the longest pause and catch-up (tdekv Engine, TdekvLevel, classic-level)',
  run,
};
