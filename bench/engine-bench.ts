/**
 * `npm run bench -- engine`: the storage engine, through its Engine class and through
 * TdekvLevel (the embedded API users call), against its peers (classic-level, lmdb with
 * encryption, SQLite with SQLite3MultipleCiphers), 16-byte random-looking keys and 100-byte
 * values: batched puts, random gets, full scan and a 90/10 read/write mix; the write
 * workloads both without fsync ("nosync") and with an fsync per acknowledged write ("sync").
 *
 * Every engine runs in its own child process (engine-child.ts) on a fresh temp dir, one
 * after another, so peak RSS is per engine and no two compete for the cores. In each child:
 * the nosync load of all keys (empty → N), bytes on disk, gets, scan, the nosync mix; then
 * every write switches to fsync: batched puts of further new keys into the loaded store
 * (a full sync reload would take minutes for the B-tree peers) and the sync mix.
 *
 * Sizes (env): TDEKV_BENCH_KEYS (default 1000000) keys loaded; TDEKV_BENCH_BATCH (1000) puts
 * per batch; TDEKV_BENCH_GETS (500000) random gets; TDEKV_BENCH_SYNC_KEYS (min(keys,
 * 200000)) keys put with sync, at most TDEKV_BENCH_SYNC_SECONDS (60); TDEKV_BENCH_MIX_OPS
 * (500000) and TDEKV_BENCH_MIX_SECONDS (5) bound each mix, whichever comes first.
 * TDEKV_BENCH_ENGINES (comma list, default all: see ENGINES in engine-driver.ts);
 * TDEKV_BENCH_SQLITE_CIPHER (default chacha20). TDEKV_BENCH_ENGINE_ROUNDS (3): the whole list
 * runs that many times, in alternating order; each line reports its median run and each
 * ratio the median of the rounds' ratios (engine-rounds.ts).
 */
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { runChild } from './child-process.js';
import type { ChildJob, ChildResult } from './engine-child.js';
import { BENCH_CACHE_BYTES, ENGINES, LEVEL_SUBJECT, SUBJECT, type EngineName } from './engine-driver.js';
import { sqliteCipher } from './engine-peers.js';
import type { Bench, BenchContext } from './run.js';
import { intFromEnv, median } from './bench-env.js';
import { medianRatio, medianRun, opsPerSecond, roundOrder, roundRatios, type Rate } from './engine-rounds.js';

const MiB = 1024 * 1024;
const CHILD = fileURLToPath(new URL('./engine-child.js', import.meta.url));

/** The workload sizes every child gets, plus what only the parent needs. */
interface Config extends Omit<ChildJob, 'engine' | 'dir'> {
  engines: EngineName[];
  childTimeoutSeconds: number;
  rounds: number;
}


function listFromEnv<T extends string>(name: string, allowed: readonly T[]): T[] {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return [...allowed];
  const wanted = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = wanted.filter((w) => !(allowed as readonly string[]).includes(w));
  if (unknown.length > 0) throw new Error(`${name}: unknown ${unknown.join(', ')}; allowed: ${allowed.join(', ')}`);
  return allowed.filter((a) => wanted.includes(a));
}

function config(): Config {
  const keys = intFromEnv('TDEKV_BENCH_KEYS', 1_000_000);
  return {
    keys,
    batch: intFromEnv('TDEKV_BENCH_BATCH', 1000),
    gets: intFromEnv('TDEKV_BENCH_GETS', 500_000),
    mixOps: intFromEnv('TDEKV_BENCH_MIX_OPS', 500_000),
    mixSeconds: intFromEnv('TDEKV_BENCH_MIX_SECONDS', 5),
    syncKeys: intFromEnv('TDEKV_BENCH_SYNC_KEYS', Math.min(keys, 200_000)),
    syncSeconds: intFromEnv('TDEKV_BENCH_SYNC_SECONDS', 60),
    engines: listFromEnv('TDEKV_BENCH_ENGINES', ENGINES),
    childTimeoutSeconds: intFromEnv('TDEKV_BENCH_CHILD_TIMEOUT_SECONDS', 600),
    rounds: intFromEnv('TDEKV_BENCH_ENGINE_ROUNDS', 3),
  };
}

function label(engine: EngineName): string {
  switch (engine) {
    case 'tdekv-plaintext':
      return 'tdekv plaintext';
    case 'tdekv-aes256-ctr':
      return 'tdekv aes256-ctr';
    case 'tdekv-sm4-ctr':
      return 'tdekv sm4-ctr';
    case 'tdekv-level-aes256-ctr':
      return 'tdekv TdekvLevel aes256-ctr';
    case 'classic-level':
      return 'classic-level (no encryption)';
    case 'lmdb-encrypted':
      return 'lmdb encrypted (chacha8)';
    case 'sqlite-encrypted':
      return `sqlite3mc encrypted (${sqliteCipher()})`;
  }
}

function encryption(engine: EngineName): string {
  switch (engine) {
    case 'tdekv-plaintext':
      return 'none (tdekv method plaintext)';
    case 'tdekv-aes256-ctr':
      return 'AES-256-CTR, per-file IV';
    case 'tdekv-sm4-ctr':
      return 'SM4-CTR, per-file IV';
    case 'tdekv-level-aes256-ctr':
      return 'AES-256-CTR, per-file IV';
    case 'classic-level':
      return 'none';
    case 'lmdb-encrypted':
      return 'ChaCha8 per page';
    case 'sqlite-encrypted':
      return `SQLite3MultipleCiphers ${sqliteCipher()} per page`;
  }
}

type Workload = 'load-nosync' | 'load-sync' | 'gets' | 'scan' | 'mix-nosync' | 'mix-sync';

/** One round: every engine's child run once. */
interface Outcome {
  results: Map<EngineName, ChildResult>;
  errors: Map<EngineName, string>;
  /** 1-minute load average when each engine's process started and ended: other work on the machine skews numbers. */
  load: Map<EngineName, [number, number]>;
}

type Measurement = Rate & { note: string; faults?: number };

function measurement(o: Outcome, engine: EngineName, w: Workload): Measurement | undefined {
  const r = o.results.get(engine);
  if (!r) return undefined;
  const limited = (m: { timedOut: boolean }): string => (m.timedOut ? ' †' : '');
  switch (w) {
    case 'load-nosync':
      return { ...r.load, note: '' };
    case 'load-sync':
      return { ...r.syncLoad, note: limited(r.syncLoad).trim() };
    case 'gets':
      return { ...r.gets, note: '' };
    case 'scan':
      return { ...r.scan, note: '' };
    case 'mix-nosync':
      return { ...r.mix, note: `${r.mix.writes.toLocaleString('en-US')} puts${limited(r.mix)}` };
    case 'mix-sync':
      return { ...r.syncMix, note: `${r.syncMix.writes.toLocaleString('en-US')} puts${limited(r.syncMix)}` };
  }
}

/** One entry per round: the engine's measurement of `w` in that round, undefined where it failed. */
const runsOf = (rounds: readonly Outcome[], engine: EngineName, w: Workload): Array<Measurement | undefined> => rounds.map((o) => measurement(o, engine, w));

/** The median over rounds of `subject`'s ops/s ÷ `peer`'s on `w`, with the per-round ratios. */
function comparison(rounds: readonly Outcome[], subject: EngineName, peer: EngineName, w: Workload): { median: number | undefined; perRound: Array<number | undefined> } {
  const perRound = roundRatios(runsOf(rounds, subject, w), runsOf(rounds, peer, w));
  return { median: medianRatio(perRound), perRound };
}

/** Lowest and highest 1-minute load average seen as the engine's processes started and ended. */
const loadCell = (rounds: readonly Outcome[], engine: EngineName): string => {
  const seen = rounds.flatMap((o) => o.load.get(engine) ?? []);
  if (seen.length === 0) return '';
  const lo = Math.min(...seen).toFixed(1);
  const hi = Math.max(...seen).toFixed(1);
  return lo === hi ? lo : `${lo} – ${hi}`;
};
const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtMiB = (bytes: number): string => (bytes / MiB).toFixed(1);

/** Every engine of `order` in its own child, one after another. */
async function runRound(ctx: BenchContext, cfg: Config, order: readonly EngineName[]): Promise<Outcome> {
  const outcome: Outcome = { results: new Map(), errors: new Map(), load: new Map() };
  for (const engine of order) {
    const dir = await ctx.tempDir(`engine-${engine}`);
    const job: ChildJob = {
      engine,
      dir,
      keys: cfg.keys,
      batch: cfg.batch,
      gets: cfg.gets,
      mixOps: cfg.mixOps,
      mixSeconds: cfg.mixSeconds,
      syncKeys: cfg.syncKeys,
      syncSeconds: cfg.syncSeconds,
    };
    const t = performance.now();
    const loadBefore = loadavg()[0]!;
    try {
      outcome.results.set(engine, await runChild<ChildJob, ChildResult>(ctx, CHILD, job, cfg.childTimeoutSeconds));
      ctx.progress(`${engine}: done in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      outcome.errors.set(engine, message);
      ctx.progress(`${engine}: FAILED: ${message.split('\n')[0]}`);
    } finally {
      outcome.load.set(engine, [loadBefore, loadavg()[0]!]);
      await ctx.removeTempDir(dir);
    }
  }
  return outcome;
}

async function run(ctx: BenchContext): Promise<void> {
  const cfg = config();
  const n = (x: number): string => x.toLocaleString('en-US');
  const rounds: Outcome[] = [];
  for (let round = 1; round <= cfg.rounds; round++) {
    if (cfg.rounds > 1) ctx.progress(`round ${round} of ${cfg.rounds}`);
    rounds.push(await runRound(ctx, cfg, roundOrder(cfg.engines, round)));
  }

  const workloads: Array<{ w: Workload; title: string }> = [
    { w: 'load-nosync', title: `batched puts, nosync` },
    { w: 'load-sync', title: `batched puts, sync` },
    { w: 'gets', title: 'random gets' },
    { w: 'scan', title: 'full scan' },
    { w: 'mix-nosync', title: '90/10 mix, nosync' },
    { w: 'mix-sync', title: '90/10 mix, sync' },
  ];

  const rows: string[][] = [];
  const ratioCell = (subject: EngineName, engine: EngineName, w: Workload): string => {
    const r = comparison(rounds, subject, engine, w).median;
    return r === undefined ? '-' : r.toFixed(2);
  };
  for (const { w, title } of workloads) {
    for (const engine of cfg.engines) {
      const m = medianRun(runsOf(rounds, engine, w));
      if (!m) {
        rows.push([title, label(engine), '', '', rounds.some((o) => o.errors.has(engine)) ? 'failed' : '-', '', '', '', '']);
        continue;
      }
      const faults = m.faults === undefined || m.ops === 0 ? '' : ((m.faults * 1000) / m.ops).toFixed(0);
      rows.push([title, label(engine), fmtInt(m.ops), (m.ms / 1000).toFixed(2), fmtInt(opsPerSecond(m)), ratioCell(SUBJECT, engine, w), m.note, ratioCell(LEVEL_SUBJECT, engine, w), faults]);
    }
  }
  ctx.table({
    title: `storage engine vs peers — ${n(cfg.keys)} keys`,
    notes: [
      `${n(cfg.keys)} keys of 16 bytes (a hashed counter: loaded in random key order), 100-byte random values. Each engine`,
      `  in its own process on a fresh dir under the OS temp dir, engines one after another, ${cfg.rounds} round(s) in alternating order`,
      `  (reversed every other round; TDEKV_BENCH_ENGINE_ROUNDS). Each row is the line's median run; each ratio the median`,
      `  of the rounds' ratios.`,
      `Every store through its fastest public API in the configuration that gives the durability asked for`,
      `  (docs/benchmarks.md, "How peers are configured"). tdekv Engine = the engine class (Engine.write);`,
      `  tdekv TdekvLevel = the embedded API users call (abstract-level), on the same engine and settings.`,
      `nosync = no fsync (tdekv Engine { sync: false }; TdekvLevel and classic-level no options, their default;`,
      `  lmdb noSync; SQLite synchronous=OFF); sync = every acknowledged write fsynced (tdekv, TdekvLevel and`,
      `  classic-level { sync: true }; lmdb overlappingSync: false, so a commit returns once fsynced;`,
      `  SQLite synchronous=FULL). SQLite runs journal_mode=WAL, locking_mode=EXCLUSIVE.`,
      `batched puts: atomic batches of ${cfg.batch} puts, each awaited before the next (tdekv Engine.write; TdekvLevel and`,
      `  classic-level a chained batch().put()….write(); lmdb transactionSync of ${cfg.batch} putSync; SQLite one transaction`,
      `  of prepared INSERT OR REPLACE).`,
      `  nosync: all ${n(cfg.keys)} keys into the empty store; sync: ${n(cfg.syncKeys)} further new keys into the loaded store`,
      `  (at most ${cfg.syncSeconds} s; † = ended by the time limit).`,
      `random gets: ${n(cfg.gets)} seeded random loaded keys right after the nosync load (no manual compaction): tdekv getSync,`,
      `  TdekvLevel and classic-level getSync, lmdb get, SQLite prepared SELECT. Scan: tdekv Engine iterator, TdekvLevel`,
      `  and classic-level iterator.nextv(1000),`,
      `  lmdb getRange, SQLite SELECT ... ORDER BY k. Reads do not depend on durability and are measured once.`,
      `mix: one op at a time over the loaded keys, 90% random gets / 10% single-put overwrites (each its own write or`,
      `  transaction, awaited; lmdb putSync), at most ${n(cfg.mixOps)} ops or ${cfg.mixSeconds} s (†: the time limit ended it).`,
      `memory: tdekv (both lines) and classic-level a 16 MiB write buffer and a ${BENCH_CACHE_BYTES / 1048576} MiB block cache, SQLite a page cache of that size`,
      `  (TDEKV_BENCH_CACHE_MB; tdekv's default cache is 64 MiB);`,
      `  lmdb reads through its memory map. Encryption: lmdb encryptionKey (a 32-character key, ChaCha8); SQLite PRAGMA`,
      `  cipher + PRAGMA key; tdekv a file master key. classic-level has no encryption (LevelDB + Snappy; values do not compress).`,
      `"aes256 ×" = tdekv aes256-ctr (Engine) ops/s ÷ this engine's ops/s in the same round (above 1: tdekv aes256-ctr is faster);`,
      `  "level ×" = the same for tdekv TdekvLevel aes256-ctr.`,
      `faults /1k ops = the engine process's minor page faults during the workload (all threads) per 1,000 ops: first writes`,
      `  to fresh memory, ~11 µs each on a small VM (docs/engine.md, "Memtable memory").`,
    ],
    columns: ['workload', 'engine', 'ops', 'time s', 'ops/s', 'aes256 ×', 'mix puts', 'level ×', 'faults /1k ops'],
    rows,
  });

  const resourceRows: string[][] = [];
  for (const engine of cfg.engines) {
    const runs = rounds.map((o) => o.results.get(engine)).filter((r): r is ChildResult => r !== undefined);
    const first = runs[0];
    if (!first) {
      resourceRows.push([label(engine), encryption(engine), 'failed', '', '', '', '', '', loadCell(rounds, engine)]);
      continue;
    }
    resourceRows.push([
      label(engine),
      encryption(engine),
      fmtMiB(Math.max(...runs.map((r) => r.maxRssKiB)) * 1024),
      fmtMiB(first.disk.bytes),
      fmtMiB(first.disk.apparentBytes),
      String(first.disk.files),
      (median(runs.map((r) => r.openMs)) / 1000).toFixed(2),
      (median(runs.map((r) => r.closeMs)) / 1000).toFixed(2),
      loadCell(rounds, engine),
    ]);
  }
  ctx.table({
    title: 'memory and disk per engine',
    notes: [
      `peak RSS = process.resourceUsage().maxRSS of the engine's process over its whole run, the highest of the rounds (includes Node itself and the`,
      `  ${fmtMiB((cfg.keys + cfg.syncKeys) * 16)} MiB key array every process holds). disk = the database's files right after the nosync load of`,
      `  ${n(cfg.keys)} keys (${fmtMiB(cfg.keys * 116)} MiB of keys + values): allocated (st_blocks × 512) and apparent (file sizes);`,
      `  tdekv counts its data dir including encryption-meta, not the master key file (first round). open s, close s: medians;`,
      `  close after all workloads.`,
      `loadavg = the lowest – highest 1-minute load average as the engine's processes started and ended (${availableParallelism()} cores): well above`,
      `  0 means other work shared the CPU and that engine's numbers are low by an unknown amount.`,
    ],
    columns: ['engine', 'encryption at rest', 'peak RSS MiB', 'disk MiB', 'apparent MiB', 'files', 'open s', 'close s', 'loadavg'],
    rows: resourceRows,
  });

  if (cfg.rounds > 1) reportRounds(ctx, cfg, rounds, workloads);
  rounds.forEach((o, i) => {
    for (const [engine, message] of o.errors) ctx.line(`FAILED ${cfg.rounds > 1 ? `round ${i + 1}: ` : ''}${engine}: ${message.split('\n').slice(0, 3).join(' | ')}`);
  });

  verdicts(ctx, rounds, workloads);
}

/** The comparisons the targets are about, per workload and round, so the spread behind each median is visible. */
function reportRounds(ctx: BenchContext, cfg: Config, rounds: readonly Outcome[], workloads: ReadonlyArray<{ w: Workload; title: string }>): void {
  const pairs: Array<[EngineName, EngineName]> = [
    [LEVEL_SUBJECT, 'classic-level'],
    [LEVEL_SUBJECT, 'sqlite-encrypted'],
    [LEVEL_SUBJECT, 'lmdb-encrypted'],
    [SUBJECT, 'tdekv-plaintext'],
  ];
  const present = pairs.filter(([a, b]) => cfg.engines.includes(a) && cfg.engines.includes(b));
  if (present.length === 0) return;
  const rows: string[][] = [];
  for (const { w, title } of workloads) {
    for (const [a, b] of present) {
      const c = comparison(rounds, a, b, w);
      rows.push([title, `${label(a)} ÷ ${label(b)}`, ...c.perRound.map((r) => (r === undefined ? '-' : r.toFixed(2))), c.median === undefined ? '-' : c.median.toFixed(2)]);
    }
  }
  ctx.table({
    title: 'ratio per round (ops/s ÷ ops/s within one round; the targets below use the median)',
    columns: ['workload', 'comparison', ...rounds.map((_, i) => `round ${i + 1}`), 'median'],
    rows,
  });
}

function verdicts(ctx: BenchContext, rounds: readonly Outcome[], workloads: Array<{ w: Workload; title: string }>): void {
  ctx.line();
  ctx.line(`targets (the storage engine issue and the engine architecture issue; ${rounds.length > 1 ? `medians of ${rounds.length} rounds' ratios` : 'one round'}):`);
  const check = (what: string, w: Workload, peer: EngineName, factor: number, subject: EngineName = SUBJECT): void => {
    const ratio = comparison(rounds, subject, peer, w).median;
    if (ratio === undefined) {
      const missing = rounds.some((o) => measurement(o, subject, w)) ? label(peer) : label(subject);
      ctx.line(`n/a   ${what}: ${missing} has no result`);
      return;
    }
    ctx.line(`${ratio >= factor ? 'PASS' : 'MISS'}  ${what}: ${ratio.toFixed(2)}× (target ≥ ${factor})`);
  };
  for (const mode of ['nosync', 'sync'] as const) {
    const w: Workload = `load-${mode}`;
    check(`batched puts ${mode}: aes256-ctr ≥ classic-level`, w, 'classic-level', 1);
    check(`batched puts ${mode}: aes256-ctr ≥ 5× lmdb encrypted`, w, 'lmdb-encrypted', 5);
    check(`batched puts ${mode}: aes256-ctr ≥ 5× sqlite encrypted`, w, 'sqlite-encrypted', 5);
  }
  check('random gets (getSync): aes256-ctr ≥ lmdb encrypted', 'gets', 'lmdb-encrypted', 1);
  for (const { w, title } of workloads.filter(({ w }) => w === 'load-nosync' || w === 'load-sync' || w === 'gets' || w === 'scan')) {
    check(`${title}: TdekvLevel aes256-ctr ≥ classic-level`, w, 'classic-level', 1, LEVEL_SUBJECT);
  }
  for (const peer of ['classic-level', 'lmdb-encrypted', 'sqlite-encrypted'] as const) {
    check(`90/10 mix, sync: TdekvLevel aes256-ctr ≥ ${label(peer)}`, 'mix-sync', peer, 1, LEVEL_SUBJECT);
  }
  for (const { w, title } of workloads) check(`${title}: aes256-ctr within 5% of tdekv plaintext`, w, 'tdekv-plaintext', 0.95);
}

export const bench: Bench = {
  name: 'engine',
  description: 'storage engine (tdekv per cipher, and TdekvLevel) against classic-level, lmdb encrypted and SQLite encrypted',
  run,
};
