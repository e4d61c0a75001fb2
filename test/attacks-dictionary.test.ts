import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFile, copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { verifyDataDir } from '../src/cli/verify.js';
import { EncryptedEnv, KEY_DICT_NAME, type EnvOptions } from '../src/env/encrypted-env.js';
import { META_DIR } from '../src/env/paths.js';
import { LOG_NAME, SNAPSHOT_NAME } from '../src/keys/file-dictionary.js';
import { HEADER_LENGTH, LOG_PREAMBLE_LENGTH, encodeLegacyRecord, encodeRecord, type FileRecord } from '../src/keys/file-dictionary-format.js';
import type { MasterKey } from '../src/masterkey/master-key.js';
import { assertSameTree, cleanup, expectCode, newFileMasterKey, snapshotTree, tempDir, openTestEnv } from './support/fs-helpers.js';
import { KeyAdmin } from '../src/env/key-admin.js';

/**
 * Attacks on the dictionaries by someone who can write the disk but holds no key (issue 9
 * items 2, 3, 10, 11): every one must end in an error naming the file, never in a forged
 * entry being honoured, and a refused open must leave every byte as it was.
 */
let root: string;
let dataDir: string;
let metaDir: string;
let masterKey: MasterKey;

function open(overrides: Partial<EnvOptions> = {}, dir = dataDir): Promise<EncryptedEnv> {
  return openTestEnv(dir, masterKey, overrides);
}

async function withEnv<T>(fn: (env: EncryptedEnv) => Promise<T>, overrides: Partial<EnvOptions> = {}, dir = dataDir): Promise<T> {
  const env = await open(overrides, dir);
  try {
    return await fn(env);
  } finally {
    await env.close();
  }
}

/** A data dir with three encrypted files, each created in its own logged batch. */
async function populate(dir = dataDir): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  await withEnv(async (env) => {
    for (const name of ['000001.sst', '000002.sst', '000003.log']) {
      const data = randomBytes(200);
      await env.writeFile(name, data);
      files.set(name, data);
    }
  }, {}, dir);
  return files;
}

/** Where each batch of file.dict.log starts, and where the log ends. */
function batchStarts(log: Buffer): number[] {
  const starts: number[] = [];
  for (let off = LOG_PREAMBLE_LENGTH; off < log.length; off += 8 + 32 + log.readUInt32LE(off)) starts.push(off);
  starts.push(log.length);
  return starts;
}

const logPath = () => join(metaDir, LOG_NAME);
const snapPath = () => join(metaDir, SNAPSHOT_NAME);
const keyPath = () => join(metaDir, KEY_DICT_NAME);

/** Opening must fail with `code` naming `file`, and change nothing on disk (items 9, 11). */
async function refused(code: Parameters<typeof expectCode>[0], file: string, overrides: Partial<EnvOptions> = {}): Promise<void> {
  const before = await snapshotTree(dataDir);
  await assert.rejects(open(overrides), expectCode(code, file));
  await assert.rejects(open({ ...overrides, readOnly: true }), expectCode(code, file));
  assertSameTree(await snapshotTree(dataDir), before, 'a refused open');
}

describe('attacks on the dictionaries', () => {
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

  test('item 2: a record appended without keys, declaring a plaintext WAL, is refused and its content never returned', async () => {
    await populate();
    const good = await readFile(logPath());
    const forgedWal = '000099.log';
    const marker = Buffer.from('user:alice:role -> admin');
    await writeFile(join(dataDir, forgedWal), marker);
    const forged: FileRecord = { op: 'set', path: forgedWal, entry: { method: 'plaintext', keyId: 0, iv: Buffer.alloc(16), authenticated: false } };
    // As today's format would have it: one record with a valid CRC.
    await appendFile(logPath(), encodeLegacyRecord(forged));
    await refused('FILE_DICTIONARY_DAMAGED', logPath());
    // As a well-formed batch with a made-up MAC.
    const body = encodeRecord(forged);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(body.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32LE(crc32(len) >>> 0);
    await writeFile(logPath(), Buffer.concat([good, len, crc, randomBytes(32), body]));
    await refused('FILE_DICTIONARY_DAMAGED', logPath());
    // Put the log back: it opens, and the forged file stays untracked (never read as plaintext).
    await writeFile(logPath(), good);
    await withEnv(async (env) => {
      assert.equal(env.fileInfo(forgedWal), undefined);
      await assert.rejects(env.readFile(forgedWal), expectCode('FILE_NOT_TRACKED', forgedWal));
    });
  });

  test('a dropped middle batch, a replayed batch and a swapped order are each refused', async () => {
    await populate();
    const good = await readFile(logPath());
    const s = batchStarts(good);
    assert.ok(s.length >= 4, `expected at least three batches, got ${s.length - 1}`);
    const pre = good.subarray(0, s[0]!);
    const batch = (i: number) => good.subarray(s[i]!, s[i + 1]!);
    const n = s.length - 1;
    const all = [...Array(n).keys()];
    for (const [what, order] of [
      ['dropped middle batch', all.filter((i) => i !== 1)],
      ['replayed batch', [...all, n - 1]],
      ['swapped batches', [1, 0, ...all.slice(2)]],
    ] as const) {
      await writeFile(logPath(), Buffer.concat([pre, ...order.map(batch)]));
      const before = await snapshotTree(dataDir);
      await assert.rejects(open(), expectCode('FILE_DICTIONARY_DAMAGED', logPath(), 'MAC'), what);
      assertSameTree(await snapshotTree(dataDir), before, what);
    }
    await writeFile(logPath(), good);
    await withEnv(async (env) => assert.equal(env.files().length, 3));
  });

  test('file.dict.log or file.dict from another data dir is refused', async () => {
    await populate();
    const other = join(root, 'other');
    await populate(other);
    const goodLog = await readFile(logPath());
    const goodSnap = await readFile(snapPath());
    await copyFile(join(other, META_DIR, LOG_NAME), logPath());
    await refused('FILE_DICTIONARY_DAMAGED', logPath());
    await writeFile(logPath(), goodLog);
    await copyFile(join(other, META_DIR, SNAPSHOT_NAME), snapPath());
    await refused('FILE_DICTIONARY_DAMAGED', snapPath());
    await writeFile(snapPath(), goodSnap);
    await withEnv(async (env) => assert.equal(env.files().length, 3));
  });

  test('item 3: key.dict (and its copy) restored from before a rotation is refused', async () => {
    await populate();
    const oldKey = await readFile(keyPath());
    await withEnv(async (env) => {
      await new KeyAdmin(env).rotateDataKey();
      await env.writeFile('000004.sst', randomBytes(10));
    });
    const newKey = await readFile(keyPath());
    await writeFile(keyPath(), oldKey);
    await writeFile(keyPath() + '.copy', oldKey);
    await refused('KEY_DICTIONARY_DAMAGED', keyPath());
    await writeFile(keyPath(), newKey);
    await writeFile(keyPath() + '.copy', newKey);
    await withEnv(async (env) => assert.equal(env.files().length, 4));
  });

  test('file.dict and file.dict.log restored together from an older copy are refused', async () => {
    await populate();
    const oldSnap = await readFile(snapPath());
    const oldLog = await readFile(logPath());
    await withEnv(async (env) => env.writeFile('000004.sst', randomBytes(10)));
    const newSnap = await readFile(snapPath());
    const newLog = await readFile(logPath());
    await writeFile(snapPath(), oldSnap);
    await writeFile(logPath(), oldLog);
    await refused('FILE_DICTIONARY_DAMAGED', snapPath());
    await writeFile(snapPath(), newSnap);
    await writeFile(logPath(), newLog);
    await withEnv(async (env) => assert.equal(env.files().length, 4));
  });

  test('items 10, 14: every byte of both headers flipped: refused naming the file, nothing erased; restored: all entries back', async () => {
    const files = await populate();
    for (const path of [snapPath(), logPath()]) {
      const good = await readFile(path);
      for (let i = 0; i < HEADER_LENGTH; i++) {
        const bad = Buffer.from(good);
        bad[i]! ^= i === 8 ? 0x01 : 0x40;
        await writeFile(path, bad);
        const before = await snapshotTree(dataDir);
        await assert.rejects(open(), (err) => {
          assert.ok(err instanceof Error && err.message.includes(path), `byte ${i} of ${path}: ${String(err)}`);
          assert.ok(!String(err).includes('FORMAT_TOO_NEW') && (err as { code?: string }).code !== 'FORMAT_TOO_NEW', `byte ${i}: damage, not a newer format`);
          return true;
        });
        assertSameTree(await snapshotTree(dataDir), before, `byte ${i} of ${path}`);
      }
      await writeFile(path, good);
    }
    await withEnv(async (env) => {
      for (const [name, data] of files) assert.ok((await env.readFile(name)).equals(data));
    });
  });

  test('items 9, 11: DATA_KEY_MISSING under a new master key re-seals nothing; a damaged log record changes nothing', async () => {
    await populate();
    const oldKeyDict = await readFile(keyPath());
    await withEnv(async (env) => {
      await new KeyAdmin(env).rotateDataKey();
      await env.writeFile('000005.sst', randomBytes(10));
    });
    // key.dict from before the rotation, with a master key rotation pending: the open must
    // fail before the re-seal is written.
    const next = await newFileMasterKey(root, 'next.key');
    try {
      await writeFile(keyPath(), oldKeyDict);
      await writeFile(keyPath() + '.copy', oldKeyDict);
      await refused('KEY_DICTIONARY_DAMAGED', keyPath(), { masterKey: next, previousMasterKey: masterKey });
    } finally {
      next.close();
    }
  });

  test('a damaged complete last batch of file.dict.log is damage, not a torn tail; verify and startup agree', async () => {
    await populate();
    const good = await readFile(logPath());
    const bad = Buffer.from(good);
    bad[bad.length - 3]! ^= 0x10;
    await writeFile(logPath(), bad);
    // ctl verify opens read-only through the same check: it refuses exactly as startup does.
    await refused('FILE_DICTIONARY_DAMAGED', logPath());
    // A torn last batch (cut short) is a crash: startup opens and verify notes it, not damage.
    await writeFile(logPath(), good.subarray(0, good.length - 3));
    const ro = await open({ readOnly: true });
    try {
      const report = await verifyDataDir(ro);
      // (The fake .sst/.log files fail their own content checks; none of that is about the dictionaries.)
      assert.ok(!report.problems.some((p) => p.includes(META_DIR)));
      assert.ok(report.notes.some((n) => n.includes(logPath()) && n.includes('incomplete append')), report.notes.join('\n'));
    } finally {
      await ro.close();
    }
    await withEnv(async (env) => assert.equal(env.files().length, 2));
  });
});
