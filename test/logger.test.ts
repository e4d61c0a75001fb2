import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLogger, REDACT_MAX_CHARS, redactBytes, resolveLogFormat } from '../src/log/logger.js';

function capture(options: Parameters<typeof createLogger>[0]) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ ...options, destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  return { logger, lines };
}

describe('redactBytes', () => {
  test('is "?" while redaction is on', () => {
    assert.equal(redactBytes(Buffer.from('user:1'), true), '?');
    assert.equal(redactBytes('user:1', true), '?');
  });

  test('escapes control bytes, quotes and high bytes when off', () => {
    assert.equal(redactBytes(Buffer.from('user:1'), false), 'user:1');
    assert.equal(redactBytes(Buffer.from([0, 0x0a, 0x22, 0x5c, 0xff]), false), '\\u0000\\n\\"\\\\\u00ff');
    assert.equal(redactBytes(new Uint8Array(Buffer.from('xyz').buffer, 1, 0), false), '');
    const view = Buffer.from('abcdef').subarray(2, 4);
    assert.equal(redactBytes(view, false), 'cd');
  });

  test('cuts long values with "..." and never splits an escape', () => {
    assert.equal(redactBytes('a'.repeat(REDACT_MAX_CHARS), false), 'a'.repeat(REDACT_MAX_CHARS));
    assert.equal(redactBytes('a'.repeat(REDACT_MAX_CHARS + 1), false), `${'a'.repeat(REDACT_MAX_CHARS)}...`);
    const out = redactBytes(Buffer.concat([Buffer.alloc(REDACT_MAX_CHARS - 3, 'a'), Buffer.alloc(10, 0)]), false);
    assert.equal(out, `${'a'.repeat(REDACT_MAX_CHARS - 3)}...`);
    for (let n = 0; n < 100; n++) {
      const s = redactBytes(Buffer.alloc(n, 1), false);
      assert.ok(s.replace(/\.\.\.$/, '').length <= REDACT_MAX_CHARS);
      assert.match(s, /^(?:\\u0001)*(?:\.\.\.)?$/);
    }
  });
});

describe('createLogger', () => {
  test('takes the level and censors user data and secrets by default', () => {
    const { logger, lines } = capture({ level: 'warn' });
    logger.info('hidden');
    logger.warn({ key: Buffer.from('k1'), value: 'v1', password: 'pw', requirepass: 'rp', nested: { secret: 's' } }, 'shown');
    assert.equal(lines.length, 1);
    assert.deepEqual(
      { key: lines[0]!['key'], value: lines[0]!['value'], password: lines[0]!['password'], requirepass: lines[0]!['requirepass'], nested: lines[0]!['nested'] },
      { key: '[redacted]', value: '[redacted]', password: '[redacted]', requirepass: '[redacted]', nested: { secret: '[redacted]' } },
    );
  });

  test('with redactUserData off, logs keys and values as escaped text but still censors secrets', () => {
    const { logger, lines } = capture({ level: 'info', redactUserData: false });
    logger.info({ key: Buffer.from([0x61, 0]), value: 'v1', password: 'pw' }, 'x');
    assert.equal(lines[0]!['key'], 'a\\u0000');
    assert.equal(lines[0]!['value'], 'v1');
    assert.equal(lines[0]!['password'], '[redacted]');
  });
});

describe('log format', () => {
  function capturePretty(options: Parameters<typeof createLogger>[0]): { logger: ReturnType<typeof createLogger>; text: () => string } {
    let out = '';
    const logger = createLogger({ ...options, format: 'pretty', destination: { write: (s: string) => void (out += s) } });
    return { logger, text: () => out };
  }

  test('pretty writes readable lines: time, level name, message, fields; no JSON', () => {
    const { logger, text } = capturePretty({ level: 'info' });
    logger.warn({ path: '/run/tdekv/master.key' }, 'generated a master key file');
    const out = text();
    assert.match(out, /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] WARN \(tdekv\): generated a master key file\n/);
    assert.match(out, /path: "\/run\/tdekv\/master.key"/);
    assert.ok(!out.includes('{"'), out);
    assert.ok(!out.includes('\u001b['), 'no colours when not writing to a terminal');
  });

  test('pretty lines are redacted like JSON ones', () => {
    const { logger, text } = capturePretty({ level: 'info' });
    logger.info({ key: Buffer.from('user:1'), value: 'Ada', password: 'pw-123', nested: { secret: 's-456' } }, 'x');
    const out = text();
    for (const leaked of ['user:1', 'Ada', 'pw-123', 's-456']) assert.ok(!out.includes(leaked), `${leaked} leaked: ${out}`);
    assert.equal(out.match(/\[redacted\]/g)?.length, 4, out);
  });

  test('json writes JSON lines even where auto would be pretty; auto is pretty only on a terminal', () => {
    const lines: string[] = [];
    createLogger({ format: 'json', destination: { write: (s: string) => void lines.push(s) } }).info('m');
    assert.equal((JSON.parse(lines[0]!) as { msg: string }).msg, 'm');
    assert.equal(resolveLogFormat('auto', true), 'pretty');
    assert.equal(resolveLogFormat('auto', false), 'json');
    assert.equal(resolveLogFormat('json', true), 'json');
    assert.equal(resolveLogFormat('pretty', false), 'pretty');
  });
});
