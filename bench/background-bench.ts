/**
 * What a compaction costs the main thread (issue 11 item 3): the event loop's delay
 * (perf_hooks.monitorEventLoopDelay, 1 ms resolution) and the main thread's utilization
 * (performance.eventLoopUtilization) while `compactRange()` rewrites a loaded database,
 * with flushes and compactions on the worker thread and in-process (`backgroundThread`
 * false), rounds alternating. Two foregrounds, each on its own fresh database: 'light', a
 * timer every 1 ms doing 10 getSyncs (the main thread is mostly idle, so its delay and
 * utilization show what the background costs it), and 'saturating', a getSync every
 * event-loop turn (how many gets the main thread still serves while the compaction runs).
 *
 * Sizes: TDEKV_BENCH_BG_KEYS (default 200000) keys of TDEKV_BENCH_BG_VALUE (default 100)
 * bytes, aes256-ctr, 1 MiB write buffer; TDEKV_BENCH_BG_ROUNDS (default 3) rounds per mode.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_ENCRYPTION } from '../src/config/types.js';
import { Engine } from '../src/engine/engine.js';
import { openEnv } from '../src/env/open-env.js';
import { intFromEnv, median, prng } from './bench-env.js';
import type { Bench, BenchContext } from './run.js';

interface Sample {
  ms: number;
  p50: number;
  p99: number;
  max: number;
  elu: number;
  gets: number;
}


type Foreground = 'light' | 'saturating';

async function measure(ctx: BenchContext, backgroundThread: boolean, foreground: Foreground, keys: number, valueBytes: number): Promise<Sample> {
  const dir = await ctx.tempDir('background');
  try {
    const keyPath = join(dir, 'master.key');
    await writeFile(keyPath, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const dataDir = join(dir, 'data');
    await mkdir(dataDir);
    const managed = await openEnv(dataDir, { ...DEFAULT_ENCRYPTION, dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path: keyPath } });
    // Level-0 compactions held back while loading, so compactRange has the whole tree to rewrite.
    const engine = await Engine.open({ env: managed.env, writeBufferSize: 1024 * 1024, level0FileNumCompactionTrigger: 1000, level0SlowdownWritesTrigger: 1000, level0StopWritesTrigger: 1000, backgroundThread });
    try {
      const rnd = prng(0xb6_0001);
      const value = randomBytes(valueBytes);
      const keyOf = (i: number): Buffer => Buffer.from(`key:${String(i).padStart(10, '0')}`);
      for (let i = 0; i < keys; i += 1000) {
        const ops = [];
        for (let j = i; j < Math.min(keys, i + 1000); j++) ops.push({ type: 'put' as const, key: keyOf(Math.floor(rnd() * keys)), value });
        await engine.write(ops);
      }
      await engine.flush();
      await engine.waitForBackgroundWork();
      const h = monitorEventLoopDelay({ resolution: 1 });
      let gets = 0;
      let done = false;
      const start = performance.now();
      const elu0 = performance.eventLoopUtilization();
      h.enable();
      const compaction = engine.compactRange().finally(() => {
        done = true;
      });
      while (!done) {
        if (foreground === 'saturating') {
          engine.getSync(keyOf(Math.floor(rnd() * keys)));
          gets++;
          await turn();
        } else {
          for (let g = 0; g < 10; g++, gets++) engine.getSync(keyOf(Math.floor(rnd() * keys)));
          await sleep(1);
        }
      }
      await compaction;
      h.disable();
      const elu = performance.eventLoopUtilization(elu0);
      return { ms: performance.now() - start, p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6, elu: elu.utilization, gets };
    } finally {
      await engine.close();
      await managed.close();
    }
  } finally {
    await ctx.removeTempDir(dir);
  }
}

export const bench: Bench = {
  name: 'background',
  description: 'main-thread event-loop delay while a compaction runs: worker thread vs in-process',
  async run(ctx) {
    const keys = intFromEnv('TDEKV_BENCH_BG_KEYS', 200_000);
    const valueBytes = intFromEnv('TDEKV_BENCH_BG_VALUE', 100);
    const rounds = intFromEnv('TDEKV_BENCH_BG_ROUNDS', 3);
    const samples = new Map<string, Sample[]>();
    for (let r = 0; r < rounds; r++) {
      for (const mode of r % 2 === 0 ? (['worker', 'in-process'] as const) : (['in-process', 'worker'] as const)) {
        for (const fg of ['light', 'saturating'] as const) {
          ctx.progress(`round ${r + 1}/${rounds}: ${mode}, ${fg} foreground`);
          const k = `${fg}|${mode}`;
          samples.set(k, [...(samples.get(k) ?? []), await measure(ctx, mode === 'worker', fg, keys, valueBytes)]);
        }
      }
    }
    const rows: string[][] = [];
    for (const fg of ['light', 'saturating'] as const) {
      for (const mode of ['in-process', 'worker'] as const) {
        const s = samples.get(`${fg}|${mode}`)!;
        const m = (f: (x: Sample) => number, digits = 1): string => median(s.map(f)).toFixed(digits);
        rows.push([fg, mode, `${m((x) => x.ms, 0)} ms`, m((x) => x.p50), m((x) => x.p99), m((x) => x.max), `${(median(s.map((x) => x.elu)) * 100).toFixed(0)}%`, m((x) => x.gets / (x.ms / 1000), 0)]);
      }
    }
    ctx.table({
      title: 'Main thread during compactRange() (medians of rounds)',
      notes: [
        `${keys} random puts of ${valueBytes} B, aes256-ctr, 1 MiB write buffer, ${rounds} rounds per mode, alternating`,
        'event-loop delay in ms (monitorEventLoopDelay, 1 ms resolution); ELU = main thread busy (eventLoopUtilization)',
        "foreground 'light': 10 getSyncs per 1 ms timer; 'saturating': a getSync every event-loop turn",
      ],
      columns: ['foreground', 'background', 'compaction', 'delay p50', 'p99', 'max', 'ELU', 'gets/s'],
      rows,
    });
  },
};
