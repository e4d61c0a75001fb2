import { Worker } from 'node:worker_threads';
import { TdekvError } from '../../errors.js';
import type { FileGrant } from '../../env/file-grant.js';
import type { Logger } from '../../log/logger.js';
import { currentFileFaults, watchFileFaults } from '../../util/file-io.js';
import { answerFault, newFaultChannel } from './fault-channel.js';
import type { CompactionJob } from '../compaction/compaction.js';
import type { EngineFs } from '../engine-fs.js';
import { tableName } from '../file-names.js';
import type { EngineTuning } from '../options.js';
import type { FileMeta } from '../version-edit.js';
import type { SharedMemtable } from '../skip-list.js';
import type { WarmUpResult } from './flush-warm-up.js';
import { deserializeError, revivedFileMeta, serializeError, type CrashHow, type FromWorker, type ToWorker } from './protocol.js';

/** What the host needs of the engine: its files' grants, table numbers, and the pending-output set it shares with obsolete-file removal. */
export interface BackgroundHostContext {
  fs: Pick<EngineFs, 'grantRead' | 'grantCreate' | 'remove' | 'dataDir'>;
  newFileNumber(): number;
  pendingOutputs: Set<number>;
  tuning: EngineTuning;
  logger: Logger;
  /** The worker died (an uncaught error, an unexpected exit): a background error for the engine. */
  onCrash(err: TdekvError): void;
}

interface Job {
  kind: 'flush' | 'compaction';
  resolve(files: FileMeta[]): void;
  reject(err: Error): void;
  /** Numbers handed out to this job: the only ones it may ask to remove. */
  outputs: Set<number>;
}

/** Counters for tests and /status: jobs that really ran on the worker thread, and its thread id. */
export interface BackgroundThreadInfo {
  /** Set once the worker has loaded and takes jobs; undefined before, and after it ended. */
  threadId: number | undefined;
  flushes: number;
  compactions: number;
  /** What the flush warm-up did, once it ended (only for a worker started with startNow()). */
  warmUp?: WarmUpResult;
}

/**
 * The main thread's side of the engine's background worker (one per engine, started at the
 * first job): posts flush and compaction jobs with grants for their inputs, answers the
 * worker's requests for output tables (numbered here, registered as pending outputs, created
 * and granted by the env), and returns each job's output metadata to the engine, which
 * installs it. A crashed worker fails every job in flight and is reported once (onCrash).
 */
export class BackgroundWorker {
  readonly #ctx: BackgroundHostContext;
  #worker: Worker | undefined;
  #exited: Promise<void> | undefined;
  #terminating = false;
  /** The worker has loaded its modules: jobs go to it (before, the engine runs them in-process). */
  #ready = false;
  #readyWaiters: Array<{ resolve(): void; reject(err: Error): void }> = [];
  /** terminate() was called (the engine closed): no worker is started again. */
  #closed = false;
  /** Requests of the worker being answered (env calls): terminate() waits for them, so none runs after the engine closed. */
  readonly #answering = new Set<Promise<void>>();
  /** Why the worker died unexpectedly: it is not restarted (the engine refuses writes until a reopen). */
  #crash: TdekvError | undefined;
  readonly #jobs = new Map<number, Job>();
  #nextJobId = 1;
  readonly #faultChannel = newFaultChannel();
  #unwatchFaults: (() => void) | undefined;
  readonly info: BackgroundThreadInfo = { threadId: undefined, flushes: 0, compactions: 0 };

  constructor(ctx: BackgroundHostContext) {
    this.#ctx = ctx;
  }

  /** Flushes an immutable memtable to level-0 tables on the worker, which reads it in shared memory. */
  flush(memtable: SharedMemtable, smallestSnapshot: number): Promise<FileMeta[]> {
    return this.#run('flush', (jobId) => ({ type: 'flush', jobId, tuning: this.#ctx.tuning, memtable, smallestSnapshot }), [], []);
  }

  /** Runs a compaction on the worker with read grants for exactly its input tables. */
  compact(job: CompactionJob): Promise<FileMeta[]> {
    const grants: FileGrant[] = [];
    try {
      for (const f of [...job.inputs[0], ...job.inputs[1]]) grants.push(this.#ctx.fs.grantRead(tableName(f.number)));
    } catch (err) {
      for (const g of grants) g.key.fill(0);
      return Promise.reject(err);
    }
    return this.#run('compaction', (jobId) => ({ type: 'compact', jobId, tuning: this.#ctx.tuning, job, grants }), [], grants);
  }

  /**
   * Starts the thread now, and has it run the flush code once on made-up entries
   * (flush-warm-up.ts) until its first job: for a long-running process, whose first flush
   * then runs compiled code. Does nothing if the thread runs already.
   */
  startNow(): void {
    if (this.#crash) throw this.#crash;
    if (!this.#worker && !this.#closed) this.#start(true);
  }

  /**
   * Starts the thread ahead of the first job (a worker takes tens of ms to load): called when
   * the first memtable is an eighth full, so engines that write little never start one.
   */
  warmUp(): void {
    if (this.#crash) throw this.#crash;
    if (!this.#worker && !this.#closed) this.#start();
  }

  /** Whether the worker takes jobs now. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Starts the worker if needed (see startNow() for `warmUpFlush`) and resolves once it takes jobs. */
  whenReady(warmUpFlush = false): Promise<void> {
    if (this.#ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      try {
        if (warmUpFlush) this.startNow();
        else this.warmUp();
      } catch (err) {
        reject(err as Error);
        return;
      }
      // Someone waits for it: it keeps the process alive until it is ready (idle, it does not).
      this.#worker?.ref();
      this.#readyWaiters.push({ resolve, reject });
    });
  }

  /** Compactions in flight give up at their next slice (close()); flushes run to their end. */
  cancelCompactions(): void {
    for (const [jobId, job] of this.#jobs) if (job.kind === 'compaction') this.#post({ type: 'cancel', jobId });
  }

  get busy(): boolean {
    return this.#jobs.size > 0;
  }

  /** Stops the worker. Jobs still in flight fail; their outputs stop being pending, so obsolete-file removal deletes them. */
  async terminate(): Promise<void> {
    this.#closed = true;
    this.#unwatchFaults?.();
    this.#unwatchFaults = undefined;
    const w = this.#worker;
    if (w) {
      this.#terminating = true;
      // An idle worker is unref'd, and so is the handle its exit is reported on: without this,
      // a process with nothing else to do could end its event loop while close() still awaits
      // the exit (seen under load as a close() that never returned, its test cancelled).
      w.ref();
      await w.terminate();
      await this.#exited;
    }
    while (this.#answering.size > 0) await Promise.allSettled([...this.#answering]);
  }

  /** Tests only: makes the worker die as a crash would, now or when a job asks for its atTable-th output from now (starting it if needed). */
  crashForTest(how: CrashHow, atTable?: number): void {
    this.#start().postMessage({ type: 'crash', how, ...(atTable === undefined ? {} : { atTable }) } satisfies ToWorker);
  }

  #run(kind: Job['kind'], message: (jobId: number) => ToWorker, transfer: ArrayBuffer[], grants: FileGrant[]): Promise<FileMeta[]> {
    const jobId = this.#nextJobId++;
    return new Promise<FileMeta[]>((resolve, reject) => {
      try {
        const worker = this.#start();
        this.#jobs.set(jobId, { kind, resolve, reject, outputs: new Set() });
        worker.ref();
        worker.postMessage(message(jobId), transfer);
      } catch (err) {
        this.#jobs.delete(jobId);
        reject(err);
      } finally {
        // The worker got its own copies; ours go now.
        for (const g of grants) g.key.fill(0);
      }
    });
  }

  #start(warmUpFlush = false): Worker {
    if (this.#worker) return this.#worker;
    if (this.#crash) throw this.#crash;
    if (this.#closed) throw new TdekvError('CLOSED', 'the database is closed; no background job is started');
    const worker = new Worker(new URL('./worker-main.js', import.meta.url), { workerData: { faultChannel: this.#faultChannel, ...(warmUpFlush ? { warmUp: this.#ctx.tuning } : {}) } });
    this.#worker = worker;
    this.#terminating = false;
    worker.on('message', (m: FromWorker) => this.#onMessage(m));
    let crash: TdekvError | undefined;
    worker.on('error', (err) => {
      crash ??= new TdekvError('IO_FAILED', `the engine's background worker thread failed (${String(err)}); flushes and compactions stopped. Writes are refused until the database is reopened; acknowledged writes are in the write-ahead log of ${this.#ctx.fs.dataDir}`, { cause: err });
    });
    this.#exited = new Promise((resolve) => {
      worker.once('exit', (code) => {
        if (this.#worker === worker) this.#worker = undefined;
        this.info.threadId = undefined;
        this.#ready = false;
        const expected = this.#terminating;
        crash ??= new TdekvError('IO_FAILED', `the engine's background worker thread exited unexpectedly (code ${code}); flushes and compactions stopped. Writes are refused until the database is reopened; acknowledged writes are in the write-ahead log of ${this.#ctx.fs.dataDir}`);
        const failure = expected ? new TdekvError('CLOSED', 'the database was closed while a background job ran; the job was abandoned') : crash;
        this.#failAll(failure);
        for (const w of this.#readyWaiters.splice(0)) w.reject(failure);
        if (!expected) {
          this.#crash = crash;
          this.#ctx.logger.error({ err: crash }, 'the background worker thread died');
          this.#ctx.onCrash(crash);
        }
        resolve();
      });
    });
    // A test's file faults apply to the worker's file calls too: it asks this thread about each.
    this.#unwatchFaults ??= watchFileFaults((installed) => this.#post({ type: 'faults', installed }));
    if (currentFileFaults()) worker.postMessage({ type: 'faults', installed: true } satisfies ToWorker);
    worker.unref();
    return worker;
  }

  #failAll(err: Error): void {
    const jobs = [...this.#jobs.values()];
    this.#jobs.clear();
    for (const job of jobs) {
      // Not installed and no longer written: obsolete-file removal deletes them.
      for (const n of job.outputs) this.#ctx.pendingOutputs.delete(n);
      job.reject(err);
    }
  }

  /**
   * An idle worker does not keep the process alive. A terminating one does, until its exit is
   * reported: a job's last message or 'ready' arriving after terminate() began must not unref
   * it again (seen under load as a close() whose event loop ended before the exit came).
   */
  #unrefIfIdle(): void {
    if (this.#jobs.size === 0 && !this.#terminating) this.#worker?.unref();
  }

  #post(m: ToWorker): void {
    this.#worker?.postMessage(m);
  }

  #finished(jobId: number): Job | undefined {
    const job = this.#jobs.get(jobId);
    this.#jobs.delete(jobId);
    this.#unrefIfIdle();
    return job;
  }

  #onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'ready':
        this.#ready = true;
        this.info.threadId = this.#worker?.threadId;
        for (const w of this.#readyWaiters.splice(0)) w.resolve();
        this.#unrefIfIdle();
        return;
      case 'done': {
        const job = this.#finished(m.jobId);
        if (!job) return;
        if (job.kind === 'flush') this.info.flushes++;
        else this.info.compactions++;
        job.resolve(m.files.map(revivedFileMeta));
        return;
      }
      case 'failed': {
        const job = this.#finished(m.jobId);
        job?.reject(deserializeError(m.error));
        return;
      }
      case 'newTable':
        this.#answer(this.#grantTable(m.jobId, m.requestId));
        return;
      case 'remove':
        this.#answer(this.#removeTable(m.jobId, m.requestId, m.number));
        return;
      case 'fault':
        this.#answerFault(m.op, m.path);
        return;
      case 'warmedUp':
        this.info.warmUp = m.result;
        if (m.result.error !== undefined) this.#ctx.logger.warn({ err: m.result.error }, 'the background worker could not warm up its flush code; the first flush compiles it instead');
        return;
    }
  }

  #answer(p: Promise<void>): void {
    const tracked = p.catch((err: unknown) => this.#ctx.logger.warn({ err }, 'answering the background worker failed')).finally(() => this.#answering.delete(tracked));
    this.#answering.add(tracked);
  }

  async #grantTable(jobId: number, requestId: number): Promise<void> {
    const job = this.#jobs.get(jobId);
    if (!job) return;
    // As TableOutput does in-process: pending before the file exists, so obsolete-file removal never takes it.
    const number = this.#ctx.newFileNumber();
    this.#ctx.pendingOutputs.add(number);
    job.outputs.add(number);
    let grant: FileGrant;
    try {
      grant = await this.#ctx.fs.grantCreate(tableName(number));
    } catch (err) {
      this.#ctx.pendingOutputs.delete(number);
      job.outputs.delete(number);
      this.#post({ type: 'reply', requestId, error: serializeError(err) });
      return;
    }
    if (this.#jobs.get(jobId) !== job) {
      // The job ended (the worker crashed) while the file was created: nobody writes it.
      grant.key.fill(0);
      this.#ctx.pendingOutputs.delete(number);
      return;
    }
    this.#post({ type: 'table', requestId, number, grant });
    grant.key.fill(0);
  }

  async #removeTable(jobId: number, requestId: number, number: number): Promise<void> {
    const job = this.#jobs.get(jobId);
    if (!job?.outputs.has(number)) {
      this.#post({ type: 'reply', requestId, error: serializeError(new TdekvError('INVALID_ARGUMENT', `background job ${jobId} asked to remove table ${number}, which is not one of its outputs`)) });
      return;
    }
    let error: unknown;
    try {
      await this.#ctx.fs.remove(tableName(number));
    } catch (err) {
      error = err;
    }
    // Removed, or left to obsolete-file removal: either way no longer an output.
    this.#ctx.pendingOutputs.delete(number);
    job.outputs.delete(number);
    this.#post(error === undefined ? { type: 'reply', requestId } : { type: 'reply', requestId, error: serializeError(error) });
  }

  #answerFault(op: string, path: string): void {
    answerFault(this.#faultChannel, op, path);
  }
}
