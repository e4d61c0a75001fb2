/**
 * TiKV-style durations ("168h", "7d", "1h30m", "1.5h", "500ms"), so TiKV operators can
 * paste their settings unchanged. Like TiKV, units must appear largest first and at most
 * once: "30m1h" or "1m30m" are almost always typos, not intent.
 */

const UNITS = [
  { name: 'd', ms: 86_400_000 },
  { name: 'h', ms: 3_600_000 },
  { name: 'm', ms: 60_000 },
  { name: 's', ms: 1_000 },
  { name: 'ms', ms: 1 },
] as const;

// `ms` is listed before `m` so the alternation does not stop at the `m` of "500ms".
const GROUP = String.raw`(\d+(?:\.\d+)?)(ms|d|h|m|s)`;

export const DURATION_FORMS =
  'a number followed by a unit (d, h, m, s, ms), groups largest unit first, no spaces, ' +
  'e.g. "168h", "7d", "30m", "90s", "1h30m", "500ms", "1.5h"';

/** Milliseconds in `text`; throws a plain Error naming the accepted forms. */
export function parseDuration(text: string): number {
  const fail = (why: string): never => {
    throw new Error(`${why}; expected ${DURATION_FORMS}`);
  };
  // Surrounding whitespace is forgiven (TiKV trims too); whitespace inside is not.
  const s = text.trim();
  if (s === '') fail('empty duration');
  if (/\s/.test(s)) fail('spaces are not allowed inside a duration');

  const group = new RegExp(GROUP, 'y');
  let total = 0;
  let lastRank = -1;
  while (group.lastIndex < s.length) {
    const at = group.lastIndex;
    const m = group.exec(s);
    if (m === null) {
      const rest = s.slice(at);
      if (rest.startsWith('-')) fail('negative durations are not allowed');
      if (/^[0-9.]+$/.test(rest)) fail(`"${rest}" has no unit`);
      fail(`cannot read "${rest}"`);
    }
    const [, num, unit] = m as unknown as [string, string, string];
    const rank = UNITS.findIndex((u) => u.name === unit);
    if (rank <= lastRank) fail(`unit "${unit}" is repeated or out of order`);
    lastRank = rank;
    total += Number(num) * UNITS[rank]!.ms;
  }
  // Rounding absorbs float noise ("1.1h" is 3960000.0000000005 in binary floating point).
  const ms = Math.round(total);
  if (!Number.isSafeInteger(ms)) fail('duration is too large');
  return ms;
}

/** Compact, parseable form for status output: 604800000 → "7d", 5400000 → "1h30m". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`cannot format duration ${ms}`);
  let rest = Math.round(ms);
  if (rest === 0) return '0s';
  let out = '';
  for (const unit of UNITS) {
    const n = Math.floor(rest / unit.ms);
    if (n > 0) {
      out += `${n}${unit.name}`;
      rest -= n * unit.ms;
    }
  }
  return out;
}
