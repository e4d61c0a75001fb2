import type { Counter, Gauge, LabelValues } from 'prom-client';

/*
 * Metrics here are read from plain state when Prometheus scrapes, so the code they watch
 * never calls prom-client. Counters then need their absolute value set, which prom-client
 * only offers as reset + inc.
 */

/** Sets an unlabelled counter to `value`. Negative or non-finite values (never expected) read as 0. */
export function setCounter(counter: Counter, value: number): void {
  counter.reset();
  counter.inc(clean(value));
}

/** Replaces every labelled value of a counter: series no longer listed disappear. */
export function setCounters<T extends string>(counter: Counter<T>, values: Iterable<[LabelValues<T>, number]>): void {
  counter.reset();
  for (const [labels, value] of values) counter.inc(labels, clean(value));
}

/** Replaces every labelled value of a gauge: series no longer listed disappear. */
export function setGauges<T extends string>(gauge: Gauge<T>, values: Iterable<[LabelValues<T>, number]>): void {
  gauge.reset();
  for (const [labels, value] of values) gauge.set(labels, value);
}

function clean(value: number): number {
  return Number.isFinite(value) && value > 0 ? value : 0;
}
