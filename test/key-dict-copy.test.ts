import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { methodCode } from '../src/crypto/method.js';
import { seal } from '../src/crypto/seal.js';
import { EncryptedEnv, KEY_DICT_NAME, type EnvOptions } from '../src/env/encrypted-env.js';
import { META_DIR } from '../src/env/paths.js';
import { DataKeyStore, EXPOSED_NOTE_NAME } from '../src/keys/data-key-store.js';
import { FileDictionary, LOG_NAME, SNAPSHOT_NAME } from '../src/keys/file-dictionary.js';
import { LOG_MAGIC, SNAPSHOT_MAGIC, encodeLegacyHeader, encodeLegacyRecord } from '../src/keys/file-dictionary-format.js';
import { encodeContent, encodeSealedFile, sealedHeader } from '../src/keys/key-dictionary-format.js';
import { silentLogger } from '../src/log/logger.js';
import type { MasterKey } from '../src/masterkey/master-key.js';
import { BinaryWriter } from '../src/util/binary.js';
import { assertSameTree, captureLogger, cleanup, expectCode, newFileMasterKey, snapshotTree, tempDir, openTestEnv } from './support/fs-helpers.js';
import { KeyAdmin } from '../src/env/key-admin.js';

let root: string;
let dataDir: string;
let metaDir: string;
let masterKey: MasterKey;

function open(overrides: Partial<EnvOptions> = {}): Promise<EncryptedEnv> {
  return openTestEnv(dataDir, masterKey, overrides);
}

async function withEnv<T>(fn: (env: EncryptedEnv) => Promise<T>, overrides: Partial<EnvOptions> = {}): Promise<T> {
  const env = await open(overrides);
  try {
    return await fn(env);
  } finally {
    await env.close();
  }
}

const keyPath = () => join(metaDir, KEY_DICT_NAME);

describe('key.dict copy, migration, key safety', () => {
  beforeEach(async () => {
    root = await tempDir();
    dataDir = join(root, 'data');
    metaDir = join(dataDir, META_DIR);
    masterKey = await newFileMasterKey(root);
  });
  afterEach(async () => {
    masterKey.close();
    await cleanup(root);
  });

  test('item 15: any byte of key.dict or of its copy flipped: opens with a warning and all data, and the damaged one is repaired', async () => {
    const data = randomBytes(300);
    await withEnv((env) => env.writeFile('a.sst', data));
    const good = await readFile(keyPath());
    assert.ok((await readFile(keyPath() + '.copy')).equals(good), 'the copy is written after key.dict, with the same content');
    for (const path of [keyPath(), keyPath() + '.copy']) {
      for (const offset of [0, 9, 20, Math.floor(good.length / 2), good.length - 20, good.length - 1]) {
        const current = await readFile(path);
        const bad = Buffer.from(current);
        bad[offset]! ^= 0x04;
        await writeFile(path, bad);
        const cap = captureLogger();
        await withEnv(async (env) => assert.ok((await env.readFile('a.sst')).equals(data)), { logger: cap.logger });
        assert.ok(cap.warnings().some((w) => /copy of the key dictionary/.test(w.msg)), `offset ${offset} of ${path}: a warning`);
        const repaired = await readFile(path);
        assert.ok(!repaired.equals(bad), 'repaired at the writable open');
        assert.ok(repaired.equals(await readFile(path === keyPath() ? keyPath() + '.copy' : keyPath())));
      }
    }
  });

  test('item 15: both copies damaged is KEY_DICTIONARY_DAMAGED naming both, and nothing changes', async () => {
    await withEnv((env) => env.writeFile('a.sst', randomBytes(10)));
    for (const path of [keyPath(), keyPath() + '.copy']) {
      const b = await readFile(path);
      b[12]! ^= 1;
      await writeFile(path, b);
    }
    const before = await snapshotTree(dataDir);
    await assert.rejects(open(), expectCode('KEY_DICTIONARY_DAMAGED', keyPath(), keyPath() + '.copy'));
    assertSameTree(await snapshotTree(dataDir), before, 'refused open');
  });

  test('item 5: a failed key.dict write during a concurrent create installs nothing; the data dir still opens', async () => {
    const data = new Map<string, Buffer>();
    await withEnv(async (env) => {
      await env.writeFile('first.sst', randomBytes(10));
      // The next key.dict write fails: its tmp file name is taken by a directory.
      await mkdir(keyPath() + '.tmp');
      const rotation = new KeyAdmin(env).rotateDataKey();
      const creates = ['b.sst', 'c.sst', 'd.sst'].map(async (name) => {
        const d = randomBytes(100);
        data.set(name, d);
        await env.writeFile(name, d);
      });
      await assert.rejects(rotation);
      await Promise.all(creates);
      const used = new Set(env.files().map(([, i]) => i.keyId));
      for (const id of used) assert.ok(new KeyAdmin(env).dataKeys().some((k) => k.id === id), `key ${id} in use is in key.dict`);
    });
    await withEnv(async (env) => {
      for (const [name, d] of data) assert.ok((await env.readFile(name)).equals(d));
    });
  });

  test('item 5: entries of files that are not on disk are dropped before the missing-key check', async () => {
    await withEnv(async (env) => {
      await env.writeFile('keep.sst', randomBytes(10));
      await new KeyAdmin(env).rotateDataKey();
      await env.writeFile('gone.sst', randomBytes(10));
    });
    await rm(join(dataDir, 'gone.sst'));
    await withEnv(async (env) => {
      // Retiring must not be blocked by the entry of a file that is gone.
      assert.equal(env.fileInfo('gone.sst'), undefined);
      await new KeyAdmin(env).rotateDataKey();
      await new KeyAdmin(env).retireUnusedKeys();
    });
    await withEnv(async (env) => assert.ok(env.fileInfo('keep.sst')));
  });

  test('item 6: a short write to file.dict.log is continued; a failed one is cut back, never reported as success, never extends the log', async () => {
    const dir = join(root, 'dict');
    const macKey = randomBytes(32);
    let mode: 'short' | 'fail-after-half' | 'ok' = 'ok';
    const writeLog = async (fh: FileHandle, data: Buffer, position: number) => {
      if (mode === 'short') return fh.write(data, 0, Math.ceil(data.length / 2), position);
      if (mode === 'fail-after-half') {
        await fh.write(data, 0, Math.ceil(data.length / 2), position);
        mode = 'ok';
        throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      }
      return fh.write(data, 0, data.length, position);
    };
    const opts = { dir, useLog: true, rewriteThreshold: 1_000_000, logger: silentLogger(), macKey, writeLog };
    const d = await FileDictionary.load(opts);
    await d.beginWrites();
    const entry = () => ({ method: 'aes256-ctr' as const, keyId: 7, iv: randomBytes(16), authenticated: true });
    mode = 'short';
    await d.set('short', entry());
    mode = 'fail-after-half';
    const sizeBefore = (await stat(join(dir, LOG_NAME))).size;
    await assert.rejects(d.set('failed', entry()), /ENOSPC/);
    assert.equal((await stat(join(dir, LOG_NAME))).size, sizeBefore, 'cut back to the last good size');
    await d.set('after', entry());
    await d.close();
    const again = await FileDictionary.load({ ...opts, writeLog: undefined });
    assert.deepEqual([...again.entries()].map(([p]) => p).sort(), ['after', 'short']);
    assert.equal(again.notes.tornTail, undefined);
  });

  test('item 20: key.dict content is encoded into a buffer of its own, not the shared pool', () => {
    const key = randomBytes(32);
    const buf = encodeContent({ generation: 1, fileDictGeneration: 1, dictMacKey: randomBytes(32), currentKeyId: 5, keys: new Map([[5, { id: 5, method: 'aes256-ctr', createdAtMs: 1, exposed: false, key }]]) });
    assert.equal(buf.buffer.byteLength, buf.length, 'not a slice of the pool');
    assert.equal(buf.byteOffset, 0);
    assert.ok(buf.includes(key));
  });

  test('legacy (v1) data dirs open, are migrated at the first writable open, and a v1 file.dict is refused afterwards', async () => {
    await mkdir(metaDir, { recursive: true });
    const key = randomBytes(32);
    const iv = randomBytes(16);
    const data = randomBytes(500);
    const c = createCipheriv('aes-256-ctr', key, iv);
    await writeFile(join(dataDir, 'old.sst'), Buffer.concat([c.update(data), c.final()]));
    // key.dict version 1: no generations, no MAC key.
    const content = new BinaryWriter().u16(1).u64(42).u32(1).u64(42).u8(methodCode('aes256-ctr')).u64(Date.now()).u8(0).u8(32).bytes(key).finish();
    const wrapping = await masterKey.newWrappingKey();
    const aad = sealedHeader(masterKey.type, wrapping.envelope, 1);
    await writeFile(keyPath(), encodeSealedFile(aad, seal(wrapping.key, content, aad)));
    const legacyDict = Buffer.concat([encodeLegacyHeader(SNAPSHOT_MAGIC, 3), encodeLegacyRecord({ op: 'set', path: 'old.sst', entry: { method: 'aes256-ctr', keyId: 42, iv, authenticated: false } })]);
    await writeFile(join(metaDir, SNAPSHOT_NAME), legacyDict);
    await writeFile(join(metaDir, LOG_NAME), encodeLegacyHeader(LOG_MAGIC, 3));

    // Read-only: reads it, reports it as legacy, writes nothing.
    const before = await snapshotTree(dataDir);
    const ro = await open({ readOnly: true });
    assert.equal(ro.dictionaryState().legacy, true);
    assert.ok((await ro.readFile('old.sst')).equals(data));
    await ro.close();
    assertSameTree(await snapshotTree(dataDir), before, 'a read-only open');

    await withEnv(async (env) => {
      assert.ok((await env.readFile('old.sst')).equals(data));
      assert.equal(env.fileInfo('old.sst')?.authenticated, false, 'a legacy file stays unauthenticated');
      assert.equal(env.dictionaryState().legacy, false);
    });
    assert.equal((await readFile(keyPath())).readUInt16LE(8), 2, 'key.dict migrated');
    assert.equal((await readFile(join(metaDir, SNAPSHOT_NAME))).readUInt16LE(8), 2, 'file.dict migrated');
    await withEnv(async (env) => assert.ok((await env.readFile('old.sst')).equals(data)));

    // A downgrade: the unauthenticated v1 dictionary put back.
    await writeFile(join(metaDir, SNAPSHOT_NAME), legacyDict);
    await writeFile(join(metaDir, LOG_NAME), encodeLegacyHeader(LOG_MAGIC, 3));
    const before2 = await snapshotTree(dataDir);
    await assert.rejects(open(), expectCode('FILE_DICTIONARY_DAMAGED', join(metaDir, SNAPSHOT_NAME), 'downgrade'));
    assertSameTree(await snapshotTree(dataDir), before2, 'a refused open');
  });

  test('item 16: dumped keys are noted exposed by the read-only ctl and rotated away at the next writable open', async () => {
    await withEnv((env) => env.writeFile('a.sst', randomBytes(10)));
    const ro = await open({ readOnly: true });
    const current = new KeyAdmin(ro).currentDataKey()!;
    const cap = captureLogger();
    await DataKeyStore.noteExposure(keyPath(), [current.id], cap.logger);
    await ro.close();
    assert.ok(cap.lines.some((l) => l['audit'] === 'data-key-dumped' && l['id'] === current.id && !JSON.stringify(l).includes('key=')), 'an audit line per dumped key, ids only');
    assert.match((await readFile(join(metaDir, EXPOSED_NOTE_NAME), 'utf8')).trim(), new RegExp(`^${current.id} [0-9a-f]{8}$`));
    await withEnv(async (env) => {
      assert.equal(new KeyAdmin(env).dataKeys().find((k) => k.id === current.id)?.exposed, true);
      assert.notEqual(new KeyAdmin(env).currentDataKey()!.id, current.id, 'rotated away from the exposed key');
    });
    await assert.rejects(stat(join(metaDir, EXPOSED_NOTE_NAME)), /ENOENT/);
    await withEnv(async (env) => assert.equal(new KeyAdmin(env).dataKeys().find((k) => k.id === current.id)?.exposed, true, 'durable in key.dict'));
  });

  test('item 16: a note line cut short by a full disk is ignored and never joins the next id', async () => {
    await withEnv((env) => env.writeFile('a.sst', randomBytes(10)));
    const ro = await open({ readOnly: true });
    const current = new KeyAdmin(ro).currentDataKey()!;
    await ro.close();
    // What a full disk leaves of an earlier dump: the first digit of an id, no newline, no check.
    await writeFile(join(metaDir, EXPOSED_NOTE_NAME), '\n1');
    await DataKeyStore.noteExposure(keyPath(), [current.id], captureLogger().logger);
    const lines = (await readFile(join(metaDir, EXPOSED_NOTE_NAME), 'latin1')).split('\n');
    assert.ok(lines.includes('1') && lines.some((l) => l.startsWith(`${current.id} `)), 'the cut line stays on its own line');
    await withEnv(async (env) => {
      assert.equal(new KeyAdmin(env).dataKeys().find((k) => k.id === current.id)?.exposed, true, 'the whole id was read');
      assert.notEqual(new KeyAdmin(env).currentDataKey()!.id, current.id, 'rotated away from the exposed key');
    });
  });
});
