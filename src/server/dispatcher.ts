import { performance } from 'node:perf_hooks';
import { isTdekvError } from '../errors.js';
import { LogRateLimit } from '../log/log-rate-limit.js';
import type { Logger } from '../log/logger.js';
import { ADMIN_COMMANDS } from './commands/admin.js';
import { ReplyError, isWord, type CommandContext, type CommandSpec, type DeferredReply } from './commands/command.js';
import { CONNECTION_COMMANDS } from './commands/connection.js';
import { ENCRYPTION_COMMANDS } from './commands/encryption.js';
import { BACKUP_COMMANDS } from './commands/backup.js';
import { HASH_COMMANDS } from './commands/hashes.js';
import { KEY_COMMANDS } from './commands/keys.js';
import { STRING_COMMANDS } from './commands/strings.js';
import { TRANSACTION_COMMANDS, TRANSACTION_CONTROL } from './commands/transactions.js';
import { WrongTypeError } from './keyspace/keyspace.js';
import type { CommandStat, ServerStats } from './server-stats.js';

export function commandTable(): Map<string, CommandSpec> {
  const table = new Map<string, CommandSpec>();
  for (const s of [...CONNECTION_COMMANDS, ...ADMIN_COMMANDS, ...ENCRYPTION_COMMANDS, ...BACKUP_COMMANDS, ...STRING_COMMANDS, ...KEY_COMMANDS, ...HASH_COMMANDS, ...TRANSACTION_COMMANDS]) table.set(s.name, s);
  return table;
}

/** Case-insensitive hash of a command name's bytes: finds the spec without making a string. */
function nameHash(b: Uint8Array): number {
  let h = b.length;
  for (let i = 0; i < b.length; i++) h = (Math.imul(h, 31) + (b[i]! | 0x20)) | 0;
  return h;
}

/** What the hot path needs of a command, looked up once. */
interface Entry {
  spec: CommandSpec;
  stat: CommandStat;
  write: boolean;
  noAuth: boolean;
  noMulti: boolean;
  /** Needs the admin user when `[security] admin-password` is set. */
  adminOnly: boolean;
  /** Reads the records at its key arguments (and fields at `spec.fieldArgs`): they are read ahead. */
  readsKeys: boolean;
}

/**
 * What `[security] admin-password` reserves for the admin user: the encryption lifecycle (SQL
 * Server asks CONTROL SERVER for TDE metadata), deleting everything, stopping the server, and
 * the server's configuration and internals. Names, not a flag: DEBUG and SHUTDOWN are listed
 * before tdekv has them, so they cannot arrive unguarded.
 */
export const ADMIN_ONLY_COMMANDS: ReadonlySet<string> = new Set(['encryption', 'backup', 'flushall', 'flushdb', 'shutdown', 'config', 'debug']);

/** Redis's `%.Ns` of an argument: at most `max` bytes, cut at the first NUL as C strings are. */
function cString(arg: Buffer, max: number): Buffer {
  const nul = arg.indexOf(0);
  return arg.subarray(0, Math.min(max, nul < 0 ? arg.length : nul));
}

/**
 * Redis's unknown-command error: the name (128 bytes at most) and quoted arguments while their text stays under
 * 128 bytes. With redact-info-log on, the arguments (user data) are left out, but the name stays so that a typo
 * can be seen; only its printable ASCII bytes are shown as themselves, any other byte as '?'.
 */
function unknownCommand(args: Buffer[], redact: boolean): string {
  const name = cString(args[0]!, 128);
  if (redact) {
    let shown = '';
    for (const b of name) shown += b >= 0x20 && b <= 0x7e ? String.fromCharCode(b) : '?';
    return `ERR unknown command '${shown}', with args beginning with: `;
  }
  const parts: Buffer[] = [];
  let len = 0;
  for (let i = 1; i < args.length && len < 128; i++) {
    const part = Buffer.concat([Buffer.from("'"), cString(args[i]!, 128 - len), Buffer.from("' ")]);
    parts.push(part);
    len += part.length;
  }
  return `ERR unknown command '${name.toString('utf8')}', with args beginning with: ${Buffer.concat(parts).toString('utf8')}`;
}

/**
 * Runs one command: authentication, lookup, arity, MULTI queueing, then the handler. An error
 * reply rewinds whatever the handler had started to write, so the stream stays well-formed.
 */
export class Dispatcher {
  readonly table: Map<string, CommandSpec>;
  readonly #logger: Logger;
  /** NOPERM refusals are logged at most once a second (a client can send them at will). */
  readonly #refusals = new LogRateLimit(1000);
  readonly #byHash = new Map<number, Entry[]>();
  readonly #entries = new Map<CommandSpec, Entry>();

  constructor(logger: Logger, stats: ServerStats) {
    this.table = commandTable();
    this.#logger = logger;
    for (const spec of this.table.values()) {
      const entry: Entry = {
        spec,
        stat: stats.command(spec.name),
        write: spec.flags.includes('write'),
        noAuth: spec.flags.includes('no_auth'),
        noMulti: spec.flags.includes('no_multi'),
        adminOnly: ADMIN_ONLY_COMMANDS.has(spec.name),
        readsKeys: spec.firstKey > 0 && (spec.flags.includes('readonly') || spec.flags.includes('write')),
      };
      this.#entries.set(spec, entry);
      const h = nameHash(Buffer.from(spec.name, 'latin1'));
      const list = this.#byHash.get(h);
      if (list === undefined) this.#byHash.set(h, [entry]);
      else list.push(entry);
    }
  }

  #lookup(name: Buffer): Entry | undefined {
    const list = this.#byHash.get(nameHash(name));
    if (list === undefined) return undefined;
    for (const e of list) if (isWord(name, e.spec.name)) return e;
    return undefined;
  }

  execute(ctx: CommandContext, args: Buffer[]): void {
    const client = ctx.client;
    const entry = this.#lookup(args[0]!);
    const spec = entry?.spec;
    client.lastCommand = spec?.name ?? 'unknown';
    if (!client.authenticated && !(entry?.noAuth ?? false)) return this.#reject(ctx, 'NOAUTH Authentication required.');
    if (spec === undefined) {
      // SHUTDOWN and DEBUG are not implemented; a non-admin is told what Redis tells it, so that it learns nothing either way.
      const name = args[0]!.toString('latin1').toLowerCase();
      if (ADMIN_ONLY_COMMANDS.has(name) && !client.admin && ctx.server.config.security.adminPassword !== undefined) return this.#refuse(ctx, name);
      return this.#reject(ctx, unknownCommand(args, ctx.server.config.security.redactInfoLog));
    }
    if ((spec.arity > 0 && args.length !== spec.arity) || args.length < -spec.arity) {
      return this.#reject(ctx, `ERR wrong number of arguments for '${spec.name}' command`);
    }
    if (entry!.adminOnly && !client.admin && ctx.server.config.security.adminPassword !== undefined) {
      const refused = refusedName(spec, args);
      if (refused !== undefined) return this.#refuse(ctx, refused);
    }
    if (client.multi !== undefined && entry!.noMulti) return this.#reject(ctx, 'ERR Command not allowed inside a transaction');
    if (client.multi !== undefined && !TRANSACTION_CONTROL.has(spec.name)) {
      client.multi.push(args);
      client.multiBytes += queuedBytes(args);
      ctx.out.simple('QUEUED');
      return;
    }
    if (this.readAhead() && this.#waitForDisk(ctx, entry!, args)) return;
    this.#run(ctx, entry!, args);
  }

  /** Whether a command whose keys are only on disk waits for their read on the thread pool now (`[server] read-ahead`). */
  readAhead: () => boolean = () => true;
  /** Commands waiting for their reads from disk; they run when these settle. */
  readonly #waiting = new Set<Promise<void>>();
  readonly #reads: Array<Promise<unknown>> = [];

  /**
   * A command that would read a block from disk (a key's record not in the row cache, and its
   * block not in the block cache) waits for that read on the thread pool and runs when it is
   * in, as a blocked command runs in Redis: the client's next commands wait behind it, other
   * clients go on. The command itself still runs synchronously, so it stays atomic and its
   * reply is the one it would have made; it reads from memory then, unless the block was
   * evicted meanwhile (then it reads it itself). EXEC waits for every key of its queued
   * commands. True when the command was made to wait.
   */
  #waitForDisk(ctx: CommandContext, entry: Entry, args: Buffer[]): boolean {
    const reads = this.#reads;
    try {
      if (entry.readsKeys) addReads(ctx, entry.spec, args, reads);
      else if (entry.spec.name === 'exec' && ctx.client.multi !== undefined && !ctx.client.multiFailed) {
        for (const queued of ctx.client.multi) {
          const e = this.#lookup(queued[0]!);
          if (e?.readsKeys === true) addReads(ctx, e.spec, queued, reads);
        }
      }
    } catch {
      // The lookup failed (the engine closed, a damaged table): the command meets the same
      // failure in its own lookup and replies with it.
      reads.length = 0;
      return false;
    }
    if (reads.length === 0) return false;
    const all = Promise.all(reads);
    reads.length = 0;
    ctx.server.stats.commandsWaitedForDisk++;
    const reply = all.then((): DeferredReply => () => this.#run(ctx, entry, args));
    ctx.defer(reply);
    // After the connection's own reaction to `reply`, which runs the command (or drops it when
    // its client has gone).
    const done = reply.then(() => {
      this.#waiting.delete(done);
    });
    this.#waiting.add(done);
    return true;
  }

  /** Resolves once no command waits for a read from disk (each has run, or found its client gone). */
  async idle(): Promise<void> {
    while (this.#waiting.size > 0) await Promise.all([...this.#waiting]);
  }

  /** Runs a queued command of a transaction (its checks were made when it was queued). */
  run(ctx: CommandContext, args: Buffer[]): void {
    const entry = this.#lookup(args[0]!);
    if (entry !== undefined) this.#run(ctx, entry, args);
  }

  #run(ctx: CommandContext, entry: Entry, args: Buffer[]): void {
    const { spec, stat } = entry;
    stat.calls++;
    ctx.server.stats.totalCommands++;
    const mark = ctx.out.mark();
    const started = performance.now();
    try {
      if (entry.write) ctx.server.checkWritable();
      spec.handler(ctx, args);
    } catch (err) {
      stat.failed++;
      ctx.out.rewind(mark);
      ctx.out.error(this.#errorText(err, spec));
    }
    stat.usec += Math.round((performance.now() - started) * 1000);
  }

  /** Redis 7.0's text for a command the user's ACL lacks (7.2 says `User <name> has no permissions …`). */
  #refuse(ctx: CommandContext, command: string): void {
    this.#refusals.run((suppressed) =>
      this.#logger.warn({ client: ctx.client.id, addr: ctx.client.addr, command, ...(suppressed > 0 ? { suppressed } : {}) }, 'command refused: it needs the admin user (AUTH admin <admin-password>)'),
    );
    this.#reject(ctx, `NOPERM this user has no permissions to run the '${command}' command`);
  }

  #reject(ctx: CommandContext, message: string): void {
    if (ctx.client.multi !== undefined) ctx.client.multiFailed = true;
    ctx.out.error(message);
  }

  #errorText(err: unknown, spec: CommandSpec): string {
    if (err instanceof ReplyError || err instanceof WrongTypeError) return err.message;
    if (isTdekvError(err)) {
      this.#logger.error({ command: spec.name, code: err.code, err: err.message }, 'command failed');
      return `ERR ${err.message}`;
    }
    this.#logger.error({ command: spec.name, err: err instanceof Error ? err.stack : String(err) }, 'command failed unexpectedly');
    return `ERR internal error in '${spec.name}': ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** How many fields of a hash HGETALL, HKEYS and HVALS read ahead (the rest they read themselves). */
const FIELDS_READ_AHEAD = 1024;

/**
 * At most this many reads are started ahead for one command (an MGET of a million cold keys
 * must not queue a million reads, and their buffers, on the thread pool ahead of every other
 * client's); the command reads the rest itself.
 */
const MAX_READS_AHEAD = 128;

/** Adds the reads from disk of the records (and hash fields) `args` names to `reads`, up to MAX_READS_AHEAD. */
function addReads(ctx: CommandContext, spec: CommandSpec, args: Buffer[], reads: Array<Promise<unknown>>): void {
  const last = spec.lastKey < 0 ? args.length + spec.lastKey : Math.min(spec.lastKey, args.length - 1);
  for (let i = spec.firstKey; i <= last && reads.length < MAX_READS_AHEAD; i += spec.step) ctx.ks.readAhead(args[i]!, undefined, reads);
  // A walk of a hash's fields always waits a turn, whatever is cached: the walk cannot tell ahead.
  if (spec.walksFields === true) ctx.ks.readAheadFields(args[spec.firstKey]!, FIELDS_READ_AHEAD, reads);
  const f = spec.fieldArgs;
  if (f === undefined || args.length <= spec.firstKey) return;
  const lastField = f[1] < 0 ? args.length + f[1] : Math.min(f[1], args.length - 1);
  for (let i = f[0]; i <= lastField && reads.length < MAX_READS_AHEAD; i += f[2]) ctx.ks.readAhead(args[spec.firstKey]!, args[i]!, reads);
}

/**
 * The name a NOPERM names, as Redis does: `container|sub` for a known subcommand; undefined for
 * an unknown one, which the handler refuses as unknown (Redis says so before it checks rights).
 */
function refusedName(spec: CommandSpec, args: Buffer[]): string | undefined {
  if (spec.subcommandNames === undefined || args.length < 2) return spec.name;
  const sub = args[1]!.toString('latin1').toLowerCase();
  return spec.subcommandNames.includes(sub) ? `${spec.name}|${sub}` : undefined;
}

/** A queued command's bytes, plus what each argument's Buffer object costs on the heap (about 100 bytes). */
function queuedBytes(args: Buffer[]): number {
  let n = 16 + 8 * args.length;
  for (const a of args) n += a.length + 96;
  return n;
}
