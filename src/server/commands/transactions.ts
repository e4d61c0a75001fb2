import { replyError, spec, type CommandContext, type CommandSpec } from './command.js';

/** Commands that act on the transaction itself rather than being queued. */
export const TRANSACTION_CONTROL = new Set(['multi', 'exec', 'discard', 'watch', 'unwatch', 'quit', 'reset']);

function multi(ctx: CommandContext): void {
  if (ctx.client.multi !== undefined) replyError('ERR MULTI calls can not be nested');
  ctx.client.multi = [];
  ctx.client.multiBytes = 0;
  ctx.client.multiFailed = false;
  ctx.out.simple('OK');
}

function endTransaction(ctx: CommandContext): void {
  ctx.client.multi = undefined;
  ctx.client.multiBytes = 0;
  ctx.client.multiFailed = false;
  ctx.server.unwatch(ctx.client);
}

/**
 * Runs the queued commands back to back. Commands run synchronously and their writes join
 * the same engine batch, so the whole transaction is one WAL record: all of it or none of
 * it survives a crash, and no other client's command runs in between.
 */
function exec(ctx: CommandContext): void {
  const queued = ctx.client.multi;
  if (queued === undefined) replyError('ERR EXEC without MULTI');
  if (ctx.client.multiFailed) {
    endTransaction(ctx);
    replyError('EXECABORT Transaction discarded because of previous errors.');
  }
  if (ctx.client.dirty) {
    endTransaction(ctx);
    ctx.out.nullArray();
    return;
  }
  endTransaction(ctx);
  ctx.out.arrayHeader(queued.length);
  for (const args of queued) ctx.server.run(ctx, args);
}

function discard(ctx: CommandContext): void {
  if (ctx.client.multi === undefined) replyError('ERR DISCARD without MULTI');
  endTransaction(ctx);
  ctx.out.simple('OK');
}

function watch(ctx: CommandContext, args: Buffer[]): void {
  if (ctx.client.multi !== undefined) replyError('ERR WATCH inside MULTI is not allowed');
  for (let i = 1; i < args.length; i++) ctx.server.watch(ctx.client, args[i]!);
  ctx.out.simple('OK');
}

function unwatch(ctx: CommandContext): void {
  ctx.server.unwatch(ctx.client);
  ctx.out.simple('OK');
}

export const TRANSACTION_COMMANDS: CommandSpec[] = [
  spec('multi', 1, ['loading', 'stale', 'fast', 'allow_busy'], [0, 0, 0], 'transactions', 'Starts a transaction.', multi),
  spec('exec', 1, ['loading', 'stale'], [0, 0, 0], 'transactions', 'Executes all commands in a transaction.', exec),
  spec('discard', 1, ['loading', 'stale', 'fast', 'allow_busy'], [0, 0, 0], 'transactions', 'Discards a transaction.', discard),
  spec('watch', -2, ['loading', 'stale', 'fast', 'allow_busy'], [1, -1, 1], 'transactions', 'Monitors changes to keys to determine the execution of a transaction.', watch),
  spec('unwatch', 1, ['loading', 'stale', 'fast', 'allow_busy'], [0, 0, 0], 'transactions', 'Forgets about watched keys of a transaction.', unwatch),
];

