import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { b, openTestDb, SMALL_TUNING } from './support/engine-helpers.js';

let root: string;
let keyPath: string;

before(async () => {
  root = await tempDir('tdekv-engine-review-');
  keyPath = (await writeKeyFile(root)).path;
});
after(() => cleanup(root));

const helpersUrl = pathToFileURL(join(fileURLToPath(new URL('.', import.meta.url)), 'support', 'engine-helpers.js')).href;

/**
 * Runs `body` (an async function body with `openTestDb`, `b`, `SMALL_TUNING`, `dir`, `keyPath` in
 * scope) in a worker, so a hang — even a microtask loop that starves the event loop — fails
 * the test after `timeoutMs` instead of hanging the runner.
 */
async function runIsolated(name: string, body: string, timeoutMs = 20_000): Promise<void> {
  const script = join(root, `${name}.mjs`);
  await writeFile(
    script,
    `import { parentPort, workerData } from 'node:worker_threads';
import { openTestDb, b, SMALL_TUNING } from ${JSON.stringify(helpersUrl)};
const { dir, keyPath } = workerData;
try {
${body}
  parentPort.postMessage({ ok: true });
} catch (err) {
  parentPort.postMessage({ ok: false, error: String(err && err.stack || err) });
}
`,
  );
  const worker = new Worker(script, { workerData: { dir: join(root, name), keyPath } });
  try {
    const result = await new Promise<{ ok: boolean; error?: string }>((resolve, reject) => {
      const timer = setTimeout(() => resolve({ ok: false, error: `timed out after ${timeoutMs} ms (hang)` }), timeoutMs);
      worker.once('message', (m: { ok: boolean; error?: string }) => (clearTimeout(timer), resolve(m)));
      worker.once('error', (e) => (clearTimeout(timer), reject(e)));
    });
    assert.ok(result.ok, result.error);
  } finally {
    await worker.terminate();
  }
}

describe('engine review: write stalls', () => {
  test('stall: level0StopWritesTrigger below the compaction trigger does not hang writers', async () => {
    await runIsolated(
      'stop-below-trigger',
      `
  const db = await openTestDb(dir, keyPath, { tuning: { ...SMALL_TUNING, level0FileNumCompactionTrigger: 4, level0SlowdownWritesTrigger: 1, level0StopWritesTrigger: 2 } });
  for (let i = 0; i < 3000; i++) await db.engine.put(b('k' + String(i).padStart(5, '0')), Buffer.alloc(100, 7));
  if (db.engine.getSync(b('k02999'))?.length !== 100) throw new Error('last write not readable');
  await db.close();
`,
    );
  });

  test('stall: writes queued while close() flushes do not hang close() when level 0 is at the stop trigger', async () => {
    await runIsolated(
      'close-during-stall',
      `
  const tuning = { ...SMALL_TUNING, level0FileNumCompactionTrigger: 2, level0SlowdownWritesTrigger: 2, level0StopWritesTrigger: 2 };
  let db = await openTestDb(dir, keyPath, { tuning });
  await db.engine.put(b('first'), b('1'));
  await db.engine.flush();
  await db.engine.put(b('second'), b('2'));
  const closing = db.engine.close();
  // Accepted before close() marks the engine closing: two write groups (a group holds up to 64 Ki ops).
  const writes = [];
  for (let w = 0; w < 70; w++) {
    const ops = [];
    for (let i = 0; i < 1000; i++) ops.push({ type: 'put', key: b('w' + String(w * 1000 + i).padStart(6, '0')), value: b('v') });
    writes.push(db.engine.write(ops));
  }
  const results = await Promise.allSettled(writes);
  await closing;
  await db.managed.close();
  db = await openTestDb(dir, keyPath, { tuning });
  if (db.engine.getSync(b('second'))?.toString() !== '2') throw new Error('second lost');
  results.forEach((r, w) => {
    if (r.status === 'fulfilled' && db.engine.getSync(b('w' + String(w * 1000 + 999).padStart(6, '0')))?.toString() !== 'v') throw new Error('acknowledged write ' + w + ' lost');
  });
  await db.close();
`,
    );
  });
});

describe('engine review: obsolete files', () => {
  test('obsolete-file removal racing a compaction that starts a new manifest keeps its output table and the new manifest', async () => {
    const dir = join(root, 'obsolete-race');
    const tuning = { ...SMALL_TUNING, level0FileNumCompactionTrigger: 100 };
    let db = await openTestDb(dir, keyPath, { tuning });
    const env = db.managed.env;
    const expected = new Map<string, string>();
    const put = async (k: string, v: string): Promise<void> => {
      await db.engine.put(b(k), b(v));
      expected.set(k, v);
    };
    try {
      for (let i = 0; i < 20; i++) await put(`a${i}`, `1-${i}`);
      await db.engine.flush();
      for (let i = 0; i < 20; i++) await put(`a${i}`, `2-${i}`);
      await db.engine.flush();
      for (let i = 0; i < 20; i++) await put(`b${i}`, `3-${i}`);

      // The flush's obsolete-file pass lists the directory while a manual compaction writes an
      // output table and (the data key having rotated) starts a new manifest.
      const originalList = env.list.bind(env);
      const originalCreate = env.create.bind(env);
      const originalWriteFile = env.writeFile.bind(env);
      let armed = true;
      let manifestCreated!: () => void;
      const manifestCreatedP = new Promise<void>((r) => (manifestCreated = r));
      let compaction: Promise<void> | undefined;
      env.list = async (d?: string) => {
        if (armed) {
          armed = false;
          await db.managed.keyAdmin.rotateDataKey();
          compaction = db.engine.compactRange();
          compaction.catch(() => undefined);
          await Promise.race([manifestCreatedP, new Promise((r) => setTimeout(r, 2000))]);
        }
        return originalList(d);
      };
      env.create = async (p: string) => {
        const f = await originalCreate(p);
        if (p.startsWith('MANIFEST-')) manifestCreated();
        return f;
      };
      env.writeFile = async (p: string, data: Uint8Array) => {
        // Give the obsolete-file pass time to look at the new manifest before CURRENT names it.
        if (p === 'CURRENT.tmp') await new Promise((r) => setTimeout(r, 200));
        return originalWriteFile(p, data);
      };
      await db.engine.flush();
      await db.engine.waitForBackgroundWork();
      assert.ok(compaction, 'the compaction was started');
      await compaction;
      env.list = originalList;
      env.create = originalCreate;
      env.writeFile = originalWriteFile;
      for (const [k, v] of expected) assert.equal(db.engine.getSync(b(k))?.toString(), v, k);
    } finally {
      await db.close();
    }
    db = await openTestDb(dir, keyPath, { tuning });
    try {
      for (const [k, v] of expected) assert.equal(db.engine.getSync(b(k))?.toString(), v, k);
    } finally {
      await db.close();
    }
  });
});
