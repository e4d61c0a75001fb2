import { parseRedisInteger } from '../resp/format-number.js';
import { isWord, NOT_INTEGER, replyError, SYNTAX_ERROR } from './command.js';

/** Largest expiry Redis accepts in milliseconds since the epoch (it checks for overflow of ms). */
const MAX_MS = 2 ** 53 - 1;

export type ExpiryUnit = 'ex' | 'px' | 'exat' | 'pxat';

/** An absolute expiry time in ms from an EX/PX/EXAT/PXAT amount; errors name the command as Redis does. */
export function expireAtFrom(unit: ExpiryUnit, arg: Buffer, now: number, command: string, allowNonPositive = false): number {
  const raw = parseRedisInteger(arg);
  if (raw === undefined) replyError(NOT_INTEGER);
  // In the 64-bit range but beyond what a millisecond time can hold: Redis's overflow check.
  if (typeof raw === 'bigint') replyError(`ERR invalid expire time in '${command}' command`);
  const n = raw;
  if (!allowNonPositive && n <= 0) replyError(`ERR invalid expire time in '${command}' command`);
  const ms = unit === 'ex' || unit === 'exat' ? n * 1000 : n;
  const at = unit === 'ex' || unit === 'px' ? now + ms : ms;
  if (!Number.isSafeInteger(ms) || !Number.isSafeInteger(at) || Math.abs(at) > MAX_MS) replyError(`ERR invalid expire time in '${command}' command`);
  return at;
}

/** Reads an EX/PX/EXAT/PXAT option at args[i]; returns undefined when args[i] is not one. */
export function expiryUnit(arg: Buffer): ExpiryUnit | undefined {
  if (isWord(arg, 'ex')) return 'ex';
  if (isWord(arg, 'px')) return 'px';
  if (isWord(arg, 'exat')) return 'exat';
  if (isWord(arg, 'pxat')) return 'pxat';
  return undefined;
}

export function needValue(args: Buffer[], i: number): Buffer {
  const v = args[i];
  if (v === undefined) replyError(SYNTAX_ERROR);
  return v;
}
