import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import cliProgress from 'cli-progress';
import { loadConfig } from '../config/config.js';
import type { TdekvConfig } from '../config/types.js';
import { TdekvError, errnoCode } from '../errors.js';
import { STATUS_FIELDS } from '../server/commands/encryption.js';
import { formatHostPort, parseHostPort, type HostPort } from '../util/host-port.js';
import type { Output } from './ctl.js';
import { RespClient, RespError, type RespReply } from './resp-client.js';

/*
 * `tdekv encryption status|reload|regenerate|suspend|resume|retire`: the ENCRYPTION commands of
 * a running server, from the same config file the server reads (its address, TLS and
 * passwords), with a progress bar while the encryption scan runs.
 */

export const ENCRYPTION_ACTIONS = ['status', 'reload', 'regenerate', 'suspend', 'resume', 'retire'] as const;
export type EncryptionAction = (typeof ENCRYPTION_ACTIONS)[number];

export interface EncryptionCliOptions {
  config: string;
  /** status: keep showing progress until the scan ends. */
  watch?: boolean;
  /** reload/regenerate/resume: false = do not wait for the scan they start. */
  wait?: boolean;
  json?: boolean;
  /** host:port, when server.addr does not say where to connect (port 0, a wildcard behind NAT …). */
  addr?: string;
  /** Trust anchor for the server's certificate (default: the server's own certificate, pinned). */
  tlsCa?: string;
  /** Client certificate and key, when the server asks for one (`[security] ca-path`). */
  tlsCert?: string;
  tlsKey?: string;
  /** Milliseconds between two status polls while watching. */
  intervalMs?: number;
}

/** How the progress is shown; the CLI picks a bar on a TTY and plain lines otherwise. */
export interface ProgressView {
  update(s: WireStatus): void;
  stop(): void;
}

/** ENCRYPTION STATUS as read back from its RESP2 flat array. */
export type WireStatus = Record<string, RespReply>;

const SCAN_RUNNING = 'RUNNING';
const OFFLINE_HINT =
  'If the server is stopped, the offline commands do the same on the data dir: tdekv data-key reencrypt|rotate|retire --config <file> (they take the data dir lock, so only while no server runs).';

export async function encryptionCommand(action: EncryptionAction, opts: EncryptionCliOptions, io: Output, view?: ProgressView): Promise<void> {
  const config = await loadConfig(opts.config);
  const client = await connectToServer(config, opts);
  try {
    await authenticate(client, config);
    const reply = await command(client, ['ENCRYPTION', action.toUpperCase()]);
    let status: WireStatus | undefined;
    if (action === 'status') status = decodeMap(reply);
    else if (action === 'retire') {
      const ids = Array.isArray(reply) ? reply.map(String) : [];
      if (opts.json) io.out(JSON.stringify({ retiredKeyIds: ids.map(Number) }));
      else io.out(ids.length === 0 ? 'no data key to retire: every data key is current or used by a file' : `retired data keys: ${ids.join(', ')}`);
      return;
    } else if (action === 'reload') {
      const report = decodeMap(reply);
      status = decodeMap(report['status'] ?? null);
      const applied = stringList(report['applied']);
      const needsRestart = stringList(report['needs_restart']);
      if (opts.json) io.out(JSON.stringify({ applied, needsRestart }));
      else {
        io.out(applied.length === 0 ? 'reload: nothing to apply' : `reload applied: ${applied.join(', ')}`);
        if (needsRestart.length > 0) io.out(`not applied, these need a restart: ${needsRestart.join(', ')}`);
      }
    } else status = decodeMap(reply);
    const follow = action === 'status' ? opts.watch === true : action !== 'suspend' && opts.wait !== false;
    if (!follow || status['encryption_scan_state_desc'] !== SCAN_RUNNING) {
      printStatus(status, opts.json === true, io);
      return;
    }
    const final = await watch(client, status, opts.intervalMs ?? 1000, view ?? defaultView(io));
    printStatus(final, opts.json === true, io);
    if (final['encryption_scan_state_desc'] === 'ABORTED') {
      throw new TdekvError('SERVER_REFUSED', `the encryption scan was aborted: ${String(final['scan_error'] ?? 'no reason given')}. Fix the cause, then run tdekv encryption resume --config ${opts.config}`);
    }
  } finally {
    client.close();
  }
}

/** Polls STATUS until the scan is no longer running (completed, aborted, suspended, or none). */
async function watch(client: RespClient, first: WireStatus, intervalMs: number, view: ProgressView): Promise<WireStatus> {
  let s = first;
  try {
    view.update(s);
    while (s['encryption_scan_state_desc'] === SCAN_RUNNING) {
      await new Promise((r) => setTimeout(r, intervalMs));
      s = decodeMap(await command(client, ['ENCRYPTION', 'STATUS']));
      view.update(s);
    }
  } finally {
    view.stop();
  }
  return s;
}

function defaultView(io: Output): ProgressView {
  return process.stderr.isTTY ? barView() : plainView(io);
}

/** A live bar on the terminal (stderr, so that stdout stays the result). */
export function barView(): ProgressView {
  const bar = new cliProgress.SingleBar(
    {
      format: '{state} [{bar}] {pct}% | {done} of {total} | {rate}/s | ETA {eta_text}',
      hideCursor: true,
      barsize: 30,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(s) {
      const p = progressFields(s);
      const payload = { state: p.state, pct: p.percent, done: p.done, total: p.total, rate: p.rate, eta_text: p.eta };
      const value = Math.round(num(s['percent_complete']) * 100);
      if (!started) {
        bar.start(10_000, value, payload);
        started = true;
      } else bar.update(value, payload);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** One line per poll when something changed: for logs, pipes and CI. */
export function plainView(io: Output): ProgressView {
  let last = '';
  return {
    update(s) {
      const line = progressLine(s);
      if (line !== last) io.err(line);
      last = line;
    },
    stop() {},
  };
}

function progressFields(s: WireStatus): { state: string; percent: string; done: string; total: string; rate: string; eta: string } {
  const eta = s['eta_seconds'];
  return {
    state: `${String(s['encryption_state_desc'])}/${String(s['encryption_scan_state_desc'])}`,
    percent: num(s['percent_complete']).toFixed(2),
    done: humanBytes(num(s['scan_bytes_done'])),
    total: humanBytes(num(s['scan_bytes_total'])),
    rate: humanBytes(num(s['scan_rate_bytes_per_sec'])),
    eta: eta === null || eta === undefined ? 'unknown' : humanSeconds(num(eta)),
  };
}

/** "ENCRYPTION_IN_PROGRESS/RUNNING 42.10% 1.2 MiB of 3.0 MiB, 512.0 KiB/s, ETA 4 s" */
export function progressLine(s: WireStatus): string {
  const p = progressFields(s);
  return `${p.state} ${p.percent}% ${p.done} of ${p.total}, ${p.rate}/s, ETA ${p.eta}`;
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[i]}`;
}

function humanSeconds(n: number): string {
  const s = Math.max(0, Math.round(n));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function num(v: RespReply | undefined): number {
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : 0;
}

function stringList(v: RespReply | undefined): string[] {
  return Array.isArray(v) ? v.map(String) : [];
}

/** A RESP2 flat array (name, value, …) back into an object. */
export function decodeMap(reply: RespReply): WireStatus {
  if (!Array.isArray(reply) || reply.length % 2 !== 0) throw new TdekvError('SERVER_REFUSED', `unexpected reply from the server: ${JSON.stringify(reply)}`);
  const out: WireStatus = {};
  for (let i = 0; i < reply.length; i += 2) out[String(reply[i])] = reply[i + 1] ?? null;
  return out;
}

function printStatus(s: WireStatus, json: boolean, io: Output): void {
  if (json) {
    io.out(JSON.stringify(toJson(s)));
    return;
  }
  const width = Math.max(...STATUS_FIELDS.map(([name]) => name.length));
  for (const [name] of STATUS_FIELDS) {
    const v = s[name];
    if (name === 'history') {
      io.out(`${name.padEnd(width)}  ${Array.isArray(v) && v.length > 0 ? '' : '(none)'}`);
      for (const h of Array.isArray(v) ? v : []) {
        const e = decodeMap(h);
        io.out(`  ${String(e['at'])}  ${String(e['from_desc'])} -> ${String(e['to_desc'])}  ${String(e['reason'])}`);
      }
      continue;
    }
    const shown = v === null || v === undefined ? '-' : Array.isArray(v) ? (v.length === 0 ? '-' : v.join(', ')) : String(v);
    io.out(`${name.padEnd(width)}  ${shown}`);
  }
}

function toJson(s: WireStatus): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) out[k] = k === 'history' && Array.isArray(v) ? v.map((h) => decodeMap(h)) : v;
  return out;
}

async function command(client: RespClient, args: string[]): Promise<RespReply> {
  const reply = await client.call(...args);
  if (reply instanceof RespError) {
    const hint = reply.message.startsWith('NOPERM')
      ? '. Set [security] admin-password in the config file this command reads (it authenticates as AUTH admin <admin-password>).'
      : '';
    throw new TdekvError('SERVER_REFUSED', `the server refused ${args.join(' ')}: ${reply.message}${hint}`);
  }
  return reply;
}

/** As the admin user when the config has admin-password (the ENCRYPTION commands need it then), else as the default user. */
async function authenticate(client: RespClient, config: TdekvConfig): Promise<void> {
  const { adminPassword, requirepass } = config.security;
  const args = adminPassword !== undefined ? ['AUTH', 'admin', adminPassword] : requirepass !== undefined ? ['AUTH', requirepass] : undefined;
  if (args === undefined) return;
  const reply = await client.call(...args);
  if (reply instanceof RespError) {
    const setting = adminPassword !== undefined ? 'security.admin-password' : 'security.requirepass';
    throw new TdekvError('SERVER_REFUSED', `the server refused the password of ${setting}: ${reply.message}. Is it the config file the server runs with?`);
  }
}

/** Where the server listens, as a client reaches it: a wildcard address is reached on loopback. */
export function clientAddress(config: TdekvConfig, addr: string | undefined): HostPort {
  const a = addr !== undefined ? parseHostPort(addr) : config.server.addr;
  const host = a.host === '0.0.0.0' ? '127.0.0.1' : a.host === '::' ? '::1' : a.host;
  if (a.port === 0) {
    throw new TdekvError('INVALID_ARGUMENT', `server.addr = "${formatHostPort(config.server.addr)}" has port 0 (the server picked a free port at start): pass --addr host:port with the port it logged in its "ready" line`);
  }
  return { host, port: a.port };
}

async function connectToServer(config: TdekvConfig, opts: EncryptionCliOptions): Promise<RespClient> {
  const addr = clientAddress(config, opts.addr);
  const shown = formatHostPort(addr);
  const tls = config.security.tls !== undefined ? await tlsOptions(config, opts) : undefined;
  try {
    return await RespClient.connect({ host: addr.host, port: addr.port, ...(tls ?? {}), timeoutMs: 5_000, replyTimeoutMs: 120_000 });
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ECONNREFUSED' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENOTFOUND' || code === 'ECONNRESET') {
      throw new TdekvError('SERVER_UNREACHABLE', `no tdekv server answers at ${shown} (server.addr of ${opts.config}; ${code}). Start it with tdekv serve --config ${opts.config}. ${OFFLINE_HINT}`);
    }
    if (err instanceof TdekvError) throw err;
    throw new TdekvError('SERVER_UNREACHABLE', `cannot talk to the tdekv server at ${shown}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * The server's own certificate (security.cert-path) is pinned unless --tls-ca names a CA: the
 * CLI reads the same config on the same machine, and a pin needs no CA to have signed it.
 */
async function tlsOptions(config: TdekvConfig, opts: EncryptionCliOptions): Promise<{ tls: ConnectionOptions; checkPeer?: (s: TLSSocket) => void }> {
  const serverTls = config.security.tls!;
  const tls: ConnectionOptions = {};
  if (serverTls.caPath !== undefined) {
    if (opts.tlsCert === undefined || opts.tlsKey === undefined) {
      throw new TdekvError('INVALID_ARGUMENT', `the server asks clients for a certificate (security.ca-path = ${serverTls.caPath}): pass --tls-cert and --tls-key with a client certificate that CA signed`);
    }
  }
  if (opts.tlsCert !== undefined) tls.cert = await readFile(opts.tlsCert);
  if (opts.tlsKey !== undefined) tls.key = await readFile(opts.tlsKey);
  if (opts.tlsCa !== undefined) {
    tls.ca = await readFile(opts.tlsCa);
    return { tls };
  }
  const pinned = new X509Certificate(await readFile(serverTls.certPath));
  tls.rejectUnauthorized = false;
  return {
    tls,
    checkPeer: (socket) => {
      const peer = socket.getPeerX509Certificate();
      if (peer === undefined || peer.fingerprint256 !== pinned.fingerprint256) {
        throw new TdekvError('SERVER_REFUSED', `the server's TLS certificate is not security.cert-path (${serverTls.certPath}); pass --tls-ca with the CA that signed it, or check --addr`);
      }
    },
  };
}
