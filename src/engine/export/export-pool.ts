import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { zeroize } from '../../crypto/random.js';
import type { FileFrame } from '../../env/encrypted-buffer-sink.js';
import type { FileGrant } from '../../env/file-grant.js';
import { TdekvError } from '../../errors.js';
import { deserializeError } from '../background/protocol.js';
import type { EngineFileKind } from '../file-names.js';
import type { ExportJob, ExportResult } from './export-protocol.js';

interface Lane {
  worker: Worker;
  busy: { job: ExportJob; resolve(data: Buffer[]): void; reject(err: Error): void } | undefined;
}

/**
 * Worker threads that export files for a backup (file-export.ts), so the per-byte work of a
 * backup (every block's tag checked and made anew, two CTR passes) runs on every core instead
 * of one. Jobs queue and go to the first free worker; the workers start at the first job and
 * end with close(). Key material reaches a worker only as the job's grant and frame.
 */
export class ExportPool {
  readonly #size: number;
  readonly #lanes: Lane[] = [];
  readonly #queue: Array<{ job: ExportJob; resolve(data: Buffer[]): void; reject(err: Error): void }> = [];
  #nextId = 1;
  #closed = false;

  constructor(size = Math.max(1, Math.min(4, availableParallelism()))) {
    this.#size = size;
  }

  get size(): number {
    return this.#size;
  }

  /** Exports one granted file under `frame`; resolves with its ciphertext, in order, in chunks. The grant's and the frame's keys are wiped once posted. */
  export(grant: FileGrant, frame: FileFrame, parsed: { kind: EngineFileKind; number: number }): Promise<Buffer[]> {
    if (this.#closed) return Promise.reject(new TdekvError('CLOSED', 'the export pool is closed'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ job: { id: this.#nextId++, grant, frame, parsed }, resolve, reject });
      this.#dispatch();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
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
      zeroize(next.job.grant.key as Buffer, next.job.frame.key);
    }
  }

  #start(): Lane {
    const worker = new Worker(new URL('./export-worker-main.js', import.meta.url));
    const lane: Lane = { worker, busy: undefined };
    this.#lanes.push(lane);
    worker.on('message', (r: ExportResult) => {
      const busy = lane.busy;
      lane.busy = undefined;
      if (busy !== undefined && busy.job.id === r.id) {
        if (r.ok) busy.resolve(r.chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength)));
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
