import { setImmediate as endOfTurn } from 'node:timers/promises';
import { batchCount, concatBatches } from './write-batch.js';

/** Writers merged into one WAL record at most (LevelDB caps its groups the same way). */
const MAX_GROUP_OPS = 64 * 1024;

type QueueItem =
  | { kind: 'write'; batch: Buffer; sync: boolean; resolve: () => void; reject: (e: unknown) => void }
  | { kind: 'task'; run: () => Promise<void> };

/**
 * The write queue. Writes and tasks (a memtable switch for a flush, a WAL sync, a no-space
 * recovery) run one at a time in the order they were queued, so no task races a WAL append.
 * Consecutive queued writes are committed as one group (group commit): one WAL record, one
 * fsync shared by every sync writer in it.
 */
const DONE: Promise<void> = Promise.resolve();

export class CommitQueue {
  readonly #commit: (batch: Buffer, sync: boolean) => Promise<void>;
  readonly #commitNow: ((batch: Buffer) => boolean) | undefined;
  readonly #failed: (err: unknown) => void;
  readonly #gatherSyncWriters: boolean;
  #queue: QueueItem[] = [];
  #draining = false;

  /**
   * `commit` writes one group's batch (sequence numbers unset) and applies it; `failed` is
   * told when it throws, before the group's writers are rejected. `gatherSyncWriters`: a
   * group led by a sync write waits for the end of the event loop's turn first (the I/O
   * callbacks of the turn have run by then), so every writer of the turn shares its fsync;
   * for a commit that fsyncs on this thread, where no writer can queue during the fsync.
   * `commitNow`, if given, commits a non-sync batch on the spot and returns true, or returns
   * false without doing anything when the batch has to wait (for room, for a flush); write()
   * tries it when nothing is queued or running, so a lone write costs no queue item, no drain
   * and none of their promises (1.8 KB less allocated per single put). It throws as commit does.
   */
  constructor(
    commit: (batch: Buffer, sync: boolean) => Promise<void>,
    failed: (err: unknown) => void,
    options: { gatherSyncWriters?: boolean; commitNow?: (batch: Buffer) => boolean } = {},
  ) {
    this.#commit = commit;
    this.#commitNow = options.commitNow;
    this.#failed = failed;
    this.#gatherSyncWriters = options.gatherSyncWriters ?? false;
  }

  /** Whether the queue is being worked through. */
  get busy(): boolean {
    return this.#draining;
  }

  /** Queues an encoded batch; settles when its group is committed. */
  write(batch: Buffer, sync: boolean): Promise<void> {
    if (!sync && !this.#draining && this.#commitNow !== undefined) {
      // Nothing queued or running (the queue is empty whenever it is not draining): no
      // writer or task this one could overtake.
      try {
        if (this.#commitNow(batch)) return DONE;
      } catch (err) {
        this.#failed(err);
        return Promise.reject(err);
      }
    }
    return new Promise((resolve, reject) => {
      this.#push({ kind: 'write', batch, sync, resolve, reject });
    });
  }

  /** Runs `task` once every item queued before it is done, with nothing else running. */
  run<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#push({ kind: 'task', run: () => task().then(resolve, reject) });
    });
  }

  #push(item: QueueItem): void {
    this.#queue.push(item);
    if (!this.#draining) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#queue.length > 0) {
        const head = this.#queue[0]!;
        if (head.kind === 'task') {
          this.#queue.shift();
          await head.run();
          continue;
        }
        if (this.#gatherSyncWriters && head.sync) await endOfTurn();
        const group: Array<Extract<QueueItem, { kind: 'write' }>> = [];
        let ops = 0;
        while (this.#queue.length > 0 && this.#queue[0]!.kind === 'write' && (group.length === 0 || ops < MAX_GROUP_OPS)) {
          const w = this.#queue.shift() as Extract<QueueItem, { kind: 'write' }>;
          group.push(w);
          ops += batchCount(w.batch);
        }
        try {
          await this.#commit(group.length === 1 ? group[0]!.batch : concatBatches(group.map((w) => w.batch)), group.some((w) => w.sync));
          for (const w of group) w.resolve();
        } catch (err) {
          this.#failed(err);
          for (const w of group) w.reject(err);
        }
      }
    } finally {
      this.#draining = false;
    }
  }
}
