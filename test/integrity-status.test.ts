/**
 * Issue 9: operators see the tamper-evidence state (dictionary generations, legacy
 * dictionaries, files without tags, key.dict copy problems) in /status, `ctl encryption-meta
 * status`, INFO, Prometheus and `ctl verify`, for a data dir holding legacy (format 1,
 * unauthenticated) tables next to authenticated ones.
 */
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config/config.js';
import type { TdekvConfig } from '../src/config/types.js';
import { Engine } from '../src/engine/engine.js';
import { formatStatus } from '../src/cli/status-format.js';
import { methodCode } from '../src/crypto/method.js';
import { seal } from '../src/crypto/seal.js';
import { EncryptedEnv, KEY_DICT_NAME } from '../src/env/encrypted-env.js';
import { encryptionStatus } from '../src/env/encryption-status.js';
import { LOG_NAME, SNAPSHOT_NAME } from '../src/keys/file-dictionary.js';
import { LOG_MAGIC, SNAPSHOT_MAGIC, encodeLegacyHeader, encodeLegacyRecord } from '../src/keys/file-dictionary-format.js';
import { encodeSealedFile, sealedHeader } from '../src/keys/key-dictionary-format.js';
import { silentLogger } from '../src/log/logger.js';
import { BinaryWriter } from '../src/util/binary.js';
import { openEnvFromConfig } from '../src/env/open-env.js';
import { META_DIR } from '../src/env/paths.js';
import { createMetricsRegistry } from '../src/metrics/registry.js';
import { encryptionInfo } from '../src/server/info.js';
import { statusReport } from '../src/server/status-report.js';
import { runCli } from './support/cli.js';
import { assertSameTree, cleanup, newFileMasterKey, snapshotTree, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { parseSamples, sampleOf } from './support/ops-fixture.js';
import { KeyAdmin } from '../src/env/key-admin.js';

/** Tuning that flushes often and never compacts on its own, so legacy tables stay legacy. */
const TUNING = { writeBufferSize: 16 * 1024, blockSize: 1024, level0FileNumCompactionTrigger: 1000, level0SlowdownWritesTrigger: 1000, level0StopWritesTrigger: 1000 };

/**
 * The env as tdekv before tags wrote with it: every file the engine creates is recorded
 * unauthenticated, so its writer produces format 1 tables and logs (CRC only), as a data dir
 * from before issue 9 holds them.
 */
function legacyWriter(env: EncryptedEnv): EncryptedEnv {
  return new Proxy(env, {
    get(target, prop) {
      if (prop === 'create') return (path: string) => target.create(path, { authenticated: false });
      // Tables written on the background thread are created through a grant.
      if (prop === 'grantCreate') return (path: string) => target.grantCreate(path, { authenticated: false });
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

async function fill(engine: Engine, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i += 25) {
    await engine.write(Array.from({ length: 25 }, (_, j) => ({ type: 'put' as const, key: Buffer.from(`key-${String(i + j).padStart(6, '0')}`), value: Buffer.from(`value-${i + j}-${'v'.repeat(100)}`) })));
  }
}

let root: string;
let configPath: string;
let config: TdekvConfig;
let dataDir: string;
/** Tables written in the legacy format, still on disk after the authenticated writes. */
let legacyTables: string[];

async function withDb(fn: (env: EncryptedEnv, engine: Engine) => Promise<void>, legacy = false): Promise<void> {
  const managed = await openEnvFromConfig(config);
  try {
    const engine = await Engine.open({ env: legacy ? legacyWriter(managed.env) : managed.env, ...TUNING });
    try {
      await fn(managed.env, engine);
    } finally {
      await engine.close();
    }
  } finally {
    await managed.close();
  }
}

const tables = async () => (await readdir(dataDir)).filter((n) => n.endsWith('.sst')).sort();
const ctl = (...args: string[]) => runCli(['ctl', '--config', configPath, ...args]);

before(async () => {
  root = await tempDir('tdekv-integrity-');
  await writeKeyFile(root);
  configPath = join(root, 'tdekv.toml');
  await writeFile(configPath, `[storage]\ndata-dir = "data"\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = "master.key"\n`);
  config = await loadConfig(configPath);
  dataDir = join(root, 'data');
  await withDb(async (_env, engine) => {
    await fill(engine, 0, 400);
    await engine.flush();
  }, true);
  legacyTables = await tables();
  assert.ok(legacyTables.length > 0, 'the legacy phase wrote tables');
  await withDb(async (_env, engine) => {
    await fill(engine, 400, 400);
    await engine.flush();
  });
  const now = await tables();
  for (const t of legacyTables) assert.ok(now.includes(t), `legacy table ${t} is still there`);
  assert.ok(now.length > legacyTables.length, 'authenticated tables were written next to them');
});
after(() => cleanup(root));

describe('tamper-evidence state', () => {
  test('/status: generations, legacy flag, unauthenticated files by method, plaintext files, key.dict copy', async () => {
    const managed = await openEnvFromConfig(config);
    try {
      const env = managed.env;
      const d = env.dictionaryState();
      assert.ok(d.keyDictGeneration > 0 && d.fileDictGeneration > 0);
      const report = await statusReport(env);
      assert.deepEqual(report.encryption.integrity, {
        keyDictGeneration: d.keyDictGeneration,
        fileDictGeneration: d.fileDictGeneration,
        legacyDictionaries: false,
        unauthenticatedFiles: { total: legacyTables.length, byMethod: { 'aes256-ctr': legacyTables.length } },
        plaintextFiles: 0,
        keyDictCopyOk: true,
        keyDictCopyProblems: [],
      });
      // The generation moves up with every key.dict write: what an outside anchor compares.
      await new KeyAdmin(env).rotateDataKey();
      assert.ok((await statusReport(env)).encryption.integrity.keyDictGeneration > d.keyDictGeneration);
    } finally {
      await managed.close();
    }
  });

  test('Prometheus: key dictionary generation, unauthenticated files, copy ok, legacy flag', async () => {
    const managed = await openEnvFromConfig(config);
    try {
      const env = managed.env;
      const registry = createMetricsRegistry({ env });
      let samples = parseSamples(await registry.metrics());
      const d = env.dictionaryState();
      assert.equal(sampleOf(samples, 'tdekv_encryption_key_dictionary_generation'), d.keyDictGeneration);
      assert.equal(sampleOf(samples, 'tdekv_encryption_file_dictionary_generation'), d.fileDictGeneration);
      assert.equal(sampleOf(samples, 'tdekv_encryption_unauthenticated_files'), legacyTables.length);
      assert.equal(sampleOf(samples, 'tdekv_encryption_key_dictionary_copy_ok'), 1);
      assert.equal(sampleOf(samples, 'tdekv_encryption_dictionary_legacy'), 0);
      await new KeyAdmin(env).rotateDataKey();
      samples = parseSamples(await registry.metrics());
      assert.equal(sampleOf(samples, 'tdekv_encryption_key_dictionary_generation'), env.dictionaryState().keyDictGeneration);
      assert.ok(env.dictionaryState().keyDictGeneration > d.keyDictGeneration);
    } finally {
      await managed.close();
    }
  });

  test('INFO # Encryption: the same fields, snake_case', async () => {
    const managed = await openEnvFromConfig(config);
    try {
      const env = managed.env;
      const d = env.dictionaryState();
      const info = new Map(encryptionInfo(env, config));
      assert.equal(info.get('key_dictionary_generation'), d.keyDictGeneration);
      assert.equal(info.get('file_dictionary_generation'), d.fileDictGeneration);
      assert.equal(info.get('dictionaries_legacy'), 0);
      assert.equal(info.get('unauthenticated_files'), legacyTables.length);
      assert.equal(info.get('unauthenticated_files_aes256_ctr'), legacyTables.length);
      assert.equal(info.get('plaintext_files'), 0);
      assert.equal(info.get('key_dictionary_copy_ok'), 1);
      for (const [k] of info) assert.match(k, /^[a-z0-9_]+$/, `${k} is snake_case`);
    } finally {
      await managed.close();
    }
  });

  test('ctl encryption-meta status: text and --json; a damaged key.dict copy is shown without secrets', async () => {
    const json = await ctl('encryption-meta', 'status', '--json');
    assert.equal(json.code, 0, json.stderr);
    const s = JSON.parse(json.stdout) as { integrity: { keyDictGeneration: number; unauthenticatedFiles: { total: number; byMethod: Record<string, number> }; keyDictCopyOk: boolean; legacyDictionaries: boolean } };
    assert.equal(s.integrity.unauthenticatedFiles.total, legacyTables.length);
    assert.deepEqual(s.integrity.unauthenticatedFiles.byMethod, { 'aes256-ctr': legacyTables.length });
    assert.equal(s.integrity.keyDictCopyOk, true);
    assert.equal(s.integrity.legacyDictionaries, false);

    const text = await ctl('encryption-meta', 'status');
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`^key\\.dict gen +${s.integrity.keyDictGeneration} \\(record it outside the data dir`, 'm'));
    assert.match(text.stdout, /^file\.dict gen +\d+$/m);
    assert.match(text.stdout, /^dictionaries +authenticated$/m);
    assert.match(text.stdout, new RegExp(`^unauthenticated ${legacyTables.length} \\(aes256-ctr: ${legacyTables.length}\\): .*tdekv data-key reencrypt`, 'm'));
    assert.match(text.stdout, /^plaintext files 0$/m);
    assert.match(text.stdout, /^key\.dict copy +ok$/m);

    // The copy damaged: the read-only ctl reports it and writes nothing.
    const copy = join(dataDir, META_DIR, 'key.dict.copy');
    const good = await readFile(copy);
    const bad = Buffer.from(good);
    bad[bad.length - 5]! ^= 0x10;
    await writeFile(copy, bad);
    try {
      const before = await snapshotTree(dataDir);
      const damaged = await ctl('encryption-meta', 'status');
      assert.equal(damaged.code, 0, damaged.stderr);
      assert.match(damaged.stdout, /^key\.dict copy +PROBLEM: the good copy is used/m);
      assert.match(damaged.stdout, /^ +.*key\.dict\.copy/m);
      const dj = JSON.parse((await ctl('encryption-meta', 'status', '--json')).stdout) as { integrity: { keyDictCopyOk: boolean; keyDictCopyProblems: string[] } };
      assert.equal(dj.integrity.keyDictCopyOk, false);
      assert.ok(dj.integrity.keyDictCopyProblems.some((p) => p.includes('key.dict.copy')), JSON.stringify(dj.integrity));
      assert.doesNotMatch(damaged.stdout, /[0-9a-f]{32}/i, 'no key-shaped hex');
      assertSameTree(await snapshotTree(dataDir), before, 'status is read-only');
    } finally {
      await writeFile(copy, good);
    }
  });

  test('ctl verify: each file says authenticated or unauthenticated; the summary counts them and says how to fix; reencrypt fixes them', async () => {
    const r = await ctl('verify');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const t of legacyTables) assert.match(r.stdout, new RegExp(`^${t}\\ttable\\tmethod=aes256-ctr\\tkey-id=\\d+\\tsize=\\d+\\tunauthenticated\\tok\\t\\d+ blocks`, 'm'));
    const authenticated = r.stdout.split('\n').filter((l) => /^\d{6}\.sst\t/.test(l) && !legacyTables.some((t) => l.startsWith(t + '\t')));
    assert.ok(authenticated.length > 0);
    for (const l of authenticated) assert.match(l, /\tauthenticated\tok\t/);
    assert.match(r.stdout, /^MANIFEST-\d{6}\tmanifest\t.*\tauthenticated\tok\t/m);
    assert.match(r.stdout, /^CURRENT\tcurrent\t.*\tauthenticated\tok\t/m);
    assert.match(r.stdout, new RegExp(`^unauthenticated: ${legacyTables.length} \\(table: ${legacyTables.length}\\) encrypted file\\(s\\) without tags, checked with CRCs only: .*compaction.*tdekv data-key reencrypt`, 'm'));
    assert.match(r.stdout, /^damaged: 0$/m);
    const json = JSON.parse((await ctl('verify', '--json')).stdout) as { unauthenticated: { total: number; byKind: Record<string, number> }; files: Array<{ path: string; authenticated?: boolean }> };
    assert.deepEqual(json.unauthenticated, { total: legacyTables.length, byKind: { table: legacyTables.length } });
    for (const f of json.files) assert.equal(f.authenticated, !legacyTables.includes(f.path), f.path);

    const re = await runCli(['data-key', 'reencrypt', '--config', configPath]);
    assert.equal(re.code, 0, re.stderr);
    const after = await ctl('verify');
    assert.equal(after.code, 0, after.stdout + after.stderr);
    assert.match(after.stdout, /^unauthenticated: 0$/m);
    assert.doesNotMatch(after.stdout, /\tunauthenticated\t/);
    const status = JSON.parse((await ctl('encryption-meta', 'status', '--json')).stdout) as { integrity: { unauthenticatedFiles: { total: number } } };
    assert.equal(status.integrity.unauthenticatedFiles.total, 0);
  });
});

describe('tamper-evidence state of a legacy data dir', () => {
  test('verify marks the format 1 write-ahead log and manifest unauthenticated', async (t) => {
    const dir = await tempDir('tdekv-integrity-legacy-');
    t.after(() => cleanup(dir));
    await writeKeyFile(dir);
    const path = join(dir, 'tdekv.toml');
    await writeFile(path, `[storage]\ndata-dir = "data"\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = "master.key"\n`);
    const cfg = await loadConfig(path);
    const managed = await openEnvFromConfig(cfg);
    try {
      const engine = await Engine.open({ env: legacyWriter(managed.env), ...TUNING });
      try {
        await fill(engine, 0, 50);
      } finally {
        await engine.close();
      }
    } finally {
      await managed.close();
    }
    const r = await runCli(['ctl', '--config', path, 'verify']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^\d{6}\.log\twal\t.*\tunauthenticated\tok\t\d+ records/m);
    assert.match(r.stdout, /^MANIFEST-\d{6}\tmanifest\t.*\tunauthenticated\tok\t/m);
    assert.match(r.stdout, /^unauthenticated: \d+ \(.*wal: 1.*\)/m);
  });
});

describe('tamper-evidence state of legacy (version 1) dictionaries', () => {
  test('status text, JSON, metrics and INFO show the legacy flag of a read-only open', async (t) => {
    const dir = await tempDir('tdekv-integrity-v1-');
    const masterKey = await newFileMasterKey(dir);
    t.after(async () => {
      masterKey.close();
      await cleanup(dir);
    });
    const data = join(dir, 'data');
    const meta = join(data, META_DIR);
    await mkdir(meta, { recursive: true });
    // As test/key-dict-copy.test.ts builds it: key.dict version 1, a v1 file.dict with one legacy file.
    const key = randomBytes(32);
    const iv = randomBytes(16);
    const c = createCipheriv('aes-256-ctr', key, iv);
    await writeFile(join(data, 'old.sst'), Buffer.concat([c.update(randomBytes(100)), c.final()]));
    const content = new BinaryWriter().u16(1).u64(42).u32(1).u64(42).u8(methodCode('aes256-ctr')).u64(Date.now()).u8(0).u8(32).bytes(key).finish();
    const wrapping = await masterKey.newWrappingKey();
    const aad = sealedHeader(masterKey.type, wrapping.envelope, 1);
    await writeFile(join(meta, KEY_DICT_NAME), encodeSealedFile(aad, seal(wrapping.key, content, aad)));
    await writeFile(join(meta, SNAPSHOT_NAME), Buffer.concat([encodeLegacyHeader(SNAPSHOT_MAGIC, 3), encodeLegacyRecord({ op: 'set', path: 'old.sst', entry: { method: 'aes256-ctr', keyId: 42, iv, authenticated: false } })]));
    await writeFile(join(meta, LOG_NAME), encodeLegacyHeader(LOG_MAGIC, 3));

    const env = await EncryptedEnv.open({ dataDir: data, method: 'aes256-ctr', rotationPeriodMs: 86_400_000, masterKey, fileDictionaryLog: true, fileDictionaryRewriteThreshold: 1_000_000, logger: silentLogger(), readOnly: true });
    try {
      const s = await encryptionStatus(env);
      assert.equal(s.integrity.legacyDictionaries, true);
      assert.deepEqual(s.integrity.unauthenticatedFiles, { total: 1, byMethod: { 'aes256-ctr': 1 } });
      const text = formatStatus(s);
      assert.ok(text.some((l) => /^dictionaries +LEGACY \(version 1, unauthenticated\): migrated at the next writable open$/.test(l)), text.join('\n'));
      assert.ok(text.some((l) => /^unauthenticated 1 \(aes256-ctr: 1\)/.test(l)), text.join('\n'));
      const samples = parseSamples(await createMetricsRegistry({ env }).metrics());
      assert.equal(sampleOf(samples, 'tdekv_encryption_dictionary_legacy'), 1);
      assert.equal(sampleOf(samples, 'tdekv_encryption_unauthenticated_files'), 1);
      const info = new Map(encryptionInfo(env, config));
      assert.equal(info.get('dictionaries_legacy'), 1);
      assert.equal(info.get('unauthenticated_files'), 1);
    } finally {
      await env.close();
    }
  });
});
