/**
 * Real server processes for the integration tests: tdekv (`tdekv serve`) or Debian's
 * redis-server, so every command test can first be checked against real Redis and then
 * hold tdekv to the same replies (TDEKV_IT_TARGET=redis|tdekv, default tdekv).
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach } from 'node:test';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { stringify, type TomlTable } from 'smol-toml';
import { CLI } from './cli.js';

export type TargetKind = 'tdekv' | 'redis';

/** Which server the command tests run against. */
export function target(): TargetKind {
  const t = process.env['TDEKV_IT_TARGET'] ?? 'tdekv';
  if (t !== 'tdekv' && t !== 'redis') throw new Error(`TDEKV_IT_TARGET must be "tdekv" or "redis", not ${JSON.stringify(t)}`);
  return t;
}

/** `{ skip }` option for node:test: the case only makes sense against tdekv. */
export function tdekvOnly(): { skip: string | false } {
  return { skip: target() !== 'tdekv' && 'tdekv only' };
}

export const REDIS_SERVER = '/usr/bin/redis-server';
export const REDIS_CLI = '/usr/bin/redis-cli';

/** Mirrors tdekv's `[security]` cert-path/key-path/ca-path: with `caPath` clients must present a certificate. */
export interface ServerTls {
  certPath: string;
  keyPath: string;
  caPath?: string;
}

export interface CommonOptions {
  /** A directory to work in, owned by the caller (kept on stop); by default a fresh temp dir removed on stop. */
  dir?: string;
  env?: NodeJS.ProcessEnv;
  requirepass?: string;
  tls?: ServerTls;
  /** tdekv `server.max-clients`, redis `--maxclients`. */
  maxClients?: number;
  /** The largest bulk string: tdekv `server.max-request-size`, redis `--proto-max-bulk-len` (at least 1 MiB there). */
  maxBulkBytes?: number;
  /** Milliseconds to wait for readiness. */
  readyTimeoutMs?: number;
}

export interface TdekvOptions extends CommonOptions {
  /** Deep-merged over the default config (nested TOML tables as objects; `undefined` deletes a key). */
  settings?: TomlTable | Record<string, unknown>;
  /** Extra TOML text appended verbatim after the generated config. */
  config?: string;
  /** Replaces the whole generated config (for invalid-config tests). */
  rawConfig?: string;
  /** `storage.data-dir`; default `<dir>/data`. */
  dataDir?: string;
}

export interface RedisServerOptions extends CommonOptions {
  /** Extra `redis-server` arguments. */
  args?: string[];
}

export interface ServerHandle {
  kind: TargetKind;
  host: '127.0.0.1';
  port: number;
  statusPort?: number;
  dir: string;
  dataDir?: string;
  configPath?: string;
  pid: number;
  /** Everything the process logged so far (stderr, and stdout for redis-server). */
  stderr(): string;
  /** Resolves with the exit code (null after a signal) once the process is gone. */
  exited: Promise<number | null>;
  /** SIGTERM (or `signal`), await exit, return the exit code; disconnects every client made by `client()`. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** SIGKILL and await exit. */
  kill(): Promise<void>;
  /** An ioredis client (no reconnects), disconnected by stop()/kill(). */
  client(opts?: RedisOptions): Redis;
  /** A raw RESP connection for byte-level assertions, closed by stop()/kill(). */
  raw(opts?: { tls?: ConnectionOptions }): Promise<RawConnection>;
}

type TomlObject = Record<string, unknown>;

function isPlainObject(v: unknown): v is TomlObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Deep merge where `undefined` in `patch` deletes the key. */
export function mergeToml(base: TomlObject, patch: TomlObject): TomlObject {
  const out: TomlObject = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete out[k];
    else if (isPlainObject(v) && isPlainObject(out[k])) out[k] = mergeToml(out[k] as TomlObject, v);
    else out[k] = v;
  }
  return out;
}

export function defaultTdekvSettings(): TomlObject {
  return {
    server: { addr: '127.0.0.1:0', 'status-addr': '127.0.0.1:0' },
    storage: { 'data-dir': 'data', 'sync-writes': 'everysec' },
    security: {
      encryption: {
        'data-encryption-method': 'aes256-ctr',
        'master-key': { type: 'file', path: 'master.key' },
      },
    },
  };
}

/** Live children, killed synchronously if the test process exits without stopping them. */
const live = new Set<ChildProcess>();
/** Temp dirs still to remove; whatever is left when the process exits goes with it. */
const tempDirs = new Set<string>();
function killLive(): void {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
}

/** A fresh temp dir, removed by `removeTempDir` or, failing that, when the process exits. */
export async function makeTempDir(prefix = 'tdekv-it-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}
process.on('exit', killLive);
// A test process interrupted by a signal (Ctrl-C, a runner giving up) would otherwise leave
// its servers running with no parent. Not SIGPIPE: Node ignores it so that writes to closed
// sockets, which these tests provoke, fail with EPIPE instead.
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.once(signal, () => {
    killLive();
    process.exit(code);
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') return reject(new Error('no port'));
      srv.close(() => resolve(addr.port));
    });
  });
}

interface Spawned {
  child: ChildProcess;
  log: () => string;
  exited: Promise<number | null>;
  /** Resolves with the first line matching, rejects if the process exits first or on timeout. */
  waitForLine(match: (line: string) => boolean, timeoutMs: number, what: string): Promise<string>;
}

function spawnTracked(cmd: string, args: string[], cwd: string, env?: NodeJS.ProcessEnv): Spawned {
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let log = '';
  const lineListeners = new Set<(line: string) => void>();
  let partial = '';
  const onData = (d: Buffer): void => {
    const s = d.toString();
    log += s;
    partial += s;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) for (const l of lineListeners) l(line);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    // 'close' rather than 'exit': all output is captured by then.
    child.on('close', (code) => {
      live.delete(child);
      exitCode = code;
      resolve(code);
    });
    child.on('error', (err) => {
      live.delete(child);
      log += `\n[spawn error] ${err.message}\n`;
      exitCode = null;
      resolve(null);
    });
  });
  const waitForLine = (match: (line: string) => boolean, timeoutMs: number, what: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        lineListeners.delete(listener);
      };
      const listener = (line: string): void => {
        if (match(line)) {
          done();
          resolve(line);
        }
      };
      for (const line of log.split('\n')) if (match(line)) return resolve(line);
      lineListeners.add(listener);
      const timer = setTimeout(() => {
        done();
        child.kill('SIGKILL');
        reject(new Error(`${what}: not ready after ${timeoutMs} ms; output so far:\n${log}`));
      }, timeoutMs);
      void exited.then((code) => {
        if (!lineListeners.has(listener)) return;
        done();
        reject(new Error(`${what}: exited with code ${String(code ?? exitCode)} before becoming ready; output:\n${log}`));
      });
    });
  return { child, log: () => log, exited, waitForLine };
}

function makeHandle(
  kind: TargetKind,
  sp: Spawned,
  fields: { port: number; statusPort?: number; dir: string; ownsDir: boolean; dataDir?: string; configPath?: string },
): ServerHandle {
  const clients = new Set<Redis>();
  const raws = new Set<RawConnection>();
  let stopping: Promise<number | null> | undefined;
  const closeClients = (): void => {
    for (const c of clients) c.disconnect();
    clients.clear();
    for (const r of raws) r.destroy();
    raws.clear();
  };
  const finish = async (signal: NodeJS.Signals): Promise<number | null> => {
    closeClients();
    if (sp.child.exitCode === null && sp.child.signalCode === null) sp.child.kill(signal);
    const timer = setTimeout(() => sp.child.kill('SIGKILL'), 20_000);
    try {
      return await sp.exited;
    } finally {
      clearTimeout(timer);
      if (fields.ownsDir) await removeTempDir(fields.dir);
    }
  };
  return {
    kind,
    host: '127.0.0.1',
    port: fields.port,
    ...(fields.statusPort !== undefined ? { statusPort: fields.statusPort } : {}),
    dir: fields.dir,
    ...(fields.dataDir !== undefined ? { dataDir: fields.dataDir } : {}),
    ...(fields.configPath !== undefined ? { configPath: fields.configPath } : {}),
    pid: sp.child.pid ?? -1,
    stderr: sp.log,
    exited: sp.exited,
    stop: (signal: NodeJS.Signals = 'SIGTERM') => (stopping ??= finish(signal)),
    kill: async () => {
      await (stopping ??= finish('SIGKILL'));
    },
    client(opts: RedisOptions = {}): Redis {
      const c = new Redis({
        host: '127.0.0.1',
        port: fields.port,
        // A test must see a dropped connection, never a silent reconnect.
        retryStrategy: () => null,
        maxRetriesPerRequest: 0,
        ...opts,
      });
      // Failures surface through the command promises the tests await; without a listener
      // ioredis would print every connection error.
      c.on('error', () => {});
      clients.add(c);
      return c;
    },
    async raw(opts: { tls?: ConnectionOptions } = {}): Promise<RawConnection> {
      const r = await RawConnection.open(fields.port, opts.tls);
      raws.add(r);
      return r;
    },
  };
}

async function ownDir(dir: string | undefined, prefix: string): Promise<{ dir: string; ownsDir: boolean }> {
  if (dir !== undefined) {
    await mkdir(dir, { recursive: true });
    return { dir, ownsDir: false };
  }
  return { dir: await makeTempDir(prefix), ownsDir: true };
}

/** The settings a common option implies for tdekv. */
function tdekvCommonSettings(options: CommonOptions): TomlObject {
  const out: TomlObject = {};
  const server: TomlObject = {};
  if (options.maxClients !== undefined) server['max-clients'] = options.maxClients;
  if (options.maxBulkBytes !== undefined) server['max-request-size'] = options.maxBulkBytes;
  if (Object.keys(server).length > 0) out['server'] = server;
  const security: TomlObject = {};
  if (options.requirepass !== undefined) security['requirepass'] = options.requirepass;
  if (options.tls !== undefined) {
    security['cert-path'] = options.tls.certPath;
    security['key-path'] = options.tls.keyPath;
    if (options.tls.caPath !== undefined) security['ca-path'] = options.tls.caPath;
  }
  if (Object.keys(security).length > 0) out['security'] = security;
  return out;
}

/** Writes the config (and the master key if the dir has none) without starting anything. */
export async function prepareTdekv(options: TdekvOptions = {}): Promise<{ dir: string; ownsDir: boolean; configPath: string; dataDir: string }> {
  const { dir, ownsDir } = await ownDir(options.dir, 'tdekv-it-');
  try {
    const keyPath = join(dir, 'master.key');
    if (!existsSync(keyPath)) {
      const r = spawnSync(process.execPath, [CLI, 'keygen', '--out', keyPath], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`tdekv keygen failed (${String(r.status)}): ${r.stderr}`);
    }
    let settings = mergeToml(defaultTdekvSettings(), tdekvCommonSettings(options));
    if (options.dataDir !== undefined) settings = mergeToml(settings, { storage: { 'data-dir': options.dataDir } });
    if (options.settings !== undefined) settings = mergeToml(settings, options.settings as TomlObject);
    const text = options.rawConfig ?? stringify(settings) + '\n' + (options.config ?? '') + '\n';
    const configPath = join(dir, 'tdekv.toml');
    await writeFile(configPath, text);
    const dd = String((settings['storage'] as TomlObject | undefined)?.['data-dir'] ?? 'data');
    return { dir, ownsDir, configPath, dataDir: isAbsolute(dd) ? dd : join(dir, dd) };
  } catch (err) {
    if (ownsDir) await removeTempDir(dir);
    throw err;
  }
}

/**
 * Runs `tdekv serve` without waiting for readiness: for configs that must make it fail.
 * The caller must `await` `exited` (or kill it).
 */
export async function launchTdekv(options: TdekvOptions = {}): Promise<{ exited: Promise<number | null>; stderr: () => string; kill: () => void; dir: string }> {
  const prep = await prepareTdekv(options);
  const sp = spawnTracked(process.execPath, [CLI, 'serve', '--config', prep.configPath], prep.dir, options.env);
  const exited = sp.exited.then(async (code) => {
    if (prep.ownsDir) await removeTempDir(prep.dir);
    return code;
  });
  return { exited, stderr: sp.log, kill: () => sp.child.kill('SIGKILL'), dir: prep.dir };
}

/** Runs `tdekv serve`, which must exit on its own (bad config, locked dir, wrong key). */
export async function runTdekvToExit(options: TdekvOptions, timeoutMs = 15_000): Promise<{ code: number | null; stderr: string }> {
  const p = await launchTdekv(options);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const code = await Promise.race([p.exited, timeout]);
  clearTimeout(timer);
  if (code === 'timeout') {
    p.kill();
    await p.exited;
    assert.fail(`tdekv serve was expected to exit but kept running; log:\n${p.stderr()}`);
  }
  return { code, stderr: p.stderr() };
}

function parsePort(addr: unknown, what: string, log: string): number {
  const m = typeof addr === 'string' ? /:(\d+)$/.exec(addr) : null;
  if (m === null) throw new Error(`tdekv "ready" line has no usable ${what} (${JSON.stringify(addr)}); output:\n${log}`);
  return Number(m[1]);
}

export async function startTdekv(options: TdekvOptions = {}): Promise<ServerHandle> {
  const prep = await prepareTdekv(options);
  const sp = spawnTracked(process.execPath, [CLI, 'serve', '--config', prep.configPath], prep.dir, options.env);
  const isReady = (line: string): boolean => {
    if (!line.startsWith('{')) return false;
    try {
      return (JSON.parse(line) as { msg?: unknown }).msg === 'ready';
    } catch {
      return false;
    }
  };
  let line: string;
  try {
    line = await sp.waitForLine(isReady, options.readyTimeoutMs ?? 20_000, 'tdekv serve');
  } catch (err) {
    if (prep.ownsDir) await removeTempDir(prep.dir);
    throw err;
  }
  const ready = JSON.parse(line) as { addr?: unknown; statusAddr?: unknown };
  return makeHandle('tdekv', sp, {
    port: parsePort(ready.addr, 'addr', sp.log()),
    statusPort: parsePort(ready.statusAddr, 'statusAddr', sp.log()),
    dir: prep.dir,
    ownsDir: prep.ownsDir,
    dataDir: prep.dataDir,
    configPath: prep.configPath,
  });
}

/**
 * redis-server with the settings that match tdekv: one database (tdekv has only db 0),
 * no persistence, loopback only. Redis cannot listen on port 0, so a port is picked first
 * and the start retried if another process took it meanwhile.
 */
export async function startRedis(options: RedisServerOptions = {}): Promise<ServerHandle> {
  if (!existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} is not installed (apt-get install redis-server)`);
  const { dir, ownsDir } = await ownDir(options.dir, 'tdekv-it-redis-');
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const args = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--databases', '1', '--daemonize', 'no', '--logfile', ''];
    if (options.tls !== undefined) {
      args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', options.tls.certPath, '--tls-key-file', options.tls.keyPath);
      if (options.tls.caPath !== undefined) args.push('--tls-ca-cert-file', options.tls.caPath, '--tls-auth-clients', 'yes');
      else args.push('--tls-auth-clients', 'no');
    } else {
      args.push('--port', String(port));
    }
    if (options.requirepass !== undefined) args.push('--requirepass', options.requirepass);
    if (options.maxClients !== undefined) args.push('--maxclients', String(options.maxClients));
    if (options.maxBulkBytes !== undefined) args.push('--proto-max-bulk-len', String(options.maxBulkBytes));
    args.push(...(options.args ?? []));
    const sp = spawnTracked(REDIS_SERVER, args, dir, options.env);
    try {
      await sp.waitForLine((l) => l.includes('Ready to accept connections'), options.readyTimeoutMs ?? 10_000, 'redis-server');
      return makeHandle('redis', sp, { port, dir, ownsDir });
    } catch (err) {
      lastError = err;
      sp.child.kill('SIGKILL');
      await sp.exited;
      if (!/Address already in use/.test(sp.log())) break;
    }
  }
  if (ownsDir) await removeTempDir(dir);
  throw lastError;
}

/** Starts the server `target()` names; tdekv-specific settings are ignored for redis. */
export async function startTarget(options: TdekvOptions & RedisServerOptions = {}): Promise<ServerHandle> {
  return target() === 'redis' ? startRedis(options) : startTdekv(options);
}

/** `INFO server`'s redis_version as [major, minor, patch]. */
export async function serverVersion(c: Redis): Promise<[number, number, number]> {
  const info = await c.info('server');
  const m = /^redis_version:(\d+)\.(\d+)\.(\d+)/m.exec(info);
  if (m === null) return [0, 0, 0];
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** Polls `check` until it returns true; the deadline makes a never-true condition fail the test. */
export async function waitUntil(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 5_000, intervalMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Parsed INFO text: section name (lower case) → field → value. */
export function parseInfo(text: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let section: Map<string, string> | undefined;
  for (const line of text.split('\r\n')) {
    if (line.startsWith('# ')) {
      section = new Map();
      out.set(line.slice(2).trim().toLowerCase(), section);
    } else if (line !== '' && section !== undefined) {
      const i = line.indexOf(':');
      if (i > 0) section.set(line.slice(0, i), line.slice(i + 1));
    }
  }
  return out;
}

// ---- raw RESP ----------------------------------------------------------------------------

export type RespValue =
  | { t: 'simple'; v: string }
  | { t: 'error'; v: string }
  | { t: 'int'; v: bigint }
  | { t: 'bulk'; v: Buffer }
  | { t: 'null' }
  | { t: 'array'; v: RespValue[] }
  | { t: 'map'; v: [RespValue, RespValue][] }
  | { t: 'set'; v: RespValue[] }
  | { t: 'double'; v: string }
  | { t: 'bool'; v: boolean }
  | { t: 'verbatim'; v: string }
  | { t: 'bignum'; v: string }
  | { t: 'push'; v: RespValue[] };

/** One RESP2/RESP3 value from `buf` at `pos`, or undefined if the bytes are incomplete. */
export function parseResp(buf: Buffer, pos = 0): { value: RespValue; end: number } | undefined {
  const lineEnd = buf.indexOf('\r\n', pos);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buf[pos]!);
  const line = buf.toString('latin1', pos + 1, lineEnd);
  const next = lineEnd + 2;
  const aggregate = (n: number, start: number): { items: RespValue[]; end: number } | undefined => {
    const items: RespValue[] = [];
    let p = start;
    for (let i = 0; i < n; i++) {
      const r = parseResp(buf, p);
      if (r === undefined) return undefined;
      items.push(r.value);
      p = r.end;
    }
    return { items, end: p };
  };
  switch (type) {
    case '+':
      return { value: { t: 'simple', v: line }, end: next };
    case '-':
      return { value: { t: 'error', v: line }, end: next };
    case ':':
      return { value: { t: 'int', v: BigInt(line) }, end: next };
    case '_':
      return { value: { t: 'null' }, end: next };
    case ',':
      return { value: { t: 'double', v: line }, end: next };
    case '#':
      return { value: { t: 'bool', v: line === 't' }, end: next };
    case '(':
      return { value: { t: 'bignum', v: line }, end: next };
    case '$':
    case '=': {
      const n = Number(line);
      if (n < 0) return { value: { t: 'null' }, end: next };
      if (buf.length < next + n + 2) return undefined;
      const data = buf.subarray(next, next + n);
      const end = next + n + 2;
      return type === '$' ? { value: { t: 'bulk', v: Buffer.from(data) }, end } : { value: { t: 'verbatim', v: data.toString() }, end };
    }
    case '*':
    case '~':
    case '>': {
      const n = Number(line);
      if (n < 0) return { value: { t: 'null' }, end: next };
      const r = aggregate(n, next);
      if (r === undefined) return undefined;
      const t = type === '*' ? 'array' : type === '~' ? 'set' : 'push';
      return { value: { t, v: r.items }, end: r.end };
    }
    case '%': {
      const r = aggregate(Number(line) * 2, next);
      if (r === undefined) return undefined;
      const pairs: [RespValue, RespValue][] = [];
      for (let i = 0; i < r.items.length; i += 2) pairs.push([r.items[i]!, r.items[i + 1]!]);
      return { value: { t: 'map', v: pairs }, end: r.end };
    }
    default:
      throw new Error(`unknown RESP type byte ${JSON.stringify(type)} in ${JSON.stringify(buf.toString('latin1', pos, Math.min(buf.length, pos + 80)))}`);
  }
}

/** A RESP command as bytes (an array of bulk strings). */
export function encodeCommand(...args: (string | Buffer | number)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** A socket that hands out whole replies with their exact bytes. */
export class RawConnection {
  #buf = Buffer.alloc(0);
  #waiters: { resolve: (r: { raw: Buffer; value: RespValue }) => void; reject: (e: Error) => void }[] = [];
  #ended = false;
  /** Resolves when the server closes the connection (or it is destroyed). */
  readonly closed: Promise<void>;

  private constructor(private readonly socket: Socket) {
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.#ended = true;
        for (const w of this.#waiters.splice(0)) {
          w.reject(new Error(`connection closed before a complete reply; unparsed bytes: ${JSON.stringify(this.#buf.toString('latin1'))}`));
        }
        resolve();
      });
    });
    socket.on('error', () => {
      // 'close' follows and settles everything.
    });
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#drain();
    });
  }

  static open(port: number, tls?: ConnectionOptions): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = tls !== undefined ? tlsConnect({ host: '127.0.0.1', port, ...tls }) : netConnect({ host: '127.0.0.1', port });
      const ev = tls !== undefined ? 'secureConnect' : 'connect';
      socket.once(ev, () => {
        socket.off('error', reject);
        resolve(new RawConnection(socket));
      });
      socket.once('error', reject);
    });
  }

  #drain(): void {
    while (this.#waiters.length > 0 && this.#buf.length > 0) {
      const r = parseResp(this.#buf);
      if (r === undefined) return;
      const raw = Buffer.from(this.#buf.subarray(0, r.end));
      this.#buf = this.#buf.subarray(r.end);
      this.#waiters.shift()!.resolve({ raw, value: r.value });
    }
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** The next complete reply. */
  reply(timeoutMs = 5_000): Promise<{ raw: Buffer; value: RespValue }> {
    if (this.#ended && this.#buf.length === 0) return Promise.reject(new Error('connection already closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no complete reply within ${timeoutMs} ms; buffered: ${JSON.stringify(this.#buf.toString('latin1'))}`)), timeoutMs);
      this.#waiters.push({
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.#drain();
    });
  }

  /** Sends one command and returns the exact bytes of its reply. */
  async command(...args: (string | Buffer | number)[]): Promise<string> {
    this.send(encodeCommand(...args));
    return (await this.reply()).raw.toString('latin1');
  }

  /** Every byte that arrives until the server closes the connection. */
  async readUntilClosed(timeoutMs = 5_000): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`server did not close the connection within ${timeoutMs} ms; got ${JSON.stringify(this.#buf.toString('latin1'))}`)), timeoutMs);
    });
    try {
      await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return this.#buf.toString('latin1');
  }

  destroy(): void {
    this.socket.destroy();
  }
}

// ---- TLS material ------------------------------------------------------------------------

export function hasOpenssl(): boolean {
  return spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;
}

export interface TestCerts {
  dir: string;
  caPath: string;
  ca: string;
  serverCertPath: string;
  serverKeyPath: string;
  clientCertPath: string;
  clientKeyPath: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate from a CA the server does not trust. */
  strangerCert: string;
  strangerKey: string;
}

// EC keys: generating five RSA keys would take seconds of the suite's time budget.
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];

/** A throwaway CA, a server certificate for 127.0.0.1/localhost and client certificates. */
export async function makeCerts(dir: string): Promise<TestCerts> {
  await mkdir(dir, { recursive: true });
  const run = (args: string[]): void => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
  };
  const ca = (name: string): void => {
    run(['req', '-x509', ...EC_KEY, '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`]);
  };
  const leaf = (name: string, caName: string, ext: string): void => {
    run(['req', ...EC_KEY, '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    writeFileSync(join(dir, `${name}.ext`), ext);
    run(['x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`]);
  };
  ca('test-ca');
  ca('stranger-ca');
  leaf('server', 'test-ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'test-ca', 'extendedKeyUsage=clientAuth\n');
  leaf('stranger', 'stranger-ca', 'extendedKeyUsage=clientAuth\n');
  const read = (n: string): Promise<string> => readFile(join(dir, n), 'utf8');
  return {
    dir,
    caPath: join(dir, 'test-ca.pem'),
    ca: await read('test-ca.pem'),
    serverCertPath: join(dir, 'server.pem'),
    serverKeyPath: join(dir, 'server.key'),
    clientCertPath: join(dir, 'client.pem'),
    clientKeyPath: join(dir, 'client.key'),
    clientCert: await read('client.pem'),
    clientKey: await read('client.key'),
    strangerCert: await read('stranger.pem'),
    strangerKey: await read('stranger.key'),
  };
}

/** Asserts `p` rejects with exactly `message` (the server's error text, as ioredis passes it on). */
export async function rejectsWith(p: Promise<unknown>, message: string | RegExp): Promise<void> {
  let value: unknown;
  try {
    value = await p;
  } catch (err) {
    const got = (err as Error).message;
    if (typeof message === 'string') assert.equal(got, message, 'error reply');
    else assert.match(got, message, 'error reply');
    return;
  }
  assert.fail(`expected error ${JSON.stringify(String(message))}, got reply ${JSON.stringify(value)}`);
}

/**
 * One server (the TDEKV_IT_TARGET kind) for a whole test file, with a client, emptied
 * before each test; stopped after the file. Register at the top level of a test file;
 * `onStart` receives the server and client once they are up.
 */
export function sharedServer(onStart: (server: ServerHandle, client: Redis) => void = () => undefined): { readonly server: ServerHandle; readonly client: Redis } {
  let server: ServerHandle | undefined;
  let client: Redis | undefined;
  before(async () => {
    server = await startTarget();
    client = server.client();
    onStart(server, client);
  });
  after(async () => {
    await server?.stop();
  });
  beforeEach(async () => {
    await client?.flushall();
  });
  return {
    get server(): ServerHandle {
      assert.ok(server, 'server did not start');
      return server;
    },
    get client(): Redis {
      assert.ok(client, 'server did not start');
      return client;
    },
  };
}
