/**
 * One engine in its own process (forked by engine-bench.ts), so peak RSS is that engine's
 * alone. Reads the job from argv[2] (JSON), opens the store in the job's fresh directory
 * without fsync, and reports over IPC:
 *
 * 1. nosync: load `keys` keys (empty → full), bytes on disk, random gets, full scan, mix;
 * 2. sync: switch every write to fsync, then batched puts of `syncKeys` further new keys into
 *    the loaded store (bounded by `syncSeconds`) and the mix again.
 *
 * Reads do not depend on the durability mode, so they are measured once. The parent owns the
 * directory and removes it after this process exits.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { sendToParent, serveChild } from './child-process.js';
import { DataSet } from './engine-data.js';
import { openDriver, type EngineName } from './engine-driver.js';
import { MIX_SEED, gets, load, mix, observe, scan, type LoadMeasurement, type Measurement, type MixMeasurement } from './engine-workloads.js';

export interface ChildJob {
  engine: EngineName;
  dir: string;
  keys: number;
  batch: number;
  gets: number;
  mixOps: number;
  mixSeconds: number;
  syncKeys: number;
  syncSeconds: number;
}

export interface DiskUsage {
  /** Allocated bytes (st_blocks × 512), what the files take on disk. */
  bytes: number;
  /** Sum of file sizes (sparse or preallocated files differ from `bytes`). */
  apparentBytes: number;
  files: number;
}

export interface ChildResult {
  openMs: number;
  load: LoadMeasurement;
  disk: DiskUsage;
  gets: Measurement;
  scan: Measurement;
  mix: MixMeasurement;
  syncLoad: LoadMeasurement;
  syncMix: MixMeasurement;
  closeMs: number;
  /** process.resourceUsage().maxRSS, KiB. */
  maxRssKiB: number;
}

async function diskUsage(dir: string): Promise<DiskUsage> {
  const usage: DiskUsage = { bytes: 0, apparentBytes: 0, files: 0 };
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) {
        // The store's background work may remove a file (an obsolete WAL) between the listing
        // and here: it no longer takes space.
        const s = await stat(path).catch((err: unknown) => ((err as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : Promise.reject(err)));
        if (s === undefined) continue;
        usage.bytes += s.blocks * 512;
        usage.apparentBytes += s.size;
        usage.files++;
      }
    }
  };
  await walk(dir);
  return usage;
}

/** Minor page faults of this process so far (every thread). */
function minorFaults(): number {
  return process.resourceUsage().minorPageFault;
}

/** `work`'s measurement, with the page faults made while it ran. */
async function counted<M extends Measurement>(work: () => M | Promise<M>): Promise<M> {
  const before = minorFaults();
  const m = await work();
  m.faults = minorFaults() - before;
  return m;
}

async function run(job: ChildJob): Promise<ChildResult> {
  const progress = (text: string): void => void sendToParent<ChildResult>({ type: 'progress', text: `${job.engine}: ${text}` });
  const n = (x: number): string => x.toLocaleString('en-US');
  const data = new DataSet(job.keys + job.syncKeys);

  let t = performance.now();
  const driver = await openDriver(job.engine, { dir: job.dir, sync: false });
  const openMs = performance.now() - t;

  progress(`nosync: load ${n(job.keys)} keys in batches of ${job.batch}`);
  const loaded = await counted(() => load(driver, data, { from: 0, to: job.keys, batch: job.batch }, (done) => progress(`nosync: load ${n(done)}`)));
  const disk = await diskUsage(driver.dataDir);
  progress(`${n(job.gets)} random gets`);
  const got = await counted(() => gets(driver, data, job.keys, job.gets));
  progress('full scan');
  const scanned = await counted(() => scan(driver, job.keys));
  progress(`nosync: 90/10 mix (at most ${n(job.mixOps)} ops or ${job.mixSeconds} s)`);
  const mixed = await counted(() => mix(driver, data, job.keys, job.mixOps, job.mixSeconds * 1000));

  await driver.setSync(true);
  progress(`sync: batched puts of ${n(job.syncKeys)} new keys (at most ${job.syncSeconds} s)`);
  const syncLoaded = await counted(() =>
    load(driver, data, { from: job.keys, to: job.keys + job.syncKeys, batch: job.batch, maxMs: job.syncSeconds * 1000 }, (done) => progress(`sync: load ${n(done)}`)),
  );
  progress(`sync: 90/10 mix (at most ${n(job.mixOps)} ops or ${job.mixSeconds} s)`);
  const syncMixed = await counted(() => mix(driver, data, job.keys, job.mixOps, job.mixSeconds * 1000, { seed: MIX_SEED + 1, firstVersion: 1 + mixed.writes }));

  t = performance.now();
  await driver.close();
  const closeMs = performance.now() - t;
  return {
    openMs,
    load: loaded,
    disk,
    gets: got,
    scan: scanned,
    mix: mixed,
    syncLoad: syncLoaded,
    syncMix: syncMixed,
    closeMs,
    maxRssKiB: process.resourceUsage().maxRSS,
  };
}

serveChild<ChildJob, ChildResult>('engine-child.js <job JSON> (started by engine-bench.ts)', run, () => {
  if (observe() === -1) process.stderr.write('\n'); // keeps the read sink live
});
