import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { link, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { EncryptionConfig } from '../src/env/encryption-config.js';
import type { EncryptionMethod } from '../src/crypto/method.js';
import { Engine } from '../src/engine/engine.js';
import type { EngineTuning } from '../src/engine/options.js';
import { openEnv, type ManagedEnv } from '../src/env/open-env.js';
import { EncryptionLifecycle } from '../src/lifecycle/encryption-lifecycle.js';
import type { LifecycleStatus } from '../src/lifecycle/lifecycle-status.js';
import { silentLogger } from '../src/log/logger.js';
import { setFileFaults, WRITE_OPS } from '../src/util/file-io.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

const TUNING: Partial<EngineTuning> = { writeBufferSize: 64 * 1024, targetFileSizeBase: 32 * 1024, maxBytesForLevelBase: 128 * 1024, level0FileNumCompactionTrigger: 2 };
const MARKER = 'MARKER-9f3b7c';

interface Db {
  managed: ManagedEnv;
  engine: Engine;
  lifecycle: EncryptionLifecycle;
  close(): Promise<void>;
}

async function setup(t: { after: (fn: () => Promise<void>) => void }) {
  const root = await tempDir('tdekv-lifecycle-');
  t.after(() => cleanup(root));
  const { path } = await writeKeyFile(root);
  const other = await writeKeyFile(root, 'other.key');
  const config = (method: EncryptionMethod, extra: Partial<EncryptionConfig> = {}): EncryptionConfig => ({
    dataEncryptionMethod: method,
    dataKeyRotationPeriodMs: 7 * 24 * 3600_000,
    enableFileDictionaryLog: true,
    fileDictionaryRewriteThreshold: 1_000_000,
    masterKey: { type: 'file', path },
    scanRateLimit: 0,
    ...extra,
  });
  return { root, dataDir: join(root, 'data'), config, otherKeyPath: other.path };
}

async function open(dataDir: string, enc: EncryptionConfig): Promise<Db> {
  const managed = await openEnv(dataDir, enc, { deferOpenWrites: true });
  const engine = await Engine.open({ env: managed.env, ...TUNING });
  const lifecycle = await EncryptionLifecycle.open({ engine, managed, config: enc, logger: silentLogger() });
  return {
    managed,
    engine,
    lifecycle,
    close: async () => {
      await lifecycle.close();
      await engine.close();
      await managed.close();
    },
  };
}

async function writeMarkers(engine: Engine, n: number, from = 0): Promise<void> {
  for (let i = from; i < from + n; i += 500) {
    const ops = [];
    for (let j = i; j < Math.min(from + n, i + 500); j++) ops.push({ type: 'put' as const, key: Buffer.from(`k${String(j).padStart(7, '0')}`), value: Buffer.from(`${MARKER}-${j}`) });
    await engine.write(ops);
  }
}

/** Markers written and flushed to tables, background work done: what the scan has to move. */
async function loadMarkers(db: Db, n: number): Promise<void> {
  await writeMarkers(db.engine, n);
  await db.engine.flush();
  await db.engine.waitForBackgroundWork();
}

/** Everything flushed, then no file under the data dir holds a marker in the clear. */
async function assertNoMarkerLeft(db: Db, dataDir: string): Promise<void> {
  await db.engine.flush();
  await db.engine.waitForBackgroundWork();
  assert.deepEqual(await filesHolding(dataDir, MARKER), []);
}

async function filesHolding(root: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  for (const d of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (!d.isFile()) continue;
    const p = join(d.parentPath, d.name);
    if ((await readFile(p)).includes(needle)) hits.push(p);
  }
  return hits;
}

function waitFor(lifecycle: EncryptionLifecycle, done: (s: LifecycleStatus) => boolean, timeoutMs = 60_000): Promise<LifecycleStatus> {
  return new Promise((resolve, reject) => {
    const now = lifecycle.status();
    if (done(now)) return resolve(now);
    const timer = setTimeout(() => {
      lifecycle.off('progress', on);
      reject(new Error(`timed out; last status ${JSON.stringify(lifecycle.status())}`));
    }, timeoutMs);
    const on = (s: LifecycleStatus): void => {
      if (!done(s)) return;
      clearTimeout(timer);
      lifecycle.off('progress', on);
      resolve(s);
    };
    lifecycle.on('progress', on);
  });
}

describe('online encryption lifecycle', () => {
  test('plaintext -> aes256-ctr online: state 1 -> 2 -> 3, percent rises to 100, no marker byte left, no write lost', async (t) => {
    const s = await setup(t);
    const db = await open(s.dataDir, s.config('plaintext'));
    try {
      await loadMarkers(db, 20_000);
      assert.equal(db.lifecycle.status().encryptionState, 0);
      assert.ok((await filesHolding(s.dataDir, MARKER)).length > 0, 'the markers are on disk in plaintext before');
      const percents: number[] = [];
      const states = new Set<number>();
      db.lifecycle.on('progress', (st) => {
        percents.push(st.percentComplete);
        states.add(st.encryptionState);
      });
      const started = await db.lifecycle.setMethod('aes256-ctr');
      assert.equal(started.encryptionState, 2);
      assert.equal(started.encryptionStateDesc, 'ENCRYPTION_IN_PROGRESS');
      // Writes go on during the scan.
      await writeMarkers(db.engine, 5_000, 20_000);
      // A status read at any moment (not only at progress events, which follow a save) that says
      // COMPLETED says 100 %: the completion's own save was once still running, showing 0.
      const completedPercents: number[] = [];
      let polling = true;
      const poll = (): void => {
        const st = db.lifecycle.status();
        if (st.scanStateDesc === 'COMPLETED') completedPercents.push(st.percentComplete);
        if (polling) setImmediate(poll);
      };
      poll();
      const end = await waitFor(db.lifecycle, (st) => st.scanStateDesc === 'COMPLETED');
      polling = false;
      assert.ok(completedPercents.length > 0, 'a status read saw the scan completed before its progress event');
      assert.deepEqual(completedPercents.filter((p) => p !== 100), [], 'a completed scan shows 100 %');
      assert.equal(end.encryptionState, 3);
      assert.equal(end.encryptionStateDesc, 'ENCRYPTED');
      assert.equal(end.percentComplete, 100);
      assert.equal(end.filesOffCurrentKey, 0);
      assert.equal(end.keyAlgorithm, 'AES');
      assert.equal(end.keyLength, 256);
      assert.ok(states.has(2));
      for (let i = 1; i < percents.length; i++) assert.ok(percents[i]! >= percents[i - 1]!, `percent went backwards: ${percents.join(',')}`);
      // Written after the change, even while still in the memtable: nothing new in the old form.
      await assertNoMarkerLeft(db, s.dataDir);
      for (let i = 0; i < 25_000; i += 997) assert.equal(db.engine.getSync(Buffer.from(`k${String(i).padStart(7, '0')}`))?.toString(), `${MARKER}-${i}`);
      assert.ok(end.history.some((h) => h.from === 2 && h.to === 3));
    } finally {
      await db.close();
    }
  });

  test('aes256 -> plaintext is state 5 DECRYPTION_IN_PROGRESS and ends at 1 UNENCRYPTED (keys kept) or 0 once retired', async (t) => {
    const s = await setup(t);
    const db = await open(s.dataDir, s.config('aes256-ctr', { scanRetireKeys: false }));
    try {
      await writeMarkers(db.engine, 5_000);
      await db.engine.flush();
      assert.equal(db.lifecycle.status().encryptionState, 3);
      const st = await db.lifecycle.setMethod('plaintext');
      assert.equal(st.encryptionState, 5);
      const end = await waitFor(db.lifecycle, (x) => x.scanStateDesc === 'COMPLETED');
      assert.equal(end.encryptionState, 1);
      assert.ok((await filesHolding(s.dataDir, MARKER)).length > 0);
      const retired = await db.lifecycle.retire();
      assert.ok(retired.length >= 1);
      assert.equal(db.lifecycle.status().encryptionState, 0);
    } finally {
      await db.close();
    }
  });

  test('REGENERATE is state 4 and moves every file to the new data key; the old key is retired', async (t) => {
    const s = await setup(t);
    const db = await open(s.dataDir, s.config('aes256-ctr'));
    try {
      await writeMarkers(db.engine, 5_000);
      await db.engine.flush();
      const before = db.lifecycle.status().dataKeyId;
      const st = await db.lifecycle.regenerate();
      assert.equal(st.encryptionState, 4);
      assert.equal(st.encryptionStateDesc, 'KEY_CHANGE_IN_PROGRESS');
      assert.notEqual(st.dataKeyId, before);
      const end = await waitFor(db.lifecycle, (x) => x.scanStateDesc === 'COMPLETED');
      assert.equal(end.encryptionState, 3);
      assert.ok(end.lastRetiredKeyIds.includes(before!));
      const byKey = db.managed.env.stats().byKeyId;
      assert.deepEqual(Object.keys(byKey).map(Number), [end.dataKeyId]);
    } finally {
      await db.close();
    }
  });

  test('a second change while a scan runs is refused; after SUSPEND it is allowed', async (t) => {
    const s = await setup(t);
    const db = await open(s.dataDir, s.config('plaintext', { scanRateLimit: 1024 }));
    try {
      await writeMarkers(db.engine, 20_000);
      await db.engine.flush();
      await db.lifecycle.setMethod('aes256-ctr');
      await assert.rejects(db.lifecycle.setMethod('sm4-ctr'), (err: Error & { code?: string }) => err.code === 'ENCRYPTION_CHANGE_REFUSED' && /suspend/i.test(err.message));
      await assert.rejects(db.lifecycle.regenerate(), /ENCRYPTION SUSPEND/);
      assert.throws(() => db.lifecycle.beginBackup(), /cannot start a backup/);
      const suspended = await db.lifecycle.suspend();
      assert.equal(suspended.scanStateDesc, 'SUSPENDED');
      assert.equal(suspended.encryptionState, 2);
      // A backup may start once the scan is suspended; while it runs, neither RESUME nor a change is allowed.
      const release = db.lifecycle.beginBackup();
      await assert.rejects(db.lifecycle.resume(), /while a backup runs/);
      await assert.rejects(db.lifecycle.setMethod('aes128-ctr'), /while a backup runs/);
      release();
      const next = await db.lifecycle.setMethod('aes128-ctr');
      assert.equal(next.encryptionState, 2, 'plaintext files remain: still encrypting');
    } finally {
      await db.close();
    }
  });

  test('a suspended scan stays suspended across a restart; RESUME completes it', async (t) => {
    const s = await setup(t);
    let db = await open(s.dataDir, s.config('plaintext', { scanRateLimit: 1024 }));
    await writeMarkers(db.engine, 20_000);
    await db.engine.flush();
    await db.lifecycle.setMethod('aes256-ctr');
    await db.lifecycle.suspend();
    const pct = db.lifecycle.status().percentComplete;
    await db.close();
    db = await open(s.dataDir, s.config('aes256-ctr', { scanRateLimit: 0 }));
    try {
      const st = db.lifecycle.status();
      assert.equal(st.scanStateDesc, 'SUSPENDED');
      assert.equal(st.encryptionState, 2);
      assert.ok(st.percentComplete >= pct);
      await db.lifecycle.resume();
      const end = await waitFor(db.lifecycle, (x) => x.scanStateDesc === 'COMPLETED');
      assert.equal(end.encryptionState, 3);
      assert.deepEqual(await filesHolding(s.dataDir, MARKER), []);
    } finally {
      await db.close();
    }
  });

  test('a method changed in the configuration while stopped starts the scan at the next open', async (t) => {
    const s = await setup(t);
    let db = await open(s.dataDir, s.config('plaintext'));
    await writeMarkers(db.engine, 5_000);
    await db.close();
    db = await open(s.dataDir, s.config('sm4-ctr'));
    try {
      const end = await waitFor(db.lifecycle, (x) => x.scanStateDesc === 'COMPLETED');
      assert.equal(end.encryptionState, 3);
      assert.equal(end.keyAlgorithm, 'SM4');
      assert.ok(end.history.some((h) => h.to === 2 && /at start/.test(h.reason)));
      assert.deepEqual(await filesHolding(s.dataDir, MARKER), []);
    } finally {
      await db.close();
    }
  });

  test('master key file -> another file: state 6 then back to 3, no table rewritten', async (t) => {
    const s = await setup(t);
    const db = await open(s.dataDir, s.config('aes256-ctr'));
    try {
      await loadMarkers(db, 5_000);
      const tablesBefore = (await readdir(s.dataDir)).filter((n) => n.endsWith('.sst')).sort();
      const seen: number[] = [];
      db.lifecycle.on('progress', (st) => seen.push(st.encryptionState));
      const report = await db.lifecycle.reload({ ...s.config('aes256-ctr'), masterKey: { type: 'file', path: s.otherKeyPath } });
      assert.deepEqual(report.applied, ['master-key']);
      assert.ok(seen.includes(6), `states seen: ${seen.join(',')}`);
      assert.equal(report.status.encryptionState, 3);
      assert.equal(report.status.masterKeyIdentity, s.otherKeyPath);
      assert.deepEqual((await readdir(s.dataDir)).filter((n) => n.endsWith('.sst')).sort(), tablesBefore);
    } finally {
      await db.close();
    }
    // The key dictionary now opens with the new key alone.
    const again = await open(s.dataDir, { ...s.config('aes256-ctr'), masterKey: { type: 'file', path: s.otherKeyPath } });
    await again.close();
  });

  test('a lifecycle record changed without the key is ignored with a warning and rebuilt from the files', async (t) => {
    const s = await setup(t);
    let db = await open(s.dataDir, s.config('plaintext', { scanRateLimit: 1024 }));
    await writeMarkers(db.engine, 20_000);
    await db.engine.flush();
    await db.lifecycle.setMethod('aes256-ctr');
    await db.lifecycle.suspend();
    await db.close();
    const file = join(s.dataDir, 'encryption-meta', 'lifecycle.json');
    const outer = JSON.parse(await readFile(file, 'utf8')) as { record: string; mac: string };
    const rec = JSON.parse(outer.record) as { scanState: number; percent: number };
    rec.scanState = 4;
    rec.percent = 100;
    outer.record = JSON.stringify(rec);
    await writeFile(file, JSON.stringify(outer));
    db = await open(s.dataDir, s.config('aes256-ctr'));
    try {
      const st = db.lifecycle.status();
      assert.notEqual(st.encryptionState, 3, 'a forged "completed" must not make plaintext files look encrypted');
      const end = await waitFor(db.lifecycle, (x) => x.scanStateDesc === 'COMPLETED');
      assert.equal(end.encryptionState, 3);
      assert.deepEqual(await filesHolding(s.dataDir, MARKER), []);
    } finally {
      await db.close();
    }
  });

  for (const [from, to] of [
    ['aes256-ctr', 'sm4-ctr'],
    ['aes128-ctr', 'aes256-ctr'],
  ] as const) {
    test(`${from} -> ${to} online is state 4 KEY_CHANGE_IN_PROGRESS and ends with every file under ${to}`, async (t) => {
      const s = await setup(t);
      const db = await open(s.dataDir, s.config(from));
      try {
        await writeMarkers(db.engine, 5_000);
        await db.engine.flush();
        const st = await db.lifecycle.setMethod(to);
        assert.equal(st.encryptionState, 4);
        const end = await waitFor(db.lifecycle, (x) => x.scanStateDesc === 'COMPLETED');
        assert.equal(end.encryptionState, 3);
        assert.deepEqual(Object.keys(db.managed.env.stats().byMethod), [to]);
        for (let i = 0; i < 5_000; i += 499) assert.equal(db.engine.getSync(Buffer.from(`k${String(i).padStart(7, '0')}`))?.toString(), `${MARKER}-${i}`);
      } finally {
        await db.close();
      }
    });
  }

  test('a write failure during the scan gives ABORTED with the error; data commands go on; RESUME after the fault clears completes', async (t) => {
    const s = await setup(t);
    const db = await open(s.dataDir, s.config('plaintext'));
    t.after(() => setFileFaults(undefined));
    try {
      await loadMarkers(db, 20_000);
      let failing = true;
      setFileFaults((op, path) => (failing && WRITE_OPS.has(op) && path.endsWith('.sst') ? 'EIO' : undefined));
      await db.lifecycle.setMethod('aes256-ctr');
      const aborted = await waitFor(db.lifecycle, (x) => x.scanStateDesc === 'ABORTED');
      assert.equal(aborted.scanState, 3);
      assert.match(aborted.scanError ?? '', /i\/o error|EIO/i);
      assert.equal(aborted.encryptionState, 2);
      failing = false;
      setFileFaults(undefined);
      await db.engine.write([{ type: 'put', key: Buffer.from('after-abort'), value: Buffer.from('ok') }]);
      assert.equal(db.engine.getSync(Buffer.from('after-abort'))?.toString(), 'ok');
      await db.lifecycle.resume();
      const end = await waitFor(db.lifecycle, (x) => x.scanStateDesc === 'COMPLETED');
      assert.equal(end.encryptionState, 3);
      assert.equal(end.scanError, null);
      await assertNoMarkerLeft(db, s.dataDir);
    } finally {
      await db.close();
    }
  });

  test('a plaintext file removed while encryption is on is overwritten with zeros first (seen through a hard link)', async (t) => {
    const s = await setup(t);
    const db = await open(s.dataDir, s.config('plaintext'));
    try {
      await loadMarkers(db, 5_000);
      const tables = (await readdir(s.dataDir)).filter((n) => n.endsWith('.sst'));
      assert.ok(tables.length > 0);
      // A second name for the same inode: after the unlink it still shows what the blocks hold.
      const witness = join(s.root, 'witness.sst');
      await link(join(s.dataDir, tables[0]!), witness);
      assert.ok((await readFile(witness)).includes(MARKER));
      await db.lifecycle.setMethod('aes256-ctr');
      await waitFor(db.lifecycle, (x) => x.scanStateDesc === 'COMPLETED');
      assert.ok(!(await readdir(s.dataDir)).includes(tables[0]!), 'the plaintext table was removed');
      const left = await readFile(witness);
      assert.ok(left.length > 0 && left.every((b) => b === 0), 'its bytes were zeroed before the unlink');
    } finally {
      await db.close();
    }
  });

  test('level 0 is copied in place in order: overlapping tables keep their ranking, the newest value of every key wins', async (t) => {
    const s = await setup(t);
    const enc = s.config('plaintext');
    const managed = await openEnv(s.dataDir, enc, { deferOpenWrites: true });
    // Level-0 compactions held back, so level 0 keeps five overlapping tables.
    const engine = await Engine.open({ env: managed.env, writeBufferSize: 64 * 1024, level0FileNumCompactionTrigger: 100, level0SlowdownWritesTrigger: 100, level0StopWritesTrigger: 100 });
    const lifecycle = await EncryptionLifecycle.open({ engine, managed, config: enc, logger: silentLogger() });
    try {
      for (let round = 0; round < 5; round++) {
        const ops = [];
        for (let i = 0; i < 2000; i++) ops.push({ type: 'put' as const, key: Buffer.from(`k${String(i).padStart(5, '0')}`), value: Buffer.from(`${MARKER}-round${round}-${i}`) });
        await engine.write(ops);
        await engine.flush();
      }
      assert.equal(engine.stats().levels[0]!.files, 5);
      const compactionsBefore = engine.stats().compactions;
      await lifecycle.setMethod('aes256-ctr');
      await waitFor(lifecycle, (x) => x.scanStateDesc === 'COMPLETED');
      const after = engine.stats();
      assert.equal(after.levels[0]!.files, 5, 'copied where they were, not merged into level 1');
      assert.equal(after.levels[1]!.files, 0);
      assert.equal(after.compactions - compactionsBefore, 1, 'one step copied the whole level');
      for (let i = 0; i < 2000; i += 37) assert.equal(engine.getSync(Buffer.from(`k${String(i).padStart(5, '0')}`))?.toString(), `${MARKER}-round4-${i}`);
      const seen: string[] = [];
      const it = engine.iterator();
      for (let e = it.next(); e && seen.length < 3; e = it.next()) seen.push(e[1].toString());
      it.close();
      assert.deepEqual(seen, [0, 1, 2].map((i) => `${MARKER}-round4-${i}`));
      assert.deepEqual(await filesHolding(s.dataDir, MARKER), []);
    } finally {
      await lifecycle.close();
      await engine.close();
      await managed.close();
    }
  });

  test('a master key change while an encryption is suspended keeps that change: state 2 before and after, and RESUME finishes it', async (t) => {
    const s = await setup(t);
    const db = await open(s.dataDir, s.config('plaintext', { scanRateLimit: 1024 }));
    try {
      await loadMarkers(db, 20_000);
      await db.lifecycle.setMethod('aes256-ctr');
      await db.lifecycle.suspend();
      const report = await db.lifecycle.reload({ ...s.config('aes256-ctr', { scanRateLimit: 0 }), masterKey: { type: 'file', path: s.otherKeyPath } });
      assert.deepEqual(report.applied.sort(), ['master-key', 'scan-rate-limit']);
      assert.equal(report.status.encryptionState, 2, 'plaintext files remain: the encryption is still in progress');
      assert.equal(report.status.scanStateDesc, 'SUSPENDED');
      await db.lifecycle.resume();
      const end = await waitFor(db.lifecycle, (x) => x.scanStateDesc === 'COMPLETED');
      assert.equal(end.encryptionState, 3);
      await assertNoMarkerLeft(db, s.dataDir);
    } finally {
      await db.close();
    }
  });

  test('a table changed on disk without the key stops the scan (ABORTED, naming the file); its blocks are never re-tagged under the new key', async (t) => {
    const s = await setup(t);
    const db = await open(s.dataDir, s.config('aes256-ctr'));
    try {
      await loadMarkers(db, 20_000);
      await db.engine.compactRange();
      const tables = (await readdir(s.dataDir)).filter((n) => n.endsWith('.sst')).sort();
      assert.ok(tables.length >= 2);
      // One bit in the middle of a data block, without the key: CTR lets anyone flip plaintext bits.
      const victim = join(s.dataDir, tables[0]!);
      const bytes = await readFile(victim);
      bytes[100] = bytes[100]! ^ 0x01;
      await writeFile(victim, bytes);
      await db.lifecycle.regenerate();
      const aborted = await waitFor(db.lifecycle, (x) => x.scanStateDesc === 'ABORTED');
      assert.match(aborted.scanError ?? '', new RegExp(`${tables[0]!.replace('.', '\\.')}.*(authentication tag|damaged)`));
      assert.equal(aborted.encryptionState, 4);
      // The damaged table is still there, under its old key: nothing vouches for it under the new one.
      assert.ok((await readdir(s.dataDir)).includes(tables[0]!));
      assert.notEqual(db.managed.env.fileInfo(tables[0]!)!.keyId, aborted.dataKeyId);
    } finally {
      await db.close();
    }
  });
});
