/**
 * Process plumbing for the server benchmark (server-bench.ts): free ports, starting a server
 * and waiting until it answers PING, stopping it, /proc figures, and running redis-benchmark.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';

/** Bytes of a server's output kept for error messages: enough for a stack trace. */
const OUTPUT_TAIL_BYTES = 16 * 1024;
/** Linux reports utime/stime in clock ticks; USER_HZ is 100 on every architecture Node supports. */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * `n` distinct free ports on 127.0.0.1. All listeners stay open until every port is known,
 * otherwise the kernel may hand the same port out twice.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const server = createServer();
      servers.push(server);
      ports.push(
        await new Promise<number>((resolve, reject) => {
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => {
            const addr = server.address();
            if (addr === null || typeof addr === 'string') reject(new Error('listening on port 0 gave no port'));
            else resolve(addr.port);
          });
        }),
      );
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** True when a RESP PING on `port` gets `+PONG` within `timeoutMs`. Never throws. */
export function ping(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let reply = '';
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.setEncoding('latin1');
    // An array rather than an inline command: a RESP server need not parse inline commands.
    socket.once('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'));
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG\r\n'));
    });
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
  });
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunningServer {
  pid: number;
  child: ChildProcess;
  /** The last OUTPUT_TAIL_BYTES of stdout and stderr, interleaved. */
  output(): string;
  exited: Promise<Exit>;
  /** Seconds from spawn to the first answered PING (or the ready log line). */
  startSeconds: number;
  /** How readiness was seen: 'ping' or 'log'. */
  readyBy: 'ping' | 'log';
}

export interface ServerSpec {
  /** For messages: the command alone may just be node. */
  name: string;
  command: string;
  args: string[];
  port: number;
  cwd: string;
  startTimeoutSeconds: number;
}

/**
 * Spawns the server and resolves once it is ready: a PING answered on its port or a JSON log
 * line with "msg":"ready" (tdekv at level info), whichever comes first. Rejects with the
 * output's tail when the process exits first or the timeout passes (the process is killed).
 */
export async function startServer(spec: ServerSpec): Promise<RunningServer> {
  const started = performance.now();
  const child = spawn(spec.command, spec.args, { cwd: spec.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  let sawReadyLine = false;
  let exit: Exit | undefined;
  const keep = (chunk: Buffer): void => {
    const text = chunk.toString('utf8');
    // Only full lines can be parsed, so test the grown tail, not the chunk.
    if (!sawReadyLine && /"msg"\s*:\s*"ready"/.test(tail.slice(-256) + text)) sawReadyLine = true;
    tail = (tail + text).slice(-OUTPUT_TAIL_BYTES);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  let failure: Error | undefined;
  void spawnError.then((err) => (failure = err));

  const deadline = started + spec.startTimeoutSeconds * 1000;
  let readyBy: 'ping' | 'log' | undefined;
  while (readyBy === undefined) {
    if (failure) throw new Error(`${spec.name} did not start: ${failure.message}`);
    if (exit) throw new Error(`${spec.name} exited before it was ready (${describeExit(exit)}); output:\n${tail}`);
    if (sawReadyLine) readyBy = 'log';
    else if (await ping(spec.port, 500)) readyBy = 'ping';
    else if (performance.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      throw new Error(`${spec.name} not ready after ${spec.startTimeoutSeconds} s (TDEKV_BENCH_SERVER_START_SECONDS); killed; output:\n${tail}`);
    } else await new Promise((r) => setTimeout(r, 50));
  }
  if (child.pid === undefined) throw new Error(`${spec.name}: no pid`);
  return {
    pid: child.pid,
    child,
    output: () => tail,
    exited,
    startSeconds: (performance.now() - started) / 1000,
    readyBy,
  };
}

export function describeExit(e: Exit): string {
  return e.signal !== null ? `signal ${e.signal}` : `exit code ${e.code}`;
}

/** SIGTERM, then SIGKILL after `timeoutSeconds`; `killed` says the graceful stop did not finish. */
export async function stopServer(server: RunningServer, timeoutSeconds: number): Promise<{ exit: Exit; killed: boolean; seconds: number }> {
  const t = performance.now();
  server.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutSeconds * 1000)));
  const first = await Promise.race([server.exited, timedOut]);
  clearTimeout(timer);
  if (first !== 'timeout') return { exit: first, killed: false, seconds: (performance.now() - t) / 1000 };
  server.child.kill('SIGKILL');
  return { exit: await server.exited, killed: true, seconds: (performance.now() - t) / 1000 };
}

export interface ProcStats {
  /** VmHWM: peak resident set so far. */
  peakRssKiB: number;
  /** utime + stime over the process's life. */
  cpuSeconds: number;
  /**
   * Minor page faults over the process's life (all threads): first writes to fresh memory,
   * ~11 µs each on the VMs this bench runs on (docs/engine.md, "Memtable memory").
   */
  minorFaults: number;
  /**
   * utime + stime of the process's main thread (its task whose id is the pid): for Node and
   * redis-server, the thread that runs the event loop and every command.
   */
  mainThreadCpuSeconds: number;
}

/** From /proc (Linux); undefined elsewhere or once the process is gone. */
export async function procStats(pid: number): Promise<ProcStats | undefined> {
  try {
    const [status, stat, mainStat] = await Promise.all([
      readFile(`/proc/${pid}/status`, 'utf8'),
      readFile(`/proc/${pid}/stat`, 'utf8'),
      readFile(`/proc/${pid}/task/${pid}/stat`, 'utf8'),
    ]);
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    const fields = statFields(stat);
    const ticks = Number(fields[11]) + Number(fields[12]);
    const minorFaults = Number(fields[7]);
    const main = statFields(mainStat);
    const mainTicks = Number(main[11]) + Number(main[12]);
    if (!hwm || !Number.isFinite(ticks) || !Number.isFinite(minorFaults) || !Number.isFinite(mainTicks)) return undefined;
    return { peakRssKiB: Number(hwm[1]), cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND, minorFaults, mainThreadCpuSeconds: mainTicks / CLOCK_TICKS_PER_SECOND };
  } catch {
    return undefined;
  }
}

/** The fields of a /proc stat line after the command name (field 2), which may hold spaces and parentheses. */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** One line of redis-benchmark --csv. */
export interface BenchLine {
  rps: number;
  avgMs: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * Parses redis-benchmark --csv (Redis 7: "test","rps","avg_latency_ms","min_latency_ms",
 * "p50_latency_ms",...). Columns are found by header name, so a reordering does not
 * silently misreport.
 */
export function parseBenchmarkCsv(text: string): Map<string, BenchLine> {
  const rows = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('"'))
    .map((l) => l.split(',').map((c) => c.replace(/^"|"$/g, '')));
  const header = rows.shift();
  if (!header) throw new Error(`redis-benchmark printed no CSV:\n${text}`);
  const column = (name: string): number => {
    const i = header.indexOf(name);
    if (i < 0) throw new Error(`redis-benchmark CSV has no "${name}" column (header: ${header.join(',')}); redis-tools 7 expected`);
    return i;
  };
  const [test, rps, avg, p50, p99] = ['test', 'rps', 'avg_latency_ms', 'p50_latency_ms', 'p99_latency_ms'].map(column) as [number, number, number, number, number];
  const out = new Map<string, BenchLine>();
  for (const r of rows) {
    const num = (i: number): number => Number(r[i]);
    out.set(r[test] ?? '', { rps: num(rps), avgMs: num(avg), p50Ms: num(p50), p99Ms: num(p99) });
  }
  return out;
}

/** Runs redis-benchmark to completion; rejects with its stderr when it fails or hangs. */
export function runRedisBenchmark(args: string[], timeoutSeconds: number): Promise<Map<string, BenchLine>> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-benchmark', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-OUTPUT_TAIL_BYTES)));
    // A server that stops answering would leave redis-benchmark waiting forever.
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutSeconds * 1000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) reject(new Error(`redis-benchmark ${args.join(' ')}: no result after ${timeoutSeconds} s (TDEKV_BENCH_REDIS_TIMEOUT_SECONDS); killed`));
      else if (code !== 0) reject(new Error(`redis-benchmark ${args.join(' ')}: ${describeExit({ code, signal })}\n${stderr}${stdout}`));
      else {
        try {
          resolve(parseBenchmarkCsv(stdout));
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      }
    });
  });
}

/** First line of `command --version`, or undefined when the command is not installed. */
export function toolVersion(command: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(command, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.once('error', () => resolve(undefined));
    child.once('exit', (code) => resolve(code === 0 ? out.split('\n')[0]?.trim() : undefined));
  });
}
