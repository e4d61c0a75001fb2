/** `[log] format` through the real `tdekv serve`, and "auto" on a real terminal. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { CLI } from './support/cli.js';
import { prepareTdekv, removeTempDir, runTdekvToExit, startTdekv, target } from './support/server-process.js';

/** Starts `tdekv serve`, stops it with SIGTERM once it logged "ready", returns all it wrote. */
async function serveUntilReady(settings: Record<string, unknown>): Promise<{ code: number | null; output: string }> {
  const prep = await prepareTdekv({ settings });
  try {
    const child = spawn(process.execPath, [CLI, 'serve', '--config', prep.configPath], { cwd: prep.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let signalled = false;
    const onData = (d: Buffer): void => {
      output += d.toString();
      // "ready" as a JSON field or as a pretty line's message.
      if (!signalled && /"msg":"ready"|\): ready\n/.test(output)) {
        signalled = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.ok(signalled, `tdekv serve exited before it was ready:\n${output}`);
    return { code, output };
  } finally {
    if (prep.ownsDir) await removeTempDir(prep.dir);
  }
}

const PRETTY_LINE = /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) \(tdekv\): /;

describe('[log] format', { skip: target() !== 'tdekv' && 'tdekv only' }, () => {
  test('"pretty": readable lines (time, level name, message, indented fields), no JSON, up to the last line at exit', async () => {
    const { code, output } = await serveUntilReady({ log: { format: 'pretty' } });
    assert.equal(code, 0, output);
    const lines = output.split('\n').filter((l) => l !== '');
    assert.ok(lines.every((l) => PRETTY_LINE.test(l) || /^ {4}\S/.test(l)), output);
    assert.ok(!output.includes('{"'), output);
    assert.ok(lines.some((l) => /INFO \(tdekv\): ready$/.test(l)), output);
    assert.match(output, /\n {4}addr: "127\.0\.0\.1:\d+"\n/);
    // Logged just before the process exits: a pretty line is never left behind in a buffer.
    assert.match(lines.filter((l) => PRETTY_LINE.test(l)).at(-1)!, /INFO \(tdekv\): stopped$/);
  });

  test('"json": JSON lines', async () => {
    const s = await startTdekv({ settings: { log: { format: 'json' } } });
    await s.stop();
    const lines = s.stderr().split('\n').filter((l) => l !== '');
    assert.ok(lines.length > 0);
    for (const l of lines) assert.equal(typeof (JSON.parse(l) as { msg?: unknown }).msg, 'string', l);
  });

  test('a bad value stops the server with CONFIG_INVALID naming log.format and the allowed values', async () => {
    const r = await runTdekvToExit({ settings: { log: { format: 'text' } } });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /CONFIG_INVALID/);
    assert.match(r.stderr, /log\.format = "text"/);
    assert.match(r.stderr, /auto \| json \| pretty/);
  });

  test('"auto" (the default) is pretty on a terminal, with colours', { skip: !existsSync('/usr/bin/script') && 'needs script(1) for a pseudo-terminal' }, () => {
    const logger = fileURLToPath(new URL('../src/log/logger.js', import.meta.url));
    const program = `import(${JSON.stringify(logger)}).then((m) => m.createLogger().warn({ password: 'pw-123' }, 'on a terminal'))`;
    // script(1) runs the command with its stdin, stdout and stderr on a new pseudo-terminal.
    const r = spawnSync('/usr/bin/script', ['-qec', `${process.execPath} -e ${shellQuote(program)}`, '/dev/null'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const plain = r.stdout.replace(/\u001b\[[0-9;]*m/g, '');
    assert.match(plain, /\] WARN \(tdekv\): on a terminal/);
    assert.match(plain, /password: "\[redacted\]"/);
    assert.ok(!r.stdout.includes('pw-123') && !r.stdout.includes('{"'), r.stdout);
    assert.notEqual(plain, r.stdout, 'coloured');
  });
});

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
