/**
 * `scan-rate-limit`: after each step of the encryption scan (one table, or one merge of level
 * 0), waits as long as the step's bytes take at the limit, less the time the step took. So the
 * average rate stays at the limit whatever the table sizes; a step is never cut in the middle
 * (a compaction is one unit of crash safety).
 */
export class ScanThrottle {
  /** Bytes per second; 0 = unlimited. */
  limit = 0;

  /** Resolves after the pause, or at once when `interrupted` resolves (suspend, close). */
  async wait(bytes: number, elapsedSec: number, interrupted: Promise<void>): Promise<void> {
    if (this.limit <= 0 || bytes <= 0) return;
    const pauseMs = (bytes / this.limit - elapsedSec) * 1000;
    if (pauseMs <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([interrupted, new Promise<void>((resolve) => (timer = setTimeout(resolve, pauseMs)))]);
    clearTimeout(timer);
  }
}
