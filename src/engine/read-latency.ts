/**
 * Whether this engine's synchronous table reads are slow: served by the disk rather than by
 * the page cache. A page-cached 4 KiB pread takes a few µs; an SSD's read 50–200 µs; a
 * network volume's or a spinning disk's, milliseconds.
 *
 * The choice it informs (the server's read-ahead, docs/server.md "Keys that are only on
 * disk"): a read on libuv's thread pool costs a round trip of wake-ups, tens of µs of CPU on
 * a VM, which is more than a page-cached pread costs on the event loop, but far less than
 * every client waiting for a disk read. So reads stay synchronous while they are fast, and go
 * to the thread pool for a while once a good share of them are slow.
 *
 * While reads go to the thread pool no synchronous read is timed. Instead, every CHECK_MS the
 * process's block-device reads are compared with the bytes the thread pool was asked to read:
 * once less than a quarter of them came from a disk (the page cache has warmed up; a window
 * with no read on the thread pool does not count), or at the
 * latest after SLOW_PERIOD_MS, the slow state ends and the synchronous reads that follow
 * decide again. On a disk that stays slow, a few reads (about 5) hold the event loop once
 * per period.
 */
export class ReadLatency {
  /** A synchronous read slower than this did not come from the page cache. */
  static readonly SLOW_READ_MS = 0.2;
  /** The share of recent reads that must be slow to call the disk slow. */
  static readonly SLOW_SHARE = 0.25;
  /** How long the slow state lasts at most before synchronous reads are timed again. */
  static readonly SLOW_PERIOD_MS = 10_000;
  /** How often, while slow, the share of the thread pool's reads that a disk served is checked. */
  static readonly CHECK_MS = 100;
  /** getrusage counts block input in 512-byte units. */
  static readonly BLOCK_INPUT_BYTES = 512;

  /** Moving average (weight 1/16) of 1 for a slow read, 0 for a fast one. */
  #slowShare = 0;
  /** performance.now() until which reads are called slow (0: they are not). */
  #slowUntil = 0;
  readonly #now: () => number;
  readonly #blockReads: () => number;
  #lastBlockReads: number;
  /** While slow: bytes the thread pool was asked to read since the last check, and when that is. */
  #asyncBytes = 0;
  #nextCheck = 0;

  /**
   * `blockReads`: the process's reads from block devices so far (getrusage's ru_inblock). A
   * read is slow only if the process read from a disk since the last slow one: a read that
   * took long because the thread was not scheduled (a busy machine) did not, and must not send
   * reads to the thread pool, which would cost that machine more CPU. The count is read only
   * for reads over SLOW_READ_MS (it is a system call).
   */
  constructor(now: () => number = () => performance.now(), blockReads: () => number = () => process.resourceUsage().fsRead) {
    this.#now = now;
    this.#blockReads = blockReads;
    this.#lastBlockReads = blockReads();
  }

  /** One synchronous read took `ms` milliseconds. */
  note(ms: number): void {
    let slow = 0;
    if (ms > ReadLatency.SLOW_READ_MS) {
      const blockReads = this.#blockReads();
      if (blockReads !== this.#lastBlockReads) slow = 1;
      this.#lastBlockReads = blockReads;
    }
    this.#slowShare += (slow - this.#slowShare) / 16;
    if (this.#slowShare > ReadLatency.SLOW_SHARE) {
      const now = this.#now();
      this.#slowUntil = now + ReadLatency.SLOW_PERIOD_MS;
      this.#slowShare = 0;
      this.#nextCheck = now + ReadLatency.CHECK_MS;
      this.#asyncBytes = 0;
      this.#lastBlockReads = this.#blockReads();
    }
  }

  /** A read of `bytes` was started on the thread pool. */
  noteAsyncRead(bytes: number): void {
    this.#asyncBytes += bytes;
  }

  /** Whether reads that can wait should go to the thread pool. One field compare while reads are fast. */
  get slow(): boolean {
    if (this.#slowUntil === 0) return false;
    const now = this.#now();
    if (now >= this.#slowUntil) return this.#fast();
    if (now >= this.#nextCheck) {
      const blockReads = this.#blockReads();
      const fromDisk = (blockReads - this.#lastBlockReads) * ReadLatency.BLOCK_INPUT_BYTES;
      const asked = this.#asyncBytes;
      this.#lastBlockReads = blockReads;
      this.#asyncBytes = 0;
      this.#nextCheck = now + ReadLatency.CHECK_MS;
      // A window with no read on the thread pool says nothing of the disk (and staying slow
      // costs nothing then: only a command that must read waits).
      if (asked > 0 && fromDisk <= asked * ReadLatency.SLOW_SHARE) return this.#fast();
    }
    return true;
  }

  #fast(): false {
    this.#slowUntil = 0;
    return false;
  }
}
