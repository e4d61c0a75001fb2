import { globMatcher, globPrefix } from '../glob.js';
import { intArg } from './args.js';
import { isWord, replyError, SYNTAX_ERROR, type CommandContext } from './command.js';

export interface ScanOptions {
  count: number;
  match: ((s: Buffer) => boolean) | undefined;
  /** Literal prefix of the MATCH pattern: the walk can start there. */
  prefix: Buffer | undefined;
  type: string | undefined;
  noValues: boolean;
}

/** The cursor argument of SCAN/HSCAN: an unsigned integer. */
export function cursorArg(arg: Buffer): number {
  const s = arg.toString('latin1');
  if (!/^[0-9]+$/.test(s) || s.length > 20) replyError('ERR invalid cursor');
  return Number(s);
}

/** MATCH / COUNT / TYPE / NOVALUES from args[from...]. */
export function scanOptions(args: Buffer[], from: number, allowed: { type?: boolean; noValues?: boolean }): ScanOptions {
  const o: ScanOptions = { count: 10, match: undefined, prefix: undefined, type: undefined, noValues: false };
  for (let i = from; i < args.length; i++) {
    const a = args[i]!;
    const v = args[i + 1];
    if (isWord(a, 'count') && v !== undefined) {
      o.count = intArg(v);
      if (o.count < 1) replyError(SYNTAX_ERROR);
      i++;
    } else if (isWord(a, 'match') && v !== undefined) {
      o.match = globMatcher(v);
      o.prefix = globPrefix(v);
      i++;
    } else if (allowed.type === true && isWord(a, 'type') && v !== undefined) {
      o.type = v.toString('latin1').toLowerCase();
      i++;
    } else if (allowed.noValues === true && isWord(a, 'novalues')) {
      o.noValues = true;
    } else {
      replyError(SYNTAX_ERROR);
    }
  }
  return o;
}

/** Where a SCAN-style walk resumes: after this key, or from the start (undefined). */
export function resumeAfter(ctx: CommandContext, scope: string, cursor: Buffer): Buffer | undefined {
  const from = ctx.server.cursors.resume(scope, cursorArg(cursor));
  if (from === 'unknown') replyError('ERR invalid cursor');
  return from === 'start' ? undefined : from;
}

/**
 * One page of a SCAN-style walk: examines up to COUNT entries, keeps those MATCH accepts
 * (`emit` adds their reply items), and replies [next cursor, items]; cursor "0" at the end.
 */
export function replyScanPage<V>(ctx: CommandContext, scope: string, entries: Iterable<[Buffer, V]>, o: ScanOptions, emit: (key: Buffer, value: V, items: Buffer[]) => void): void {
  const items: Buffer[] = [];
  let examined = 0;
  let last: Buffer | undefined;
  let more = false;
  for (const [key, value] of entries) {
    if (examined === o.count) {
      more = true;
      break;
    }
    examined++;
    last = key;
    if (o.match === undefined || o.match(key)) emit(key, value, items);
  }
  ctx.out.arrayHeader(2);
  ctx.out.bulk(more && last !== undefined ? String(ctx.server.cursors.save(scope, last)) : '0');
  ctx.out.bulkArray(items);
}
