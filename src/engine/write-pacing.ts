/**
 * How long a write waits when the memtable is past write-buffer-size while the previous one
 * is still being flushed on the worker (the grace zone, up to (1 + grace) × write-buffer-size):
 * its share, by bytes, of the flush's remaining time, so that the rest of the grace would last
 * twice as long as the flush is expected to.
 *
 * Why by bytes: a fixed 1 ms per write (LevelDB's slowdown) barely slows a bulk loader whose
 * batches hold 1,000 puts each, 2 ms of work: it went on filling the grace at two thirds of its
 * speed, about as fast as the worker flushed on the 2-core VM (24 MiB in ~210 ms against
 * ~230 ms to fill one), and a 3M-key load stopped 9–18 times. The flush's remaining time comes
 * from its size and the measured speed of the last flushes. Flushes vary by a quarter from one
 * to the next, and a pace aimed only at the expected end would stop slowing writes exactly when
 * a flush runs late: a flush past its expected end is taken to need half as long again as it
 * has run, so the later it is, the slower writes go. The pace is a clock: a write's own time
 * counts toward it, and writes too small to wait a millisecond on their own wait together. One
 * write waits at most MAX_WAIT_MS.
 *
 * Only flushes on the worker thread are paced. In-process a flush runs in slices between the
 * writer's turns, so each write's fixed 1 ms wait already hands the flush its share, and the
 * tables it leaves do not depend on measured timings.
 */

/** The pace aims to use up the grace this much later than the flush is expected to end. */
const MARGIN = 2;
/** A late flush is assumed to need this share of its running time again. */
const LATE_SHARE = 0.5;
/**
 * The longest one write waits. A flush far slower than measured (a disk stalling, a flush
 * queued behind a compaction's I/O) would otherwise make one write wait for an estimate of it;
 * past this the memtable may meet its limit, and writes then wait for the flush as before.
 */
export const MAX_WAIT_MS = 50;
/** The weight of the newest flush in the measured speed. */
const RATE_WEIGHT = 0.5;

export class WritePacer {
  /** Memtable bytes a flush writes per ms (moving average), 0 until one has been measured. */
  #bytesPerMs = 0;
  #flush: { startedAt: number; bytes: number } | undefined;
  /** When the writes paced so far may have finished, at the pace (performance.now() ms). */
  #paceClock = 0;

  /** A flush of a memtable of `bytes` begins. */
  flushStarted(bytes: number, now: number): void {
    this.#flush = { startedAt: now, bytes };
  }

  /** The flush begun last is installed: its speed joins the measured one, and the pace starts over. */
  flushEnded(now: number): void {
    const f = this.#flush;
    this.#flush = undefined;
    this.#paceClock = 0;
    if (!f || f.bytes <= 0) return;
    const rate = f.bytes / Math.max(1, now - f.startedAt);
    this.#bytesPerMs = this.#bytesPerMs === 0 ? rate : this.#bytesPerMs * (1 - RATE_WEIGHT) + rate * RATE_WEIGHT;
  }

  /** The flush begun last failed or was abandoned: nothing to pace by, and nothing measured. */
  flushAbandoned(): void {
    this.#flush = undefined;
    this.#paceClock = 0;
  }

  /** Measured flush speed in memtable bytes per ms (0: none measured yet). */
  get bytesPerMs(): number {
    return this.#bytesPerMs;
  }

  /**
   * Whole milliseconds a write of `writeBytes` waits now, with the memtable at `memBytes` of at
   * most `limitBytes` and the flush begun last still running, at most MAX_WAIT_MS. Undefined when no flush has been measured yet, or none is running: the caller
   * keeps its fixed wait.
   */
  waitMs(writeBytes: number, memBytes: number, limitBytes: number, now: number): number | undefined {
    if (this.#bytesPerMs === 0 || !this.#flush) return undefined;
    const elapsed = now - this.#flush.startedAt;
    const expected = this.#flush.bytes / this.#bytesPerMs;
    // A flush past its expected end is assumed to need half as long again as it has run so far.
    const remainingMs = Math.max(1, expected - elapsed, elapsed * LATE_SHARE) * MARGIN;
    const left = Math.max(1, limitBytes - memBytes);
    this.#paceClock = Math.min(now + MAX_WAIT_MS, Math.max(this.#paceClock, now) + Math.min(remainingMs, (writeBytes * remainingMs) / left));
    return Math.max(0, Math.floor(this.#paceClock - now));
  }
}
