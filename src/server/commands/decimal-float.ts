/**
 * INCRBYFLOAT and HINCRBYFLOAT arithmetic. Redis adds in C `long double` and prints the
 * result with "%.17Lf" (17 digits after the point, trailing zeros removed), so 0.1 + 0.2
 * is "0.3", where JS doubles give 0.30000000000000004. Exact decimal arithmetic rounded to
 * 17 fractional digits gives Redis's text (long double's ~19 significant digits round away
 * in the same place), without a native long double.
 */
export type DecimalFloat = { kind: 'finite'; digits: bigint; exp: number } | { kind: 'inf'; sign: 1 | -1 };

/** Beyond this a long double overflows (or underflows to zero): Redis rejects such input. */
const MAX_EXP = 4930;
const FRACTION_DIGITS = 17;

const NUMBER = /^([+-]?)(?:(\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([+-]?\d+))?$/;
const INFINITY = /^([+-]?)inf(inity)?$/i;

/** Reads what strtold accepts in Redis's string2ld (no spaces, no NaN, no hex); undefined otherwise. */
export function parseDecimalFloat(b: Uint8Array): DecimalFloat | undefined {
  if (b.length === 0 || b.length > 5000) return undefined;
  const s = Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');
  const inf = INFINITY.exec(s);
  if (inf !== null) return { kind: 'inf', sign: inf[1] === '-' ? -1 : 1 };
  const m = NUMBER.exec(s);
  if (m === null) return undefined;
  const int = m[2] ?? '';
  const frac = m[3] ?? m[4] ?? '';
  const exp = Number(m[5] ?? '0') - frac.length;
  let digits = BigInt((int + frac).replace(/^0+(?=\d)/, '') || '0');
  if (m[1] === '-') digits = -digits;
  if (digits !== 0n) {
    const magnitude = exp + (int + frac).replace(/^0+/, '').length;
    if (magnitude > MAX_EXP || magnitude < -MAX_EXP) return undefined;
  }
  return { kind: 'finite', digits, exp };
}

/** a + b; undefined when the sum is not finite (inf - inf is NaN, anything + inf is inf). */
export function addDecimalFloats(a: DecimalFloat, b: DecimalFloat): Extract<DecimalFloat, { kind: 'finite' }> | undefined {
  if (a.kind === 'inf' || b.kind === 'inf') return undefined;
  const exp = Math.min(a.exp, b.exp);
  const digits = a.digits * 10n ** BigInt(a.exp - exp) + b.digits * 10n ** BigInt(b.exp - exp);
  return { kind: 'finite', digits, exp };
}

/** "%.17Lf" with trailing zeros (and a trailing point) removed, as Redis's ld2string(LD_STR_HUMAN). */
export function formatDecimalFloat(d: Extract<DecimalFloat, { kind: 'finite' }>): string {
  let { digits, exp } = d;
  // Scale to exactly 17 fractional digits, rounding half to even when dropping digits.
  if (exp < -FRACTION_DIGITS) {
    const div = 10n ** BigInt(-FRACTION_DIGITS - exp);
    const neg = digits < 0n;
    const abs = neg ? -digits : digits;
    let q = abs / div;
    const r = abs % div;
    if (r * 2n > div || (r * 2n === div && q % 2n === 1n)) q++;
    digits = neg ? -q : q;
  } else {
    digits *= 10n ** BigInt(exp + FRACTION_DIGITS);
  }
  const neg = digits < 0n;
  const text = (neg ? -digits : digits).toString().padStart(FRACTION_DIGITS + 1, '0');
  const int = text.slice(0, -FRACTION_DIGITS);
  const frac = text.slice(-FRACTION_DIGITS).replace(/0+$/, '');
  const body = frac.length > 0 ? `${int}.${frac}` : int;
  return neg && body !== '0' ? `-${body}` : body;
}
