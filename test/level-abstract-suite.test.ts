import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { cleanup, tempDir } from './support/fs-helpers.js';

/*
 * abstract-level's shared suite (tape) against TdekvLevel, run in a child process so tape
 * owns its process and exit status: test/support/level-tape-runner.ts.
 */

const RUNNER = fileURLToPath(new URL('./support/level-tape-runner.js', import.meta.url));

it('passes the whole abstract-level test suite, including its sublevel re-run', { timeout: 180_000 }, async (t) => {
  const root = await tempDir('tdekv-level-suite-');
  try {
    const child = spawn(process.execPath, [RUNNER, root], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', resolve);
    });

    const failures = stdout
      .split('\n')
      .map((line, i, lines) => ({ line, test: lines.slice(0, i).reverse().find((l) => l.startsWith('# ')) }))
      .filter(({ line }) => line.startsWith('not ok'))
      .map(({ line, test }) => `${test ?? '?'}: ${line}`);
    const total = /^# tests (\d+)$/m.exec(stdout)?.[1];
    const pass = /^# pass {2}(\d+)$/m.exec(stdout)?.[1];
    const fail = /^# fail {2}(\d+)$/m.exec(stdout)?.[1] ?? '0';
    t.diagnostic(`tape: ${total ?? '?'} assertions, ${pass ?? '?'} passed, ${fail} failed`);

    const context = `${failures.slice(0, 20).join('\n')}\n--- stderr (tail) ---\n${stderr.slice(-4000)}`;
    assert.deepEqual(failures, [], `failing tape assertions:\n${context}`);
    assert.equal(fail, '0', context);
    assert.ok(total !== undefined && Number(total) > 1000, `tape did not report its totals:\n${stdout.slice(-2000)}\n${context}`);
    assert.equal(pass, total, context);
    assert.match(stdout, /^# ok$/m, context);
    assert.equal(code, 0, `tape exited with ${code}\n${context}`);
  } finally {
    await cleanup(root);
  }
});
