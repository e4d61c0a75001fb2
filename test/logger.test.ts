import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLogger, REDACT_MAX_CHARS, redactBytes } from '../src/log/logger.js';

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
