/**
 * How the engine bench turns rounds into a report. Engines run one after another, so a slow
 * minute of a shared machine (an fsync taking twice as long, a neighbour's burst) lands on
 * whichever engine runs then: one run per engine decided targets by a few percent while lines
 * swung by 20–40 % between runs. Rounds repeat the whole list, the order reversed on every
 * other round so that no engine always runs first or last, and the report takes each line's
 * median run and each comparison's median per-round ratio (a ratio within one round compares
 * engines that ran minutes apart, not an hour).
 */
/** What a line measured: `ops` operations in `ms` milliseconds. */
export interface Rate {
  ops: number;
  ms: number;
}

export const opsPerSecond = (m: Rate): number => m.ops / (m.ms / 1000);

/** The order of round `round` (from 1): as given on odd rounds, reversed on even ones. */
export function roundOrder<T>(engines: readonly T[], round: number): T[] {
  return round % 2 === 1 ? [...engines] : [...engines].reverse();
}

/**
 * The median run of a line by ops/s, one entry per round (undefined: that round has no result
 * for it). An even count takes the lower of the middle two, so the row printed is a run that
 * happened, as the server bench's rows are.
 */
export function medianRun<M extends Rate>(runs: ReadonlyArray<M | undefined>): M | undefined {
  const done = runs.filter((r): r is M => r !== undefined).sort((a, b) => opsPerSecond(a) - opsPerSecond(b));
  return done[Math.floor((done.length - 1) / 2)];
}

/** Round by round, `a`'s ops/s over `b`'s; undefined where either has no result. */
export function roundRatios(a: ReadonlyArray<Rate | undefined>, b: ReadonlyArray<Rate | undefined>): Array<number | undefined> {
  return a.map((x, i) => {
    const y = b[i];
    return x && y ? opsPerSecond(x) / opsPerSecond(y) : undefined;
  });
}

/**
 * The median of the ratios that exist, undefined when none does. An even count averages the
 * middle two: taking either one would lean every two-round verdict the same way.
 */
export function medianRatio(ratios: ReadonlyArray<number | undefined>): number | undefined {
  const known = ratios.filter((r): r is number => r !== undefined).sort((a, b) => a - b);
  if (known.length === 0) return undefined;
  const mid = known.length >> 1;
  return known.length % 2 === 1 ? known[mid]! : (known[mid - 1]! + known[mid]!) / 2;
}
