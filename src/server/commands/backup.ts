import { isTdekvError } from '../../errors.js';
import type { FileFrame } from '../../env/encrypted-buffer-sink.js';
import type { BackupBegun } from '../backup-sessions.js';
import type { ReplyWriter } from '../resp/reply-writer.js';
import { replyError, runSubcommand, spec, type CommandContext, type CommandSpec } from './command.js';
import { later } from './deferred.js';

/*
 * BACKUP: the server's side of `tdekv backup full` (docs/backup.md). The backup tool begins a
 * session (a pinned version, the encryption scan held off), exports each file under a key it
 * chose and reads the ciphertext back in slices, then ends the session. The server never
 * sends a file's plaintext; the key a client sends is wiped once its file is exported.
 */

const HELP = [
  'BACKUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:',
  'BEGIN',
  '    Flush the memtable, pin the current version and hold off the encryption scan; return the session id, the',
  '    version\'s last sequence number, the method, the master key identity and the files (name, kind, size,',
  '    identity: a table\'s name, IV and size, for incremental backups).',
  'EXPORT <session> <file> <key-hex> <key-id> <iv-hex>',
  '    Start re-writing one file of the session under that AES-256 key, key id and IV (every block and record is',
  '    checked under its live key first) and reply QUEUED at once; at most 3 files exported and unread at a time.',
  'SIZE <session> <file>',
  '    Wait for the file\'s export and return its size (or the export\'s error).',
  'READ <session> <file> <offset> <length>',
  '    Wait for the file\'s export and return its bytes from offset (at most 8 MiB a call); after its last byte the',
  '    session lets the file go.',
  'END <session>',
  '    Release the version and let the encryption scan run again (closing the connection does the same).',
  'HELP',
  '    Print this help.',
];

function writeBegun(out: ReplyWriter, b: BackupBegun): void {
  out.mapHeader(5);
  out.bulk('session');
  out.bulk(b.session);
  out.bulk('sequence');
  out.integer(b.sequence);
  out.bulk('method');
  out.bulk(b.method);
  out.bulk('master_key');
  out.bulk(b.masterKey);
  out.bulk('files');
  out.arrayHeader(b.files.length);
  for (const f of b.files) {
    out.arrayHeader(4);
    out.bulk(f.name);
    out.bulk(f.kind);
    out.integer(f.size);
    if (f.identity === undefined) out.nullBulk();
    else out.bulk(f.identity);
  }
}

function hexArg(arg: Buffer, bytes: number, what: string): Buffer {
  const text = arg.toString('latin1');
  if (text.length !== bytes * 2 || !/^[0-9a-fA-F]+$/.test(text)) replyError(`ERR ${what} must be ${bytes * 2} hexadecimal characters`);
  return Buffer.from(text, 'hex');
}

function intArg(arg: Buffer, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const text = arg.toString('latin1');
  const n = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n > max) replyError(`ERR ${what} must be an integer from 0 to ${max}`);
  return n;
}

const ARITY: Record<string, number> = { begin: 2, export: 7, size: 4, read: 6, end: 3, help: 2 };

const SUBCOMMANDS: Record<string, (ctx: CommandContext, args: Buffer[]) => void> = {
  begin: (ctx) => later(ctx, 'backup|begin', () => ctx.server.backups.begin(ctx.client.id), writeBegun),
  export: (ctx, args) => {
    const frame: FileFrame = { method: 'aes256-ctr', key: hexArg(args[4]!, 32, 'the key'), keyId: intArg(args[5]!, 'the key id'), iv: hexArg(args[6]!, 16, 'the IV') };
    // The key's hex is a view into the connection's input: wiped there once parsed (frame.key is wiped after the export).
    args[4]!.fill(0);
    if (frame.keyId === 0) replyError('ERR the key id must not be 0 (0 means "no key" in the file dictionary)');
    ctx.server.backups.export(ctx.client.id, args[2]!.toString('latin1'), args[3]!.toString('latin1'), frame);
    ctx.out.simple('QUEUED');
  },
  size: (ctx, args) => later(ctx, 'backup|size', () => ctx.server.backups.size(ctx.client.id, args[2]!.toString('latin1'), args[3]!.toString('latin1')), (out, n) => out.integer(n)),
  read: (ctx, args) => {
    const [offset, length] = [intArg(args[4]!, 'the offset'), intArg(args[5]!, 'the length')];
    later(ctx, 'backup|read', () => ctx.server.backups.read(ctx.client.id, args[2]!.toString('latin1'), args[3]!.toString('latin1'), offset, length), (out, bytes) => out.bulk(bytes));
  },
  end: (ctx, args) => {
    ctx.server.backups.end(ctx.client.id, args[2]!.toString('latin1'));
    ctx.out.simple('OK');
  },
  help: (ctx) => {
    ctx.out.arrayHeader(HELP.length);
    for (const line of HELP) ctx.out.simple(line);
  },
};

export const BACKUP_SUBCOMMANDS: readonly string[] = Object.keys(SUBCOMMANDS);

function backup(ctx: CommandContext, args: Buffer[]): void {
  try {
    runSubcommand(ctx, args, 'backup', SUBCOMMANDS, (sub) => ARITY[sub]!);
  } catch (err) {
    // Session errors of the synchronous subcommands (READ, END) are TdekvErrors: one -ERR line.
    if (isTdekvError(err)) replyError(`ERR ${err.message}`);
    throw err;
  }
}

export const BACKUP_COMMANDS: CommandSpec[] = [
  {
    ...spec('backup', -2, ['admin', 'noscript', 'no_multi', 'loading', 'stale'], [0, 0, 0], 'server', 'Takes a consistent online backup: begin (pin a version), export and read its files under the backup\'s key, end.', backup),
    subcommandNames: BACKUP_SUBCOMMANDS,
  },
];
