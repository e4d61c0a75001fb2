import type { ReplyWriter } from '../resp/reply-writer.js';
import type { Keyspace } from '../keyspace/keyspace.js';
import type { ClientState } from '../client-state.js';
import type { LogRateLimit } from '../../log/log-rate-limit.js';
import type { Logger } from '../../log/logger.js';
import type { ScanCursors } from '../scan-cursors.js';
import type { ServerOptions } from '../server-options.js';
import type { ServerStats } from '../server-stats.js';
import type { EncryptionControl } from '../../lifecycle/lifecycle-status.js';
import type { BackupControl } from '../backup-sessions.js';
import type { ReloadReport } from '../../lifecycle/encryption-lifecycle.js';

/** What a command sees: the data, its connection, the server, and where its reply goes. */
export interface CommandContext {
  ks: Keyspace;
  out: ReplyWriter;
  client: ClientState;
  server: ServerContext;
  /**
   * For a command whose work is asynchronous (the encryption lifecycle's changes): its reply is
   * written when `reply` settles, and the client's next command waits until then, so replies
   * stay in order. The promise must not reject: turn errors into an error reply.
   */
  defer(reply: Promise<DeferredReply>): void;
}

/** Writes a deferred command's reply. */
export type DeferredReply = (out: ReplyWriter) => void;

// ServerContext lives here, not beside the server: it and CommandContext name each other, and
// one module keeps that from being an import cycle.
/** What commands may ask of the server beyond the keyspace. */
export interface ServerContext {
  readonly config: ServerOptions;
  readonly logger: Logger;
  /** Log lines a client can cause at will (failed AUTH), at most one a second (log-rate-limit.ts). */
  readonly authFailureLog: LogRateLimit;
  readonly stats: ServerStats;
  readonly cursors: ScanCursors;
  readonly commands: ReadonlyMap<string, CommandSpec>;
  readonly runId: string;
  readonly version: string;
  /** Marks the clients watching `key` dirty. */
  touch(key: Buffer): void;
  /**
   * Marks dirty the clients watching a key that exists (FLUSHDB, FLUSHALL, called before the keys go): as in
   * Redis, a flush does not abort a transaction that watched only keys that were missing anyway.
   */
  touchAllExisting(): void;
  watch(client: ClientState, key: Buffer): void;
  unwatch(client: ClientState): void;
  clients(): Iterable<ClientState>;
  /** Throws a ReplyError when writes cannot be accepted (the engine failed to write). */
  checkWritable(): void;
  /** Runs a queued command of a transaction (EXEC). */
  run(ctx: CommandContext, args: Buffer[]): void;
  /** The INFO text for the named sections (lower case; empty = default sections). */
  info(sections: string[]): string;
  /** The online encryption lifecycle (ENCRYPTION STATUS|REGENERATE|SUSPEND|RESUME|RETIRE). */
  readonly encryption: EncryptionControl;
  /** ENCRYPTION RELOAD and SIGHUP: re-reads the config file's [security.encryption] and applies it online. */
  reloadEncryption(): Promise<ReloadReport>;
  /** BACKUP sessions (the online side of `tdekv backup full`). */
  readonly backups: BackupControl;
}

/** Runs a command synchronously; args[0] is the command name as sent. */
export type CommandHandler = (ctx: CommandContext, args: Buffer[]) => void;

export type CommandFlag = 'write' | 'readonly' | 'denyoom' | 'admin' | 'pubsub' | 'noscript' | 'fast' | 'loading' | 'stale' | 'no_auth' | 'no_multi' | 'allow_busy';

export interface CommandSpec {
  /** Lower case. */
  name: string;
  /** Redis's convention: positive = exactly that many arguments (name included), negative = at least -arity. */
  arity: number;
  flags: CommandFlag[];
  firstKey: number;
  lastKey: number;
  step: number;
  /**
   * For a hash command, the arguments that name fields of the hash at `firstKey`, as
   * [first, last (-1: the last argument), step]: the fields it reads, read ahead from disk
   * before it runs, as the keys are.
   */
  fieldArgs?: readonly [number, number, number];
  /** Reads every field of the hash at `firstKey` (HGETALL): the first of them are read ahead too. */
  walksFields?: boolean;
  /** Redis's command group, for COMMAND DOCS. */
  group: 'connection' | 'server' | 'string' | 'generic' | 'hash' | 'transactions';
  summary: string;
  handler: CommandHandler;
  /** Subcommands (CLIENT, CONFIG, COMMAND): lower-case name → spec. */
  subcommands?: Map<string, CommandSpec>;
  /**
   * The subcommands a container knows (lower case): a refused one is named `container|sub`, as
   * Redis names it in NOPERM; an unknown one reaches the handler, which says so (as in Redis).
   */
  subcommandNames?: readonly string[];
}

/** A reply that is an error; the text includes Redis's prefix (ERR, WRONGTYPE, ...). */
export class ReplyError extends Error {}

export const SYNTAX_ERROR = 'ERR syntax error';
export const NOT_INTEGER = 'ERR value is not an integer or out of range';
export const NOT_FLOAT = 'ERR value is not a valid float';

export function replyError(message: string): never {
  throw new ReplyError(message);
}

/** Case-insensitive comparison of an argument with a lower-case ASCII word. */
export function isWord(arg: Buffer, lower: string): boolean {
  if (arg.length !== lower.length) return false;
  for (let i = 0; i < arg.length; i++) {
    const c = arg[i]!;
    if ((c >= 0x41 && c <= 0x5a ? c + 32 : c) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

export function lowerName(arg: Buffer): string {
  return arg.toString('latin1').toLowerCase();
}

/** Shorthand for building specs. */
export function spec(name: string, arity: number, flags: CommandFlag[], keys: [number, number, number], group: CommandSpec['group'], summary: string, handler: CommandHandler): CommandSpec {
  return { name, arity, flags, firstKey: keys[0], lastKey: keys[1], step: keys[2], group, summary, handler };
}

/** `s` with the arguments that name its hash's fields (CommandSpec.fieldArgs). */
export function withFields(s: CommandSpec, fieldArgs: readonly [number, number, number]): CommandSpec {
  return { ...s, fieldArgs };
}

/**
 * A container command's dispatch (ENCRYPTION, BACKUP): the subcommand by name, Redis's errors
 * for an unknown one and for a wrong number of arguments (`arity(sub)` counts the name too).
 */
export function runSubcommand<S extends (ctx: CommandContext, args: Buffer[]) => void>(
  ctx: CommandContext,
  args: Buffer[],
  container: string,
  subcommands: Readonly<Record<string, S>>,
  arity: (sub: string) => number,
): void {
  const sub = lowerName(args[1]!);
  const run = Object.hasOwn(subcommands, sub) ? subcommands[sub] : undefined;
  if (run === undefined) replyError(`ERR unknown subcommand '${args[1]!.toString('latin1')}'. Try ${container.toUpperCase()} HELP.`);
  if (args.length !== arity(sub)) replyError(`ERR wrong number of arguments for '${container}|${sub}' command`);
  run(ctx, args);
}
