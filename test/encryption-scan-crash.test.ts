import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/engine/engine.js';
import { openEnv } from '../src/env/open-env.js';
import { EncryptionLifecycle } from '../src/lifecycle/encryption-lifecycle.js';
import { readLifecycleRecord } from '../src/lifecycle/lifecycle-state-file.js';
import { silentLogger } from '../src/log/logger.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { COUNTER, SCAN_TUNING } from './support/lifecycle-scan-workload.js';

const CHILD = fileURLToPath(new URL('./support/lifecycle-scan-child.js', import.meta.url));
const KILLS = 20;
const MARKER = 'SCAN-CRASH-MARKER';

interface Run {
  readyPercent: number;
  lastPercent: number;
  lastAck: number;
  done: boolean;
}

/** Runs the child until `killAfterMs` after "ready" (SIGKILL), or until it exits by itself. */
function runChild(args: string[], killAfterMs: number | undefined): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const run: Run = { readyPercent: -1, lastPercent: -1, lastAck: 0, done: false };
    let err = '';
    let buf = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).split(' ');
        buf = buf.slice(i + 1);
        if (line[0] === 'ready') {
          run.readyPercent = Number(line[1]);
          run.lastPercent = run.readyPercent;
          if (killAfterMs !== undefined) setTimeout(() => child.kill('SIGKILL'), killAfterMs);
        } else if (line[0] === 'p') run.lastPercent = Math.max(run.lastPercent, Number(line[1]));
        else if (line[0] === 'ack') run.lastAck = Number(line[1]);
        else if (line[0] === 'done') run.done = true;
      }
    });
    child.on('exit', (code, signal) => {
      if (killAfterMs !== undefined ? signal === 'SIGKILL' : code === 0) resolve(run);
      else reject(new Error(`child ended with code ${code} signal ${signal}: ${err}`));
    });
  });
}

/** A plaintext database of `keys` marker values, several tables deep, in a temp dir removed after the test. */
async function plaintextDatabase(t: TestContext, prefix: string, keys: number) {
  const root = await tempDir(prefix);
  t.after(() => cleanup(root));
  const { path: keyFile } = await writeKeyFile(root);
  const dataDir = join(root, 'data');
  const plain = { dataEncryptionMethod: 'plaintext' as const, dataKeyRotationPeriodMs: 7 * 24 * 3600_000, enableFileDictionaryLog: true, fileDictionaryRewriteThreshold: 1_000_000, masterKey: { type: 'file' as const, path: keyFile } };
  const managed = await openEnv(dataDir, plain);
  const engine = await Engine.open({ env: managed.env, ...SCAN_TUNING });
  for (let i = 0; i < keys; i += 1000) {
    const ops = [];
    for (let j = i; j < i + 1000; j++) ops.push({ type: 'put' as const, key: Buffer.from(`m${String(j).padStart(6, '0')}`), value: Buffer.from(`${MARKER}-${j}-${'x'.repeat(40)}`) });
    await engine.write(ops);
  }
  await engine.close();
  await managed.close();
  return { keyFile, dataDir, plain };
}

test(`encryption scan: SIGKILL at ${KILLS} random moments; each restart resumes without going backwards, completes, and loses nothing`, async (t) => {
  const { keyFile, dataDir, plain } = await plaintextDatabase(t, 'tdekv-scan-crash-', 100_000);
  // Slow enough that 20 kills land inside the scan.
  const args = [dataDir, keyFile, 'aes256-ctr', String(48 * 1024)];
  let shown = 0;
  let acked = 0;
  let killedMidScan = 0;
  for (let k = 0; k < KILLS; k++) {
    const run = await runChild([...args, '0'], 30 + Math.floor(Math.random() * 1500));
    assert.ok(run.readyPercent >= shown, `after kill ${k} the scan restarted at ${run.readyPercent}% but ${shown}% had been shown`);
    shown = Math.max(shown, run.lastPercent);
    if (!run.done) killedMidScan++;
    acked = Math.max(acked, run.lastAck);
  }
  t.diagnostic(`percent shown before the last kill: ${shown}%; kills during the scan: ${killedMidScan}; writes acknowledged: ${acked}`);
  assert.ok(killedMidScan >= 5 && shown > 0, `the kills must land inside the scan (${killedMidScan} did, ${shown}% shown)`);
  const last = await runChild([dataDir, keyFile, 'aes256-ctr', '0', '1'], undefined);
  assert.ok(last.done);
  assert.ok(last.readyPercent >= shown);
  acked = Math.max(acked, last.lastAck);
  // Nothing in plaintext anywhere under the data dir, and every acknowledged write is there.
  for (const d of await readdir(dataDir, { withFileTypes: true, recursive: true })) {
    if (!d.isFile()) continue;
    const bytes = await readFile(join(d.parentPath, d.name));
    assert.ok(!bytes.includes(MARKER) && !bytes.includes('LIVE-MARKER'), `${d.name} still holds plaintext`);
  }
  const enc = { ...plain, dataEncryptionMethod: 'aes256-ctr' as const };
  const managed = await openEnv(dataDir, enc);
  const engine = await Engine.open({ env: managed.env, ...SCAN_TUNING });
  try {
    assert.ok(Number(engine.getSync(Buffer.from(COUNTER))!.toString()) >= acked);
    for (let n = 1; n <= acked; n++) assert.equal(engine.getSync(Buffer.from(`w${String(n).padStart(6, '0')}`))?.toString(), `LIVE-MARKER-${n}`);
    for (let j = 0; j < 100_000; j += 7) assert.equal(engine.getSync(Buffer.from(`m${String(j).padStart(6, '0')}`))?.toString(), `${MARKER}-${j}-${'x'.repeat(40)}`);
    assert.deepEqual(managed.env.filesNotOnCurrentKey(), []);
  } finally {
    await engine.close();
    await managed.close();
  }
});

test('encryption scan: every percentage shown within a step is already saved, so a restart cannot show less', { timeout: 180_000 }, async (t) => {
  const { dataDir, plain } = await plaintextDatabase(t, 'tdekv-scan-shown-', 30_000);
  // Slow, so that the percentage moves many times within each step before the step is installed.
  const enc = { ...plain, dataEncryptionMethod: 'aes256-ctr' as const, scanRateLimit: 128 * 1024 };
  const managed = await openEnv(dataDir, enc, { deferOpenWrites: true });
  const engine = await Engine.open({ env: managed.env, ...SCAN_TUNING });
  const lifecycle = await EncryptionLifecycle.open({ engine, managed, config: enc, logger: silentLogger() });
  const mac = (label: string, ...parts: Uint8Array[]) => managed.keyAdmin.metadataMac(label, ...parts);
  const checks: Array<Promise<void>> = [];
  let shownMax = 0;
  try {
    // The scan's timers do not hold the process open (a server's sockets do): this one does.
    const alive = setInterval(() => undefined, 100);
    t.after(() => clearInterval(alive));
    await new Promise<void>((resolve) => {
      lifecycle.on('progress', (s) => {
        const shown = s.percentComplete;
        // The end of the scan ends the wait too: on a loaded machine the scan may show fewer
        // than five percentages within its steps, and waiting for a fifth would never end.
        if (shown >= 100) return resolve();
        shownMax = Math.max(shownMax, shown);
        // Read at once: what a SIGKILL now would leave for the restart.
        checks.push(
          readLifecycleRecord(managed.env.metaDir, mac).then(({ record }) => {
            assert.ok(record !== undefined, 'the lifecycle state is readable');
            assert.ok(record.percent >= shown - 0.005, `shown ${shown}% but only ${record.percent}% saved`);
          }),
        );
        if (checks.length >= 5) resolve();
      });
    });
    await Promise.all(checks);
    assert.ok(checks.length >= 2 && shownMax > 0, `${checks.length} percentages shown within the scan (up to ${shownMax}%): too few to test`);
  } finally {
    await lifecycle.close();
    await engine.close();
    await managed.close();
  }
});
