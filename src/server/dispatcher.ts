import { performance } from 'node:perf_hooks';
import { isTdekvError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { ADMIN_COMMANDS } from './commands/admin.js';
import { ReplyError, isWord, type CommandContext, type CommandSpec } from './commands/command.js';
import { CONNECTION_COMMANDS } from './commands/connection.js';
import { HASH_COMMANDS } from './commands/hashes.js';
import { KEY_COMMANDS } from './commands/keys.js';
import { STRING_COMMANDS } from './commands/strings.js';
import { TRANSACTION_COMMANDS, TRANSACTION_CONTROL } from './commands/transactions.js';
import { WrongTypeError } from './keyspace/keyspace.js';
import type { CommandStat, ServerStats } from './server-stats.js';

export function commandTable(): Map<string, CommandSpec> {
  const table = new Map<string, CommandSpec>();
  for (const s of [...CONNECTION_COMMANDS, ...ADMIN_COMMANDS, ...STRING_COMMANDS, ...KEY_COMMANDS, ...HASH_COMMANDS, ...TRANSACTION_COMMANDS]) table.set(s.name, s);
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
}

/** Redis quotes the start of an unknown command's arguments; tdekv does so only when logs may show user data. */
function unknownCommand(args: Buffer[], redact: boolean): string {
  const name = redact ? '?' : args[0]!.toString('utf8').slice(0, 128);
  const rest = redact ? '' : args.slice(1, 20).map((a) => `'${a.toString('utf8').slice(0, 128)}' `).join('');
  return `ERR unknown command '${name}', with args beginning with: ${rest}`;
}

/**
 * Runs one command: authentication, lookup, arity, MULTI queueing, then the handler. An error
 * reply rewinds whatever the handler had started to write, so the stream stays well-formed.
 */
export class Dispatcher {
  readonly table: Map<string, CommandSpec>;
  readonly #logger: Logger;
  readonly #byHash = new Map<number, Entry[]>();
  readonly #entries = new Map<CommandSpec, Entry>();

  constructor(logger: Logger, stats: ServerStats) {
    this.table = commandTable();
    this.#logger = logger;
    for (const spec of this.table.values()) {
      const entry: Entry = { spec, stat: stats.command(spec.name), write: spec.flags.includes('write'), noAuth: spec.flags.includes('no_auth') };
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
    if (spec === undefined) return this.#reject(ctx, unknownCommand(args, ctx.server.config.security.redactInfoLog));
    if ((spec.arity > 0 && args.length !== spec.arity) || args.length < -spec.arity) {
      return this.#reject(ctx, `ERR wrong number of arguments for '${spec.name}' command`);
    }
    if (client.multi !== undefined && !TRANSACTION_CONTROL.has(spec.name)) {
      client.multi.push(args);
      ctx.out.simple('QUEUED');
      return;
    }
    this.#run(ctx, entry!, args);
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
