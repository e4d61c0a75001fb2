/**
 * Child process for the engine crash test, and the deterministic workload it shares with
 * the parent. Run directly, it opens the database and writes batches forever; the parent
 * SIGKILLs it at a random moment.
 *   argv: dataDir keyFile
 *   stdout: "opening" before the engine opens, "ready N" once it is open (N: the counter of
 *   the last batch in the database, 0 for none), then one line "N" per batch N after its
 *   write was acknowledged (sync: true).
 *
 * Batch N is a pure function of N, and the database holds the counter of the last batch
 * applied under COUNTER_KEY, so each run continues where the last one left off and the
 * parent can compute exactly what the database must hold after batch N.
 */
import { pathToFileURL } from 'node:url';
import type { EncryptionConfig } from '../../src/config/types.js';
import { EncryptedEnv } from '../../src/env/encrypted-env.js';
import { FileMasterKey } from '../../src/masterkey/file.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineTuning } from '../../src/engine/options.js';
import type { BatchOp } from '../../src/engine/types.js';

/** Small, so flushes, compactions and manifest edits happen within a few hundred ms of writes. */
export const CRASH_TUNING: Partial<EngineTuning> = {
  writeBufferSize: 64 * 1024,
  blockSize: 1024,
  targetFileSizeBase: 64 * 1024,
  maxBytesForLevelBase: 256 * 1024,
  level0FileNumCompactionTrigger: 2,
};

export const COUNTER_KEY = '!counter';

export function encryptionConfig(keyFile: string): EncryptionConfig {
  return {
    dataEncryptionMethod: 'aes256-ctr',
    dataKeyRotationPeriodMs: 3600_000,
    enableFileDictionaryLog: true,
    fileDictionaryRewriteThreshold: 50,
    masterKey: { type: 'file', path: keyFile },
  };
}

/** Deterministic value of 40–400 bytes that differs for every (batch, slot). */
export function valueFor(batch: number, slot: number): string {
  const unit = `v${batch}.${slot}|`;
  const length = 40 + ((batch * 131 + slot * 37) % 360);
  return unit.repeat(Math.ceil(length / unit.length)).slice(0, length);
}

/** Batches reuse keys after this many: the database stays small while old versions pile up for compaction to drop. */
const KEY_WINDOW = 1000;

function tableKey(batch: number, slot: number): string {
  return `k${String(batch % KEY_WINDOW).padStart(4, '0')}-${slot}`;
}

/** The operations of batch `n` (n >= 1), as key/value strings; null value = delete. */
export function batchOps(n: number): Array<[string, string | null]> {
  const ops: Array<[string, string | null]> = [];
  for (let slot = 0; slot < 4; slot++) ops.push([tableKey(n, slot), valueFor(n, slot)]);
  // Overwritten again and again: a stale version must never resurface.
  ops.push([`hot-${String(n % 97).padStart(2, '0')}`, valueFor(n, 9)]);
  // Deletes of keys written earlier, some of them long since flushed and compacted.
  if (n % 3 === 0 && n > 12) ops.push([tableKey(n - 12, n % 4), null]);
  if (n % 5 === 0) ops.push([`hot-${String((n * 13) % 97).padStart(2, '0')}`, null]);
  if (n % 7 === 0 && n > 400) ops.push([tableKey(n - 400, (n + 1) % 4), null]);
  ops.push([COUNTER_KEY, String(n)]);
  return ops;
}

export function toBatch(ops: Array<[string, string | null]>): BatchOp[] {
  return ops.map(([k, v]) => (v === null ? { type: 'del', key: Buffer.from(k) } : { type: 'put', key: Buffer.from(k), value: Buffer.from(v) }));
}

/** Applies batch `n` to a model of the database (key → value). */
export function applyBatch(model: Map<string, string>, n: number): void {
  for (const [k, v] of batchOps(n)) {
    if (v === null) model.delete(k);
    else model.set(k, v);
  }
}

async function main(dataDir: string, keyFile: string): Promise<void> {
  const say = (line: string): void => void process.stdout.write(line + '\n');
  // The env is opened without open-env.ts, whose static import of the KMS client costs
  // ~0.4 s of startup per child; same settings as encryptionConfig().
  const enc = encryptionConfig(keyFile);
  const env = await EncryptedEnv.open({
    dataDir,
    method: enc.dataEncryptionMethod,
    rotationPeriodMs: enc.dataKeyRotationPeriodMs,
    masterKey: await FileMasterKey.load(keyFile),
    fileDictionaryLog: enc.enableFileDictionaryLog,
    fileDictionaryRewriteThreshold: enc.fileDictionaryRewriteThreshold,
  });
  say('opening');
  const engine = await Engine.open({ env, ...CRASH_TUNING });
  const stored = engine.getSync(Buffer.from(COUNTER_KEY));
  let n = stored === undefined ? 0 : Number(stored.toString());
  say(`ready ${n}`);
  for (;;) {
    n++;
    await engine.write(toBatch(batchOps(n)), { sync: true });
    say(String(n));
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [dataDir, keyFile] = process.argv.slice(2) as [string, string];
  main(dataDir, keyFile).catch((err: unknown) => {
    process.stderr.write(`engine-crash-writer: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(3);
  });
}
