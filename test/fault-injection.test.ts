/**
 * Faults injected under the env (src/util/file-io.ts): ENOSPC, EIO, short writes and failed
 * fsyncs at every n-th file-system call of a workload. Whatever fails, nothing acknowledged
 * may be lost, and once the fault clears the data dir must open with all of it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../src/engine/engine.js';
import type { EngineTuning } from '../src/engine/options.js';
import { EncryptedEnv, type EnvOptions } from '../src/env/encrypted-env.js';
import type { EncryptedWritableFile } from '../src/env/writable-file.js';
import { FileMasterKey } from '../src/masterkey/file.js';
import { FAULT_KINDS, clearFaults, countOps, injectAt, targets, type FaultKind } from './support/fault-injector.js';
import { cleanup, writeKeyFile } from './support/fs-helpers.js';
import { KeyAdmin } from '../src/env/key-admin.js';

/** Deterministic bytes for (seed, size): distinct per seed, so a swapped file shows. */
function content(seed: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = Buffer.alloc(0);
  for (let at = 0, i = 0; at < size; at += block.length, i++) {
    block = createHash('sha256').update(`${seed}:${i}`).digest();
    block.copy(out, at);
  }
  return out;
}

async function setup(t: { after: (fn: () => Promise<void>) => void }): Promise<{ root: string; masterKey: FileMasterKey; options: (dataDir: string) => EnvOptions }> {
  // On tmpfs where there is one: faults are injected, not real, so real fsyncs only cost time
  // (thousands of them over the runs).
  const root = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'tdekv-faults-'));
  const { path } = await writeKeyFile(root);
  const masterKey = await FileMasterKey.load(path);
  t.after(async () => {
    clearFaults();
    masterKey.close();
    await cleanup(root);
  });
  const options = (dataDir: string): EnvOptions => ({
    dataDir,
    method: 'aes256-ctr',
    rotationPeriodMs: 3600_000,
    masterKey,
    fileDictionaryLog: true,
    // Small, so the workload also compacts the file dictionary (snapshot + new log).
    fileDictionaryRewriteThreshold: 3,
  });
  return { root, masterKey, options };
}

/** Runs `fn`; true if it returned, false if it threw (an unacknowledged operation). */
async function attempt(fn: () => Promise<unknown>): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- env level

/** What must be on disk under one name: exact bytes, or (an unacknowledged create) anything or nothing. */
type Expect = { bytes: Buffer } | 'any';
/** Unacknowledged operations whose outcome the reopen shows: either state is fine. */
type Pending = { kind: 'rename'; from: string; to: string; bytes: Buffer; toBefore: Expect | undefined } | { kind: 'remove'; path: string; before: Expect };

interface EnvModel {
  files: Map<string, Expect>;
  pending: Pending[];
  /** The append-only log and how much of it was acknowledged (synced). */
  log: { path: string; bytes: Buffer; acked: number } | undefined;
}

const LOG_PATH = 'log';
const ROUNDS = 6;

/**
 * Creates, appends with syncs, renames (also over an existing file), links, removes, reads,
 * key rotations and retirements, recording in `model` each one that returned success.
 */
async function envWorkload(env: EncryptedEnv, model: EnvModel): Promise<void> {
  const logBytes = content(999, ROUNDS * 700);
  let log: EncryptedWritableFile | undefined;
  if (await attempt(async () => (log = await env.create(LOG_PATH)))) model.log = { path: LOG_PATH, bytes: logBytes, acked: 0 };
  await attempt(() => env.mkdir('sub'));
  const writeFile = async (path: string, seed: number, size: number): Promise<void> => {
    const bytes = content(seed, size);
    model.files.set(path, 'any');
    if (await attempt(() => env.writeFile(path, bytes))) model.files.set(path, { bytes });
    else if (!(await env.exists(path).catch(() => true))) model.files.delete(path);
  };
  // Names an unacknowledged operation left in either of two states are not touched again.
  const unsettled = new Set<string>();
  const rename = async (from: string, to: string): Promise<void> => {
    const was = model.files.get(from);
    if (!was || was === 'any' || unsettled.has(from) || unsettled.has(to)) return;
    const toBefore = model.files.get(to);
    if (await attempt(() => env.rename(from, to))) {
      model.files.delete(from);
      model.files.set(to, was);
    } else {
      model.files.delete(from);
      model.files.delete(to);
      model.pending.push({ kind: 'rename', from, to, bytes: was.bytes, toBefore });
      unsettled.add(from).add(to);
    }
  };
  const remove = async (path: string): Promise<void> => {
    const before = model.files.get(path);
    if (!before || unsettled.has(path)) return;
    model.files.delete(path);
    if (!(await attempt(() => env.remove(path)))) {
      model.pending.push({ kind: 'remove', path, before });
      unsettled.add(path);
    }
  };
  const readBack = async (path: string): Promise<void> => {
    const want = model.files.get(path);
    if (!want || want === 'any') return;
    let got: Buffer | undefined;
    try {
      const f = await env.openRead(path);
      try {
        got = f.readSync(0, f.size);
        // The thread-pool read path too.
        assert.ok((await f.read(0, f.size)).equals(want.bytes), `async read of ${path} returned wrong bytes`);
      } finally {
        f.close();
      }
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      return; // A failed read acknowledges nothing.
    }
    assert.ok(got.equals(want.bytes), `read of ${path} returned wrong bytes while faults were injected`);
  };

  for (let r = 0; r < ROUNDS; r++) {
    await writeFile(`f${r}`, r, 300 + r * 500);
    if (log && model.log) {
      const chunk = logBytes.subarray(r * 700, (r + 1) * 700);
      const l = log;
      if (await attempt(async () => {
        l.appendSync(chunk.subarray(0, 300));
        l.appendSync(chunk.subarray(300));
        await l.sync();
      })) model.log.acked = (r + 1) * 700;
    }
    await readBack(`f${r}`);
    if (r % 2 === 1) await rename(`f${r - 1}`, `sub/g${r}`);
    if (r === 3) await rename(`f${r}`, 'sub/g1'); // over an existing file
    if (r === 2) {
      await attempt(() => new KeyAdmin(env).rotateDataKey());
      await writeFile(`sub/h${r}`, 100 + r, 70_000); // big: the asynchronous, sliced write path
    }
    if (r === 4) {
      await remove('sub/g3');
      await attempt(() => new KeyAdmin(env).retireUnusedKeys());
    }
    if (r === 5) {
      const src = [...model.files.entries()].find(([p, e]) => e !== 'any' && p.startsWith('f') && !unsettled.has(p));
      if (src) {
        const [path, e] = src;
        model.files.set('linked', 'any');
        if (await attempt(() => env.link(path, 'linked'))) model.files.set('linked', e);
        else if (!(await env.exists('linked').catch(() => true))) model.files.delete('linked');
      }
    }
  }
  if (log) await attempt(() => log!.close());
}

async function readAll(env: EncryptedEnv, path: string): Promise<Buffer> {
  const f = await env.openRead(path);
  try {
    return f.readSync(0, f.size);
  } finally {
    f.close();
  }
}

/** Everything acknowledged is there with its exact bytes; nothing appeared that was never written. */
async function checkEnv(env: EncryptedEnv, model: EnvModel, where: string): Promise<void> {
  const expected = new Map(model.files);
  const sub = await env.list('sub').catch(() => []);
  const onDisk = new Set([...(await env.list()), ...sub.map((n) => `sub/${n}`)].filter((n) => n !== 'sub'));
  for (const p of model.pending) {
    if (p.kind === 'remove') {
      if (onDisk.has(p.path)) expected.set(p.path, p.before);
    } else if (onDisk.has(p.from)) {
      // Not renamed: both names as before.
      expected.set(p.from, { bytes: p.bytes });
      if (p.toBefore) expected.set(p.to, p.toBefore);
    } else {
      expected.set(p.to, { bytes: p.bytes });
    }
  }
  expected.set(LOG_PATH, 'any');
  for (const [path, e] of expected) {
    if (e === 'any') continue;
    assert.ok(onDisk.has(path), `${where}: acknowledged file ${path} is gone`);
    const got = await readAll(env, path);
    assert.ok(got.equals(e.bytes), `${where}: ${path} reads back ${got.length} bytes that differ from the ${e.bytes.length} acknowledged`);
  }
  for (const path of onDisk) {
    assert.ok(expected.has(path), `${where}: ${path} exists but was never written`);
    // Every file on disk is tracked and readable: no orphan whose IV was lost.
    await readAll(env, path);
  }
  if (model.log) {
    const got = await readAll(env, model.log.path);
    assert.ok(got.length >= model.log.acked, `${where}: the log holds ${got.length} bytes, ${model.log.acked} were acknowledged`);
    assert.ok(got.subarray(0, model.log.acked).equals(model.log.bytes.subarray(0, model.log.acked)), `${where}: the acknowledged part of the log changed`);
    // Past the acknowledged part only bytes that were appended may appear (a short write leaves a prefix of them).
    const extra = got.subarray(model.log.acked);
    assert.ok(extra.equals(model.log.bytes.subarray(model.log.acked, got.length)), `${where}: the log holds bytes never appended`);
  }
}

test('env: ENOSPC, EIO, short writes and failed fsyncs at every n-th file-system call; everything acknowledged survives and the data dir reopens', { timeout: 300_000 }, async (t) => {
  const { root, options } = await setup(t);
  let run = 0;
  const once = async (fault: { kind: FaultKind; at: number } | undefined): Promise<string | undefined> => {
    const dataDir = join(root, `env-${run++}`);
    const model: EnvModel = { files: new Map(), pending: [], log: undefined };
    const env = await EncryptedEnv.open(options(dataDir));
    let hit: string | undefined;
    try {
      const injected = fault && injectAt(fault.kind, fault.at);
      try {
        await envWorkload(env, model);
      } finally {
        hit = injected?.hit();
        clearFaults();
      }
    } finally {
      await env.close();
    }
    const where = fault ? `${fault.kind} at call ${fault.at} (${hit ?? 'not reached'})` : 'clean run';
    const reopened = await EncryptedEnv.open(options(dataDir));
    try {
      await checkEnv(reopened, model, where);
      // Usable again: a new file is acknowledged and read back.
      await reopened.writeFile('after', content(7, 100));
      assert.ok((await readAll(reopened, 'after')).equals(content(7, 100)), `${where}: write after reopen`);
    } finally {
      await reopened.close();
    }
    await cleanup(dataDir);
    return hit;
  };

  let counts;
  {
    const dataDir = join(root, 'count');
    const env = await EncryptedEnv.open(options(dataDir));
    try {
      counts = await countOps(() => envWorkload(env, { files: new Map(), pending: [], log: undefined }));
    } finally {
      await env.close();
    }
  }
  t.diagnostic(`clean workload: ${counts.all} calls; per kind ${JSON.stringify(counts.byKind)}`);
  await once(undefined);
  const hits = new Set<string>();
  for (const kind of FAULT_KINDS) {
    for (const at of targets(counts, kind, 35)) {
      const hit = await once({ kind, at });
      if (hit) hits.add(`${kind} ${hit.split(' ')[0]}`);
    }
  }
  t.diagnostic(`${run} runs; faults hit: ${[...hits].sort().join(', ')}`);
  for (const op of ['fh.writev', 'writeSync', 'fh.write', 'fh.writeFile', 'fh.datasync', 'fh.sync', 'rename', 'open', 'unlink', 'link']) {
    assert.ok([...hits].some((h) => h.endsWith(` ${op}`)), `no fault was injected at ${op}: the workload or the stepping misses it`);
  }
});

// ---------------------------------------------------------------- engine level

/** Tiny memtables and tables, so a few hundred puts flush, compact and roll the manifest. */
const ENGINE_TUNING: Partial<EngineTuning> = {
  writeBufferSize: 4096,
  blockSize: 512,
  targetFileSizeBase: 8192,
  maxBytesForLevelBase: 16 * 1024,
  level0FileNumCompactionTrigger: 2,
};
const PUTS = 160;
/** After this many refused writes in a row the engine is taken to have stopped writing. */
const REFUSALS = 3;

/** Per key: the last acknowledged value (null: deleted or never written), and unacknowledged ones written after it. */
type KeyModel = { acked: string | null; maybe: Set<string | null> };

function engineKey(i: number): string {
  return `k${String((i * 7) % 53).padStart(3, '0')}`;
}

function engineValue(i: number): string | null {
  return i % 9 === 8 ? null : content(i, 40 + (i % 90)).toString('base64');
}

async function engineWorkload(engine: Engine, model: Map<string, KeyModel>): Promise<void> {
  let refused = 0;
  for (let i = 0; i < PUTS && refused < REFUSALS; i++) {
    const k = engineKey(i);
    const v = engineValue(i);
    const m = model.get(k) ?? { acked: null, maybe: new Set() };
    model.set(k, m);
    const key = Buffer.from(k);
    const ok = await attempt(() => (v === null ? engine.del(key, { sync: true }) : engine.put(key, Buffer.from(v), { sync: true })));
    if (ok) {
      // Later in sequence than every earlier write of the key, so no earlier one can win.
      m.acked = v;
      m.maybe.clear();
      refused = 0;
    } else {
      m.maybe.add(v);
      refused++;
    }
  }
  await attempt(() => engine.compactRange());
}

async function checkEngine(engine: Engine, model: Map<string, KeyModel>, where: string): Promise<void> {
  const seen = new Set<string>();
  const it = engine.iterator();
  try {
    for (let e = it.next(); e !== undefined; e = it.next()) {
      const k = e[0].toString();
      const v = e[1].toString();
      const m = model.get(k);
      assert.ok(m, `${where}: scan returned ${k}, which was never written`);
      assert.ok(m.acked === v || m.maybe.has(v), `${where}: ${k} holds a value that is neither the acknowledged one nor one written after it`);
      seen.add(k);
    }
  } finally {
    it.close();
  }
  for (const [k, m] of model) {
    if (!seen.has(k)) assert.ok(m.acked === null || m.maybe.has(null), `${where}: acknowledged put of ${k} is lost`);
    const got = engine.getSync(Buffer.from(k));
    assert.equal(got?.toString() ?? null, seen.has(k) ? got!.toString() : null, `${where}: get and scan disagree on ${k}`);
  }
}

test('engine: faults at every n-th file-system call during sync puts, flushes and compactions; every acknowledged write survives, nothing else appears', { timeout: 300_000 }, async (t) => {
  const { root, options } = await setup(t);
  let run = 0;
  const once = async (fault: { kind: FaultKind; at: number } | undefined): Promise<string | undefined> => {
    const dataDir = join(root, `engine-${run++}`);
    const model = new Map<string, KeyModel>();
    const env = await EncryptedEnv.open(options(dataDir));
    let hit: string | undefined;
    try {
      const engine = await Engine.open({ env, ...ENGINE_TUNING });
      const injected = fault && injectAt(fault.kind, fault.at);
      try {
        await engineWorkload(engine, model);
      } finally {
        hit = injected?.hit();
        clearFaults();
        // After a fault the engine may refuse even to close cleanly; its files stay as they are.
        await attempt(() => engine.close());
      }
    } finally {
      await env.close();
    }
    const where = fault ? `${fault.kind} at call ${fault.at} (${hit ?? 'not reached'})` : 'clean run';
    const reopened = await EncryptedEnv.open(options(dataDir));
    try {
      const engine = await Engine.open({ env: reopened, ...ENGINE_TUNING });
      try {
        await checkEngine(engine, model, where);
        await engine.put(Buffer.from('after'), Buffer.from('reopened'), { sync: true });
        assert.equal(engine.getSync(Buffer.from('after'))?.toString(), 'reopened', `${where}: write after reopen`);
      } finally {
        await engine.close();
      }
    } finally {
      await reopened.close();
    }
    await cleanup(dataDir);
    return hit;
  };

  let counts;
  {
    const env = await EncryptedEnv.open(options(join(root, 'count')));
    try {
      const engine = await Engine.open({ env, ...ENGINE_TUNING });
      try {
        counts = await countOps(() => engineWorkload(engine, new Map()));
      } finally {
        await engine.close();
      }
      t.diagnostic(`engine: ${JSON.stringify(engine.stats().levels.map((l) => l.files))} tables per level after the clean workload`);
    } finally {
      await env.close();
    }
  }
  t.diagnostic(`clean workload: ${counts.all} calls; per kind ${JSON.stringify(counts.byKind)}`);
  await once(undefined);
  const hits = new Set<string>();
  for (const kind of FAULT_KINDS) {
    for (const at of targets(counts, kind, 15)) {
      const hit = await once({ kind, at });
      if (hit) hits.add(`${kind} ${hit.split(' ')[0]}`);
    }
  }
  t.diagnostic(`${run} runs; faults hit: ${[...hits].sort().join(', ')}`);
});

// ---------------------------------------------------------------- open

test('open: a fault at any call of a first open or of a reopen leaves a data dir that opens, with all its data, once the fault clears', { timeout: 300_000 }, async (t) => {
  const { root, options } = await setup(t);
  const data = content(42, 5000);
  let run = 0;
  /** A data dir with one acknowledged file, closed: what a reopen starts from. */
  const populated = async (dataDir: string): Promise<void> => {
    const env = await EncryptedEnv.open(options(dataDir));
    try {
      await env.writeFile('kept', data);
      await new KeyAdmin(env).rotateDataKey();
    } finally {
      await env.close();
    }
  };
  const once = async (first: boolean, fault: { kind: FaultKind; at: number }): Promise<string | undefined> => {
    const dataDir = join(root, `open-${run++}`);
    if (!first) await populated(dataDir);
    const injected = injectAt(fault.kind, fault.at);
    let env: EncryptedEnv | undefined;
    try {
      env = await EncryptedEnv.open(options(dataDir));
      // Closing may fail too, but must still give the data dir back.
      await attempt(() => env!.close());
    } catch {
      // Refusing to open while the disk fails is fine; what it leaves behind must open later.
    } finally {
      clearFaults();
    }
    const where = `${first ? 'first open' : 'reopen'}: ${fault.kind} at call ${fault.at} (${injected.hit() ?? 'not reached'})`;
    let reopened: EncryptedEnv;
    try {
      reopened = await EncryptedEnv.open(options(dataDir));
    } catch (err) {
      assert.fail(`${where}: the data dir no longer opens: ${String(err)}`);
    }
    try {
      if (!first) assert.ok((await readAll(reopened, 'kept')).equals(data), `${where}: the acknowledged file changed`);
      await reopened.writeFile('after', data);
      await new KeyAdmin(reopened).rotateDataKey();
    } finally {
      await reopened.close();
    }
    const again = await EncryptedEnv.open(options(dataDir));
    try {
      assert.ok((await readAll(again, 'after')).equals(data), `${where}: a file written after the fault is lost at the next open`);
      if (!first) assert.ok((await readAll(again, 'kept')).equals(data), `${where}: the acknowledged file is lost at the next open`);
    } finally {
      await again.close();
    }
    await cleanup(dataDir);
    return injected.hit();
  };

  for (const first of [true, false]) {
    const dataDir = join(root, `count-${first}`);
    if (!first) await populated(dataDir);
    const counts = await countOps(async () => {
      await (await EncryptedEnv.open(options(dataDir))).close();
    });
    t.diagnostic(`${first ? 'first open' : 'reopen'} + close: ${counts.all} calls; per kind ${JSON.stringify(counts.byKind)}`);
    for (const kind of FAULT_KINDS) {
      for (const at of targets(counts, kind, 20)) await once(first, { kind, at });
    }
  }
  t.diagnostic(`${run} runs`);
});
