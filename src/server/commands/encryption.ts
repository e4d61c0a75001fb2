import { ENCRYPTION_STATES } from '../../lifecycle/lifecycle-status.js';
import type { LifecycleStatus, StateChange } from '../../lifecycle/lifecycle-status.js';
import type { ReplyWriter } from '../resp/reply-writer.js';
import { runSubcommand, spec, type CommandContext, type CommandSpec } from './command.js';
import { later } from './deferred.js';
import type { ReloadReport } from '../../lifecycle/encryption-lifecycle.js';

/*
 * ENCRYPTION: SQL Server's TDE administration (ALTER DATABASE … SET ENCRYPTION, ALTER DATABASE
 * ENCRYPTION KEY REGENERATE, sys.dm_database_encryption_keys) as one Redis-style container
 * command. The work is the lifecycle's (src/lifecycle); this module only maps it to RESP.
 */

type FieldValue = { int: number } | { num: number } | { text: string } | { percent: number } | { bool: boolean } | { ints: number[] } | { history: StateChange[] } | null;

/**
 * ENCRYPTION STATUS's fields, in order, named as SQL Server's sys.dm_database_encryption_keys
 * columns where it has one (snake_case), so that a DBA recognises them; the CLI reads them back
 * by these names.
 */
export const STATUS_FIELDS: ReadonlyArray<readonly [string, (s: LifecycleStatus) => FieldValue]> = [
  ['encryption_state', (s) => ({ int: s.encryptionState })],
  ['encryption_state_desc', (s) => ({ text: s.encryptionStateDesc })],
  ['encryption_scan_state', (s) => ({ int: s.scanState })],
  ['encryption_scan_state_desc', (s) => ({ text: s.scanStateDesc })],
  ['percent_complete', (s) => ({ percent: s.percentComplete })],
  ['scan_modify_date', (s) => textOrNull(s.scanModifyDate)],
  ['scan_bytes_done', (s) => ({ num: s.scanBytesDone })],
  ['scan_bytes_total', (s) => ({ num: s.scanBytesTotal })],
  ['scan_bytes_remaining', (s) => ({ num: s.scanBytesRemaining })],
  ['scan_rate_bytes_per_sec', (s) => ({ num: s.scanRateBytesPerSec })],
  ['eta_seconds', (s) => (s.etaSeconds === null ? null : { num: s.etaSeconds })],
  ['scan_rate_limit', (s) => ({ num: s.scanRateLimit })],
  ['scan_auto', (s) => ({ bool: s.scanAuto })],
  ['scan_error', (s) => textOrNull(s.scanError)],
  ['files_off_current_key', (s) => ({ int: s.filesOffCurrentKey })],
  ['encryption_method', (s) => ({ text: s.method })],
  ['key_algorithm', (s) => textOrNull(s.keyAlgorithm)],
  ['key_length', (s) => (s.keyLength === null ? null : { int: s.keyLength })],
  ['data_key_id', (s) => (s.dataKeyId === null ? null : { int: s.dataKeyId })],
  ['data_key_create_date', (s) => textOrNull(s.dataKeyCreateDate)],
  ['data_key_regenerate_date', (s) => textOrNull(s.dataKeyRegenerateDate)],
  ['master_key_type', (s) => ({ text: s.masterKeyType })],
  ['master_key_identity', (s) => ({ text: s.masterKeyIdentity })],
  ['last_retired_key_ids', (s) => ({ ints: s.lastRetiredKeyIds })],
  ['backups_in_progress', (s) => ({ int: s.backupsInProgress })],
  ['history', (s) => ({ history: s.history })],
];

function textOrNull(v: string | null): FieldValue {
  return v === null ? null : { text: v };
}

function stateName(n: number): string {
  return ENCRYPTION_STATES[n] ?? String(n);
}

function writeValue(out: ReplyWriter, v: FieldValue): void {
  if (v === null) return out.nullBulk();
  if ('int' in v) return out.integer(v.int);
  // Byte counts and rates are integral in practice; a fraction (a rate) stays a double rather than being cut.
  if ('num' in v) return Number.isSafeInteger(v.num) ? out.integer(v.num) : out.double(v.num);
  if ('text' in v) return out.bulk(v.text);
  // Two decimals, as SQL Server shows percent_complete; RESP2 has no doubles, so there it is the text.
  if ('percent' in v) return out.proto === 3 ? out.double(Number(v.percent.toFixed(2))) : out.bulk(v.percent.toFixed(2));
  if ('bool' in v) return out.bool(v.bool);
  if ('ints' in v) {
    out.arrayHeader(v.ints.length);
    for (const id of v.ints) out.integer(id);
    return;
  }
  out.arrayHeader(v.history.length);
  for (const h of v.history) {
    out.mapHeader(6);
    out.bulk('at');
    out.bulk(h.at);
    out.bulk('from');
    out.integer(h.from);
    out.bulk('from_desc');
    out.bulk(stateName(h.from));
    out.bulk('to');
    out.integer(h.to);
    out.bulk('to_desc');
    out.bulk(stateName(h.to));
    out.bulk('reason');
    out.bulk(h.reason);
  }
}

/** The status as a RESP3 map (RESP2: a flat array of name, value, …). */
export function writeStatus(out: ReplyWriter, status: LifecycleStatus): void {
  out.mapHeader(STATUS_FIELDS.length);
  for (const [name, get] of STATUS_FIELDS) {
    out.bulk(name);
    writeValue(out, get(status));
  }
}

function writeReload(out: ReplyWriter, report: ReloadReport): void {
  out.mapHeader(3);
  out.bulk('applied');
  out.bulkArray(report.applied);
  out.bulk('needs_restart');
  out.bulkArray(report.needsRestart);
  out.bulk('status');
  writeStatus(out, report.status);
}

const HELP = [
  'ENCRYPTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:',
  'STATUS',
  '    Return the encryption state, the encryption scan and its progress, the data key and the master key (no key material).',
  'RELOAD',
  '    Re-read [security.encryption] from the config file and apply it online (a new method starts the scan; a new',
  '    master-key with the old one as previous-master-key re-seals the key dictionary). Settings that need a restart are',
  '    reported by name and not applied.',
  'REGENERATE',
  '    Make a new data key now and start the scan that rewrites every file under it.',
  'SUSPEND',
  '    Pause the running encryption scan (it stays paused across a restart).',
  'RESUME',
  '    Continue a suspended or aborted encryption scan.',
  'RETIRE',
  '    Drop the data keys no file uses any more; return their ids.',
  'HELP',
  '    Print this help.',
];

const SUBCOMMANDS: Record<string, (ctx: CommandContext) => void> = {
  status: (ctx) => writeStatus(ctx.out, ctx.server.encryption.status()),
  reload: (ctx) => later(ctx, 'encryption|reload', () => ctx.server.reloadEncryption(), writeReload),
  regenerate: (ctx) => later(ctx, 'encryption|regenerate', () => ctx.server.encryption.regenerate(), writeStatus),
  suspend: (ctx) => later(ctx, 'encryption|suspend', () => ctx.server.encryption.suspend(), writeStatus),
  resume: (ctx) => later(ctx, 'encryption|resume', () => ctx.server.encryption.resume(), writeStatus),
  retire: (ctx) =>
    later(ctx, 'encryption|retire', () => ctx.server.encryption.retire(), (out, ids) => {
      out.arrayHeader(ids.length);
      for (const id of ids) out.integer(id);
    }),
  help: (ctx) => {
    ctx.out.arrayHeader(HELP.length);
    for (const line of HELP) ctx.out.simple(line);
  },
};

export const ENCRYPTION_SUBCOMMANDS: readonly string[] = Object.keys(SUBCOMMANDS);

function encryption(ctx: CommandContext, args: Buffer[]): void {
  runSubcommand(ctx, args, 'encryption', SUBCOMMANDS, () => 2);
}

export const ENCRYPTION_COMMANDS: CommandSpec[] = [
  {
    ...spec('encryption', -2, ['admin', 'noscript', 'no_multi', 'loading', 'stale'], [0, 0, 0], 'server', 'Administers the online encryption lifecycle: status, reload, regenerate, suspend, resume, retire.', encryption),
    subcommandNames: ENCRYPTION_SUBCOMMANDS,
  },
];
