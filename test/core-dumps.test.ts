import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CORE_DUMP_FIX, parseCoreFileLimit, warnIfCoreDumpsEnabled } from '../src/cli/core-dumps.js';
import { CLI } from './support/cli.js';
import { captureLogger, withTempDir } from './support/fs-helpers.js';

/* Issue 9 item 21: `tdekv serve` warns when this process could write a core dump. */

const limits = (soft: string, hard: string): string =>
  [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max cpu time              unlimited            unlimited            seconds   ',
    'Max stack size            8388608              unlimited            bytes     ',
    `Max core file size        ${soft.padEnd(21)}${hard.padEnd(21)}bytes     `,
    'Max resident set          unlimited            unlimited            bytes     ',
    '',
  ].join('\n');

describe('core dump check', () => {
  it('parses the core file size line of /proc/self/limits', () => {
    assert.deepEqual(parseCoreFileLimit(limits('0', 'unlimited')), { soft: 0, hard: 'unlimited' });
    assert.deepEqual(parseCoreFileLimit(limits('unlimited', 'unlimited')), { soft: 'unlimited', hard: 'unlimited' });
    assert.deepEqual(parseCoreFileLimit(limits('4096', '8192')), { soft: 4096, hard: 8192 });
    assert.equal(parseCoreFileLimit(''), undefined);
    assert.equal(parseCoreFileLimit('Max core file size        lots   unlimited   bytes'), undefined);
    assert.equal(parseCoreFileLimit(limits('0', 'unlimited').replace('Max core file size', 'Max core flie size')), undefined);
  });

  it('warns once, with the fixes, when the soft limit is not 0', async () => {
    for (const soft of ['unlimited', '1']) {
      const { logger, warnings } = captureLogger();
      await warnIfCoreDumpsEnabled(logger, async () => limits(soft, 'unlimited'));
      assert.equal(warnings().length, 1, soft);
      const w = warnings()[0]!;
      assert.match(w.msg, /core dumps are enabled/);
      for (const fix of ['ulimit -c 0', 'LimitCORE=0', '--ulimit core=0']) assert.ok(w.msg.includes(fix), fix);
      assert.equal(w['coreFileSizeSoftLimit'], soft);
    }
  });

  it('says nothing at warn level when dumps are off or the limits cannot be read', async () => {
    const { logger, warnings } = captureLogger();
    assert.deepEqual(await warnIfCoreDumpsEnabled(logger, async () => limits('0', 'unlimited')), { soft: 0, hard: 'unlimited' });
    assert.equal(await warnIfCoreDumpsEnabled(logger, () => Promise.reject(Object.assign(new Error('no /proc'), { code: 'ENOENT' }))), undefined);
    assert.equal(await warnIfCoreDumpsEnabled(logger, async () => 'garbage'), undefined);
    assert.deepEqual(warnings(), []);
  });

  // The real server process under each limit. Its master key file is missing, so it stops
  // right after the check: the startup order, not the server, is under test.
  const own = process.platform === 'linux' ? parseCoreFileLimit(readFileSync('/proc/self/limits', 'utf8')) : undefined;
  const linux =
    process.platform !== 'linux' ? 'reads /proc/self/limits (Linux only)' : own?.hard === 0 ? 'the hard core file size limit is 0 here: cannot raise it' : false;
  it('`tdekv serve` logs the warning under `ulimit -c unlimited` and not under `ulimit -c 0`', { skip: linux }, async () => {
    await withTempDir(async (dir) => {
      const config = join(dir, 'tdekv.toml');
      await writeFile(
        config,
        '[storage]\ndata-dir = "data"\n[server]\naddr = "127.0.0.1:0"\nstatus-addr = "127.0.0.1:0"\n' +
          '[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = "missing.key"\n',
      );
      const serve = (ulimit: string): Promise<{ code: number | null; stderr: string }> =>
        new Promise((resolve, reject) => {
          const child = spawn('/bin/sh', ['-c', `ulimit -c ${ulimit} && exec "$0" "$1" serve --config "$2"`, process.execPath, CLI, config], {
            stdio: ['ignore', 'ignore', 'pipe'],
          });
          let stderr = '';
          child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
          child.on('error', reject);
          child.on('close', (code) => resolve({ code, stderr }));
        });
      const on = await serve('unlimited');
      assert.equal(on.code, 1, on.stderr);
      assert.match(on.stderr, /missing\.key does not exist/);
      const lines = on.stderr.split('\n').filter((l) => l.includes('core dumps are enabled'));
      assert.equal(lines.length, 1, on.stderr);
      assert.ok(lines[0]!.includes(CORE_DUMP_FIX.slice(0, 40)));
      const off = await serve('0');
      assert.equal(off.code, 1, off.stderr);
      assert.match(off.stderr, /missing\.key does not exist/);
      assert.ok(!off.stderr.includes('core dumps are enabled'), off.stderr);
    });
  });
});
