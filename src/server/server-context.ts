import type { TdekvConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import type { CommandSpec } from './commands/command.js';
import type { ClientState } from './client-state.js';
import type { ScanCursors } from './scan-cursors.js';
import type { ServerStats } from './server-stats.js';

/** What commands may ask of the server beyond the keyspace. */
export interface ServerContext {
  readonly config: TdekvConfig;
  readonly logger: Logger;
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
  run(ctx: import('./commands/command.js').CommandContext, args: Buffer[]): void;
  /** The INFO text for the named sections (lower case; empty = default sections). */
  info(sections: string[]): string;
}
