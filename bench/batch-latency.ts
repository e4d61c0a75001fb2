/**
 * What a writer saw of a bulk load, batch by batch: the target is about pauses (no
 * write stops, no batch waiting over a second for the store to catch up), which an average
 * rate hides.
 */
export interface BatchLatency {
  batches: number;
  /** Milliseconds. */
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** Batches that took longer than 100 ms, and longer than 1 s. */
  over100ms: number;
  over1s: number;
}

/** Summary of per-batch times in ms (nearest-rank percentiles). */
export function summarizeBatches(ms: ArrayLike<number>): BatchLatency {
  const sorted = Float64Array.from(ms).sort();
  const n = sorted.length;
  const rank = (p: number): number => (n === 0 ? 0 : sorted[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))]!);
  let over100ms = 0;
  let over1s = 0;
  for (const x of sorted) {
    if (x > 100) over100ms++;
    if (x > 1000) over1s++;
  }
  return { batches: n, p50: rank(0.5), p99: rank(0.99), p999: rank(0.999), max: n === 0 ? 0 : sorted[n - 1]!, over100ms, over1s };
}
