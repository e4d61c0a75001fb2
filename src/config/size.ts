/**
 * TiKV-style byte sizes ("512MiB", "64MB", "1GiB", "1.5GB"), or a plain integer of bytes.
 * As in TiKV's ReadableSize, KB/MB/GB mean the same as KiB/MiB/GiB (powers of 1024): an
 * operator who pastes "512MB" from a TiKV or Redis config means 512 × 2^20, and a
 * silently 5 % smaller limit would be a surprise.
 */

const UNITS: Readonly<Record<string, number>> = {
  b: 1,
  k: 2 ** 10,
  kb: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mb: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gb: 2 ** 30,
  gib: 2 ** 30,
  t: 2 ** 40,
  tb: 2 ** 40,
  tib: 2 ** 40,
};

export const SIZE_FORMS =
  'an integer number of bytes, or a number and a unit (B, KiB, MiB, GiB, TiB; KB, MB, GB, TB and K, M, G, T mean the same, ' +
  'powers of 1024; any case), e.g. 1048576, "64MiB", "512MB", "1GiB", "1.5GiB"';

/** A size that cannot be read: `why` alone, for messages that list the forms themselves. */
export class SizeError extends Error {
  constructor(readonly why: string) {
    super(`${why}; expected ${SIZE_FORMS}`);
  }
}

/** Bytes in `text` (rounded down to a whole byte); throws a SizeError naming the accepted forms. */
export function parseSize(text: string): number {
  const fail = (why: string): never => {
    throw new SizeError(why);
  };
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  if (m === null) {
    if (text.trim().startsWith('-')) fail('negative sizes are not allowed');
    return fail(`cannot read ${JSON.stringify(text)} as a size`);
  }
  const [, num, unitText] = m as unknown as [string, string, string];
  const unit = unitText === '' ? 1 : UNITS[unitText.toLowerCase()];
  if (unit === undefined) return fail(`unknown unit "${unitText}"`);
  const bytes = Math.floor(Number(num) * unit);
  if (!Number.isSafeInteger(bytes)) return fail('too large');
  return bytes;
}

/** The shortest exact binary form: 536870912 → "512MiB", 1000 → "1000B". */
export function formatSize(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`not a size: ${bytes}`);
  for (const [name, unit] of [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (bytes >= unit && bytes % unit === 0) return `${bytes / unit}${name}`;
  }
  return `${bytes}B`;
}
