/**
 * Backup and restore (issue 14): MB/s of `tdekv backup full --offline` and `restore full` of
 * one store to `local://`, against `cp -r` and `tar -cf` of its data dir on the same disk; and
 * to s3rver (the S3 emulator, on loopback) against a raw @aws-sdk/lib-storage upload of the
 * same files. Then an incremental backup after changing 1% of the keys, against the full one.
 * The page cache is dropped before every measured step (root only); rounds alternate the
 * order; medians are reported. Target: backup and restore ≥ 50% of the raw copy's rate.
 *
 * Sizes: TDEKV_BENCH_BACKUP_KEYS (default 1000000) keys of TDEKV_BENCH_BACKUP_VALUE (default
 * 1000) bytes, about 1 GB; TDEKV_BENCH_BACKUP_ROUNDS (default 3); TDEKV_BENCH_BACKUP_S3=0 skips
 * the S3 lines.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { runBackup, type BackupOptions, type BackupResult } from '../src/backup/backup-run.js';
import type { BackupStorage } from '../src/backup/storage/backup-storage.js';
import { OfflineSource } from '../src/backup/offline-source.js';
import { runRestore } from '../src/backup/restore-run.js';
import { openStorage } from '../src/backup/storage/open-storage.js';
import { parseStorageUrl } from '../src/backup/storage/storage-url.js';
import { loadConfig } from '../src/config/config.js';
import type { TdekvConfig } from '../src/config/types.js';
import { Engine } from '../src/engine/engine.js';
import { openEnvFromConfig } from '../src/env/open-env.js';
import { silentLogger } from '../src/log/logger.js';
import { startS3rver } from '../test/support/storage-emulators.js';
import { dropCaches, intFromEnv, median, prng } from './bench-env.js';
import type { Bench, BenchContext } from './run.js';

const run = promisify(execFile);
const mib = (bytes: number): number => bytes / (1024 * 1024);

async function machine(dir: string, name: string): Promise<TdekvConfig> {
  const root = join(dir, name);
  await mkdir(root, { recursive: true });
  const keyPath = join(root, 'master.key');
  await writeFile(keyPath, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const configPath = join(root, 'tdekv.toml');
  await writeFile(configPath, `[storage]\ndata-dir = ${JSON.stringify(join(root, 'data'))}\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = ${JSON.stringify(keyPath)}\n`);
  return loadConfig(configPath);
}

/** Loads `keys` random keys (or overwrites `fraction` of them) and lets compaction settle. */
async function load(config: TdekvConfig, keys: number, valueBytes: number, seed: number, fraction = 1): Promise<void> {
  const managed = await openEnvFromConfig(config, { deferOpenWrites: true });
  const engine = await Engine.open({ env: managed.env });
  try {
    const rnd = prng(seed);
    const n = Math.floor(keys * fraction);
    for (let i = 0; i < n; i += 1000) {
      const ops = [];
      for (let j = i; j < Math.min(n, i + 1000); j++) ops.push({ type: 'put' as const, key: Buffer.from(`key:${String(Math.floor(rnd() * keys)).padStart(10, '0')}`), value: randomBytes(valueBytes) });
      await engine.write(ops);
    }
    await engine.waitForBackgroundWork();
  } finally {
    await engine.close();
    await managed.close();
  }
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  return total;
}

async function offlineBackup(config: TdekvConfig, storage: BackupStorage, options: BackupOptions): Promise<BackupResult> {
  const source = await OfflineSource.open(config);
  try {
    return await runBackup(source, storage, options);
  } finally {
    await source.close();
  }
}

async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { seconds: (performance.now() - t) / 1000, value };
}

export const bench: Bench = {
  name: 'backup',
  description: 'backup and restore MB/s against cp -r / tar and a raw S3 upload; incremental against full',
  async run(ctx: BenchContext): Promise<void> {
    const keys = intFromEnv('TDEKV_BENCH_BACKUP_KEYS', 1_000_000);
    const valueBytes = intFromEnv('TDEKV_BENCH_BACKUP_VALUE', 1000);
    const rounds = intFromEnv('TDEKV_BENCH_BACKUP_ROUNDS', 3);
    const withS3 = process.env['TDEKV_BENCH_BACKUP_S3'] !== '0';
    const dir = await ctx.tempDir('backup');
    let s3: Awaited<ReturnType<typeof startS3rver>> | undefined;
    try {
      const src = await machine(dir, 'source');
      const dataDir = src.storage.dataDir;
      ctx.progress(`loading ${keys} keys of ${valueBytes} B`);
      await load(src, keys, valueBytes, 0xbac_0001);
      const size = await dirBytes(dataDir);
      const protector = { kind: 'master-key' as const, masterKey: src.security.encryption.masterKey };
      const available = { masterKeys: [src.security.encryption.masterKey] };
      if (withS3) s3 = await startS3rver(dir, ['bench']);
      process.env['AWS_ACCESS_KEY_ID'] ??= 'S3RVER';
      process.env['AWS_SECRET_ACCESS_KEY'] ??= 'S3RVER';
      const s3Flags = s3 ? { 's3.endpoint': s3.endpoint, 's3.region': 'us-east-1' } : {};
      const results = new Map<string, number[]>();
      const push = (what: string, bytes: number, seconds: number): void => {
        results.set(what, [...(results.get(what) ?? []), mib(bytes) / seconds]);
      };
      let cold = true;
      const steps: Array<[string, (r: number) => Promise<void>]> = [
        ['cp -r', async (r) => {
          const out = join(dir, `cp-${r}`);
          const t = await timed(async () => {
            await run('cp', ['-r', dataDir, out]);
            await run('sync', ['-f', out]);
          });
          push('cp -r of the data dir', size, t.seconds);
          await rm(out, { recursive: true, force: true });
        }],
        ['tar', async (r) => {
          const out = join(dir, `tar-${r}.tar`);
          const t = await timed(async () => {
            await run('tar', ['-cf', out, '-C', dataDir, '.']);
            await run('sync', ['-f', out]);
          });
          push('tar -cf of the data dir', size, t.seconds);
          await rm(out, { force: true });
        }],
        ['backup + restore, local', async (r) => {
          const storeDir = join(dir, `store-${r}`);
          const storage = await openStorage(parseStorageUrl(storeDir));
          try {
            const b = await timed(() => offlineBackup(src, storage, { protector }));
            push('tdekv backup full --offline, local://', b.value.manifest.totals.bytes, b.seconds);
            cold = (await dropCaches()) && cold;
            const target = await machine(dir, `target-${r}`);
            const rs = await timed(() => runRestore(storage, target, { available, logger: silentLogger() }));
            push('tdekv restore full, local://', rs.value.bytes, rs.seconds);
            await rm(join(dir, `target-${r}`), { recursive: true, force: true });
          } finally {
            await storage.close();
            await rm(storeDir, { recursive: true, force: true });
          }
        }],
      ];
      if (s3) {
        const endpoint = s3.endpoint;
        steps.push(
          ['raw S3 upload', async (r) => {
            const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true });
            try {
              const names = (await readdir(dataDir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
              const t = await timed(async () => {
                for (const e of names) {
                  const path = join(e.parentPath, e.name);
                  await new Upload({ client, params: { Bucket: 'bench', Key: `raw-${r}/${path.slice(dataDir.length + 1)}`, Body: createReadStream(path) } }).done();
                }
              });
              push('raw @aws-sdk/lib-storage upload of the data dir, s3rver', size, t.seconds);
            } finally {
              client.destroy();
            }
          }],
          ['backup, s3', async (r) => {
            const storage = await openStorage(parseStorageUrl(`s3://bench/tdekv-${r}`, { flags: s3Flags }));
            try {
              const b = await timed(() => offlineBackup(src, storage, { protector }));
              push('tdekv backup full --offline, s3rver', b.value.manifest.totals.bytes, b.seconds);
            } finally {
              await storage.close();
            }
          }],
        );
      }
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? steps : [...steps].reverse();
        for (const [name, step] of order) {
          cold = (await dropCaches()) && cold;
          ctx.progress(`round ${r + 1}/${rounds}: ${name}${cold ? ' (page cache dropped)' : ''}`);
          await step(r);
        }
      }
      // Incremental: a full backup, 1% of the keys changed, then --incremental.
      const storeDir = join(dir, 'store-incremental');
      const storage = await openStorage(parseStorageUrl(storeDir));
      let full;
      let incr;
      try {
        const once = (incremental: boolean) => timed(() => offlineBackup(src, storage, { protector, ...(incremental ? { incremental: true, available } : {}) }));
        ctx.progress('incremental: full backup');
        full = await once(false);
        ctx.progress('incremental: changing 1% of the keys');
        await load(src, keys, valueBytes, 0xbac_0002, 0.01);
        ctx.progress('incremental: --incremental backup');
        incr = await once(true);
      } finally {
        await storage.close();
      }
      const rows = [...results].map(([what, xs]) => [what, median(xs).toFixed(1), xs.map((x) => x.toFixed(1)).join(' ')]);
      ctx.table({
        title: 'Backup and restore against a raw copy of the same data dir',
        notes: [
          `${keys} keys x ${valueBytes} B values: ${mib(size).toFixed(0)} MiB in the data dir; medians of ${rounds} alternating rounds`,
          cold ? 'page cache dropped before every step' : 'page cache NOT dropped (needs root)',
          'cp -r and tar include a sync of their output; backup and restore fsync every object and file',
        ],
        columns: ['what', 'MiB/s (median)', 'rounds'],
        rows,
      });
      const rate = (what: string): number => median(results.get(what) ?? [NaN]);
      const copyRate = rate('cp -r of the data dir');
      for (const what of ['tdekv backup full --offline, local://', 'tdekv restore full, local://']) {
        const ratio = rate(what) / copyRate;
        ctx.line(`${what} / cp -r = ${ratio.toFixed(2)} (target >= 0.50: ${ratio >= 0.5 ? 'met' : 'MISS'})`);
      }
      if (s3) {
        const ratio = rate('tdekv backup full --offline, s3rver') / rate('raw @aws-sdk/lib-storage upload of the data dir, s3rver');
        ctx.line(`backup to s3rver / raw upload = ${ratio.toFixed(2)} (target >= 0.50: ${ratio >= 0.5 ? 'met' : 'MISS'})`);
      }
      const f = full!.value.manifest.totals;
      const i = incr!.value.manifest.totals;
      ctx.line(`incremental after 1% of the keys changed: ${incr!.seconds.toFixed(1)} s and ${mib(i.addedBytes).toFixed(1)} MiB uploaded, against ${full!.seconds.toFixed(1)} s and ${mib(f.addedBytes).toFixed(1)} MiB for the full backup (${((i.addedBytes / f.addedBytes) * 100).toFixed(1)}% of its bytes)`);
    } finally {
      await s3?.stop();
      await ctx.removeTempDir(dir);
    }
  },
};
