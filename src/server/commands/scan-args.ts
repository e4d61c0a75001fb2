import { globMatcher, globPrefix } from '../glob.js';
import { intArg } from './args.js';
import { isWord, replyError, SYNTAX_ERROR } from './command.js';

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
