import { TdekvError, errnoCode, isTdekvError } from '../errors.js';
import type { Logger } from '../log/logger.js';

/**
 * A full disk (or quota) is the one write failure that goes away by itself when an operator
 * frees space, and that leaves nothing acknowledged in doubt: the failed write was never
 * acknowledged, and the bytes before it are intact. So, as RocksDB's automatic recovery from
 * no-space errors, the engine refuses writes, retries with backoff, and resumes by itself.
 * Every other failure (EIO, a failed fsync, a damaged file) stays sticky until a reopen.
 */

const NO_SPACE_CODES: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT']);

/** Whether an ENOSPC or EDQUOT is anywhere in the cause chain (engine errors wrap the OS error). */
export function isNoSpaceError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = isTdekvError(e) ? undefined : errnoCode(e);
    if (code !== undefined && NO_SPACE_CODES.has(code)) return true;
  }
  return false;
}

/** An error shaped like the OS's ENOSPC, for work refused before it starts because it would not fit. */
export function noRoomError(work: string, needBytes: number, freeBytes: number, dataDir: string): TdekvError {
  const enospc: NodeJS.ErrnoException = Object.assign(new Error(`ENOSPC: no space left on device, ${work} needs ${needBytes} bytes, ${freeBytes} free in ${dataDir}`), { code: 'ENOSPC' });
  return new TdekvError('IO_FAILED', `not enough free space in ${dataDir} for a ${work}: it needs ${formatBytes(needBytes)}, ${formatBytes(freeBytes)} free (ENOSPC)`, { cause: enospc });
}

/**
 * Room kept free beyond a job's estimated output: the manifest, file dictionary and WAL
 * records that go with it, and the next flush. 1% of the file system, within [256 KiB, 64 MiB].
 */
export function spaceMargin(totalBytes: number): number {
  return Math.min(64 * 1024 * 1024, Math.max(256 * 1024, Math.floor(totalBytes / 100)));
}

/**
 * Room kept beyond a flush's output: its manifest edit, file dictionary and CURRENT records,
 * a few KiB. Small on purpose: a flush is what lets the WAL go, and failing one midway costs
 * no more than a refused start (its partial table is removed, the retry flushes again).
 */
export function flushMargin(totalBytes: number): number {
  return Math.min(64 * 1024, Math.max(16 * 1024, spaceMargin(totalBytes) >> 6));
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 * 1024) return `${(n / (1024 * 1024 * 1024)).toFixed(1)} GiB`;
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

export interface RetryPolicy {
  /** First wait after a failure (ms); it doubles after each failed retry... */
  initialMs: number;
  /** ...up to this (ms). */
  maxMs: number;
}

/**
 * A no-space condition being retried: what failed, since when, and when to try next. The
 * timer is unref'd (an embedded engine must not keep a process alive by retrying) and is
 * cancelled by close().
 */
export class NoSpaceRetry {
  readonly #policy: RetryPolicy;
  #delay: number;
  #timer: NodeJS.Timeout | undefined;
  #nextAt = 0;
  #recoveredAt = 0;
  /** The failure writes are refused for; undefined when writes are accepted. */
  error: unknown;
  since = 0;
  /** The WAL append itself failed: its tail may be torn, so recovery must retire it. */
  walDamaged = false;
  /** Retries that failed again, and recoveries, since open (for metrics). */
  retries = 0;
  recoveries = 0;

  constructor(policy: RetryPolicy) {
    this.#policy = policy;
    this.#delay = policy.initialMs;
  }

  get active(): boolean {
    return this.error !== undefined;
  }

  /** Milliseconds until the next retry, when one is scheduled. */
  get nextRetryInMs(): number | undefined {
    return this.#timer === undefined ? undefined : Math.max(0, this.#nextAt - Date.now());
  }

  /** Records a (first or repeated) failure; `retry` runs after the current backoff. */
  fail(err: unknown, walDamaged: boolean, retry: () => void): void {
    if (this.error === undefined) {
      this.since = Date.now();
      // Back soon after a recovery (space freed only briefly): keep backing off.
      if (Date.now() - this.#recoveredAt > this.#policy.maxMs) this.#delay = this.#policy.initialMs;
    } else {
      this.retries++;
    }
    this.error = err;
    this.walDamaged ||= walDamaged;
    this.#schedule(retry);
  }

  /** Writes are accepted again. The backoff is kept if the condition comes straight back. */
  recovered(): void {
    this.error = undefined;
    this.walDamaged = false;
    this.recoveries++;
    this.#recoveredAt = Date.now();
    this.cancel();
  }

  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(retry: () => void): void {
    this.cancel();
    const delay = this.#delay;
    this.#delay = Math.min(this.#policy.maxMs, this.#delay * 2);
    this.#nextAt = Date.now() + delay;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      retry();
    }, delay);
    this.#timer.unref();
  }
}

/** A compaction not started for lack of room, as /status, INFO and the metrics show it. */
export interface CompactionPause {
  needBytes: number;
  freeBytes: number;
  /** When the first pause of this stretch began (ms since the epoch). */
  since: number;
}

/**
 * Background compactions waiting for room. Flushes are never paused here: they hold
 * acknowledged writes and go first; a compaction must leave room for the next one.
 */
export class CompactionPauses {
  readonly #policy: RetryPolicy;
  #delay: number;
  #timer: NodeJS.Timeout | undefined;
  current: CompactionPause | undefined;
  /** Compactions not started for lack of room, since open. */
  count = 0;

  constructor(policy: RetryPolicy) {
    this.#policy = policy;
    this.#delay = policy.initialMs;
  }

  /** Whether a retry is pending: background work should not re-check space before it. */
  get waiting(): boolean {
    return this.#timer !== undefined;
  }

  pause(needBytes: number, freeBytes: number, retry: () => void): void {
    this.count++;
    this.current = { needBytes, freeBytes, since: this.current?.since ?? Date.now() };
    clearTimeout(this.#timer);
    const delay = this.#delay;
    this.#delay = Math.min(this.#policy.maxMs, this.#delay * 2);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      retry();
    }, delay);
    this.#timer.unref();
  }

  /** A compaction found room (or there was none to do). */
  resume(): void {
    this.current = undefined;
    this.#delay = this.#policy.initialMs;
    this.cancel();
  }

  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** The free space of the data dir's file system, as the checks before a write, flush or compaction read it. */
export class DiskRoom {
  readonly #freeSpace: () => Promise<{ free: number; total: number }>;
  readonly #dataDir: string;
  readonly #logger: Logger;

  constructor(freeSpace: () => Promise<{ free: number; total: number }>, dataDir: string, logger: Logger) {
    this.#freeSpace = freeSpace;
    this.#dataDir = dataDir;
    this.#logger = logger;
  }

  /** Free and total bytes, or undefined when they cannot be told (the work then goes ahead). */
  async read(): Promise<{ free: number; total: number } | undefined> {
    try {
      return await this.#freeSpace();
    } catch (err) {
      this.#logger.debug({ err: String(err) }, 'could not read the free space of the data dir');
      return undefined;
    }
  }

  /** Throws a no-space error before `work` starts when its output and its margin would not fit. */
  async check(work: string, bytes: number, margin: (totalBytes: number) => number): Promise<void> {
    const room = await this.read();
    if (room && room.free < bytes + margin(room.total)) throw noRoomError(work, bytes + margin(room.total), room.free, this.#dataDir);
  }
}
