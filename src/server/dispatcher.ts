import { performance } from 'node:perf_hooks';
import { isTdekvError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { ADMIN_COMMANDS } from './commands/admin.js';
import { ReplyError, lowerName, type CommandContext, type CommandSpec } from './commands/command.js';
import { CONNECTION_COMMANDS } from './commands/connection.js';
import { HASH_COMMANDS } from './commands/hashes.js';
import { KEY_COMMANDS } from './commands/keys.js';
import { STRING_COMMANDS } from './commands/strings.js';
import { TRANSACTION_COMMANDS, TRANSACTION_CONTROL } from './commands/transactions.js';
import { WrongTypeError } from './keyspace/keyspace.js';

export function commandTable(): Map<string, CommandSpec> {
  const table = new Map<string, CommandSpec>();
  for (const s of [...CONNECTION_COMMANDS, ...ADMIN_COMMANDS, ...STRING_COMMANDS, ...KEY_COMMANDS, ...HASH_COMMANDS, ...TRANSACTION_COMMANDS]) table.set(s.name, s);
  return table;
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

  constructor(logger: Logger) {
    this.table = commandTable();
    this.#logger = logger;
  }

  execute(ctx: CommandContext, args: Buffer[]): void {
    const client = ctx.client;
    const name = lowerName(args[0]!);
    const spec = this.table.get(name);
    client.lastCommand = spec?.name ?? 'unknown';
    if (!client.authenticated && !(spec?.flags.includes('no_auth') ?? false)) return this.#reject(ctx, 'NOAUTH Authentication required.');
    if (spec === undefined) return this.#reject(ctx, unknownCommand(args, ctx.server.config.security.redactInfoLog));
    if ((spec.arity > 0 && args.length !== spec.arity) || args.length < -spec.arity) {
      return this.#reject(ctx, `ERR wrong number of arguments for '${spec.name}' command`);
    }
    if (client.multi !== undefined && !TRANSACTION_CONTROL.has(spec.name)) {
      client.multi.push(args);
      ctx.out.simple('QUEUED');
      return;
    }
    this.run(ctx, spec, args);
  }

  /** Runs a command that passed the checks (EXEC calls this for each queued command). */
  run(ctx: CommandContext, spec: CommandSpec, args: Buffer[]): void {
    const stat = ctx.server.stats.command(spec.name);
    stat.calls++;
    ctx.server.stats.totalCommands++;
    const mark = ctx.out.mark();
    const started = performance.now();
    try {
      if (spec.flags.includes('write')) ctx.server.checkWritable();
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
