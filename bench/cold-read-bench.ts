/**
 * Reads from a cold disk (issue 11 item 3): a full scan (`iterator().nextv(1000)`) and random
 * `get()`s (one at a time, and 16 at once) through `TdekvLevel` and classic-level, each first thing after the page cache is
 * emptied, with a 1 ms timer running beside them. Reported per line: entries (or gets) per
 * second, and how long the event loop was held — the longest gap between the timer's ticks,
 * and how many ticks there were. A store whose reads block the event loop on the disk shows
 * few ticks and a gap as long as the reads; one that reads on the thread pool keeps ticking.
 *
 * Both stores hold the same keys (the engine bench's DataSet), loaded, compacted and closed
 * before the rounds; each round reopens each store (its caches empty) after dropping the page
 * cache, engines alternating which goes first. Dropping the page cache needs root
 * (/proc/sys/vm/drop_caches): without it the report says the reads were warm.
 *
 * Sizes: TDEKV_BENCH_COLD_KEYS (default 300000), TDEKV_BENCH_COLD_GETS (default 20000),
 * TDEKV_BENCH_COLD_ROUNDS (default 3).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TdekvLevel } from '../src/level/tdekv-level.js';
import { dropCaches, intFromEnv, median, prng } from './bench-env.js';
import { DataSet } from './engine-data.js';
import { importPeer, type ClassicLevelModule } from './peer-modules.js';
import type { Bench, BenchContext } from './run.js';

/** Gets awaited at once in the concurrent line. */
const IN_FLIGHT = 16;

/** What the bench calls on either store. */
interface Store {
  open(): Promise<void>;
  batch(): { put(key: Buffer, value: Buffer): unknown; write(): Promise<void> };
  get(key: Buffer): Promise<Buffer | undefined>;
  iterator(): { nextv(size: number): Promise<Array<[Buffer, Buffer]>>; close(): Promise<void> };
  compactRange(start: Buffer, end: Buffer): Promise<void>;
  close(): Promise<void>;
}

interface Engine {
  name: string;
  make(): Store;
}

interface Measured {
  count: number;
  seconds: number;
  ticks: number;
  longestGapMs: number;
}

/** Runs `work` with a 1 ms timer beside it: how often it fired, and its longest gap. */
async function withTicker(work: () => Promise<number>): Promise<Measured> {
  let last = performance.now();
  let longest = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    ticks++;
  }, 1);
  const started = performance.now();
  try {
    const count = await work();
    const end = performance.now();
    // The time since the last tick counts too: a store that never yields has one gap, the whole run.
    longest = Math.max(longest, end - last);
    return { count, seconds: (end - started) / 1000, ticks, longestGapMs: longest };
  } finally {
    clearInterval(timer);
  }
}

async function scan(store: Store): Promise<number> {
  const it = store.iterator();
  let n = 0;
  try {
    for (;;) {
      // Only an empty batch ends it: classic-level's may be short (highWaterMarkBytes).
      const entries = await it.nextv(1000);
      if (entries.length === 0) return n;
      n += entries.length;
    }
  } finally {
    await it.close();
  }
}

export const bench: Bench = {
  name: 'cold-read',
  description: 'TdekvLevel and classic-level: a full scan and random get()s on a cold page cache, with how long each held the event loop',
  async run(ctx: BenchContext): Promise<void> {
    const keys = intFromEnv('TDEKV_BENCH_COLD_KEYS', 300_000);
    const gets = intFromEnv('TDEKV_BENCH_COLD_GETS', 20_000);
    const rounds = intFromEnv('TDEKV_BENCH_COLD_ROUNDS', 3);
    const data = new DataSet(keys);
    const root = await ctx.tempDir('cold-read');
    const keyPath = join(root, 'master.key');
    await writeFile(keyPath, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const { ClassicLevel } = await importPeer<ClassicLevelModule>('classic-level');
    const engines: Engine[] = [
      {
        name: 'tdekv TdekvLevel aes256-ctr',
        make: () =>
          new TdekvLevel<Buffer, Buffer>(join(root, 'tdekv'), { keyEncoding: 'buffer', valueEncoding: 'buffer', dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path: keyPath } }) as unknown as Store,
      },
      {
        name: 'classic-level (no encryption)',
        make: () => new ClassicLevel(join(root, 'classic'), { keyEncoding: 'buffer', valueEncoding: 'buffer', writeBufferSize: 16 * 1024 * 1024, cacheSize: 8 * 1024 * 1024 }) as unknown as Store,
      },
    ];
    await mkdir(join(root, 'tdekv'));
    for (const engine of engines) {
      ctx.progress(`${engine.name}: load ${keys.toLocaleString('en-US')} keys and compact`);
      const store = engine.make();
      await store.open();
      for (let i = 0; i < keys; i += 1000) {
        const batch = store.batch();
        for (let j = i; j < Math.min(keys, i + 1000); j++) batch.put(data.key(j), data.value(j));
        await batch.write();
      }
      await store.compactRange(Buffer.alloc(0), Buffer.alloc(64, 0xff));
      await store.close();
    }
    const next = prng(0xc01d_5eed);
    const getKeys = Array.from({ length: gets }, () => data.key(Math.floor(next() * keys)));
    const results = new Map<string, Measured[]>();
    let cold = true;
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? engines : [...engines].reverse();
      for (const engine of order) {
        for (const workload of ['full scan', 'random get()', `random get(), ${IN_FLIGHT} in flight`] as const) {
          ctx.progress(`round ${round + 1}: ${engine.name}: ${workload}`);
          cold = (await dropCaches()) && cold;
          const store = engine.make();
          await store.open();
          try {
            const m = await withTicker(async () => {
              if (workload === 'full scan') return scan(store);
              // One get at a time, as a request handler awaiting each would; or IN_FLIGHT such loops at once, as a server's clients.
              const loops = workload === 'random get()' ? 1 : IN_FLIGHT;
              let nextKey = 0;
              const loop = async (): Promise<void> => {
                while (nextKey < getKeys.length) {
                  if ((await store.get(getKeys[nextKey++]!)) === undefined) throw new Error(`${engine.name}: a loaded key is missing`);
                }
              };
              await Promise.all(Array.from({ length: loops }, loop));
              return getKeys.length;
            });
            if (workload === 'full scan' && m.count !== keys) throw new Error(`${engine.name}: the scan returned ${m.count} of ${keys} entries`);
            const line = `${workload}\u0000${engine.name}`;
            results.set(line, [...(results.get(line) ?? []), m]);
          } finally {
            await store.close();
          }
        }
      }
    }
    const rows: string[][] = [];
    for (const [line, ms] of results) {
      const [workload, name] = line.split('\u0000') as [string, string];
      const mid = [...ms].sort((a, b) => a.count / a.seconds - b.count / b.seconds)[Math.floor(ms.length / 2)]!;
      rows.push([workload, name, mid.count.toLocaleString('en-US'), mid.seconds.toFixed(2), Math.round(mid.count / mid.seconds).toLocaleString('en-US'), String(median(ms.map((m) => m.ticks))), median(ms.map((m) => m.longestGapMs)).toFixed(1)]);
    }
    ctx.table({
      title: `reads from a cold disk — ${keys.toLocaleString('en-US')} keys, ${rounds} round(s)`,
      notes: [
        `the page cache was ${cold ? 'dropped before every line (cold)' : 'NOT dropped (not root): these reads were warm'}; each store reopened for each line, its own caches empty.`,
        'ticks, longest gap: a 1 ms setInterval beside the reads; medians of the rounds. A store that holds the event loop',
        '  while it reads shows few ticks and a gap as long as its reads.',
        'TdekvLevel defaults (64 MiB block cache); classic-level 8 MiB cache, its default; data compacted before the rounds.',
      ],
      columns: ['workload', 'engine', 'entries', 'time s', 'per s', 'ticks', 'longest gap ms'],
      rows,
    });
  },
};
