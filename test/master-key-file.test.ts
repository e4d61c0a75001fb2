import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createMasterKey } from '../src/masterkey/create.js';
import { decodeHexBytes, encodeHexInto } from '../src/masterkey/key-hex.js';
import { openEnv } from '../src/env/open-env.js';
import { DEFAULT_ENCRYPTION } from '../src/config/types.js';
import { isTdekvError } from '../src/errors.js';
import { FileMasterKey, parseMasterKeyFile } from '../src/masterkey/file.js';
import type { MasterKey } from '../src/masterkey/master-key.js';
import { assertSameTree, cleanup, expectCode, snapshotTree, tempDir } from './support/fs-helpers.js';

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
      // Copies of the key in memory of their own, not slices of Node's shared pool.
      for (const copy of [key, await mk.recoverWrappingKey(envelope)]) assert.equal(copy.buffer.byteLength, 32);
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

  test('parsing decodes into a fresh Buffer outside the shared pool and leaves the content alone', () => {
    const content = Buffer.from(HEX.toUpperCase() + '\n');
    const key = parseMasterKeyFile(content, '/k');
    assert.equal(key.length, 32);
    // A pooled Buffer is a slice of a larger shared ArrayBuffer (Buffer.poolSize).
    assert.equal(key.byteOffset, 0);
    assert.equal(key.buffer.byteLength, 32);
    assert.equal(content.toString('latin1'), HEX.toUpperCase() + '\n');
  });

  test('the byte hex codec matches Buffer hex, in both cases, and refuses non-hex bytes', () => {
    for (const text of [HEX, HEX.toUpperCase(), '00ff7f80'.repeat(8)]) {
      assert.deepEqual(decodeHexBytes(Buffer.from(text, 'latin1'), 0, 32), Buffer.from(text, 'hex'));
    }
    for (const badChar of ['g', 'G', ' ', '\n', ':', '@', '`', '/', '\u00e0']) {
      assert.equal(decodeHexBytes(Buffer.from(HEX.slice(0, 10) + badChar + HEX.slice(11), 'latin1'), 0, 32), undefined, `"${badChar}"`);
    }
    assert.equal(decodeHexBytes(Buffer.from(HEX.slice(0, 62)), 0, 32), undefined);
    const out = Buffer.alloc(64);
    assert.equal(encodeHexInto(Buffer.from(HEX, 'hex'), out, 0), 64);
    assert.equal(out.toString('latin1'), HEX);
  });

  describe('key file safety (issue 9 item 17)', () => {
    const keyFile = async (name: string, mode = 0o600, content = HEX + '\n'): Promise<string> => {
      const path = join(dir, name);
      await writeFile(path, content, { mode });
      await chmod(path, mode); // writeFile's mode is filtered by the umask
      return path;
    };

    for (const mode of [0o666, 0o644, 0o640, 0o604, 0o620, 0o602, 0o610]) {
      test(`a key file with mode 0${mode.toString(8)} is refused, naming the path, the mode and chmod 600`, async () => {
        const path = await keyFile(`mode-${mode.toString(8)}.key`, mode);
        await assert.rejects(FileMasterKey.load(path), (err) => {
          expectCode('MASTER_KEY_INVALID', path, `mode 0${mode.toString(8)}`, `chmod 600 ${path}`, 'allow-insecure-permissions = true')(err);
          assert.ok(!(err as Error).message.includes(HEX.slice(0, 12)));
          return true;
        });
      });
    }

    test('modes 0600 and 0400 are accepted; allow-insecure-permissions accepts 0644', async () => {
      for (const mode of [0o600, 0o400]) (await FileMasterKey.load(await keyFile(`ok-${mode.toString(8)}.key`, mode))).close();
      const open = await keyFile('open-but-allowed.key', 0o644);
      (await FileMasterKey.load(open, { allowInsecurePermissions: true })).close();
      (await createMasterKey({ type: 'file', path: open, allowInsecurePermissions: true })).close();
      await assert.rejects(createMasterKey({ type: 'file', path: open }), expectCode('MASTER_KEY_INVALID', 'mode 0644'));
    });

    for (const [what, byte] of [
      ['all-zero', '00'],
      ['all-0xff', 'ff'],
      ['one-byte-repeated', 'a5'],
    ] as const) {
      test(`an ${what} key is refused without echoing it`, async () => {
        const path = await keyFile(`${what}.key`, 0o600, byte.repeat(32) + '\n');
        await assert.rejects(FileMasterKey.load(path), (err) => {
          expectCode('MASTER_KEY_INVALID', path, 'one byte repeated', 'tdekv keygen')(err);
          assert.ok(!(err as Error).message.includes(byte.repeat(6)), (err as Error).message);
          return true;
        });
      });
    }

    test('a key file inside the data dir is refused, also through symlinks either way', async () => {
      const dataDir = join(dir, 'data');
      await mkdir(join(dataDir, 'sub'), { recursive: true });
      const inside = join(dataDir, 'sub', 'master.key');
      await writeFile(inside, HEX + '\n', { mode: 0o600 });
      await assert.rejects(FileMasterKey.load(inside, { dataDir }), expectCode('MASTER_KEY_INVALID', inside, `inside the data dir ${dataDir}`, 'Move the key outside'));
      // The key named through a symlink that lives outside the data dir.
      const viaLink = join(dir, 'link-to-inside.key');
      await symlink(inside, viaLink);
      await assert.rejects(FileMasterKey.load(viaLink, { dataDir }), expectCode('MASTER_KEY_INVALID', viaLink, inside));
      // The data dir named through a symlink, the key by its real path.
      const dataLink = join(dir, 'data-link');
      await symlink(dataDir, dataLink);
      await assert.rejects(FileMasterKey.load(inside, { dataDir: dataLink }), expectCode('MASTER_KEY_INVALID', 'inside the data dir'));
      // A `..` detour through the data dir.
      await assert.rejects(FileMasterKey.load(join(dataDir, 'sub', '..', 'sub', 'master.key'), { dataDir }), expectCode('MASTER_KEY_INVALID', 'inside the data dir'));
      // Beside the data dir, and a sibling whose name only starts like it, are fine.
      (await FileMasterKey.load(await keyFile('beside.key'), { dataDir })).close();
      await mkdir(join(dir, 'data-2'));
      await writeFile(join(dir, 'data-2', 'k'), HEX + '\n', { mode: 0o600 });
      (await FileMasterKey.load(join(dir, 'data-2', 'k'), { dataDir })).close();
      // A data dir that does not exist yet holds nothing.
      (await FileMasterKey.load(await keyFile('fresh.key'), { dataDir: join(dir, 'not-yet') })).close();
    });

    test('openEnv refuses a master key inside its data dir and writes nothing', async () => {
      const dataDir = join(dir, 'env-data');
      await mkdir(dataDir);
      const inside = join(dataDir, 'master.key');
      await writeFile(inside, HEX + '\n', { mode: 0o600 });
      const before = await snapshotTree(dataDir);
      const enc = { ...DEFAULT_ENCRYPTION, dataEncryptionMethod: 'aes256-ctr' as const, masterKey: { type: 'file' as const, path: inside } };
      await assert.rejects(openEnv(dataDir, enc), expectCode('MASTER_KEY_INVALID', inside, 'inside the data dir'));
      assertSameTree(await snapshotTree(dataDir), before, 'refused open');
    });

    test('previous-master-key, the key being rotated away from, is only required to be readable and well formed', async () => {
      const dataDir = join(dir, 'rotating');
      await mkdir(dataDir);
      const weakInside = join(dataDir, 'old.key');
      await writeFile(weakInside, '00'.repeat(32) + '\n', { mode: 0o644 });
      await chmod(weakInside, 0o644);
      (await createMasterKey({ type: 'file', path: weakInside }, { dataDir, previous: true })).close();
      await assert.rejects(createMasterKey({ type: 'file', path: weakInside }, { dataDir }), expectCode('MASTER_KEY_INVALID'));
      assert.equal((await readFile(weakInside, 'latin1')).length, 65);
    });
  });
});
