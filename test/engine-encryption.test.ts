import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { EncryptionConfig } from '../src/config/types.js';
import type { EncryptionMethod } from '../src/crypto/method.js';
import { Engine } from '../src/engine/engine.js';
import type { EngineTuning } from '../src/engine/options.js';
import type { EncryptedEnv } from '../src/env/encrypted-env.js';
import { openEnv, type ManagedEnv } from '../src/env/open-env.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { KeyAdmin } from '../src/env/key-admin.js';

async function setup(t: { after: (fn: () => Promise<void>) => void }): Promise<{ dataDir: string; config: (method: EncryptionMethod) => EncryptionConfig }> {
  const root = await tempDir('tdekv-engine-encryption-');
  t.after(() => cleanup(root));
  const { path } = await writeKeyFile(root);
  return {
    dataDir: join(root, 'data'),
    config: (method) => ({
      dataEncryptionMethod: method,
      dataKeyRotationPeriodMs: 7 * 24 * 3600_000,
      enableFileDictionaryLog: true,
      fileDictionaryRewriteThreshold: 1_000_000,
      masterKey: { type: 'file', path },
    }),
  };
}

/** Small buffers and levels, so a few hundred writes make several tables and levels. */
const TUNING: Partial<EngineTuning> = { writeBufferSize: 16 * 1024, targetFileSizeBase: 8 * 1024, maxBytesForLevelBase: 32 * 1024, level0FileNumCompactionTrigger: 2 };

async function openDb(dataDir: string, enc: EncryptionConfig): Promise<{ managed: ManagedEnv; env: EncryptedEnv; engine: Engine; close: () => Promise<void> }> {
  const managed = await openEnv(dataDir, enc);
  let engine: Engine;
  try {
    engine = await Engine.open({ env: managed.env, ...TUNING });
  } catch (err) {
    await managed.close();
    throw err;
  }
  return {
    managed,
    env: managed.env,
    engine,
    close: async () => {
      await engine.close();
      await managed.close();
    },
  };
}

/** Every regular file under `root`, recursively (encryption-meta/ included). */
async function allFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (d.isFile()) out.push(join(d.parentPath, d.name));
  }
  return out.sort();
}

/** Marker → the files (relative to `root`) that contain its bytes. */
async function scanFor(root: string, markers: readonly Buffer[]): Promise<Map<string, string[]>> {
  const hits = new Map<string, string[]>(markers.map((m) => [m.toString(), []]));
  for (const file of await allFiles(root)) {
    const bytes = await readFile(file);
    for (const m of markers) if (bytes.includes(m)) hits.get(m.toString())!.push(relative(root, file));
  }
  return hits;
}

function marker(kind: 'KEY' | 'VAL', phase: string, i: number): Buffer {
  return Buffer.from(`MARKER-${kind}-${phase}-${String(i).padStart(4, '0')}-7f3a9c`);
}

/**
 * A key holding a key marker after a scrambled prefix: tables store a key as its difference
 * from the one before, so keys that share their leading bytes would hide the marker even in
 * plaintext; with a scrambled prefix, neighbours share at most a few bytes before it.
 */
function markerKey(phase: string, i: number): Buffer {
  return Buffer.concat([Buffer.from(createHash('sha256').update(`${phase}${i}`).digest('hex').slice(0, 8) + '/'), marker('KEY', phase, i)]);
}

/**
 * Writes marker keys and values: some flushed and compacted into tables (and so named in
 * the manifest), some only in the WAL. Returns the markers, and those that sit only in the
 * WAL, scanned while the engine is still open (close() flushes the WAL into a table).
 */
async function writeMarkers(dataDir: string, enc: EncryptionConfig): Promise<{ all: Buffer[]; whileOpen: Map<string, string[]>; afterClose: Map<string, string[]>; walOnly: Buffer[] }> {
  const db = await openDb(dataDir, enc);
  const all: Buffer[] = [];
  const walOnly: Buffer[] = [];
  try {
    for (let i = 0; i < 300; i++) {
      await db.engine.put(markerKey('table', i), Buffer.concat([marker('VAL', 'table', i), Buffer.alloc(i % 50, 0x2e)]));
      all.push(marker('KEY', 'table', i), marker('VAL', 'table', i));
    }
    await db.engine.flush();
    await db.engine.compactRange();
    assert.ok(db.engine.liveTables().length > 0);
    for (let i = 0; i < 20; i++) {
      await db.engine.put(markerKey('wal', i), marker('VAL', 'wal', i), { sync: true });
      walOnly.push(marker('KEY', 'wal', i), marker('VAL', 'wal', i));
    }
    all.push(...walOnly);
    const whileOpen = await scanFor(dataDir, all);
    await db.close();
    return { all, whileOpen, afterClose: await scanFor(dataDir, all), walOnly };
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
}

/** Every file the engine uses, and the data key id of each, from the file dictionary. */
function liveFileKeys(env: EncryptedEnv): Map<string, number> {
  return new Map(env.files().map(([path, info]) => [path, info.keyId]));
}

function assertAllReadable(engine: Engine, expected: Map<string, string>, when: string): void {
  const it = engine.iterator();
  const seen = new Map<string, string>();
  try {
    for (let e = it.next(); e !== undefined; e = it.next()) seen.set(e[0].toString(), e[1].toString());
  } finally {
    it.close();
  }
  assert.deepEqual(seen, expected, `${when}: a full scan`);
  for (const [k, v] of expected) assert.equal(engine.getSync(Buffer.from(k))?.toString(), v, `${when}: ${k}`);
}

describe('engine encryption at rest', () => {
  test('aes256-ctr: no marker key or value appears in any file under the data dir (tables, WAL, manifest, dictionaries)', async (t) => {
    const { dataDir, config } = await setup(t);
    const { all, whileOpen, afterClose, walOnly } = await writeMarkers(dataDir, config('aes256-ctr'));
    for (const [scan, hits] of [['with the engine open', whileOpen], ['after close', afterClose]] as const) {
      const leaks = [...hits].filter(([, files]) => files.length > 0);
      assert.deepEqual(leaks, [], `${scan}: markers found in plaintext`);
    }
    assert.equal(all.length, 640);
    assert.equal(walOnly.length, 40);
    // The scan looked at the engine's files, not an empty dir.
    const names = (await allFiles(dataDir)).map((f) => relative(dataDir, f));
    assert.ok(names.some((n) => /^\d{6}\.sst$/.test(n)) && names.some((n) => /^\d{6}\.log$/.test(n)) && names.some((n) => /^MANIFEST-\d+$/.test(n)) && names.includes('CURRENT'), names.join(' '));
    assert.ok(names.includes('encryption-meta/file.dict') || names.includes('encryption-meta/file.dict.log'), names.join(' '));
  });

  test('plaintext: the same markers are found, so the scan above can see them', async (t) => {
    const { dataDir, config } = await setup(t);
    const { all, whileOpen, afterClose, walOnly } = await writeMarkers(dataDir, config('plaintext'));
    const missing = (hits: Map<string, string[]>, ms: readonly Buffer[]): string[] => ms.filter((m) => hits.get(m.toString())!.length === 0).map(String);
    // With the engine open, the last writes are only in the write-ahead log.
    assert.deepEqual(missing(whileOpen, all), []);
    for (const m of walOnly) assert.ok(whileOpen.get(m.toString())!.some((f) => f.endsWith('.log')), `${m} in a WAL`);
    // After close they are in tables; table keys also show in the manifest (smallest/largest).
    assert.deepEqual(missing(afterClose, all), []);
    assert.ok([...afterClose.values()].flat().some((f) => f.startsWith('MANIFEST-')), 'a manifest names marker keys');
  });

  /**
   * Writes data on one key, rotates, writes more (overwrites and deletes of data in old
   * tables), and compacts everything. Returns the old and new key ids and the expected data.
   */
  async function rotateAndCompact(db: Awaited<ReturnType<typeof openDb>>): Promise<{ oldKey: number; newKey: number; expected: Map<string, string> }> {
    const expected = new Map<string, string>();
    for (let i = 0; i < 400; i++) {
      const k = `rot-${String(i).padStart(4, '0')}`;
      const v = `before-${i}-${'y'.repeat(i % 40)}`;
      await db.engine.put(Buffer.from(k), Buffer.from(v));
      expected.set(k, v);
    }
    await db.engine.flush();
    await db.engine.waitForBackgroundWork();
    const oldKey = new KeyAdmin(db.env).currentDataKey()!.id;
    assert.ok([...liveFileKeys(db.env).values()].every((id) => id === oldKey));
    assert.ok(db.engine.liveTables().length >= 2, 'several tables on the old key');

    const newKey = (await new KeyAdmin(db.env).rotateDataKey()).id;
    assert.notEqual(newKey, oldKey);
    for (let i = 0; i < 400; i += 3) {
      const k = `rot-${String(i).padStart(4, '0')}`;
      if (i % 2 === 0) {
        await db.engine.del(Buffer.from(k));
        expected.delete(k);
      } else {
        await db.engine.put(Buffer.from(k), Buffer.from(`after-${i}`));
        expected.set(k, `after-${i}`);
      }
    }
    await db.engine.compactRange();
    await db.engine.waitForBackgroundWork();

    const files = liveFileKeys(db.env);
    const tables = db.engine.liveTables().map((f) => f.name);
    assert.ok(tables.length > 0);
    for (const name of tables) assert.equal(files.get(name), newKey, `table ${name}`);
    const wals = [...files.keys()].filter((p) => p.endsWith('.log'));
    assert.ok(wals.length > 0);
    for (const name of wals) assert.equal(files.get(name), newKey, `write-ahead log ${name}`);
    assertAllReadable(db.engine, expected, 'after compactRange on the new key');
    return { oldKey, newKey, expected };
  }

  test('rotation: after rotateDataKey and compactRange, tables and WAL use the new key; after a reopen every file does, the old key retires, data reads back', async (t) => {
    const { dataDir, config } = await setup(t);
    const enc = config('aes256-ctr');
    const db = await openDb(dataDir, enc);
    let r: Awaited<ReturnType<typeof rotateAndCompact>>;
    try {
      r = await rotateAndCompact(db);
    } finally {
      await db.close();
    }
    const { oldKey, newKey, expected } = r;
    {
      // A reopen writes a new manifest and CURRENT (under the current key).
      const again = await openDb(dataDir, enc);
      try {
        const files = liveFileKeys(again.env);
        for (const kind of [/\.sst$/, /\.log$/, /^MANIFEST-/, /^CURRENT$/]) assert.ok([...files.keys()].some((p) => kind.test(p)), `a live ${kind} file`);
        assert.deepEqual([...files].filter(([, id]) => id !== newKey).map(([p]) => p), [], 'files still on the old key');
        assert.deepEqual(await new KeyAdmin(again.env).retireUnusedKeys(), [oldKey]);
        assert.deepEqual(new KeyAdmin(again.env).dataKeys().map((k) => k.id), [newKey]);
        assertAllReadable(again.engine, expected, 'after retiring the old key');
      } finally {
        await again.close();
      }
    }
    const last = await openDb(dataDir, enc);
    try {
      assert.deepEqual(new KeyAdmin(last.env).dataKeys().map((k) => k.id), [newKey]);
      assertAllReadable(last.engine, expected, 'after reopening without the old key');
    } finally {
      await last.close();
    }
  });

  test(
    'rotation without a restart: compactRange also moves MANIFEST and CURRENT to the new key, so the old key retires while the database runs',
    async (t) => {
      const { dataDir, config } = await setup(t);
      const db = await openDb(dataDir, config('aes256-ctr'));
      try {
        const { oldKey, newKey, expected } = await rotateAndCompact(db);
        const onOldKey = [...liveFileKeys(db.env)].filter(([, id]) => id !== newKey).map(([p]) => p);
        assert.deepEqual(onOldKey, [], 'files still on the old key');
        assert.deepEqual(await new KeyAdmin(db.env).retireUnusedKeys(), [oldKey]);
        assertAllReadable(db.engine, expected, 'after retiring the old key');
      } finally {
        await db.close();
      }
    },
  );

  test('method change: a plaintext database reopened with aes256-ctr is all aes256-ctr after compactRange, data intact', async (t) => {
    const { dataDir, config } = await setup(t);
    const expected = new Map<string, string>();
    {
      const db = await openDb(dataDir, config('plaintext'));
      try {
        for (let i = 0; i < 300; i++) {
          const k = `m-${String(i).padStart(4, '0')}`;
          await db.engine.put(Buffer.from(k), Buffer.from(`plain-${i}`));
          expected.set(k, `plain-${i}`);
        }
        await db.engine.compactRange();
        await db.engine.put(Buffer.from('m-late'), Buffer.from('in a level-0 table after close'));
        expected.set('m-late', 'in a level-0 table after close');
        assert.ok(db.env.files().every(([, info]) => info.method === 'plaintext'));
      } finally {
        await db.close();
      }
    }
    const db = await openDb(dataDir, config('aes256-ctr'));
    try {
      const before = db.engine.liveTables();
      assert.ok(before.length >= 2, 'tables in more than one place to rewrite');
      assert.ok(before.every((f) => db.env.fileInfo(f.name)?.method === 'plaintext'));
      assertAllReadable(db.engine, expected, 'plaintext tables read by an aes256-ctr engine');
      await db.engine.compactRange();
      await db.engine.waitForBackgroundWork();
      const tables = db.engine.liveTables();
      assert.ok(tables.length > 0);
      for (const f of tables) assert.equal(db.env.fileInfo(f.name)?.method, 'aes256-ctr', `table ${f.name}`);
      const current = new KeyAdmin(db.env).currentDataKey()!;
      for (const f of tables) assert.equal(db.env.fileInfo(f.name)?.keyId, current.id);
      assertAllReadable(db.engine, expected, 'after compactRange');
    } finally {
      await db.close();
    }
    const again = await openDb(dataDir, config('aes256-ctr'));
    try {
      assertAllReadable(again.engine, expected, 'after reopening');
      // Only encrypted files are left: the WAL and manifest written since are new files too.
      assert.deepEqual(again.env.files().filter(([, info]) => info.method !== 'aes256-ctr').map(([p]) => p), []);
    } finally {
      await again.close();
    }
  });
});
