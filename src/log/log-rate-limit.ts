/**
 * At most one log line per interval for an event a client can cause at will (a wrong AUTH
 * password, a command it may not run): a hostile client repeating it must not flood the log
 * or the disk it is on. The line that goes out says how many were held back before it; the
 * counters (INFO `acl_access_denied_auth`, metrics) still count every one.
 */
export class LogRateLimit {
  readonly #intervalMs: number;
  readonly #now: () => number;
  #nextAt = 0;
  #suppressed = 0;

  constructor(intervalMs: number, now: () => number = Date.now) {
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** Calls `write` with the number of events held back since the last line, or holds this one back. */
  run(write: (suppressed: number) => void): void {
    const t = this.#now();
    if (t < this.#nextAt) {
      this.#suppressed++;
      return;
    }
    const held = this.#suppressed;
    this.#suppressed = 0;
    this.#nextAt = t + this.#intervalMs;
    write(held);
  }
}
