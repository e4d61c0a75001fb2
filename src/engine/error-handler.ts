import { TdekvError, isTdekvError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { isNoSpaceError, NoSpaceRetry, type RetryPolicy } from './no-space-recovery.js';

/** Why the engine refuses writes, and whether it clears by itself (a full disk) or only by a reopen. */
export interface WriteFailure {
  error: TdekvError;
  recoverable: boolean;
}

/**
 * Why writes are refused, as RocksDB's ErrorHandler keeps it: a full disk is retried with
 * backoff (no-space-recovery.ts) and clears by itself; any other failure of a write, flush
 * or compaction is sticky until a reopen.
 */
export class ErrorHandler {
  readonly noSpace: NoSpaceRetry;
  /** A failure only a reopen clears (falsy while there is none). */
  #sticky: unknown;
  readonly #dataDir: string;
  readonly #logger: Logger;
  readonly #closing: () => boolean;
  readonly #retry: () => void;

  /** `closing`: whether close() has begun; `retry`: queues a no-space recovery attempt. */
  constructor(policy: RetryPolicy, dataDir: string, logger: Logger, hooks: { closing(): boolean; retry(): void }) {
    this.noSpace = new NoSpaceRetry(policy);
    this.#dataDir = dataDir;
    this.#logger = logger;
    this.#closing = hooks.closing;
    this.#retry = hooks.retry;
  }

  /** Whether a failure only a reopen clears happened. */
  get sticky(): boolean {
    return Boolean(this.#sticky);
  }

  /** Whether writes are refused now, for either reason. */
  get refusing(): boolean {
    return this.sticky || this.noSpace.active;
  }

  /**
   * Puts the engine in the state a failed write, flush or compaction calls for: a full disk
   * is retried with backoff (writes refused meanwhile); anything else refuses writes until
   * a reopen. `walDamaged`: the WAL append itself failed, so its tail may be torn.
   */
  failed(err: unknown, walDamaged: boolean): void {
    // CLOSED while closing is the close itself; otherwise (the env closed under the engine) it is final.
    if (this.#sticky || (this.#closing() && isTdekvError(err, 'CLOSED'))) return;
    // A refusal thrown because the state is already set is not a new failure.
    if (this.noSpace.active && !walDamaged && (err === this.noSpace.error || (err as { cause?: unknown })?.cause === this.noSpace.error)) return;
    if (isNoSpaceError(err)) {
      const first = !this.noSpace.active;
      this.noSpace.fail(err, walDamaged, this.#retry);
      if (first) this.#logger.warn({ err: String(err), dataDir: this.#dataDir }, 'the data dir is out of space: writes are refused and retried with backoff; they resume by themselves once space is freed');
      return;
    }
    this.#sticky = err;
    this.noSpace.cancel();
    this.#logger.error({ err }, 'a write, flush or compaction failed; writes are refused until the database is reopened');
  }

  /** Records a sticky failure, unless one is recorded already (nothing is logged: the caller's error says it). */
  failSticky(err: unknown): void {
    this.#sticky ??= err;
  }

  throwIfRefused(): void {
    if (!this.#sticky && this.noSpace.active) {
      const e = this.noSpace.error;
      const why = e instanceof Error ? e.message : String(e);
      throw new TdekvError('IO_FAILED', `writes are refused: the data dir ${this.#dataDir} is out of space (${why}); they resume by themselves once space is freed (retried with backoff)`, { cause: e });
    }
    if (this.#sticky) {
      const e = this.#sticky;
      if (e instanceof TdekvError) throw new TdekvError(e.code, `an earlier write, flush or compaction failed: ${e.message}. Reopen the database after fixing the cause; acknowledged writes are in the write-ahead log.`, { cause: e });
      throw new TdekvError('IO_FAILED', `an earlier write, flush or compaction failed (${String(e)}); reopen the database after fixing the cause`, { cause: e });
    }
  }

  /** Why writes are refused now, or undefined when they are accepted. */
  failure(): WriteFailure | undefined {
    if (!this.refusing) return undefined;
    try {
      this.throwIfRefused();
    } catch (err) {
      return { error: err as TdekvError, recoverable: !this.#sticky };
    }
    return undefined;
  }

  /** The stats fields that say why writes are refused. */
  describe(): { backgroundError?: string; backgroundErrorRecoverable?: boolean; noSpaceNextRetryMs?: number } {
    if (this.#sticky) return { backgroundError: String(this.#sticky) };
    if (!this.noSpace.active) return {};
    const out: { backgroundError?: string; backgroundErrorRecoverable?: boolean; noSpaceNextRetryMs?: number } = { backgroundError: String(this.noSpace.error), backgroundErrorRecoverable: true };
    const next = this.noSpace.nextRetryInMs;
    if (next !== undefined) out.noSpaceNextRetryMs = next;
    return out;
  }
}
