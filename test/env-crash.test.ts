import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { EncryptedEnv } from '../src/env/encrypted-env.js';
import { FileMasterKey } from '../src/masterkey/file.js';
import { contentFor } from './support/crash-content.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

const WRITER = fileURLToPath(new URL('./support/crash-writer.js', import.meta.url));
const KILLS = 30;

/** Content of an acknowledged file, or 'any' for one an interrupted create left behind. */
type Expected = { size: number; seed: number } | 'any';

/** Applies one operation to the model of what must be on disk. */
function apply(model: Map<string, Expected>, op: string[]): void {
  const [kind, a, b, c] = op as [string, string, string, string];
  if (kind === 'create') model.set(a, { size: Number(b), seed: Number(c) });
  else if (kind === 'rename') {
    model.set(b, model.get(a)!);
    model.delete(a);
  } else if (kind === 'remove') model.delete(a);
}

/**
 * The operation in flight at the kill was not acknowledged: either outcome is allowed, and
 * which one happened shows in the files the next run finds.
 */
function resolveInFlight(model: Map<string, Expected>, op: string[], found: Set<string>): void {
  const [kind, a] = op as [string, string];
  if (kind === 'create') {
    if (found.has(a)) model.set(a, 'any');
  } else if (!found.has(a)) {
    apply(model, op);
  }
}

/** Runs the writer until a random moment after it is ready, SIGKILLs it, returns its acknowledged lines. */
function runAndKill(dataDir: string, keyFile: string, seed: number, delayMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, dataDir, keyFile, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      const before = /^ready[^\n]*\n/.test(out);
      out += d.toString();
      if (!before && /^ready[^\n]*\n/.test(out)) setTimeout(() => child.kill('SIGKILL'), delayMs);
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`writer exited on its own (code ${code}): ${err}`));
      // A line cut by the kill was never said.
      resolve(out.split('\n').slice(0, -1));
    });
  });
}

test(`SIGKILL at random moments (${KILLS}×): every acknowledged file operation survives and the env opens cleanly`, async (t) => {
  const root = await tempDir();
  t.after(() => cleanup(root));
  const dataDir = `${root}/data`;
  const { path: keyFile } = await writeKeyFile(root);
  const expected = new Map<string, Expected>();
  let inFlight: string[] | undefined;
  let acknowledged = 0;

  const checkFound = (found: Set<string>, when: string): void => {
    if (inFlight) resolveInFlight(expected, inFlight, found);
    inFlight = undefined;
    assert.deepEqual([...found].sort(), [...expected.keys()].sort(), `files ${when}`);
  };

  for (let round = 0; round < KILLS; round++) {
    const lines = await runAndKill(dataDir, keyFile, 1000 + round, 5 + ((round * 37) % 120));
    const [ready, ...names] = (lines[0] ?? '').split(' ');
    assert.equal(ready, 'ready', `round ${round}: the env must open after the previous kill`);
    checkFound(new Set(names), `found by round ${round}`);
    for (const line of lines.slice(1)) {
      if (line === 'ok') {
        apply(expected, inFlight!);
        inFlight = undefined;
        acknowledged++;
      } else {
        inFlight = line.split(' ').slice(1);
      }
    }
  }

  const masterKey = await FileMasterKey.load(keyFile);
  const env = await EncryptedEnv.open({
    dataDir,
    method: 'aes256-ctr',
    rotationPeriodMs: 3600_000,
    masterKey,
    fileDictionaryLog: true,
    fileDictionaryRewriteThreshold: 5,
  });
  try {
    assert.ok(acknowledged >= KILLS, `only ${acknowledged} operations were acknowledged`);
    checkFound(new Set((await env.list('')).filter((n) => n.startsWith('f'))), 'after the last kill');
    for (const [name, want] of expected) {
      const data = await env.readFile(name);
      if (want === 'any') continue;
      assert.equal(data.length, want.size, `${name} size`);
      assert.ok(data.equals(contentFor(want.seed, want.size)), `${name} content`);
    }
    // Tracked exactly what is on disk: no stale entry, no untracked file.
    assert.deepEqual(env.files().map(([p]) => p), (await env.list('')).sort());
  } finally {
    await env.close();
    masterKey.close();
  }
});
