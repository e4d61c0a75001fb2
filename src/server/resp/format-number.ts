/**
 * Numbers as Redis reads and writes them in arguments and replies.
 *
 * Redis computes INCRBYFLOAT in 80-bit long doubles and prints with `%.17Lf` minus trailing
 * zeros: never an exponent, integers without a fraction. tdekv computes in JS doubles, so
 * printing 17 fixed decimals would turn 0.1 into "0.10000000000000001"; instead it prints
 * the shortest decimal that reads back as the same double, in the same exponent-free style.
 * Where the two differ (0.1 + 0.2 is "0.30000000000000004" here, "0.3" in Redis) the cause
 * is the double arithmetic, not the printing. Tiny values keep their digits ("1e-20" prints
 * as "0.00000000000000000001") where Redis's 17 fixed decimals would print "0".
 */

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** string2ld's buffer: longer numbers are refused rather than truncated. */
const MAX_DOUBLE_CHARS = 5 * 1024;

/** The text Redis replies for a float: INCRBYFLOAT results, scores, RESP2 doubles. */
export function formatDouble(n: number): string {
  if (Number.isNaN(n)) return 'nan';
  if (n === Infinity) return 'inf';
  if (n === -Infinity) return '-inf';
  // String() already prints the shortest round-trip digits, integers without ".0" and -0
  // as "0" (Redis turns "-0" into "0" too); only its exponent form needs rewriting.
  const s = String(n);
  const e = s.indexOf('e');
  if (e < 0) return s;
  const negative = s.charCodeAt(0) === 45;
  const digits = s.slice(negative ? 1 : 0, e).replace('.', '');
  const exponent = Number(s.slice(e + 1));
  const body =
    exponent >= 0
      ? digits.padEnd(exponent + 1, '0')
      : '0.' + '0'.repeat(-exponent - 1) + digits;
  return negative ? '-' + body : body;
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 48 && c <= 57;
}

/**
 * A signed 64-bit decimal integer, exactly as Redis's string2ll accepts it: an optional '-',
 * no '+', no leading zeros (so "0" but not "-0" or "007"), no spaces, −2^63..2^63−1.
 * A number when it is a safe integer, otherwise a bigint; undefined when not accepted.
 */
export function parseRedisInteger(b: Uint8Array): number | bigint | undefined {
  const len = b.length;
  // 20 characters is the longest valid input ("-9223372036854775808").
  if (len === 0 || len > 20) return undefined;
  let i = 0;
  const negative = b[0] === 45;
  if (negative) {
    i = 1;
    if (len === 1) return undefined;
  }
  const first = b[i]!;
  if (first === 48) return len === 1 ? 0 : undefined;
  if (first < 49 || first > 57) return undefined;
  // Fifteen digits stay below 2^53, so a double accumulates them exactly.
  if (len - i <= 15) {
    let v = 0;
    for (; i < len; i++) {
      const c = b[i]!;
      if (c < 48 || c > 57) return undefined;
      v = v * 10 + (c - 48);
    }
    return negative ? -v : v;
  }
  for (let j = i; j < len; j++) if (!isDigit(b[j])) return undefined;
  const big = BigInt(Buffer.from(b.buffer, b.byteOffset, len).toString('latin1'));
  if (big < INT64_MIN || big > INT64_MAX) return undefined;
  return big >= -MAX_SAFE && big <= MAX_SAFE ? Number(big) : big;
}

function matchesLower(b: Uint8Array, start: number, word: string): boolean {
  if (b.length - start !== word.length) return false;
  for (let k = 0; k < word.length; k++) {
    // ASCII letters only: OR-ing 0x20 lower-cases them and never makes a non-letter match.
    if ((b[start + k]! | 0x20) !== word.charCodeAt(k)) return false;
  }
  return true;
}

/**
 * A float argument as Redis's string2d/string2ld accept it (C's strtod with nothing before
 * or after): optional sign, digits with an optional '.', an optional exponent, or
 * inf/infinity in any case. Refused: empty input, spaces, trailing junk, nan, and values
 * that overflow to infinity or underflow to zero (strtod's ERANGE). Hexadecimal floats,
 * which strtod also takes, are refused on purpose: no Redis client sends them and a
 * "0x..." key or score is far more likely a mistake.
 */
export function parseRedisDouble(b: Uint8Array): number | undefined {
  const len = b.length;
  if (len === 0 || len >= MAX_DOUBLE_CHARS) return undefined;
  let i = 0;
  const sign = b[0];
  if (sign === 43 || sign === 45) i = 1;
  if (i < len && (b[i]! | 0x20) === 105 /* i */) {
    if (!matchesLower(b, i, 'inf') && !matchesLower(b, i, 'infinity')) return undefined;
    return sign === 45 ? -Infinity : Infinity;
  }
  let mantissaDigits = 0;
  let nonZero = false;
  for (; i < len && isDigit(b[i]); i++, mantissaDigits++) if (b[i] !== 48) nonZero = true;
  if (i < len && b[i] === 46) {
    for (i++; i < len && isDigit(b[i]); i++, mantissaDigits++) if (b[i] !== 48) nonZero = true;
  }
  if (mantissaDigits === 0) return undefined;
  if (i < len && (b[i]! | 0x20) === 101 /* e */) {
    i++;
    if (i < len && (b[i] === 43 || b[i] === 45)) i++;
    const expStart = i;
    while (i < len && isDigit(b[i])) i++;
    if (i === expStart) return undefined;
  }
  if (i !== len) return undefined;
  // The syntax checked above is a subset of what Number() reads, and both round correctly.
  const value = Number(Buffer.from(b.buffer, b.byteOffset, len).toString('latin1'));
  if (!Number.isFinite(value) || (value === 0 && nonZero)) return undefined;
  return value;
}
