import { isTdekvError } from '../../errors.js';
import type { ReplyWriter } from '../resp/reply-writer.js';
import type { CommandContext, DeferredReply } from './command.js';

/** An admin command's failure as one `-ERR` line (ReplyWriter.error keeps it on one line). */
function errorReply(ctx: CommandContext, command: string, err: unknown): DeferredReply {
  if (isTdekvError(err)) {
    ctx.server.logger.warn({ command, code: err.code, err: err.message }, `${command.split('|')[0]!.toUpperCase()} refused`);
    return (out) => out.error(`ERR ${err.message}`);
  }
  ctx.server.logger.error({ command, err: err instanceof Error ? err.stack : String(err) }, `${command.split('|')[0]!.toUpperCase()} failed unexpectedly`);
  const message = err instanceof Error ? err.message : String(err);
  return (out) => out.error(`ERR internal error in '${command}': ${message}`);
}

/**
 * Runs an admin command's asynchronous work (`command` is its name as `container|sub`); its
 * reply is written when the work settles, in order with the client's other replies.
 */
export function later<T>(ctx: CommandContext, command: string, work: () => Promise<T>, write: (out: ReplyWriter, value: T) => void): void {
  let started: Promise<T>;
  try {
    started = work();
  } catch (err) {
    started = Promise.reject(err);
  }
  ctx.defer(
    started.then(
      (value): DeferredReply => (out) => write(out, value),
      (err: unknown) => errorReply(ctx, command, err),
    ),
  );
}
