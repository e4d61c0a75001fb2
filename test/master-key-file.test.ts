import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isTdekvError } from '../src/errors.js';
import { FileMasterKey, parseMasterKeyFile } from '../src/masterkey/file.js';
import type { MasterKey } from '../src/masterkey/master-key.js';
import { cleanup, expectCode, tempDir } from './support/fs-helpers.js';

// Distinctive so that any echo of the content in a message is caught.
const HEX = 'c0ffee11' + 'deadbeef' + '0a1b2c3d' + '4e5f6a7b' + '8c9dae0f' + 'b1c2d3e4' + 'f5061728' + '394a5b6c';
const RULE = 'exactly 64 hexadecimal characters (a 256-bit key) followed by one newline, and nothing else';

describe('master key file', () => {
  let dir: string;

  before(async () => {
    dir = await tempDir();
  });

  after(async () => {
    await cleanup(dir);
  });

  test('exactly 64 hex characters and a newline is accepted, in either case', async () => {
    assert.equal(HEX.length, 64);
    assert.deepEqual(parseMasterKeyFile(Buffer.from(HEX + '\n'), '/k'), Buffer.from(HEX, 'hex'));
    assert.deepEqual(parseMasterKeyFile(Buffer.from(HEX.toUpperCase() + '\n'), '/k'), Buffer.from(HEX, 'hex'));

    const path = join(dir, 'good.key');
    await writeFile(path, HEX + '\n', { mode: 0o600 });
    const mk: MasterKey = await FileMasterKey.load(path);
    try {
      assert.equal(mk.type, 'file');
      assert.equal(mk.protectsKeys, true);
      assert.ok(mk.description.includes(path));
      assert.ok(!mk.description.includes(HEX));
      const { key, envelope } = await mk.newWrappingKey();
      assert.deepEqual(key, Buffer.from(HEX, 'hex'));
      assert.equal(envelope.length, 0);
      assert.deepEqual(await mk.recoverWrappingKey(envelope), key);
    } finally {
      mk.close();
    }
  });

  const bad: Array<[string, string]> = [
    ['63 hex characters', HEX.slice(0, 63) + '\n'],
    ['65 hex characters', HEX + 'a\n'],
    ['no newline', HEX],
    ['CRLF', HEX + '\r\n'],
    ['a trailing space', HEX + ' \n'],
    ['a leading space', ' ' + HEX.slice(1) + '\n'],
    ['an extra line', HEX + '\n' + HEX + '\n'],
    ['an extra empty line', HEX + '\n\n'],
    ['a non-hex character', HEX.slice(0, 40) + 'g' + HEX.slice(41) + '\n'],
    ['base64 instead of hex', Buffer.from(HEX, 'hex').toString('base64') + '\n'],
    ['nothing at all', ''],
    ['only a newline', '\n'],
  ];

  for (const [what, content] of bad) {
    test(`a key file with ${what} is MASTER_KEY_INVALID naming the path and the rule, not the content`, async () => {
      const path = join(dir, `bad-${what.replaceAll(' ', '-')}.key`);
      await writeFile(path, content, { mode: 0o600 });
      const check = (err: unknown): boolean => {
        expectCode('MASTER_KEY_INVALID', path, RULE, `found ${Buffer.byteLength(content)} bytes`)(err);
        const message = (err as Error).message;
        const body = content.trim();
        // No 12-character window of the content may appear anywhere in the message.
        for (let i = 0; i + 12 <= body.length; i++) {
          assert.ok(!message.includes(body.slice(i, i + 12)), `message leaks key file content: ${message}`);
          assert.ok(!message.toLowerCase().includes(body.slice(i, i + 12).toLowerCase()), `message leaks key file content: ${message}`);
        }
        return true;
      };
      await assert.rejects(FileMasterKey.load(path), check);
      assert.throws(() => parseMasterKeyFile(Buffer.from(content), path), check);
    });
  }

  test('a missing key file is MASTER_KEY_UNAVAILABLE naming the path', async () => {
    const path = join(dir, 'does-not-exist.key');
    await assert.rejects(FileMasterKey.load(path), expectCode('MASTER_KEY_UNAVAILABLE', path, 'does not exist'));
  });

  test('a directory instead of a key file is an error naming the path, never a key', async () => {
    await assert.rejects(FileMasterKey.load(dir), (err) => {
      assert.ok(isTdekvError(err, 'MASTER_KEY_UNAVAILABLE'), String(err));
      assert.ok(err.message.includes(dir));
      return true;
    });
  });
});
