/**
 * `npm run bench [-- NAME...]`: runs the benchmarks in bench/ and prints their tables.
 *
 * A benchmark is a module exporting `bench: Bench`; add it to BENCHES below. With names on
 * the command line only those run (`npm run bench -- env`). Benchmarks report, they do not
 * judge: a missed target is printed as MISS, never turned into a non-zero exit.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';

export interface Table {
  title: string;
  /** Lines printed under the title (conditions, caveats). */
  notes?: string[];
  columns: string[];
  /** Cells as printed; columns after the first two are right-aligned. */
  rows: string[][];
}

export interface BenchContext {
  /** Prints a finished table to stdout. */
  table(table: Table): void;
  /** Prints a line to stdout (verdicts, summaries). */
  line(text?: string): void;
  /** Progress on stderr, so stdout stays a clean report. */
  progress(text: string): void;
  /** A fresh directory under os.tmpdir(), removed by removeTempDir or at exit/interrupt. */
  tempDir(label: string): Promise<string>;
  removeTempDir(dir: string): Promise<void>;
}

export interface Bench {
  name: string;
  description: string;
  run(ctx: BenchContext): Promise<void>;
}

/** In run order. `load` is lazy so a filtered run does not import the other benches. */
const BENCHES: Array<{ name: string; load: () => Promise<Bench> }> = [
  { name: 'env', load: async () => (await import('./env-bench.js')).bench },
  { name: 'engine', load: async () => (await import('./engine-bench.js')).bench },
  { name: 'bulk-load', load: async () => (await import('./bulk-load-bench.js')).bench },
  { name: 'cold-read', load: async () => (await import('./cold-read-bench.js')).bench },
  { name: 'server', load: async () => (await import('./server-bench.js')).bench },
  { name: 'server-disk', load: async () => (await import('./server-disk-bench.js')).bench },
  { name: 'background', load: async () => (await import('./background-bench.js')).bench },
  { name: 'scan', load: async () => (await import('./scan-bench.js')).bench },
  { name: 'scan-load', load: async () => (await import('./scan-load-bench.js')).bench },
  { name: 'backup', load: async () => (await import('./backup-bench.js')).bench },
];

const liveTempDirs = new Set<string>();

function removeAllTempDirsSync(): void {
  for (const dir of liveTempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort at exit
    }
  }
  liveTempDirs.clear();
}

function formatTable(t: Table): string {
  const widths = t.columns.map((c, i) => Math.max(c.length, ...t.rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: string[]): string =>
    cells
      .map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [t.title, ...(t.notes ?? []).map((n) => `  ${n}`), '', fmt(t.columns), widths.map((w) => '-'.repeat(w)).join('  ')];
  let previousWorkload: string | undefined;
  for (const r of t.rows) {
    // A blank first cell repeated rows read better: print the workload once per group.
    const cells = [...r];
    if (cells[0] === previousWorkload) cells[0] = '';
    else previousWorkload = cells[0];
    out.push(fmt(cells));
  }
  return out.join('\n');
}

const ctx: BenchContext = {
  table: (t) => process.stdout.write(`\n${formatTable(t)}\n`),
  line: (text = '') => process.stdout.write(`${text}\n`),
  progress: (text) => process.stderr.write(`  .. ${text}\n`),
  async tempDir(label) {
    const dir = await mkdtemp(join(tmpdir(), `tdekv-bench-${label}-`));
    liveTempDirs.add(dir);
    return dir;
  },
  async removeTempDir(dir) {
    await rm(dir, { recursive: true, force: true });
    liveTempDirs.delete(dir);
  },
};

function machine(): string[] {
  const cpu = cpus();
  return [
    `cpu      ${cpu[0]?.model.trim() ?? 'unknown'} (${availableParallelism()} cores available, ${cpu.length} reported)`,
    `memory   ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `node     ${process.version} (${process.platform}-${process.arch}), OpenSSL ${process.versions.openssl}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}`,
    `tmpdir   ${tmpdir()}`,
  ];
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2).filter((a) => a.trim() !== '');
  const unknown = wanted.filter((w) => !BENCHES.some((b) => b.name === w));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark ${unknown.join(', ')}; available: ${BENCHES.map((b) => b.name).join(', ')} (none = all)\n`);
    process.exitCode = 2;
    return;
  }
  const selected = wanted.length === 0 ? BENCHES : BENCHES.filter((b) => wanted.includes(b.name));

  process.once('exit', removeAllTempDirsSync);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      removeAllTempDirsSync();
      process.exit(130);
    });
  }

  ctx.line('tdekv benchmarks');
  for (const l of machine()) ctx.line(`  ${l}`);
  const started = performance.now();
  for (const entry of selected) {
    const bench = await entry.load();
    ctx.line();
    ctx.line(`== ${bench.name}: ${bench.description}`);
    await bench.run(ctx);
  }
  ctx.line();
  ctx.line(`total time ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((err: unknown) => {
  removeAllTempDirsSync();
  process.stderr.write(`benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
