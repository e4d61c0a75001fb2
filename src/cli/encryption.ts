import cliProgress from 'cli-progress';
import { loadConfig } from '../config/config.js';
import { TdekvError } from '../errors.js';
import { STATUS_FIELDS } from '../server/commands/encryption.js';
import type { Output } from './ctl.js';
import { RespClient, type RespReply } from './resp-client.js';
import { authenticate, command, connectToServer, type AdminConnectionOptions } from './admin-connection.js';

/*
 * `tdekv encryption status|reload|regenerate|suspend|resume|retire`: the ENCRYPTION commands of
 * a running server, from the same config file the server reads (its address, TLS and
 * passwords), with a progress bar while the encryption scan runs.
 */

export const ENCRYPTION_ACTIONS = ['status', 'reload', 'regenerate', 'suspend', 'resume', 'retire'] as const;
export type EncryptionAction = (typeof ENCRYPTION_ACTIONS)[number];

export interface EncryptionCliOptions extends AdminConnectionOptions {
  /** status: keep showing progress until the scan ends. */
  watch?: boolean;
  /** reload/regenerate/resume: false = do not wait for the scan they start. */
  wait?: boolean;
  json?: boolean;
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
  const client = await connectToServer(config, opts, OFFLINE_HINT);
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

