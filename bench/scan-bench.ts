/**
 * The encryption scan (issue 12): how fast an unthrottled scan moves a database to a new key,
 * against a plain copy of the same bytes on the same disk (read every file, write a copy,
 * fsync it), rounds alternating and medians reported. The scan reads, decrypts (plaintext
 * here: the database starts unencrypted, as when encryption is turned on), re-encodes and
 * encrypts each table, so it costs more than a copy; the target is ≥ 50% of the copy rate.
 *
 * The database is loaded, then compacted (a settled tree, as after a while in service), so
 * every table is below level 0 and the scan copies blocks (table-rewrite.ts); a level-0 table
 * is merged into level 1 instead, at compaction speed.
 *
 * The foreground cost of a default-rate scan against a serving database is measured by the
 * `server` bench's scan lines (redis-benchmark with and without a scan running).
 *
 * Sizes: TDEKV_BENCH_SCAN_KEYS (default 200000) keys of TDEKV_BENCH_SCAN_VALUE (default 1000)
 * bytes; TDEKV_BENCH_SCAN_ROUNDS (default 3).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULT_ENCRYPTION } from '../src/config/types.js';
import type { EncryptionMethod } from '../src/crypto/method.js';
import { Engine } from '../src/engine/engine.js';
import { openEnv } from '../src/env/open-env.js';
import { EncryptionLifecycle } from '../src/lifecycle/encryption-lifecycle.js';
import { silentLogger } from '../src/log/logger.js';
import { dropCaches, intFromEnv, median, prng } from './bench-env.js';
import type { Bench, BenchContext } from './run.js';

const mb = (bytes: number): number => bytes / (1024 * 1024);

async function buildDb(dataDir: string, keyPath: string, method: EncryptionMethod, keys: number, valueBytes: number): Promise<void> {
  const managed = await openEnv(dataDir, { ...DEFAULT_ENCRYPTION, dataEncryptionMethod: method, masterKey: { type: 'file', path: keyPath } });
  const engine = await Engine.open({ env: managed.env });
  try {
    const rnd = prng(0x5ca_0001);
    for (let i = 0; i < keys; i += 1000) {
      const ops = [];
      for (let j = i; j < Math.min(keys, i + 1000); j++) ops.push({ type: 'put' as const, key: Buffer.from(`key:${String(Math.floor(rnd() * keys * 4)).padStart(10, '0')}`), value: randomBytes(valueBytes) });
      await engine.write(ops);
    }
    // A settled tree, as in a database that has run a while: the tables below level 0 are
    // rewritten in place by block copy; level 0 (empty here) is merged into level 1.
    await engine.compactRange();
    await engine.waitForBackgroundWork();
  } finally {
    await engine.close();
    await managed.close();
  }
}

/** A copy of every table file with read, write and one fsync per file: the disk's own rate for these bytes. */
async function copyTables(dataDir: string, outDir: string): Promise<{ bytes: number; seconds: number }> {
  await mkdir(outDir);
  const names = (await readdir(dataDir)).filter((n) => n.endsWith('.sst'));
  const started = performance.now();
  let bytes = 0;
  const buf = Buffer.allocUnsafe(1 << 20);
  for (const name of names) {
    const src = await open(join(dataDir, name), 'r');
    const dst = await open(join(outDir, name), 'w');
    try {
      for (let pos = 0; ; ) {
        const { bytesRead } = await src.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        await dst.write(buf, 0, bytesRead, pos);
        pos += bytesRead;
        bytes += bytesRead;
      }
      await dst.sync();
    } finally {
      await src.close();
      await dst.close();
    }
  }
  return { bytes, seconds: (performance.now() - started) / 1000 };
}

async function scanOnce(dataDir: string, keyPath: string, from: EncryptionMethod, to: EncryptionMethod): Promise<{ bytes: number; seconds: number }> {
  const enc = { ...DEFAULT_ENCRYPTION, dataEncryptionMethod: from, scanRateLimit: 0, masterKey: { type: 'file' as const, path: keyPath } };
  const managed = await openEnv(dataDir, enc, { deferOpenWrites: true });
  const engine = await Engine.open({ env: managed.env });
  const lifecycle = await EncryptionLifecycle.open({ engine, managed, config: enc, logger: silentLogger() });
  try {
    const done = new Promise<void>((resolve, reject) =>
      lifecycle.on('progress', (s) => {
        if (s.scanStateDesc === 'COMPLETED') resolve();
        if (s.scanStateDesc === 'ABORTED') reject(new Error(`the scan aborted: ${s.scanError}`));
      }),
    );
    const started = performance.now();
    await lifecycle.setMethod(to);
    await done;
    const seconds = (performance.now() - started) / 1000;
    return { bytes: lifecycle.status().scanBytesDone, seconds };
  } finally {
    await lifecycle.close();
    await engine.close();
    await managed.close();
  }
}

export const bench: Bench = {
  name: 'scan',
  description: 'encryption scan throughput (unthrottled) against a plain file copy of the same bytes',
  async run(ctx: BenchContext): Promise<void> {
    const keys = intFromEnv('TDEKV_BENCH_SCAN_KEYS', 200_000);
    const valueBytes = intFromEnv('TDEKV_BENCH_SCAN_VALUE', 1000);
    const rounds = intFromEnv('TDEKV_BENCH_SCAN_ROUNDS', 3);
    const transitions: Array<{ from: EncryptionMethod; to: EncryptionMethod; why: string }> = [
      { from: 'plaintext', to: 'aes256-ctr', why: 'encryption on: every removed plaintext table is also overwritten with zeros' },
      { from: 'aes128-ctr', to: 'aes256-ctr', why: 'a key change: tags verified under the old key, made under the new' },
    ];
    const rows: string[][] = [];
    const verdicts: string[] = [];
    let size = 0;
    let cold = true;
    for (const { from, to, why } of transitions) {
      const copy: number[] = [];
      const scan: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const dir = await ctx.tempDir('scan');
        try {
          const keyPath = join(dir, 'master.key');
          await writeFile(keyPath, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
          const dataDir = join(dir, 'data');
          ctx.progress(`${from} -> ${to}, round ${r + 1}/${rounds}: loading ${keys} keys`);
          await buildDb(dataDir, keyPath, from, keys, valueBytes);
          // Alternating which goes first, so neither always meets a warm page cache.
          const order = r % 2 === 0 ? (['copy', 'scan'] as const) : (['scan', 'copy'] as const);
          for (const what of order) {
            cold = (await dropCaches()) && cold;
            ctx.progress(`${from} -> ${to}, round ${r + 1}/${rounds}: ${what}${cold ? ' (page cache dropped)' : ''}`);
            if (what === 'copy') {
              const c = await copyTables(dataDir, join(dir, 'copy'));
              copy.push(mb(c.bytes) / c.seconds);
              size = c.bytes;
            } else {
              const sc = await scanOnce(dataDir, keyPath, from, to);
              scan.push(mb(sc.bytes) / sc.seconds);
            }
          }
        } finally {
          await ctx.removeTempDir(dir);
        }
      }
      const ratio = median(scan) / median(copy);
      rows.push([`${from} -> ${to}`, 'encryption scan', median(scan).toFixed(1), scan.map((x) => x.toFixed(1)).join(' ')]);
      rows.push([`${from} -> ${to}`, 'plain file copy', median(copy).toFixed(1), copy.map((x) => x.toFixed(1)).join(' ')]);
      verdicts.push(`${from} -> ${to} (${why}): scan / copy = ${ratio.toFixed(2)} (target >= 0.50: ${ratio >= 0.5 ? 'met' : 'MISS'})`);
    }
    ctx.table({
      title: 'Encryption scan, scan-rate-limit = 0, against a plain copy of the same table files',
      notes: [
        `${keys} keys x ${valueBytes} B values, ${mb(size).toFixed(1)} MiB of tables; medians of ${rounds} alternating rounds`,
        'copy: read + write + fsync per file of the same table files',
        cold ? 'page cache dropped before each copy and each scan: both read from the disk' : 'page cache NOT dropped (needs root): both read what the load left in memory',
      ],
      columns: ['transition', 'what', 'MiB/s (median)', 'rounds'],
      rows,
    });
    for (const v of verdicts) ctx.line(v);
  },
};
