/**
 * Keys only on disk, through the server: GETs of random keys over a data set many times the
 * block cache, with the row cache off, under each `[server] read-ahead` mode (never, auto,
 * always; docs/server.md, "Keys that are only on disk"). Reported per mode and line: GETs per
 * second, p99, the server's CPU (all threads) per GET, and how many commands waited for a
 * read on the thread pool.
 *
 * The data set is loaded once (redis-benchmark SETs of TDEKV_BENCH_DISK_VALUE_SIZE-byte values
 * over TDEKV_BENCH_DISK_KEYS keys) and the server stopped, so it is in tables. Each measured run
 * starts the server on it afresh (its caches empty) with one mode; modes alternate within each of
 * TDEKV_BENCH_DISK_ROUNDS rounds.
 * - `page`: a warm-up of GETs first, so the tables are in the page cache (not the block cache):
 *   what read-ahead costs when the disk is not touched.
 * - `cold` (TDEKV_BENCH_DISK_COLD=1, root only): the page cache dropped before each start, no
 *   warm-up: what it does when the disk is read.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { dropCaches, intFromEnv, median } from './bench-env.js';
import type { Bench, BenchContext } from './run.js';
import { freePorts, procStats, runRedisBenchmark, startServer, stopServer, toolVersion, type RunningServer } from './server-process.js';
import { tdekvToml } from './server-bench.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const MODES = ['never', 'auto', 'always'] as const;
type Mode = (typeof MODES)[number];

interface Config {
  keys: number;
  valueSize: number;
  rounds: number;
  requests: number;
  pipelinedRequests: number;
  cold: boolean;
  clients: number;
}

function config(): Config {
  return {
    keys: intFromEnv('TDEKV_BENCH_DISK_KEYS', 300_000),
    valueSize: intFromEnv('TDEKV_BENCH_DISK_VALUE_SIZE', 100),
    rounds: intFromEnv('TDEKV_BENCH_DISK_ROUNDS', 3),
    requests: intFromEnv('TDEKV_BENCH_DISK_REQUESTS', 200_000),
    pipelinedRequests: intFromEnv('TDEKV_BENCH_DISK_PIPELINED_REQUESTS', 400_000),
    cold: process.env['TDEKV_BENCH_DISK_COLD'] === '1',
    clients: 50,
  };
}

interface Line {
  label: string;
  pipeline: number;
}

const LINES: Line[] = [
  { label: 'GET', pipeline: 1 },
  { label: 'GET -P16', pipeline: 16 },
];

interface Run {
  rps: number;
  p99Ms: number;
  cpuUsPerGet: number | undefined;
  waited: number;
}

/** The server's config: the bench's usual one, with the block cache far smaller than the data and no row cache. */
export function toml(dir: string, port: number, statusPort: number, mode: Mode): string {
  const text = tdekvToml(dir, String(port), String(statusPort), [], ['[engine]', 'block-cache-size = "4MiB"']);
  return text.replace('[storage]\n', `read-ahead = "${mode}"\n[storage]\nrow-cache-size = 0\n`);
}

async function start(dir: string, mode: Mode): Promise<{ server: RunningServer; port: number }> {
  const [port, statusPort] = (await freePorts(2)) as [number, number];
  const file = join(dir, 'tdekv.toml');
  await writeFile(file, toml(dir, port, statusPort, mode));
  const server = await startServer({ name: `tdekv read-ahead ${mode}`, command: process.execPath, args: [CLI, 'serve', '--config', file], port, cwd: dir, startTimeoutSeconds: 120 });
  return { server, port };
}

function getArgs(cfg: Config, port: number, requests: number, pipeline: number): string[] {
  return ['-h', '127.0.0.1', '-p', String(port), '-c', String(cfg.clients), '-n', String(requests), '-r', String(cfg.keys), '-P', String(pipeline), '-t', 'get', '--csv'];
}

async function waitedForDisk(port: number): Promise<number> {
  const { stdout } = await promisify(execFile)('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'info', 'stats']);
  return Number(/commands_waited_for_disk:(\d+)/.exec(stdout)?.[1] ?? NaN);
}

async function measure(cfg: Config, dir: string, mode: Mode, line: Line): Promise<Run> {
  if (cfg.cold && !(await dropCaches())) throw new Error('TDEKV_BENCH_DISK_COLD=1 needs root (/proc/sys/vm/drop_caches)');
  const { server, port } = await start(dir, mode);
  try {
    const requests = line.pipeline > 1 ? cfg.pipelinedRequests : cfg.requests;
    if (!cfg.cold) await runRedisBenchmark(getArgs(cfg, port, cfg.keys, 16), 600);
    const waitedBefore = await waitedForDisk(port);
    const before = await procStats(server.pid);
    const csv = await runRedisBenchmark(getArgs(cfg, port, requests, line.pipeline), 600);
    const after = await procStats(server.pid);
    const r = csv.get('GET');
    if (!r) throw new Error(`redis-benchmark printed no GET line (got ${[...csv.keys()].join(', ')})`);
    return {
      rps: r.rps,
      p99Ms: r.p99Ms,
      cpuUsPerGet: before && after ? ((after.cpuSeconds - before.cpuSeconds) * 1e6) / requests : undefined,
      waited: (await waitedForDisk(port)) - waitedBefore,
    };
  } finally {
    await stopServer(server, 60);
  }
}

async function run(ctx: BenchContext): Promise<void> {
  const cfg = config();
  if ((await toolVersion('redis-benchmark')) === undefined) {
    ctx.line('server-disk: skipped (redis-benchmark is not installed: apt-get install redis-tools)');
    return;
  }
  const dir = await ctx.tempDir('server-disk');
  try {
    await promisify(execFile)(process.execPath, [CLI, 'keygen', '--out', join(dir, 'master.key')]);
    ctx.progress(`loading ${cfg.keys.toLocaleString('en-US')} keys of ${cfg.valueSize} bytes`);
    const { server, port } = await start(dir, 'never');
    try {
      await runRedisBenchmark(['-h', '127.0.0.1', '-p', String(port), '-c', '50', '-n', String(cfg.keys * 5), '-r', String(cfg.keys), '-P', '16', '-d', String(cfg.valueSize), '-t', 'set', '--csv'], 600);
    } finally {
      await stopServer(server, 120);
    }
    const runs = new Map<string, Run[]>();
    for (let round = 0; round < cfg.rounds; round++) {
      // Alternate which mode goes first.
      const order = round % 2 === 0 ? MODES : [...MODES].reverse();
      for (const line of LINES) {
        for (const mode of order) {
          const r = await measure(cfg, dir, mode, line);
          ctx.progress(`round ${round + 1}: ${mode} ${line.label}: ${Math.round(r.rps).toLocaleString('en-US')} GET/s, p99 ${r.p99Ms} ms, ${r.waited} waited`);
          const key = `${mode} ${line.label}`;
          runs.set(key, [...(runs.get(key) ?? []), r]);
        }
      }
    }
    const rows: string[][] = [];
    for (const line of LINES) {
      const never = median(runs.get(`never ${line.label}`)!.map((r) => r.rps));
      for (const mode of MODES) {
        const rs = runs.get(`${mode} ${line.label}`)!;
        const rps = median(rs.map((r) => r.rps));
        const cpu = rs.map((r) => r.cpuUsPerGet).filter((x): x is number => x !== undefined);
        rows.push([
          line.label,
          mode,
          Math.round(rps).toLocaleString('en-US'),
          (rps / never).toFixed(2),
          median(rs.map((r) => r.p99Ms)).toFixed(2),
          cpu.length > 0 ? median(cpu).toFixed(1) : '',
          median(rs.map((r) => r.waited)).toLocaleString('en-US'),
        ]);
      }
    }
    ctx.table({
      title: `Keys only on disk, through the server (${cfg.cold ? 'cold: page cache dropped before each run' : 'page-cached: tables in the page cache, not the block cache'})`,
      notes: [
        `${cfg.keys.toLocaleString('en-US')} keys of ${cfg.valueSize} bytes, block cache 4 MiB, row cache off; ${cfg.clients} clients, random keys; medians of ${cfg.rounds} rounds, modes alternated`,
        'CPU: the server process (all threads) per GET. waited: commands that waited for a read on the thread pool.',
      ],
      columns: ['line', 'read-ahead', 'GET/s', '÷ never', 'p99 ms', 'CPU µs/GET', 'waited'],
      rows,
    });
  } finally {
    await ctx.removeTempDir(dir);
  }
}

export const bench: Bench = {
  name: 'server-disk',
  description: 'GETs of keys only on disk through the server, per [server] read-ahead mode',
  run,
};
