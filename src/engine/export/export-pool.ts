import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { zeroize } from '../../crypto/random.js';
import type { FileFrame } from '../../env/encrypted-buffer-sink.js';
import type { FileGrant } from '../../env/file-grant.js';
import { TdekvError } from '../../errors.js';
import { deserializeError } from '../background/protocol.js';
import type { EngineFileKind } from '../file-names.js';
import type { CopyTableResult, ExportResult, FaultQuestion, FaultsInstalled, PoolJob } from './export-protocol.js';
import { currentFileFaults, watchFileFaults } from '../../util/file-io.js';
import { answerFault, newFaultChannel } from '../background/fault-channel.js';

interface Pending {
  job: PoolJob;
  resolve(result: ExportResult | CopyTableResult): void;
  reject(err: Error): void;
}

interface Lane {
  worker: Worker;
  busy: Pending | undefined;
  /** Where the test fault injector answers this worker's file calls (background/fault-channel.ts). */
  faultChannel: SharedArrayBuffer;
}

/**
 * Worker threads that export files for a backup (file-export.ts) or copy tables for the
 * encryption scan, so their per-byte work (every block's tag checked and made anew, two CTR
 * passes) runs on every core instead of one. Jobs queue and go to the first free worker; the workers start at the first job and
 * end with close(). Key material reaches a worker only as the job's grant and frame.
 */
export class ExportPool {
  readonly #size: number;
  readonly #lanes: Lane[] = [];
  readonly #queue: Pending[] = [];
  #nextId = 1;
  #closed = false;
  /** Tells the workers when a test installs or removes the file fault injector. */
  #unwatchFaults: (() => void) | undefined;

  constructor(size = Math.max(1, Math.min(4, availableParallelism()))) {
    this.#size = size;
  }

  get size(): number {
    return this.#size;
  }

  /** Exports one granted file under `frame`; resolves with its ciphertext, in order, in chunks. The grant's and the frame's keys are wiped once posted. */
  async export(grant: FileGrant, frame: FileFrame, parsed: { kind: EngineFileKind; number: number }): Promise<Buffer[]> {
    const r = (await this.#run({ kind: 'export', id: this.#nextId++, grant, frame, parsed })) as ExportResult & { ok: true };
    return r.chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  }

  /**
   * Copies table `tableNumber` (read grant) block by block into a new table (create grant),
   * re-framed under the new file's key: the encryption scan's rewrite in place, on a worker.
   * Resolves with the new table's size once it is synced and closed.
   */
  async copyTable(grant: FileGrant, output: FileGrant, tableNumber: number): Promise<number> {
    const r = (await this.#run({ kind: 'copy-table', id: this.#nextId++, grant, output, tableNumber })) as CopyTableResult & { ok: true };
    return r.size;
  }

  #run(job: PoolJob): Promise<ExportResult | CopyTableResult> {
    if (this.#closed) return Promise.reject(new TdekvError('CLOSED', 'the export pool is closed'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ job, resolve, reject });
      this.#dispatch();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unwatchFaults?.();
    for (const q of this.#queue.splice(0)) q.reject(new TdekvError('CLOSED', 'the export pool closed before the file was exported'));
    await Promise.all(this.#lanes.splice(0).map((l) => l.worker.terminate()));
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      let lane = this.#lanes.find((l) => l.busy === undefined);
      if (lane === undefined && this.#lanes.length < this.#size) lane = this.#start();
      if (lane === undefined) return;
      const next = this.#queue.shift()!;
      lane.busy = next;
      lane.worker.postMessage(next.job);
      // The worker has its own copies now.
      zeroize(next.job.grant.key as Buffer);
      if (next.job.kind === 'export') zeroize(next.job.frame.key);
      else zeroize(next.job.output.key as Buffer);
    }
  }

  #start(): Lane {
    const faultChannel = newFaultChannel();
    const worker = new Worker(new URL('./export-worker-main.js', import.meta.url), { workerData: { faultChannel } });
    const lane: Lane = { worker, busy: undefined, faultChannel };
    this.#lanes.push(lane);
    this.#unwatchFaults ??= watchFileFaults((installed) => {
      for (const l of this.#lanes) l.worker.postMessage({ kind: 'faults', installed } satisfies FaultsInstalled);
    });
    if (currentFileFaults()) worker.postMessage({ kind: 'faults', installed: true } satisfies FaultsInstalled);
    worker.on('message', (r: ExportResult | CopyTableResult | FaultQuestion) => {
      if ('fault' in r) {
        answerFault(lane.faultChannel, r.fault.op, r.fault.path);
        return;
      }
      const busy = lane.busy;
      lane.busy = undefined;
      if (busy !== undefined && busy.job.id === r.id) {
        if (r.ok) busy.resolve(r);
        else busy.reject(deserializeError(r.error));
      }
      this.#dispatch();
    });
    const fail = (why: string): void => {
      const i = this.#lanes.indexOf(lane);
      if (i >= 0) this.#lanes.splice(i, 1);
      lane.busy?.reject(new TdekvError('IO_FAILED', `an export worker thread ${why} while exporting ${lane.busy.job.grant.path}; the backup is not complete`));
      lane.busy = undefined;
      if (!this.#closed) this.#dispatch();
    };
    worker.on('error', (err) => fail(`failed (${String(err)})`));
    worker.on('exit', (code) => {
      if (!this.#closed) fail(`exited (code ${code})`);
    });
    return lane;
  }
}
