/**
 * One store's bulk load in its own process (forked by bulk-load-bench.ts): `keys` new keys in
 * random key order, in batches of `batch` puts without fsync, each awaited before the next,
 * every batch timed. Then, where the store lets it be observed (tdekv's Engine), its write
 * stalls and how long its background work takes to catch up once the writer stops. Reads back
 * a sample of keys so no store can win by dropping writes. The parent owns the directory.
 */
import { summarizeBatches, type BatchLatency } from './batch-latency.js';
import { sendToParent, serveChild } from './child-process.js';
import { DataSet } from './engine-data.js';
import { openDriver, type EngineName } from './engine-driver.js';

export interface BulkLoadJob {
  engine: EngineName;
  dir: string;
  keys: number;
  batch: number;
}

export interface BulkLoadResult {
  ops: number;
  ms: number;
  latency: BatchLatency;
  /** Engine only: write slowdowns (1 ms each) and stops (waits for a flush or compaction) during the load. */
  stalls?: { writeSlowdowns: number; writeStops: number; flushes: number; compactions: number };
  /** Engine only: from the last batch's acknowledgement until no flush or compaction is pending. */
  catchUpMs?: number;
  /** process.resourceUsage().maxRSS, KiB. */
  maxRssKiB: number;
}

const VERIFY_KEYS = 1000;

async function run(job: BulkLoadJob): Promise<BulkLoadResult> {
  const progress = (text: string): void => void sendToParent<BulkLoadResult>({ type: 'progress', text: `${job.engine}: ${text}` });
  const data = new DataSet(job.keys);
  const driver = await openDriver(job.engine, { dir: job.dir, sync: false });
  const batchMs = new Float64Array(Math.ceil(job.keys / job.batch));
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  const tenth = Math.max(1, Math.floor(batchMs.length / 10));
  const t0 = performance.now();
  for (let b = 0, start = 0; start < job.keys; b++, start += job.batch) {
    keys.length = 0;
    values.length = 0;
    for (let i = start; i < Math.min(job.keys, start + job.batch); i++) {
      keys.push(data.key(i));
      values.push(data.value(i));
    }
    const t = performance.now();
    const pending = driver.writeBatch(keys, values);
    if (pending) await pending;
    batchMs[b] = performance.now() - t;
    if ((b + 1) % tenth === 0 && b + 1 < batchMs.length) progress(`${((b + 1) * job.batch).toLocaleString('en-US')} keys`);
  }
  const ms = performance.now() - t0;
  const stalls = driver.background?.stalls();
  let catchUpMs: number | undefined;
  if (driver.background) {
    const t = performance.now();
    await driver.background.settle();
    catchUpMs = performance.now() - t;
  }
  // Untimed: every sampled key reads back with its value.
  for (let n = 0; n < Math.min(VERIFY_KEYS, job.keys); n++) {
    const i = Math.floor((n * job.keys) / Math.min(VERIFY_KEYS, job.keys));
    const got = driver.get(data.key(i));
    if (got === undefined || !Buffer.from(got).equals(data.value(i))) throw new Error(`${job.engine}: key ${i} did not read back after the load`);
  }
  await driver.close();
  return { ops: job.keys, ms, latency: summarizeBatches(batchMs), ...(stalls ? { stalls } : {}), ...(catchUpMs === undefined ? {} : { catchUpMs }), maxRssKiB: process.resourceUsage().maxRSS };
}

serveChild<BulkLoadJob, BulkLoadResult>('bulk-load-child.js <job JSON> (started by bulk-load-bench.ts)', run);
