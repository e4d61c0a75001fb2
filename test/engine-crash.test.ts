import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/engine/engine.js';
import { openEnv } from '../src/env/open-env.js';
import { applyBatch, batchOps, COUNTER_KEY, CRASH_TUNING, encryptionConfig } from './support/engine-crash-writer.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

const WRITER = fileURLToPath(new URL('./support/engine-crash-writer.js', import.meta.url));
/** Kills at a random moment while acknowledged writes stream out. */
const KILLS_WHILE_WRITING = 45;
/** Kills shortly after the writer starts opening the engine: recovery interrupted. */
const KILLS_WHILE_OPENING = 5;

/** A small seeded PRNG, so a failing run can be replayed with its seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

interface RunResult {
  /** Counter of the database when the writer opened it. */
  startedAt: number | undefined;
  /** Counters whose write was acknowledged, in order. */
  acked: number[];
}

/**
 * Starts the writer, SIGKILLs it `delayMs` after its first line matching `trigger`, and
 * returns what it said. A line cut by the kill was never said.
 */
function runAndKill(dataDir: string, keyFile: string, trigger: RegExp, delayMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, dataDir, keyFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let armed = false;
    // A writer that never gets going (a hang in open or recovery) fails the test instead of stalling it.
    let stalled = false;
    const watchdog = setTimeout(() => {
      stalled = true;
      child.kill('SIGKILL');
    }, 20_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!armed && out.split('\n').slice(0, -1).some((l) => trigger.test(l))) {
        armed = true;
        clearTimeout(watchdog);
        setTimeout(() => child.kill('SIGKILL'), delayMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      if (stalled) return reject(new Error(`writer printed nothing matching ${trigger} within 20 s: ${out.slice(-200)} ${err}`));
      if (signal !== 'SIGKILL') return reject(new Error(`writer exited on its own (code ${code}): ${err}`));
      const lines = out.split('\n').slice(0, -1);
      const ready = lines.find((l) => l.startsWith('ready '));
      resolve({
        startedAt: ready === undefined ? undefined : Number(ready.slice(6)),
        acked: lines.filter((l) => /^\d+$/.test(l)).map(Number),
      });
    });
  });
}

test(`engine: SIGKILL at random moments (${KILLS_WHILE_WRITING + KILLS_WHILE_OPENING}×); every acknowledged write survives, nothing else appears`, async (t) => {
  const seed = Number(process.env['TDEKV_CRASH_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
  t.diagnostic(`seed ${seed} (rerun with TDEKV_CRASH_SEED=${seed})`);
  const random = prng(seed);
  const root = await tempDir('tdekv-engine-crash-');
  t.after(() => cleanup(root));
  const dataDir = `${root}/data`;
  const { path: keyFile } = await writeKeyFile(root);
  const started = Date.now();

  /** The database after every batch up to `acked`. */
  const model = new Map<string, string>();
  let acked = 0;
  let kills = 0;
  let maxTables = 0;
  let sawCompactionOutput = false;
  let childMs = 0;
  let checkMs = 0;

  const total = KILLS_WHILE_WRITING + KILLS_WHILE_OPENING;
  // Spread the recovery kills over the run, once there is something to recover.
  const openingRounds = new Set(Array.from({ length: KILLS_WHILE_OPENING }, (_, i) => Math.floor(((i + 1) * total) / (KILLS_WHILE_OPENING + 1))));
  for (let round = 0; round < total; round++) {
    const whileOpening = openingRounds.has(round);
    // On a slow or busy machine a compaction may never finish within 300 ms of a writer's
    // start, and level 0 then only grows: past the halfway point without one, writers live
    // longer, so that compactions complete and later kills land in them.
    const slow = !sawCompactionOutput && round >= total / 2;
    const delay = whileOpening ? Math.floor(random() * 15) : slow ? 500 + Math.floor(random() * 1500) : 20 + Math.floor(random() * 281);
    const runStarted = Date.now();
    const run = await runAndKill(dataDir, keyFile, whileOpening ? /^opening$/ : /^\d+$/, delay);
    kills++;
    const where = `round ${round} (seed ${seed})`;
    if (run.startedAt !== undefined) {
      // The previous check already proved this, but the writer must see the same state.
      assert.ok(run.startedAt === acked || run.startedAt === acked + 1, `${where}: the writer found counter ${run.startedAt}, acknowledged ${acked}`);
    }
    for (const n of run.acked) {
      assert.ok(n > acked, `${where}: counters go up`);
      // A batch the previous check found applied but unacknowledged is simply acknowledged now.
      for (let m = acked + 1; m <= n; m++) applyBatch(model, m);
      acked = n;
    }

    const checkStarted = Date.now();
    childMs += checkStarted - runStarted;
    const managed = await openEnv(dataDir, encryptionConfig(keyFile));
    try {
      const engine = await Engine.open({ env: managed.env, ...CRASH_TUNING });
      try {
        const counter = engine.getSync(Buffer.from(COUNTER_KEY));
        assert.ok(counter !== undefined || acked === 0, `${where}: the counter key is gone`);
        const found = counter === undefined ? 0 : Number(counter.toString());
        // Acknowledged writes survive; the one write in flight at the kill may or may not.
        assert.ok(found === acked || found === acked + 1, `${where}: the database holds batch ${found}, ${acked} were acknowledged`);
        const expected = new Map(model);
        if (found === acked + 1) applyBatch(expected, found);

        // A full scan equals the model: every acknowledged put with its value, no deleted
        // key, nothing that was never written.
        const it = engine.iterator();
        let count = 0;
        try {
          for (let e = it.next(); e !== undefined; e = it.next()) {
            const key = e[0].toString();
            const want = expected.get(key);
            assert.ok(want !== undefined, `${where}: scan returned ${key}, which must not exist`);
            assert.ok(e[1].toString() === want, `${where}: scan returned a wrong value for ${key}`);
            count++;
          }
        } finally {
          it.close();
        }
        assert.equal(count, expected.size, `${where}: the scan missed keys`);

        // Point reads take another path (bloom filters, level search): check the keys the
        // last batches touched, deletes included, and a sample of the rest.
        const recent = new Set<string>();
        for (let m = Math.max(1, found - 150); m <= found; m++) for (const [k] of batchOps(m)) recent.add(k);
        const keys = [...expected.keys()];
        for (let i = 0; i < 300 && keys.length > 0; i++) recent.add(keys[Math.floor(random() * keys.length)]!);
        for (const k of recent) {
          const got = engine.getSync(Buffer.from(k));
          const want = expected.get(k);
          if (want === undefined) assert.equal(got, undefined, `${where}: deleted key ${k} is back`);
          else assert.ok(got !== undefined && got.toString() === want, `${where}: getSync(${k}) returned ${got === undefined ? 'nothing' : 'a wrong value'}`);
        }
        const tables = engine.liveTables();
        maxTables = Math.max(maxTables, tables.length);
        if (tables.some((f) => f.level > 0)) sawCompactionOutput = true;
      } finally {
        await engine.close();
      }
    } finally {
      await managed.close();
    }
    checkMs += Date.now() - checkStarted;
  }

  const files = await readdir(dataDir);
  t.diagnostic(`${kills} kills, ${acked} acknowledged batches, up to ${maxTables} live tables, ${files.length} entries in the data dir, ${((Date.now() - started) / 1000).toFixed(1)} s (writer runs ${(childMs / 1000).toFixed(1)} s, checks ${(checkMs / 1000).toFixed(1)} s)`);
  assert.equal(kills, total);
  assert.ok(acked >= KILLS_WHILE_WRITING, `only ${acked} batches were acknowledged`);
  // The workload must have exercised flushes and compactions, or the kills proved little.
  assert.ok(maxTables >= 2, `only ${maxTables} tables were ever live: no flush happened`);
  assert.ok(sawCompactionOutput, 'no table ever reached level 1: no compaction happened');
});
