/**
 * `npm run bench -- server`: `redis-benchmark` (Debian redis-tools) against `tdekv serve` with
 * aes256-ctr and against Debian's redis-server with `appendonly yes`, `appendfsync everysec`
 * (the durability tdekv's default `sync-writes = "everysec"` matches): SET and GET, 50
 * clients, without and with `-P 16`. Target (from the server issue): tdekv at least half of
 * redis-server's ops/s on every line.
 *
 * Each server runs alone (never both: the machine's cores are shared with redis-benchmark),
 * on 127.0.0.1, a free port and a fresh temp dir; it counts as ready when it answers PING.
 * Against each: one unreported warm-up (SET then GET, so tdekv's JIT is warm, as redis-server
 * needs none), then SET, GET, SET -P16, GET -P16, each its own redis-benchmark run with the
 * same arguments for both servers; every GET follows the SETs that filled its keyspace.
 * Then SIGTERM, and the exit is reported: a server that cannot stop cleanly under load is a
 * finding too.
 *
 * Sizes (env): TDEKV_BENCH_REDIS_REQUESTS (default 200000) per line without pipelining,
 * TDEKV_BENCH_REDIS_PIPELINED_REQUESTS (1000000) per pipelined line, TDEKV_BENCH_REDIS_PIPELINE
 * (16), TDEKV_BENCH_REDIS_CLIENTS (50), TDEKV_BENCH_REDIS_KEYSPACE (100000, redis-benchmark
 * -r), TDEKV_BENCH_REDIS_VALUE_SIZE (3 bytes, redis-benchmark's own default -d),
 * TDEKV_BENCH_REDIS_WARMUP (50000 requests per warm-up test), TDEKV_BENCH_SERVER_ROUNDS (3 alternating
 * rounds of both servers; each line reports its median run). Limits: TDEKV_BENCH_SERVER_START_SECONDS
 * (60), TDEKV_BENCH_SERVER_STOP_SECONDS (30), TDEKV_BENCH_REDIS_TIMEOUT_SECONDS (300 per run).
 *
 * TDEKV_BENCH_SERVER_CPU_PROF=DIR: afterwards, one more tdekv server under `node --cpu-prof`
 * (profile kept in DIR) for a warm-up and a SET -P16 run, summarised as self time per
 * function and per area. Separate from the measured run because profiling slows the server.
 * TDEKV_BENCH_SERVER_STANDIN=redis-server: a second redis-server stands in for tdekv, for
 * working on this harness without a server build. TDEKV_BENCH_SERVER_STANDIN=node-floor: a
 * Node server that stores nothing and parses next to nothing (node-floor-server.ts) stands in,
 * to show the ratios Node's sockets and event loop allow on this machine at all.
 */
import { execFile } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Bench, BenchContext } from './run.js';
import { intFromEnv } from './bench-env.js';
import {
  describeExit,
  freePorts,
  procStats,
  runRedisBenchmark,
  startServer,
  stopServer,
  toolVersion,
  type BenchLine,
  type RunningServer,
} from './server-process.js';
import { summariseProfile, type SelfTime } from './server-profile.js';

const DIST_ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
/** tdekv ÷ redis-server ops/s that meets issue 11's target: 0.7 without pipelining, 0.5 with. */
const targetRatio = (line: Line): number => (line.pipelined ? 0.5 : 0.7);
/** tdekv's p99 may be at most this many times redis-server's (issue 11). */
const TARGET_P99_FACTOR = 2;
const PROFILE_TOP = 25;

interface Config {
  requests: number;
  pipelinedRequests: number;
  pipeline: number;
  clients: number;
  keyspace: number;
  valueSize: number;
  warmup: number;
  startSeconds: number;
  stopSeconds: number;
  benchTimeoutSeconds: number;
  /** What stands in for tdekv, if anything (see the file's comment). */
  standIn: 'redis-server' | 'node-floor' | undefined;
  cpuProfDir: string | undefined;
  /** Alternating runs of both servers; each line reports the median. */
  rounds: number;
}

function config(): Config {
  const standIn = process.env.TDEKV_BENCH_SERVER_STANDIN;
  if (standIn !== undefined && standIn !== '' && standIn !== 'redis-server' && standIn !== 'node-floor') {
    throw new Error(`TDEKV_BENCH_SERVER_STANDIN=${standIn}: only "redis-server" and "node-floor" are supported`);
  }
  const prof = process.env.TDEKV_BENCH_SERVER_CPU_PROF;
  return {
    requests: intFromEnv('TDEKV_BENCH_REDIS_REQUESTS', 200_000),
    pipelinedRequests: intFromEnv('TDEKV_BENCH_REDIS_PIPELINED_REQUESTS', 1_000_000),
    pipeline: intFromEnv('TDEKV_BENCH_REDIS_PIPELINE', 16),
    clients: intFromEnv('TDEKV_BENCH_REDIS_CLIENTS', 50),
    keyspace: intFromEnv('TDEKV_BENCH_REDIS_KEYSPACE', 100_000),
    valueSize: intFromEnv('TDEKV_BENCH_REDIS_VALUE_SIZE', 3),
    warmup: intFromEnv('TDEKV_BENCH_REDIS_WARMUP', 50_000),
    startSeconds: intFromEnv('TDEKV_BENCH_SERVER_START_SECONDS', 60),
    stopSeconds: intFromEnv('TDEKV_BENCH_SERVER_STOP_SECONDS', 30),
    benchTimeoutSeconds: intFromEnv('TDEKV_BENCH_REDIS_TIMEOUT_SECONDS', 300),
    standIn: standIn === 'redis-server' || standIn === 'node-floor' ? standIn : undefined,
    cpuProfDir: prof !== undefined && prof.trim() !== '' ? resolve(prof) : undefined,
    rounds: intFromEnv('TDEKV_BENCH_SERVER_ROUNDS', 3),
  };
}

interface Line {
  label: string;
  /** redis-benchmark -t name; its CSV names the test in upper case. */
  test: 'set' | 'get';
  pipelined: boolean;
}

function lines(cfg: Config): Line[] {
  const p = `-P${cfg.pipeline}`;
  return [
    { label: 'SET', test: 'set', pipelined: false },
    { label: 'GET', test: 'get', pipelined: false },
    { label: `SET ${p}`, test: 'set', pipelined: true },
    { label: `GET ${p}`, test: 'get', pipelined: true },
  ];
}

function benchmarkArgs(cfg: Config, port: string, tests: string, requests: number, pipelined: boolean): string[] {
  return [
    ...['-h', '127.0.0.1', '-p', port, '-c', String(cfg.clients), '-n', String(requests)],
    ...['-r', String(cfg.keyspace), '-d', String(cfg.valueSize)],
    ...(pipelined ? ['-P', String(cfg.pipeline)] : []),
    ...['-t', tests, '--csv'],
  ];
}

/** Requests one run of `line` sends. */
const requestsOf = (cfg: Config, line: Line): number => (line.pipelined ? cfg.pipelinedRequests : cfg.requests);
const lineArgs = (cfg: Config, port: string, line: Line): string[] => benchmarkArgs(cfg, port, line.test, requestsOf(cfg, line), line.pipelined);
const warmupArgs = (cfg: Config, port: string): string[] => benchmarkArgs(cfg, port, 'set,get', cfg.warmup, false);

/** How to start one server in `dir`; `display` is the command with $PORT/$DIR for the report. */
interface Launch {
  command: string;
  args: string[];
  display: string[];
}

interface Target {
  key: string;
  label: string;
  /** For column headings. */
  short: string;
  prepare(dir: string, port: number, statusPort: number, nodeFlags: string[]): Promise<Launch>;
}

function redisArgs(port: string, dir: string): string[] {
  return ['--port', port, '--bind', '127.0.0.1', '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--dir', dir];
}

const quoteEmpty = (args: string[]): string[] => args.map((a) => (a === '' ? '""' : a));

function redisTarget(key: string, label: string, short: string): Target {
  return {
    key,
    label,
    short,
    prepare: async (dir, port) => ({
      command: 'redis-server',
      args: redisArgs(String(port), dir),
      display: ['redis-server', ...quoteEmpty(redisArgs('$PORT', '$DIR'))],
    }),
  };
}

/** The bench's tdekv config; `encryption` adds lines to [security.encryption], `tail` whole sections. */
export function tdekvToml(dir: string, port: string, statusPort: string, encryption: string[] = [], tail: string[] = []): string {
  return [
    '[server]',
    `addr = "127.0.0.1:${port}"`,
    `status-addr = "127.0.0.1:${statusPort}"`,
    '[storage]',
    `data-dir = "${dir}/data"`,
    'sync-writes = "everysec"',
    '[security.encryption]',
    'data-encryption-method = "aes256-ctr"',
    ...encryption,
    '[security.encryption.master-key]',
    'type = "file"',
    `path = "${dir}/master.key"`,
    '[log]',
    'level = "warn"',
    ...tail,
    '',
  ].join('\n');
}

const FLOOR_SERVER = fileURLToPath(new URL('./node-floor-server.js', import.meta.url));

const nodeFloorTarget: Target = {
  key: 'node-floor',
  label: 'node floor (stores nothing)',
  short: 'floor',
  prepare: async (_dir, port) => ({
    command: process.execPath,
    args: [FLOOR_SERVER, String(port)],
    display: ['node', 'dist/bench/node-floor-server.js', '$PORT'],
  }),
};

const tdekvTarget: Target = {
  key: 'tdekv',
  label: 'tdekv aes256-ctr',
  short: 'tdekv',
  async prepare(dir, port, statusPort, nodeFlags) {
    await promisify(execFile)(process.execPath, [CLI, 'keygen', '--out', join(dir, 'master.key')]);
    const configFile = join(dir, 'tdekv.toml');
    await writeFile(configFile, tdekvToml(dir, String(port), String(statusPort)));
    return {
      command: process.execPath,
      args: [...nodeFlags, CLI, 'serve', '--config', configFile],
      display: ['node', ...nodeFlags, 'dist/src/cli/main.js', 'serve', '--config', '$DIR/tdekv.toml'],
    };
  },
};

interface LineResult extends BenchLine {
  seconds: number;
  /** The server's CPU time during the run ÷ wall time (100 = one core busy). */
  cpuPercent: number | undefined;
  /** The server's minor page faults during the run per 1,000 requests. */
  faultsPerThousand: number | undefined;
  /** CPU time of the server's main thread during the run per request, µs. */
  mainUsPerRequest: number | undefined;
}

interface ServerResult {
  label: string;
  short: string;
  display: string[];
  lines: Map<string, LineResult>;
  startSeconds?: number;
  readyBy?: string;
  peakRssKiB?: number;
  stopSeconds?: number;
  exit?: string;
  /** Clean means exit code 0 after SIGTERM (or redis-server's own clean shutdown). */
  cleanExit?: boolean;
  outputTail?: string;
  pid?: number;
  error?: string;
  /** 1-minute load average when the server started → stopped. */
  load?: [number, number];
}

/** Starts `target` in a fresh dir, runs the warm-up and `runLines`, stops it. Never throws. */
async function measure(ctx: BenchContext, cfg: Config, target: Target, runLines: Line[], nodeFlags: string[] = []): Promise<ServerResult> {
  const dir = await ctx.tempDir(`server-${target.key}`);
  const result: ServerResult = { label: target.label, short: target.short, display: [], lines: new Map() };
  const loadBefore = loadavg()[0]!;
  let server: RunningServer | undefined;
  try {
    const [port, statusPort] = (await freePorts(2)) as [number, number];
    const launch = await target.prepare(dir, port, statusPort, nodeFlags);
    result.display = launch.display;
    ctx.progress(`${target.label}: starting on 127.0.0.1:${port}`);
    server = await startServer({ name: target.label, command: launch.command, args: launch.args, port, cwd: dir, startTimeoutSeconds: cfg.startSeconds });
    result.pid = server.pid;
    result.startSeconds = server.startSeconds;
    result.readyBy = server.readyBy;
    ctx.progress(`${target.label}: ready after ${server.startSeconds.toFixed(2)} s (${server.readyBy}); warm-up`);
    await runRedisBenchmark(warmupArgs(cfg, String(port)), cfg.benchTimeoutSeconds);
    for (const line of runLines) {
      const before = await procStats(server.pid);
      const t = performance.now();
      const csv = await runRedisBenchmark(lineArgs(cfg, String(port), line), cfg.benchTimeoutSeconds);
      const seconds = (performance.now() - t) / 1000;
      const after = await procStats(server.pid);
      const r = csv.get(line.test.toUpperCase());
      if (!r) throw new Error(`redis-benchmark printed no ${line.test.toUpperCase()} line (got ${[...csv.keys()].join(', ')})`);
      const cpuPercent = before && after ? ((after.cpuSeconds - before.cpuSeconds) / seconds) * 100 : undefined;
      const faultsPerThousand = before && after ? ((after.minorFaults - before.minorFaults) * 1000) / requestsOf(cfg, line) : undefined;
      const mainUsPerRequest = before && after ? ((after.mainThreadCpuSeconds - before.mainThreadCpuSeconds) * 1e6) / requestsOf(cfg, line) : undefined;
      result.lines.set(line.label, { ...r, seconds, cpuPercent, faultsPerThousand, mainUsPerRequest });
      ctx.progress(`${target.label}: ${line.label} ${fmtInt(r.rps)} ops/s, p50 ${r.p50Ms} ms, ${seconds.toFixed(1)} s`);
    }
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
    ctx.progress(`${target.label}: FAILED: ${result.error.split('\n')[0]}`);
  } finally {
    if (server) {
      result.peakRssKiB = (await procStats(server.pid))?.peakRssKiB;
      const stopped = await stopServer(server, cfg.stopSeconds);
      result.stopSeconds = stopped.seconds;
      result.cleanExit = !stopped.killed && stopped.exit.code === 0;
      result.exit = `${describeExit(stopped.exit)}${stopped.killed ? ` (SIGKILL: no exit ${cfg.stopSeconds} s after SIGTERM)` : ''}`;
      if (!result.cleanExit || result.error) result.outputTail = server.output();
    }
    result.load = [loadBefore, loadavg()[0]!];
    await ctx.removeTempDir(dir);
  }
  return result;
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtMs = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '' : n.toFixed(3));
const lastLines = (text: string, n: number): string[] => text.trimEnd().split('\n').slice(-n);

async function run(ctx: BenchContext): Promise<void> {
  const cfg = config();
  const [redisVersion, benchmarkVersion] = await Promise.all([toolVersion('redis-server'), toolVersion('redis-benchmark')]);
  const missing = [redisVersion ? '' : 'redis-server', benchmarkVersion ? '' : 'redis-benchmark'].filter((m) => m !== '');
  if (missing.length > 0) {
    throw new Error(
      `${missing.join(' and ')} not found on PATH; the server benchmark needs both. On Debian/Ubuntu: ` +
        `apt-get install redis-tools redis-server (redis-tools has redis-benchmark), then stop the service it starts ` +
        `(systemctl disable --now redis-server): the benchmark starts its own.`,
    );
  }
  ctx.line(`  redis-server     ${redisVersion}`);
  ctx.line(`  redis-benchmark  ${benchmarkVersion}`);

  const all = lines(cfg);
  const subject =
    cfg.standIn === 'redis-server' ? redisTarget('standin', 'stand-in redis-server', 'stand-in') : cfg.standIn === 'node-floor' ? nodeFloorTarget : tdekvTarget;
  const peer = redisTarget('redis', 'redis-server', 'redis');
  // Rounds alternate the servers, so a slow minute of a shared machine hits both, and the
  // median per line drops a disturbed run (one run per line swung by 1.5× here).
  const peerRuns: ServerResult[] = [];
  const subjectRuns: ServerResult[] = [];
  for (let round = 1; round <= cfg.rounds; round++) {
    if (cfg.rounds > 1) ctx.progress(`round ${round} of ${cfg.rounds}`);
    peerRuns.push(await measure(ctx, cfg, peer, all));
    subjectRuns.push(await measure(ctx, cfg, subject, all));
  }

  report(ctx, cfg, all, medianOf(peerRuns, all), medianOf(subjectRuns, all));
  if (cfg.rounds > 1) reportRounds(ctx, all, peerRuns, subjectRuns);
  reportMainThread(ctx, all, peerRuns, subjectRuns);
  if (cfg.cpuProfDir !== undefined) {
    if (cfg.standIn) ctx.line(`TDEKV_BENCH_SERVER_CPU_PROF ignored: the subject is a ${cfg.standIn} stand-in`);
    else await profile(ctx, cfg, cfg.cpuProfDir, all[2]!);
  }
}

/** One result per server: each line's median run by ops/s; the worst of stops and exits, the highest RSS. */
function medianOf(runs: ServerResult[], all: Line[]): ServerResult {
  const first = runs[0]!;
  const last = runs.at(-1)!;
  const lines = new Map<string, LineResult>();
  for (const line of all) {
    const results = runs.map((r) => r.lines.get(line.label)).filter((r): r is LineResult => r !== undefined);
    results.sort((a, b) => a.rps - b.rps);
    const median = results[Math.floor((results.length - 1) / 2)];
    if (median) lines.set(line.label, median);
  }
  const failed = runs.find((r) => r.error !== undefined || r.cleanExit === false);
  const rss = runs.map((r) => r.peakRssKiB).filter((x): x is number => x !== undefined);
  return {
    ...(failed ?? last),
    lines,
    ...(rss.length > 0 ? { peakRssKiB: Math.max(...rss) } : {}),
    ...(first.load && last.load ? { load: [first.load[0], last.load[1]] as [number, number] } : {}),
  };
}

/** Each round's ratio per line, so the spread behind the medians is visible. */
function reportRounds(ctx: BenchContext, all: Line[], peerRuns: ServerResult[], subjectRuns: ServerResult[]): void {
  ctx.table({
    title: 'ratio per round (the table above reports each line\'s median run)',
    notes: ['loadavg: at the first server start → the second server stop of the round.'],
    columns: ['round', ...all.map((l) => l.label), 'loadavg'],
    rows: peerRuns.map((peer, i) => {
      const subject = subjectRuns[i]!;
      return [
        String(i + 1),
        ...all.map((l) => {
          const a = subject.lines.get(l.label);
          const b = peer.lines.get(l.label);
          return a && b ? (a.rps / b.rps).toFixed(2) : '-';
        }),
        peer.load && subject.load ? `${peer.load[0].toFixed(1)} → ${subject.load[1].toFixed(1)}` : '',
      ];
    }),
  });
}

/**
 * Each server's main-thread CPU per request, median over the rounds (and their range): it
 * leaves out the time the thread waits for a core, which ops/s count, so it tells a server's
 * own work from the contention for cores on a shared machine.
 */
function reportMainThread(ctx: BenchContext, all: Line[], peerRuns: ServerResult[], subjectRuns: ServerResult[]): void {
  const perLine = (runs: ServerResult[], line: Line): number[] =>
    runs
      .map((r) => r.lines.get(line.label)?.mainUsPerRequest)
      .filter((x): x is number => x !== undefined)
      .sort((a, b) => a - b);
  /** The lower median of sorted values, as medianOf picks a line's median run. */
  const median = (sorted: number[]): number => sorted[Math.floor((sorted.length - 1) / 2)]!;
  const cell = (values: number[]): string => {
    if (values.length === 0) return '-';
    return values.length === 1 ? median(values).toFixed(2) : `${median(values).toFixed(2)} (${values[0]!.toFixed(2)}–${values.at(-1)!.toFixed(2)})`;
  };
  const ratio = (line: Line): string => {
    const a = perLine(subjectRuns, line);
    const b = perLine(peerRuns, line);
    return a.length === 0 || b.length === 0 ? '-' : (median(a) / median(b)).toFixed(2);
  };
  const subject = subjectRuns[0]!;
  const peer = peerRuns[0]!;
  ctx.table({
    title: 'main thread CPU per request, µs (median of the rounds, and their range)',
    notes: [
      'user + system CPU time of the thread that runs the event loop and the commands (/proc/PID/task/PID/stat) during a line ÷ its requests;',
      '  unlike ops/s it leaves out the time the thread waits for a core: it tells the work from the contention for cores.',
    ],
    columns: ['server', ...all.map((l) => l.label)],
    rows: [
      [peer.label, ...all.map((l) => cell(perLine(peerRuns, l)))],
      [subject.label, ...all.map((l) => cell(perLine(subjectRuns, l)))],
      [`${subject.short} ÷ ${peer.short}`, ...all.map(ratio)],
    ],
  });
}

function report(ctx: BenchContext, cfg: Config, all: Line[], peer: ServerResult, subject: ServerResult): void {
  const n = (x: number): string => x.toLocaleString('en-US');
  const rows = all.map((line) => {
    const a = subject.lines.get(line.label);
    const b = peer.lines.get(line.label);
    const ratio = a && b ? a.rps / b.rps : undefined;
    const p99Ok = a && b ? a.p99Ms <= TARGET_P99_FACTOR * b.p99Ms : false;
    return [
      line.label,
      ratio === undefined ? 'n/a' : ratio >= targetRatio(line) && p99Ok ? 'PASS' : 'MISS',
      b ? fmtInt(b.rps) : '-',
      a ? fmtInt(a.rps) : '-',
      ratio === undefined ? '-' : ratio.toFixed(2),
      fmtMs(b?.p50Ms),
      fmtMs(a?.p50Ms),
      fmtMs(b?.p99Ms),
      fmtMs(a?.p99Ms),
    ];
  });
  ctx.table({
    title: `redis-benchmark: ${subject.label} vs ${peer.label} (appendonly yes, appendfsync everysec)`,
    notes: [
      `${cfg.clients} clients, ${n(cfg.requests)} requests per line (${n(cfg.pipelinedRequests)} with -P${cfg.pipeline}), random keys from a keyspace of`,
      `  ${n(cfg.keyspace)} (-r), ${cfg.valueSize}-byte values (-d). Servers one at a time on 127.0.0.1, each in a fresh temp dir;`,
      `  per server an unreported warm-up (${n(cfg.warmup)} SET + GET), then the lines top to bottom, one redis-benchmark run each;`,
      `  ${cfg.rounds} round(s) alternating the servers, each line showing its median run.`,
      `ratio = ${subject.label} ops/s ÷ ${peer.label} ops/s; PASS: ratio ≥ 0.7 (≥ 0.5 with -P) and p99 ≤ ${TARGET_P99_FACTOR}× ${peer.label}'s. Latencies are redis-benchmark's, per request`,
      `  (with -P a request waits for its whole pipeline). redis-benchmark shares the machine's cores with the server.`,
    ],
    columns: ['line', 'target', `${peer.label} ops/s`, `${subject.label} ops/s`, 'ratio', `p50 ms ${peer.short}`, `p50 ms ${subject.short}`, `p99 ms ${peer.short}`, `p99 ms ${subject.short}`],
    rows,
  });

  const cpu = (r: ServerResult, line: Line): string => {
    const l = r.lines.get(line.label);
    if (l?.cpuPercent === undefined) return '';
    return l.faultsPerThousand === undefined ? l.cpuPercent.toFixed(0) : `${l.cpuPercent.toFixed(0)} (${l.faultsPerThousand.toFixed(0)})`;
  };
  ctx.table({
    title: 'servers',
    notes: [
      `CPU % = the server process's user + system CPU time during a line ÷ the line's wall time (100 = one core busy);`,
      `  in parentheses its minor page faults per 1,000 requests (first writes to fresh memory: ~11 µs each on a small VM).`,
      `peak RSS = VmHWM just before SIGTERM. exit: after SIGTERM (tdekv should drain, fsync and exit 0).`,
      `loadavg = the machine's 1-minute load average at start → stop: the server and redis-benchmark account for about 2;`,
      `  more means other work shared the cores and both ops/s and the ratio are unreliable.`,
    ],
    columns: ['server', 'ready by', 'start s', ...all.map((l) => `CPU % ${l.label}`), 'peak RSS MiB', 'stop s', 'loadavg', 'exit'],
    rows: [peer, subject].map((r) => [
      r.label,
      r.readyBy ?? '',
      r.startSeconds === undefined ? '' : r.startSeconds.toFixed(2),
      ...all.map((l) => cpu(r, l)),
      r.peakRssKiB === undefined ? '' : (r.peakRssKiB / 1024).toFixed(1),
      r.stopSeconds === undefined ? '' : r.stopSeconds.toFixed(2),
      r.load ? `${r.load[0].toFixed(1)} → ${r.load[1].toFixed(1)}` : '',
      r.exit ?? 'not started',
    ]),
  });

  ctx.line();
  ctx.line('commands ($PORT: a free port per server, $DIR: a fresh temp dir per server):');
  const port = '$PORT';
  ctx.line(`  ${peer.display.join(' ') || 'redis-server (not started)'}`);
  if (!cfg.standIn) ctx.line(`  node dist/src/cli/main.js keygen --out $DIR/master.key`);
  ctx.line(`  ${subject.display.join(' ') || `${subject.label} (not started)`}`);
  ctx.line(`  redis-benchmark ${warmupArgs(cfg, port).join(' ')}    # warm-up, not reported`);
  for (const line of all) ctx.line(`  redis-benchmark ${lineArgs(cfg, port, line).join(' ')}`);
  if (!cfg.standIn) {
    ctx.line('$DIR/tdekv.toml ($STATUS_PORT: another free port):');
    for (const l of tdekvToml('$DIR', port, '$STATUS_PORT').trimEnd().split('\n')) ctx.line(`  ${l}`);
  }

  ctx.line();
  ctx.line(`targets (issue 11): ${subject.label} ≥ 0.7× ${peer.label} ops/s without pipelining, ≥ 0.5× with; p99 ≤ ${TARGET_P99_FACTOR}× on every line`);
  for (const [i, row] of rows.entries()) {
    const line = all[i]!;
    const what = row[1] === 'n/a' ? 'no result (a server failed)' : `${row[4]}× (target ≥ ${targetRatio(line)}), p99 ${row[8]} ms vs ${row[7]} ms (target ≤ ${TARGET_P99_FACTOR}×)`;
    ctx.line(`${row[1]!.padEnd(4)}  ${row[0]}: ${what}`);
  }
  for (const r of [peer, subject]) {
    if (r.error) {
      // A start failure carries the server's output in the message: keep its end, where the error is.
      const [first, ...rest] = r.error.trimEnd().split('\n');
      ctx.line(`FAILED ${r.label}: ${first}`);
      for (const l of rest.slice(-15)) ctx.line(`  | ${l}`);
    }
    if (r.outputTail && r.outputTail.trim() !== '') {
      ctx.line(`${r.label} output (last lines):`);
      for (const l of lastLines(r.outputTail, 15)) ctx.line(`  | ${l}`);
    }
  }
}

/** One more subject server under --cpu-prof for a warm-up and `line`; the profile stays in `dir`. */
async function profile(ctx: BenchContext, cfg: Config, dir: string, line: Line): Promise<void> {
  await mkdir(dir, { recursive: true });
  const flags = ['--cpu-prof', `--cpu-prof-dir=${dir}`];
  const r = await measure(ctx, cfg, tdekvTarget, [line], flags);
  ctx.line();
  const measured = r.lines.get(line.label);
  if (!measured || r.pid === undefined) {
    ctx.line(`cpu profile: the profiled run failed: ${r.error ?? 'no result'}`);
    return;
  }
  // Node names profiles CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile.
  const file = (await readdir(dir)).find((f) => f.endsWith('.cpuprofile') && f.split('.')[3] === String(r.pid));
  if (!file) {
    ctx.line(`cpu profile: none written to ${dir} (${r.exit ?? ''}); Node writes it only when the process exits on its own, not when killed by a signal`);
    return;
  }
  const summary = await summariseProfile(join(dir, file), DIST_ROOT);
  // The table left-aligns its second column, so the area table pads its numbers itself.
  const pct = (x: SelfTime): string => (x.share * 100).toFixed(1).padStart(5);
  const notes = [
    `${join(dir, file)}: the whole server process (start, warm-up, ${line.label} at ${fmtInt(measured.rps)} ops/s under the profiler, shutdown),`,
    `  ${summary.samples.toLocaleString('en-US')} samples over ${(summary.totalMs / 1000).toFixed(1)} s. Self time: time in the function itself, not its callees;`,
    `  native work (crypto, fs, sockets) counts under the JS function that called into it or as (program).`,
  ];
  ctx.table({
    title: 'tdekv CPU profile, self time by area',
    notes,
    columns: ['area', 'self %', 'self ms'],
    rows: summary.areas.slice(0, PROFILE_TOP).map((x) => [x.name, pct(x), x.ms.toFixed(0)]),
  });
  ctx.table({
    title: `tdekv CPU profile, top ${PROFILE_TOP} functions by self time`,
    // A rank first: the table blanks a first cell equal to the one above, and names repeat.
    // Name and place share the other left-aligned column.
    columns: ['#', 'function  where', 'self %', 'self ms'],
    rows: summary.functions.slice(0, PROFILE_TOP).map((x, i) => [String(i + 1), `${x.name}  ${x.where}`.trimEnd(), pct(x).trim(), x.ms.toFixed(0)]),
  });
}

export const bench: Bench = {
  name: 'server',
  description: 'redis-benchmark SET/GET against tdekv serve (aes256-ctr) and redis-server (appendfsync everysec)',
  run,
};
