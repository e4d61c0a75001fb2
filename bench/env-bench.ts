/**
 * Throughput of the encrypted env for every method against plain `node:fs` doing the same
 * work the natural node:fs way:
 *
 * 1. sequential write: create, 1 MiB appends, one sync at the end, close;
 * 2. random 4 KiB reads of that file at 4 KiB-aligned offsets, with the file in the page
 *    cache: synchronous (readSync) and asynchronous (read, several in flight on the libuv
 *    thread pool).
 *
 * Every measurement is taken several times, engines interleaved, and the median is reported:
 * TDEKV_BENCH_WRITE_ROUNDS (default 5) for writes, TDEKV_BENCH_ROUNDS (default 3) for reads.
 * Sizes: TDEKV_BENCH_MB (default 256) written per method and round, TDEKV_BENCH_SM4_MB
 * (default 64) for sm4-ctr; TDEKV_BENCH_READS (default 200000) reads per engine, mode and
 * round, TDEKV_BENCH_SM4_READS (default 50000) for sm4-ctr; TDEKV_BENCH_INFLIGHT (default 16)
 * reads in flight in the async mode.
 */
import { randomBytes } from 'node:crypto';
import { openSync, closeSync, read as readCallback, readSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ENCRYPTION_METHODS, type EncryptionMethod } from '../src/crypto/method.js';
import { EncryptedEnv } from '../src/env/encrypted-env.js';
import { PlaintextMasterKey } from '../src/masterkey/plaintext.js';
import type { Bench, BenchContext } from './run.js';
import { intFromEnv, prng } from './bench-env.js';

const MiB = 1024 * 1024;
const PAGE = 4096;
const WARMUP_FILE = 'warmup.dat';
const OFFSETS_SEED = 0x7d3e_c0de;
const WARMUP_SEED = 0x5eed_0001;
const BASELINE = 'node:fs';
/** Ratio of aes256-ctr to node:fs that counts as "within 30%". */
const TARGET_RATIO = 0.7;

interface Config {
  mb: number;
  sm4Mb: number;
  reads: number;
  sm4Reads: number;
  inFlight: number;
  rounds: number;
  writeRounds: number;
}


function config(): Config {
  const mb = intFromEnv('TDEKV_BENCH_MB', 256);
  const reads = intFromEnv('TDEKV_BENCH_READS', 200_000);
  return {
    mb,
    sm4Mb: Math.min(mb, intFromEnv('TDEKV_BENCH_SM4_MB', 64)),
    reads,
    sm4Reads: Math.min(reads, intFromEnv('TDEKV_BENCH_SM4_READS', 50_000)),
    inFlight: intFromEnv('TDEKV_BENCH_INFLIGHT', 16),
    rounds: intFromEnv('TDEKV_BENCH_ROUNDS', 3),
    writeRounds: intFromEnv('TDEKV_BENCH_WRITE_ROUNDS', 5),
  };
}


function pageOffsets(seed: number, count: number, spanBytes: number): Float64Array {
  const next = prng(seed);
  const pages = Math.floor(spanBytes / PAGE);
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.floor(next() * pages) * PAGE;
  return out;
}

/** One engine under test: a way to write the file and to read pages of it. */
interface Target {
  /** Writes `totalMiB` appends of `chunk`; resolves with the time spent in sync + close. */
  write(name: string, chunk: Buffer, totalMiB: number): Promise<{ syncCloseMs: number }>;
  remove(name: string): Promise<void>;
  openReader(name: string): Promise<Reader>;
  close(): Promise<void>;
  /** Absolute path of a file, to warm the page cache. */
  path(name: string): string;
}

interface Reader {
  readSync(offset: number): Buffer;
  read(offset: number): Promise<Buffer>;
  close(): Promise<void>;
}

class FsTarget implements Target {
  constructor(readonly dir: string) {}

  path(name: string): string {
    return join(this.dir, name);
  }

  async write(name: string, chunk: Buffer, totalMiB: number): Promise<{ syncCloseMs: number }> {
    const fh = await open(this.path(name), 'wx', 0o600);
    try {
      const appends = (totalMiB * MiB) / chunk.length;
      for (let i = 0; i < appends; i++) {
        let done = 0;
        while (done < chunk.length) done += (await fh.write(chunk, done, chunk.length - done)).bytesWritten;
      }
      const t = performance.now();
      await fh.datasync();
      await fh.close();
      return { syncCloseMs: performance.now() - t };
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  async remove(name: string): Promise<void> {
    await unlink(this.path(name));
  }

  async openReader(name: string): Promise<Reader> {
    const fd = openSync(this.path(name), 'r');
    return {
      readSync(offset) {
        const buf = Buffer.allocUnsafe(PAGE);
        const n = readSync(fd, buf, 0, PAGE, offset);
        return n === PAGE ? buf : buf.subarray(0, n);
      },
      read(offset) {
        const buf = Buffer.allocUnsafe(PAGE);
        return new Promise((resolve, reject) => {
          readCallback(fd, buf, 0, PAGE, offset, (err, n) => (err ? reject(err) : resolve(n === PAGE ? buf : buf.subarray(0, n))));
        });
      },
      async close() {
        closeSync(fd);
      },
    };
  }

  /** The other natural async way: the promise API. Reported as a reference row. */
  async openFileHandleReader(name: string): Promise<Reader> {
    const fh = await open(this.path(name), 'r');
    return {
      readSync() {
        throw new Error('FileHandle has no synchronous read');
      },
      async read(offset) {
        const buf = Buffer.allocUnsafe(PAGE);
        const { bytesRead } = await fh.read(buf, 0, PAGE, offset);
        return bytesRead === PAGE ? buf : buf.subarray(0, bytesRead);
      },
      close: () => fh.close(),
    };
  }

  async close(): Promise<void> {}
}

class EnvTarget implements Target {
  private constructor(
    readonly dir: string,
    readonly env: EncryptedEnv,
  ) {}

  static async open(dir: string, method: EncryptionMethod): Promise<EnvTarget> {
    const env = await EncryptedEnv.open({
      dataDir: dir,
      method,
      rotationPeriodMs: 7 * 24 * 3600e3,
      masterKey: new PlaintextMasterKey(),
      fileDictionaryLog: true,
      fileDictionaryRewriteThreshold: 1_000_000,
    });
    return new EnvTarget(dir, env);
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  async write(name: string, chunk: Buffer, totalMiB: number): Promise<{ syncCloseMs: number }> {
    const f = await this.env.create(name);
    try {
      const appends = (totalMiB * MiB) / chunk.length;
      for (let i = 0; i < appends; i++) await f.append(chunk);
      const t = performance.now();
      await f.sync();
      await f.close();
      return { syncCloseMs: performance.now() - t };
    } catch (err) {
      await f.close().catch(() => undefined);
      throw err;
    }
  }

  async remove(name: string): Promise<void> {
    await this.env.remove(name);
  }

  async openReader(name: string): Promise<Reader> {
    const f = await this.env.openRead(name);
    return {
      readSync: (offset) => f.readSync(offset, PAGE),
      read: (offset) => f.read(offset, PAGE),
      close: async () => f.close(),
    };
  }

  async close(): Promise<void> {
    await this.env.close();
  }
}

/** Keeps read results observable so no engine can skip work. */
let sink = 0;

function readAllSync(reader: Reader, offsets: Float64Array): void {
  for (let i = 0; i < offsets.length; i++) sink ^= reader.readSync(offsets[i]!)[0]!;
}

async function readAllAsync(reader: Reader, offsets: Float64Array, inFlight: number): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < offsets.length) {
      const i = next++;
      sink ^= (await reader.read(offsets[i]!))[0]!;
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, offsets.length) }, lane));
}

/** Every engine must return the plaintext that was appended: the file is `chunk` repeated. */
async function verify(engine: string, reader: Reader, chunk: Buffer, offsets: Float64Array): Promise<void> {
  for (let i = 0; i < Math.min(64, offsets.length); i++) {
    const off = offsets[i]!;
    const want = chunk.subarray(off % chunk.length, (off % chunk.length) + PAGE);
    for (const got of [reader.readSync(off), await reader.read(off)]) {
      if (!got.equals(want)) throw new Error(`${engine}: read at offset ${off} returned wrong bytes; the benchmark would measure a broken path`);
    }
  }
}

/** Reads the whole file once through node:fs so every page is cached before timing. */
async function warmPageCache(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 * MiB);
    while ((await fh.read(buf, 0, buf.length, null)).bytesRead > 0);
  } finally {
    await fh.close();
  }
}

interface Sample {
  ms: number;
  syncCloseMs?: number;
}

/** One row of the table: the same work timed once per round. */
interface Row {
  workload: Workload;
  engine: string;
  /** Footnote mark shown after the engine name. */
  mark: string;
  bytes: number;
  ops?: number;
  samples: Sample[];
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

const medianMs = (r: Row): number => median(r.samples.map((s) => s.ms));
const mibPerS = (r: Row): number => r.bytes / MiB / (medianMs(r) / 1000);
/** (slowest − fastest) / median, in percent: how much the rounds disagreed. */
const spread = (r: Row): number => {
  const ms = r.samples.map((s) => s.ms);
  return ((Math.max(...ms) - Math.min(...ms)) / medianMs(r)) * 100;
};

async function timed(fn: () => Promise<void> | void): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** The engines in a different order each round, so none always runs first or last. */
function rotated<T>(items: readonly T[], round: number): T[] {
  const k = round % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

type Workload = 'write' | 'readSync' | 'readAsync';

const WORKLOADS: Record<Workload, string> = {
  write: 'sequential write',
  readSync: 'random 4K read, sync',
  readAsync: 'random 4K read, async',
};

interface Engine {
  name: typeof BASELINE | EncryptionMethod;
  dir: string;
  target: Target;
  writeMiB: number;
  reads: number;
  mark: string;
  reader?: Reader;
  fileHandleReader?: Reader;
}

async function run(ctx: BenchContext): Promise<void> {
  const cfg = config();
  const spanMiB = cfg.sm4Mb; // the smallest file: every engine reads the same offsets
  const offsets = pageOffsets(OFFSETS_SEED, cfg.reads, spanMiB * MiB);
  const warmupOffsets = pageOffsets(WARMUP_SEED, Math.max(1, Math.min(10_000, Math.floor(cfg.reads / 10))), spanMiB * MiB);
  const chunk = randomBytes(MiB);
  const warmupMiB = Math.min(16, cfg.sm4Mb);
  const rows = new Map<string, Row>();
  const row = (workload: Workload, engine: string, mark: string, bytes: number, ops?: number): Row => {
    const key = `${workload}\0${engine}`;
    let r = rows.get(key);
    if (!r) {
      r = { workload, engine, mark, bytes, ...(ops === undefined ? {} : { ops }), samples: [] };
      rows.set(key, r);
    }
    return r;
  };

  const engines: Engine[] = [];
  try {
    for (const name of [BASELINE, ...ENCRYPTION_METHODS] as const) {
      const dir = await ctx.tempDir(name.replace(/[^a-z0-9]+/gi, '-'));
      const target: Target = name === BASELINE ? new FsTarget(dir) : await EnvTarget.open(dir, name).catch(async (err: unknown) => {
        await ctx.removeTempDir(dir);
        throw err;
      });
      const sm4 = name === 'sm4-ctr';
      engines.push({
        name,
        dir,
        target,
        writeMiB: sm4 ? cfg.sm4Mb : cfg.mb,
        reads: sm4 ? cfg.sm4Reads : cfg.reads,
        mark: sm4 && (cfg.sm4Mb !== cfg.mb || cfg.sm4Reads !== cfg.reads) ? '*' : '',
      });
    }

    // 1. Sequential write. Each round writes a new file; the last one stays for the reads.
    const lastFile = `round-${cfg.writeRounds - 1}.dat`;
    for (const e of engines) {
      await e.target.write(WARMUP_FILE, chunk, warmupMiB);
      await e.target.remove(WARMUP_FILE);
    }
    for (let round = 0; round < cfg.writeRounds; round++) {
      ctx.progress(`write, round ${round + 1}/${cfg.writeRounds}`);
      for (const e of rotated(engines, round)) {
        const file = `round-${round}.dat`;
        let syncCloseMs = 0;
        const ms = await timed(async () => {
          ({ syncCloseMs } = await e.target.write(file, chunk, e.writeMiB));
        });
        row('write', e.name, e.mark, e.writeMiB * MiB).samples.push({ ms, syncCloseMs });
        if (file !== lastFile) await e.target.remove(file);
      }
    }

    // 2. Random reads of the page-cached file, the same offsets for every engine.
    for (const e of engines) {
      await warmPageCache(e.target.path(lastFile));
      e.reader = await e.target.openReader(lastFile);
      await verify(e.name, e.reader, chunk, offsets);
      if (e.target instanceof FsTarget) e.fileHandleReader = await e.target.openFileHandleReader(lastFile);
    }
    for (const e of engines) readAllSync(e.reader!, warmupOffsets);
    for (let round = 0; round < cfg.rounds; round++) {
      ctx.progress(`sync reads, round ${round + 1}/${cfg.rounds}`);
      for (const e of rotated(engines, round)) {
        const ms = await timed(() => readAllSync(e.reader!, offsets.subarray(0, e.reads)));
        row('readSync', e.name, e.mark, e.reads * PAGE, e.reads).samples.push({ ms });
      }
    }
    const asyncRunners = engines.flatMap((e) => [
      { engine: e.name as string, mark: e.mark, reader: e.reader!, reads: e.reads },
      ...(e.fileHandleReader ? [{ engine: `${BASELINE} FileHandle.read`, mark: '†', reader: e.fileHandleReader, reads: e.reads }] : []),
    ]);
    for (const a of asyncRunners) await readAllAsync(a.reader, warmupOffsets, cfg.inFlight);
    for (let round = 0; round < cfg.rounds; round++) {
      ctx.progress(`async reads (${cfg.inFlight} in flight), round ${round + 1}/${cfg.rounds}`);
      for (const a of rotated(asyncRunners, round)) {
        const ms = await timed(() => readAllAsync(a.reader, offsets.subarray(0, a.reads), cfg.inFlight));
        row('readAsync', a.engine, a.mark, a.reads * PAGE, a.reads).samples.push({ ms });
      }
    }
  } finally {
    for (const e of engines) {
      await e.reader?.close();
      await e.fileHandleReader?.close();
      await e.target.close();
      await ctx.removeTempDir(e.dir);
    }
  }

  const ordered = (Object.keys(WORKLOADS) as Workload[]).flatMap((w) => [...rows.values()].filter((r) => r.workload === w));
  const baseline = (w: Workload): Row | undefined => rows.get(`${w}\0${BASELINE}`);
  const cells = ordered.map((r) => {
    const base = baseline(r.workload);
    const syncClose = r.samples.every((s) => s.syncCloseMs !== undefined) ? (median(r.samples.map((s) => s.syncCloseMs!)) / 1000).toFixed(2) : '';
    return [
      WORKLOADS[r.workload],
      `${r.engine}${r.mark}`,
      r.ops === undefined ? `${r.bytes / MiB} MiB` : `${r.ops} reads`,
      (medianMs(r) / 1000).toFixed(2),
      syncClose,
      r.ops === undefined ? '' : Math.round(r.ops / (medianMs(r) / 1000)).toLocaleString('en-US'),
      mibPerS(r).toFixed(1),
      `${spread(r).toFixed(0)}%`,
      base ? (mibPerS(r) / mibPerS(base)).toFixed(2) : '-',
    ];
  });
  const sm4Note: string[] = [];
  if (cfg.sm4Mb !== cfg.mb) sm4Note.push(`writes ${cfg.sm4Mb} MiB`);
  if (cfg.sm4Reads !== cfg.reads) sm4Note.push(`reads ${cfg.sm4Reads} times (a prefix of the same offsets)`);
  ctx.table({
    title: `encrypted env vs node:fs — median of ${cfg.writeRounds} write rounds and ${cfg.rounds} read rounds, engines interleaved`,
    notes: [
      `sequential write: create, 1 MiB appends (${cfg.mb} MiB), one sync at the end, close. Env: create/append/sync/close;`,
      `  node:fs: fs.promises.open(path, 'wx') + FileHandle.write(1 MiB) awaited one after another + datasync + close.`,
      `  "sync+close s" is the part of "time s" spent in the final sync and close (getting the data to the disk).`,
      `random reads: 4 KiB at uniformly random 4 KiB-aligned offsets in the first ${spanMiB} MiB of the written file,`,
      `  the same seeded sequence for every engine; the file is fully in the page cache (read once before timing),`,
      `  so this measures CPU cost per read, not the disk. Both sides allocate a fresh 4 KiB buffer per read.`,
      `  sync: EncryptedReadableFile.readSync vs fs.readSync(fd); async: EncryptedReadableFile.read vs fs.read`,
      `  (callback), ${cfg.inFlight} reads in flight on the libuv thread pool. Warm-up before the timed rounds.`,
      `"spread" = (slowest round − fastest round) / median; "vs node:fs" = median throughput / node:fs median throughput.`,
      ...(sm4Note.length > 0 ? [`* sm4-ctr ${sm4Note.join(' and ')}:`, `  OpenSSL's SM4 runs at ~90 MB/s here. Its ratios compare MiB/s all the same.`] : []),
      `† reference: the promise API (fs.promises FileHandle.read), ${cfg.inFlight} in flight; ratio vs the fs.read baseline.`,
    ],
    columns: ['workload', 'engine', 'amount', 'time s', 'sync+close s', 'ops/s', 'MiB/s', 'spread', 'vs node:fs'],
    rows: cells,
  });

  ctx.line();
  for (const w of Object.keys(WORKLOADS) as Workload[]) {
    const base = baseline(w);
    const aes = rows.get(`${w}\0aes256-ctr`);
    if (!base || !aes) continue;
    const ratio = mibPerS(aes) / mibPerS(base);
    const verdict = ratio >= TARGET_RATIO ? 'PASS' : 'MISS';
    ctx.line(`${verdict}  ${WORKLOADS[w]}: aes256-ctr is ${ratio.toFixed(2)}× node:fs (target >= ${TARGET_RATIO.toFixed(2)}, i.e. within 30%)`);
  }
  if (sink === -1) ctx.line(); // keeps `sink` live
}

export const bench: Bench = {
  name: 'env',
  description: 'encrypted env write and read throughput per method, against node:fs',
  run,
};
