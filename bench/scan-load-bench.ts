/**
 * What a default-rate encryption scan costs a serving database (issue 12): redis-benchmark SET
 * and GET against `tdekv serve` with no scan, and with a scan running throughout (each time
 * the scan completes the bench sends ENCRYPTION REGENERATE, so a scan at the default
 * `scan-rate-limit` = 32 MiB/s is running for the whole measurement), rounds alternating which
 * goes first; medians reported. Targets: ops/s with the scan ≥ 80% of without, p99 ≤ 2×.
 *
 * The database (about 500 MB) is large enough that one scan at the default rate outlasts
 * several lines, as a real scan does (a database is scanned once per change): a small one
 * would be rescanned every second or so, measuring a change's fixed costs (a new data key,
 * the logs switched, keys retired) over and over rather than the scan.
 *
 * Sizes: TDEKV_BENCH_SCANLOAD_KEYS (default 500000) keys of TDEKV_BENCH_SCANLOAD_VALUE (1000)
 * bytes loaded first; TDEKV_BENCH_SCANLOAD_REQUESTS (100000) per line, 50 clients;
 * TDEKV_BENCH_SCANLOAD_ROUNDS (3). TDEKV_BENCH_SCANLOAD_RATE (a scan-rate-limit other than the
 * default) and TDEKV_BENCH_SCANLOAD_BACKGROUND_THREAD=1 ([engine] background-thread) explore.
 */
import { execFile } from 'node:child_process';
import { Redis } from 'ioredis';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { intFromEnv, median } from './bench-env.js';
import type { Bench, BenchContext } from './run.js';
import { tdekvToml } from './server-bench.js';
import { freePorts, runRedisBenchmark, startServer, stopServer, type BenchLine } from './server-process.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = promisify(execFile);

/**
 * Keeps a scan running until stopped: REGENERATE whenever the last one completed, over one
 * connection (a redis-cli process per poll would itself cost the 2-core machine a share of a
 * core). Returns the stop, resolving to how many scans it started.
 */
function keepScanning(port: number): () => Promise<{ scans: number; polls: number; running: number }> {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: false, maxRetriesPerRequest: 0 });
  let stop = false;
  const seen = { scans: 0, polls: 0, running: 0 };
  const loop = (async () => {
    while (!stop) {
      const status = (await client.call('ENCRYPTION', 'STATUS')) as unknown[];
      const i = status.indexOf('encryption_scan_state_desc');
      seen.polls++;
      if (status[i + 1] === 'RUNNING') seen.running++;
      else {
        await client.call('ENCRYPTION', 'REGENERATE');
        seen.scans++;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return async () => {
    stop = true;
    await loop;
    client.disconnect();
    return seen;
  };
}

export const bench: Bench = {
  name: 'scan-load',
  description: 'redis-benchmark SET/GET with and without a default-rate encryption scan running',
  async run(ctx: BenchContext): Promise<void> {
    const keys = intFromEnv('TDEKV_BENCH_SCANLOAD_KEYS', 500_000);
    const valueBytes = intFromEnv('TDEKV_BENCH_SCANLOAD_VALUE', 1000);
    const requests = intFromEnv('TDEKV_BENCH_SCANLOAD_REQUESTS', 100_000);
    const rounds = intFromEnv('TDEKV_BENCH_SCANLOAD_ROUNDS', 3);
    // For exploring: another limit than the default, flushes/compactions/scan on the worker thread.
    const rate = process.env.TDEKV_BENCH_SCANLOAD_RATE || undefined;
    const background = process.env.TDEKV_BENCH_SCANLOAD_BACKGROUND_THREAD === '1';
    const dir = await ctx.tempDir('scan-load');
    const [port, statusPort] = (await freePorts(2)) as [number, number];
    await run(process.execPath, [CLI, 'keygen', '--out', join(dir, 'master.key')]);
    const configFile = join(dir, 'tdekv.toml');
    await writeFile(
      configFile,
      tdekvToml(dir, String(port), String(statusPort), rate !== undefined ? [`scan-rate-limit = "${rate}"`] : [], background ? ['[engine]', 'background-thread = true'] : []),
    );
    const server = await startServer({ name: 'tdekv', command: process.execPath, args: [CLI, 'serve', '--config', configFile], port, cwd: dir, startTimeoutSeconds: 60 });
    const results: Record<'none' | 'scan', Record<'SET' | 'GET', BenchLine[]>> = { none: { SET: [], GET: [] }, scan: { SET: [], GET: [] } };
    let scans = 0;
    let polls = 0;
    let running = 0;
    try {
      ctx.progress(`loading ${keys} keys of ${valueBytes} B`);
      await runRedisBenchmark(['-p', String(port), '-c', '50', '-n', String(keys), '-r', String(keys), '-d', String(valueBytes), '-t', 'set', '-P', '16', '--csv'], 600);
      const args = (t: string): string[] => ['-p', String(port), '-c', '50', '-n', String(requests), '-r', String(keys), '-d', String(valueBytes), '-t', t, '--csv'];
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? (['none', 'scan'] as const) : (['scan', 'none'] as const);
        for (const mode of order) {
          const stop = mode === 'scan' ? keepScanning(port) : undefined;
          // Let the first scan start before measuring.
          if (stop) await new Promise((res) => setTimeout(res, 300));
          for (const t of ['SET', 'GET'] as const) {
            const line = (await runRedisBenchmark(args(t.toLowerCase()), 300)).get(t)!;
            results[mode][t].push(line);
            ctx.progress(`round ${r + 1}/${rounds} ${mode === 'scan' ? 'with scan' : 'no scan'}: ${t} ${Math.round(line.rps)} ops/s p99 ${line.p99Ms} ms`);
          }
          if (stop) {
            const seen = await stop();
            scans += seen.scans;
            polls += seen.polls;
            running += seen.running;
          }
        }
      }
    } finally {
      await stopServer(server, 60);
      await ctx.removeTempDir(dir);
    }
    const rows: string[][] = [];
    const verdicts: string[] = [];
    for (const t of ['SET', 'GET'] as const) {
      const none = { rps: median(results.none[t].map((l) => l.rps)), p99: median(results.none[t].map((l) => l.p99Ms)) };
      const scan = { rps: median(results.scan[t].map((l) => l.rps)), p99: median(results.scan[t].map((l) => l.p99Ms)) };
      const ratio = scan.rps / none.rps;
      const p99x = scan.p99 / none.p99;
      rows.push([t, 'no scan', Math.round(none.rps).toLocaleString('en-US'), none.p99.toFixed(3), '', '']);
      rows.push([t, 'scan running', Math.round(scan.rps).toLocaleString('en-US'), scan.p99.toFixed(3), ratio.toFixed(2), p99x.toFixed(2)]);
      verdicts.push(`${t}: ops ratio ${ratio.toFixed(2)} (target >= 0.80: ${ratio >= 0.8 ? 'met' : 'MISS'}), p99 x${p99x.toFixed(2)} (target <= 2: ${p99x <= 2 ? 'met' : 'MISS'})`);
    }
    ctx.table({
      title: `redis-benchmark during an encryption scan (scan-rate-limit = ${rate ?? '32MiB, the default'}${background ? ', background-thread = true' : ''})`,
      notes: [`${keys} keys x ${valueBytes} B, ${requests} requests per line, 50 clients; medians of ${rounds} alternating rounds; ${scans} scans (REGENERATE) ran during the "scan running" lines, and a scan was RUNNING at ${polls === 0 ? 0 : Math.round((100 * running) / polls)}% of the 10-per-second polls`],
      columns: ['line', 'mode', 'ops/s', 'p99 ms', 'ops ratio', 'p99 ratio'],
      rows,
    });
    for (const v of verdicts) ctx.line(v);
  },
};
