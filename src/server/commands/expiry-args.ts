import { parseRedisInteger } from '../resp/format-number.js';
import { isWord, NOT_INTEGER, replyError, SYNTAX_ERROR } from './command.js';

/**
 * Largest expiry the keyspace can store (ms since the epoch held exactly in a double, about year 287396). Redis
 * accepts times up to 2^63-1 ms; a later time is stored as this one, which is "never" for every practical purpose.
 */
const MAX_MS = 2 ** 53 - 1;

const LLONG_MAX = 2n ** 63n - 1n;
const LLONG_MIN = -(2n ** 63n);
// C's integer division truncates towards zero, and Redis's overflow checks use it.
const LLONG_MAX_S = LLONG_MAX / 1000n;
const LLONG_MIN_S = LLONG_MIN / 1000n;

export type ExpiryUnit = 'ex' | 'px' | 'exat' | 'pxat';

/**
 * An absolute expiry time in ms from an EX/PX/EXAT/PXAT amount, with Redis 7's overflow checks done in 64-bit
 * arithmetic so that the same inputs are refused. `expireCommand` selects the EXPIRE family's rules (any time
 * that fits in 64 bits, past ones included); otherwise SET/GETEX/SETEX's (a positive amount only). A result at
 * or before the epoch comes back as 1, a past time that deletes the key (0 would mean "no expiry"); one beyond
 * what the keyspace stores comes back as MAX_MS. Errors name the command as Redis does.
 */
export function expireAtFrom(unit: ExpiryUnit, arg: Buffer, now: number, command: string, expireCommand = false): number {
  const raw = parseRedisInteger(arg);
  if (raw === undefined) replyError(NOT_INTEGER);
  const invalid = `ERR invalid expire time in '${command}' command`;
  const seconds = unit === 'ex' || unit === 'exat';
  const base = unit === 'ex' || unit === 'px' ? BigInt(now) : 0n;
  let when = BigInt(raw);
  if (expireCommand) {
    if (seconds && (when > LLONG_MAX_S || when < LLONG_MIN_S)) replyError(invalid);
  } else if (when <= 0n || (seconds && when > LLONG_MAX_S)) replyError(invalid);
  if (seconds) when *= 1000n;
  if (when > LLONG_MAX - base) replyError(invalid);
  when += base;
  if (when <= 0n) return 1;
  return when > BigInt(MAX_MS) ? MAX_MS : Number(when);
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
