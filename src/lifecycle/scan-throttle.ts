/**
 * `scan-rate-limit` as a token bucket: the scan takes bytes as it writes them — within a table
 * (the engine's block copy asks every 256 KiB) and for whatever a step wrote unpaced (a merge
 * of level 0) — and waits when it is ahead of the limit, so its work is spread evenly rather
 * than coming in bursts. A short burst (BURST_MS of credit) is allowed after an idle spell.
 */
const BURST_MS = 50;

export class ScanThrottle {
  /** Bytes per second; 0 = unlimited. */
  limit = 0;
  /** When the bytes taken so far are paid for (performance.now() time). */
  #paidUntil = 0;

  /** Resolves once `bytes` fit under the limit, or at once when `interrupted` resolves (suspend, close). */
  async take(bytes: number, interrupted: Promise<void>): Promise<void> {
    if (this.limit <= 0 || bytes <= 0) return;
    const now = performance.now();
    this.#paidUntil = Math.max(this.#paidUntil, now - BURST_MS) + (bytes / this.limit) * 1000;
    const waitMs = this.#paidUntil - now;
    if (waitMs <= 1) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([interrupted, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
  }
}
