import { parseRedisInteger } from '../resp/format-number.js';
import { NOT_INTEGER, replyError } from './command.js';
import { parseDecimalFloat, type DecimalFloat } from './decimal-float.js';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** A signed 64-bit integer argument, as Redis's string2ll reads it. */
export function int64Arg(arg: Buffer, message = NOT_INTEGER): bigint {
  const n = parseRedisInteger(arg);
  if (n === undefined) replyError(message);
  return BigInt(n);
}

/** An integer argument that must fit a JS number exactly (counts, offsets, times). */
export function intArg(arg: Buffer, message = NOT_INTEGER): number {
  const n = parseRedisInteger(arg);
  if (n === undefined || typeof n === 'bigint') replyError(message);
  return n;
}

/** A float argument or stored value, read exactly (see decimal-float.ts). */
export function decimalArg(arg: Buffer, message: string): DecimalFloat {
  const d = parseDecimalFloat(arg);
  if (d === undefined) replyError(message);
  return d;
}

export const ZERO: DecimalFloat = { kind: 'finite', digits: 0n, exp: 0 };

/** A stored value read as an integer for INCR and friends; absent counts as 0. */
export function storedInt64(value: Buffer | undefined): bigint {
  if (value === undefined) return 0n;
  if (value.length > 20) replyError(NOT_INTEGER);
  return int64Arg(value);
}

export function checkedInt64(n: bigint): bigint {
  if (n < INT64_MIN || n > INT64_MAX) replyError('ERR increment or decrement would overflow');
  return n;
}
