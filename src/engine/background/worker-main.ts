/**
 * The engine's background worker thread: runs flush and compaction jobs the main thread posts
 * (src/engine/background/worker-host.ts). It holds no env, no key dictionary and no master
 * key: only the file grants of each job, and the grants it asks for, one per output table.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { TdekvError } from '../../errors.js';
import { createGranted, openGrantedRead, type FileGrant } from '../../env/file-grant.js';
import type { EncryptedWritableFile } from '../../env/writable-file.js';
import { setFileFaults, type FileFault } from '../../util/file-io.js';
import type { JobContext } from '../background-job.js';
import { BlockCache } from '../block-cache.js';
import { runCompaction } from '../compaction/runner.js';
import { parseFileName } from '../file-names.js';
import { writeMemtable } from '../flush.js';
import type { InternalIterator } from '../iterator.js';
import { Memtable } from '../memtable.js';
import type { EngineTuning } from '../options.js';
import { TableReader } from '../table-reader.js';
import type { TableOutputContext } from '../table-output.js';
import { deserializeError, revivedFileMeta, serializeError, type CrashHow, type FromWorker, type ToWorker } from './protocol.js';
import { askOverChannel } from './fault-channel.js';
import { warmUpFlush } from './flush-warm-up.js';

/** Longer than the main thread's slices: here a slice only delays reading the host's messages (a cancel, a grant). */
const WORKER_SLICE_MS = 20;

const port = parentPort!;
const { faultChannel, warmUp } = workerData as { faultChannel: SharedArrayBuffer; warmUp?: EngineTuning };
/** A job arrived: the flush warm-up gives way at its next slice. */
let jobsArrived = false;
const cancelled = new Set<number>();
const requests = new Map<number, { resolve: (m: ToWorker) => void; reject: (err: Error) => void }>();
let nextRequestId = 1;
// Inputs are read once by a compaction: caching their blocks would only cost memory.
const noCache = new BlockCache(0);

function post(m: FromWorker): void {
  port.postMessage(m);
}

function request(m: { type: 'newTable'; jobId: number } | { type: 'remove'; jobId: number; number: number }): Promise<ToWorker> {
  const requestId = nextRequestId++;
  return new Promise((resolve, reject) => {
    requests.set(requestId, { resolve, reject });
    post({ ...m, requestId });
  });
}

function outputContext(jobId: number, tuning: EngineTuning): TableOutputContext {
  return {
    tuning,
    env: {
      create: () => Promise.reject(new TdekvError('INVALID_ARGUMENT', 'the background worker creates tables only through grants')),
      remove: async (name) => {
        const p = parseFileName(name);
        if (p?.kind !== 'table') throw new TdekvError('INVALID_ARGUMENT', `the background worker removes only its own output tables (asked for ${name})`);
        await request({ type: 'remove', jobId, number: p.number });
      },
    },
    newFileNumber: () => {
      throw new TdekvError('INVALID_ARGUMENT', 'table numbers come from the main thread (newTable)');
    },
    pendingOutputs: new Set(),
    newTable: async (): Promise<{ number: number; file: EncryptedWritableFile }> => {
      if (crashAtTable && --crashAtTable.countdown === 0) crash(crashAtTable.how);
      const m = await request({ type: 'newTable', jobId });
      if (m.type !== 'table') throw new TdekvError('IO_FAILED', `the engine answered a table request with ${m.type}`);
      return { number: m.number, file: await createGranted(m.grant) };
    },
  };
}

/**
 * Flushes running here: a compaction waits at its next slice until they are done. Writers
 * stop when the next memtable fills before the last one is flushed, so a flush must not share
 * this thread with a compaction (it took half of it, and a 3M-key load stopped 34 times).
 */
let flushes = 0;
let flushesDone: Promise<void> = Promise.resolve();
let flushesDoneResolve: () => void = () => undefined;

function jobContext(jobId: number, tuning: EngineTuning, kind: 'flush' | 'compaction'): JobContext {
  return {
    output: outputContext(jobId, tuning),
    sliceMs: () => WORKER_SLICE_MS,
    yieldSlice: async () => {
      await yieldToEventLoop();
      if (kind === 'compaction') while (flushes > 0 && !cancelled.has(jobId)) await flushesDone;
      if (cancelled.has(jobId)) throw new TdekvError('CLOSED', 'the database was closed during a compaction; the compaction was abandoned and its input files stay in use');
    },
  };
}

async function flush(m: Extract<ToWorker, { type: 'flush' }>): Promise<void> {
  if (flushes++ === 0) flushesDone = new Promise((resolve) => (flushesDoneResolve = resolve));
  try {
    const files = await writeMemtable(jobContext(m.jobId, m.tuning, 'flush'), { iterator: () => Memtable.iteratorOf(m.memtable) }, m.smallestSnapshot);
    post({ type: 'done', jobId: m.jobId, files, threadId });
  } finally {
    if (--flushes === 0) flushesDoneResolve();
  }
}

async function compact(m: Extract<ToWorker, { type: 'compact' }>): Promise<void> {
  const grants = new Map<number, FileGrant>();
  for (const g of m.grants) {
    const p = parseFileName(g.path);
    if (p?.kind === 'table') grants.set(p.number, g);
  }
  const readers: TableReader[] = [];
  const job = {
    ...m.job,
    inputs: [m.job.inputs[0].map(revivedFileMeta), m.job.inputs[1].map(revivedFileMeta)] as [ReturnType<typeof revivedFileMeta>[], ReturnType<typeof revivedFileMeta>[]],
    levelsBelow: m.job.levelsBelow.map((files) => files.map(revivedFileMeta)),
  };
  try {
    const files = await runCompaction(job, {
      ...jobContext(m.jobId, m.tuning, 'compaction'),
      openTable: (n: number): InternalIterator => {
        const grant = grants.get(n);
        if (!grant) throw new TdekvError('INVALID_ARGUMENT', `the compaction was not granted table ${n}`);
        grants.delete(n);
        const reader = TableReader.open(openGrantedRead(grant), n, noCache);
        readers.push(reader);
        return reader.iterator();
      },
      openTableReader: (n: number) => {
        const grant = grants.get(n);
        if (!grant) throw new TdekvError('INVALID_ARGUMENT', `the compaction was not granted table ${n}`);
        grants.delete(n);
        const reader = TableReader.open(openGrantedRead(grant), n, noCache);
        readers.push(reader);
        // Closed with the job's other readers.
        return { reader, release: () => undefined };
      },
    });
    post({ type: 'done', jobId: m.jobId, files, threadId });
  } finally {
    for (const r of readers) r.close();
    // Grants of inputs never opened: their keys go now.
    for (const g of grants.values()) g.key.fill(0);
  }
}

function run(jobId: number, work: Promise<void>): void {
  work
    .catch((err: unknown) => post({ type: 'failed', jobId, error: serializeError(err) }))
    .finally(() => cancelled.delete(jobId));
}

/** Tests: a crash armed to happen when a job asks for an output table. */
let crashAtTable: { how: CrashHow; countdown: number } | undefined;

function crash(how: CrashHow): void {
  if (how === 'exit') process.exit(70);
  setImmediate(() => {
    throw new Error('background worker crash requested by a test');
  });
}

/** Asks the main thread's injector about one file call, blocking this thread until it answers. */
function askMainThread(op: string, path: string): FileFault {
  return askOverChannel(faultChannel, () => post({ type: 'fault', op, path }));
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'flush':
      jobsArrived = true;
      run(m.jobId, flush(m));
      return;
    case 'compact':
      jobsArrived = true;
      run(m.jobId, compact(m));
      return;
    case 'table':
    case 'reply': {
      const r = requests.get(m.requestId);
      if (!r) return;
      requests.delete(m.requestId);
      if (m.type === 'reply' && m.error) r.reject(deserializeError(m.error));
      else r.resolve(m);
      return;
    }
    case 'cancel':
      cancelled.add(m.jobId);
      return;
    case 'faults':
      setFileFaults(m.installed ? (op, path) => askMainThread(op, path) : undefined);
      return;
    case 'crash':
      if (m.atTable === undefined) crash(m.how);
      else crashAtTable = { how: m.how, countdown: m.atTable };
      return;
  }
});

post({ type: 'ready' });
// Jobs are taken from now on; the warm-up runs only until the first one arrives.
if (warmUp !== undefined) {
  warmUpFlush(warmUp, WORKER_SLICE_MS, () => jobsArrived).then(
    (result) => post({ type: 'warmedUp', result }),
    (err: unknown) => post({ type: 'warmedUp', result: { rounds: 0, entriesWritten: 0, bytes: 0, stopped: false, error: String(err) } }),
  );
}
