import type { TableOutputContext } from './table-output.js';

/** Entries between looks at the clock in flush and compaction loops. */
const SLICE_CHECK_EVERY = 64;
/** Background work runs in slices of this many ms between turns of the event loop... */
export const SLICE_MS = 1;
/**
 * ...and a flush in longer ones while the new memtable is past half full: otherwise, under a
 * steady write load, the flush falls behind, the memtable fills, and writes stop until it ends.
 */
export const URGENT_FLUSH_SLICE_MS = 4;

/**
 * What a flush or compaction runner gets from whoever runs it: where its tables go, and how
 * it shares the thread. The runners see nothing else of the engine, so the same runner can
 * later run where the engine's state is out of reach (a worker thread, issue 11 item 3).
 */
export interface JobContext {
  output: TableOutputContext;
  /** The slice budget in ms, asked at each slice (a flush's grows while the memtable fills). */
  sliceMs(): number;
  /** Between slices, once the output is drained: gives the host its turn; throws to abandon the job. */
  yieldSlice(): Promise<void>;
  /**
   * Called as a rate-limited job writes (`scan-rate-limit`): resolves when `bytes` more may be
   * written, so the job's work is spread at the limit instead of coming in bursts between
   * pauses. Absent: as fast as the slices allow.
   */
  pace?(bytes: number): Promise<void>;
}

/** Decides when a background loop should give the event loop a turn. */
export class WorkSlice {
  #start = performance.now();
  #n = 0;

  constructor(private readonly budgetMs: () => number) {}

  /** Call once per entry; true when the slice's time is up. */
  due(): boolean {
    if (++this.#n % SLICE_CHECK_EVERY !== 0) return false;
    return performance.now() - this.#start >= this.budgetMs();
  }

  restart(): void {
    this.#start = performance.now();
  }
}
