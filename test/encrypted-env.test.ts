import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv, randomBytes, randomInt } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { opensslCipherOf, type EncryptionMethod } from '../src/crypto/method.js';
import { EncryptedEnv, KEY_DICT_NAME, type EnvOptions } from '../src/env/encrypted-env.js';
import { META_DIR } from '../src/env/paths.js';
import { DataKeyStore } from '../src/keys/data-key-store.js';
import { FileDictionary, LOG_NAME, SNAPSHOT_NAME } from '../src/keys/file-dictionary.js';
import { silentLogger } from '../src/log/logger.js';
import { FileMasterKey } from '../src/masterkey/file.js';
import { KmsMasterKey } from '../src/masterkey/kms.js';
import type { MasterKey } from '../src/masterkey/master-key.js';
import { closedPort } from './support/fake-kms.js';
import { assertSameTree, captureLogger, cleanup, expectCode, newFileMasterKey, snapshotTree, tempDir, writeKeyFile, openTestEnv } from './support/fs-helpers.js';
import { KeyAdmin } from '../src/env/key-admin.js';

const MARKER = Buffer.from('TDEKV-PLAINTEXT-MARKER-7f3a9c');
const ENCRYPTING: EncryptionMethod[] = ['aes128-ctr', 'aes192-ctr', 'aes256-ctr', 'sm4-ctr'];

let root: string;
let dataDir: string;
let masterKey: MasterKey;

function open(overrides: Partial<EnvOptions> = {}): Promise<EncryptedEnv> {
  return openTestEnv(dataDir, masterKey, overrides);
}

async function withEnv<T>(overrides: Partial<EnvOptions>, fn: (env: EncryptedEnv) => Promise<T>): Promise<T> {
  const env = await open(overrides);
  try {
    return await fn(env);
  } finally {
    await env.close();
  }
}

/** Random bytes with the marker embedded, so a plaintext leak is easy to spot. */
function markedData(length: number): Buffer {
  const b = randomBytes(length);
  for (let at = 0; at + MARKER.length <= length; at += 997) MARKER.copy(b, at);
  return b;
}

/** Names on disk in the data dir (recursively), without the dictionaries. */
async function namesOnDisk(dir = dataDir, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix + d.name;
    if (rel === META_DIR) continue;
    if (d.isDirectory()) out.push(...(await namesOnDisk(join(dir, d.name), rel + '/')));
    else out.push(rel);
  }
  return out.sort();
}

/** The file dictionary as it is on disk (load does not write). */
async function loadDictionary(): Promise<FileDictionary> {
  const keys = await DataKeyStore.load({ path: join(dataDir, META_DIR, KEY_DICT_NAME), masterKey, logger: silentLogger(), readOnly: true });
  const macKey = keys.dictMacKey()!;
  keys.close();
  return FileDictionary.load({ dir: join(dataDir, META_DIR), useLog: true, rewriteThreshold: 1_000_000, logger: silentLogger(), macKey });
}

function trackedNames(env: EncryptedEnv): string[] {
  return env.files().map(([p]) => p);
}

class SimulatedCrash extends Error {}

// A crashed env is abandoned, not closed, while a new one opens the same dir in this
// process: the crashed one is opened with `exclusive: false` so its LOCK does not block that.

/** A faults hook that throws at one (operation, step) once armed. */
function crashAt(operation: string, step: string): NonNullable<EnvOptions['faults']> {
  return (op, s) => {
    if (op === operation && s === step) throw new SimulatedCrash(`simulated crash at ${op}/${s}`);
  };
}

beforeEach(async () => {
  root = await tempDir();
  dataDir = join(root, 'data');
  masterKey = await newFileMasterKey(root);
});

afterEach(async () => {
  masterKey.close();
  await cleanup(root);
});

describe('EncryptedEnv', () => {
  for (const method of ['plaintext', ...ENCRYPTING] as EncryptionMethod[]) {
    test(`${method}: appendSync hands each record to the OS at once and round-trips; mixing it with pending async appends is refused`, async () => {
      const env = await open({ method });
      const f = await env.create('000002.log');
      const parts = [markedData(10), markedData(5000), markedData(1), markedData(70_000)];
      for (const p of parts) f.appendSync(p);
      // Readable before any flush or close: the bytes are with the OS already.
      const r = await env.openRead('000002.log');
      assert.ok(r.readSync(0, r.size).equals(Buffer.concat(parts)));
      r.close();
      void f.append(markedData(10));
      assert.throws(() => f.appendSync(markedData(3)), expectCode('INVALID_ARGUMENT', 'appendSync'));
      await f.close();
      await env.close();
    });

    test(`${method}: appends of every size round-trip through sequential and random reads`, async () => {
      const env = await open({ method });
      const chunks: Buffer[] = [];
      const f = await env.create('000001.log');
      const sizes: number[] = [];
      for (let i = 0; i < 1500; i++) sizes.push(randomInt(1, 200));
      sizes.splice(300, 0, 100 * 1024); // > 64 KiB: written directly
      sizes.splice(700, 0, 6 * 1024 * 1024 + 11, 3 * 1024 * 1024 + 5); // back to back, > 8 MiB in flight: backpressure
      sizes.push(0);
      for (const n of sizes) {
        const c = markedData(n);
        chunks.push(c);
        await f.append(c);
      }
      // Appends issued without waiting keep their order.
      const burst = Array.from({ length: 50 }, (_, i) => markedData(i * 37 + 1));
      chunks.push(...burst);
      await Promise.all(burst.map((c) => f.append(c)));
      const plain = Buffer.concat(chunks);
      assert.ok(plain.length > 9 * 1024 * 1024);
      assert.equal(f.size, plain.length);
      await f.sync();
      await f.close();
      await assert.rejects(f.append(Buffer.from('late')), expectCode('CLOSED'));

      const abs = join(dataDir, '000001.log');
      const onDisk = await readFile(abs);
      assert.equal(onDisk.length, plain.length, 'CTR is size-preserving');
      const info = env.fileInfo('000001.log')!;
      assert.equal(info.method, method);
      assert.equal(info.iv.length, 16);
      if (method === 'plaintext') {
        assert.equal(info.keyId, 0);
        assert.ok(onDisk.equals(plain));
      } else {
        assert.notEqual(info.keyId, 0);
        assert.equal(onDisk.indexOf(MARKER), -1, 'plaintext marker found on disk');
        // Independently: the file is one CTR stream under the recorded key and IV.
        const [dataKey] = new KeyAdmin(env).exportDataKeys([info.keyId]);
        const decipher = createDecipheriv(opensslCipherOf(method)!, dataKey!.key, info.iv);
        assert.ok(Buffer.concat([decipher.update(onDisk), decipher.final()]).equals(plain));
      }

      const r = await env.openRead('000001.log');
      try {
        assert.equal(r.size, plain.length);
        assert.ok(r.readSync(0, r.size).equals(plain));
        // Sequential scan in odd-sized steps (continues one keystream).
        const step = 1024 * 1024 + 7;
        const parts: Buffer[] = [];
        for (let at = 0; at < r.size; at += step) parts.push(r.readSync(at, step));
        assert.ok(Buffer.concat(parts).equals(plain));
        for (let i = 0; i < 300; i++) {
          const offset = randomInt(0, plain.length);
          const length = randomInt(0, i % 10 === 0 ? 200_000 : 5000);
          const expected = plain.subarray(offset, Math.min(plain.length, offset + length));
          const got = i % 2 === 0 ? r.readSync(offset, length) : await r.read(offset, length);
          assert.ok(got.equals(expected), `read(${offset}, ${length})`);
        }
        assert.equal(r.readSync(plain.length - 3, 100).length, 3);
        assert.equal((await r.read(plain.length + 10, 100)).length, 0);
        assert.throws(() => r.readSync(-1, 1), expectCode('INVALID_ARGUMENT'));
      } finally {
        r.close();
      }
      await env.close();

      // And after reopening.
      await withEnv({ method }, async (env2) => {
        assert.ok((await env2.readFile('000001.log')).equals(plain));
      });
    });
  }

  test('create on an existing path is FILE_EXISTS and leaves its entry alone', async () => {
    await withEnv({}, async (env) => {
      await env.writeFile('a', Buffer.from('first'));
      const iv = env.fileInfo('a')!.iv;
      await assert.rejects(env.create('a'), expectCode('FILE_EXISTS', 'a'));
      await assert.rejects(env.writeFile('a', Buffer.from('second')), expectCode('FILE_EXISTS'));
      assert.ok(env.fileInfo('a')!.iv.equals(iv));
      assert.equal((await env.readFile('a')).toString(), 'first');
      await writeFile(join(dataDir, 'untracked'), 'x');
      await assert.rejects(env.create('untracked'), expectCode('FILE_EXISTS'));
      assert.equal(env.fileInfo('untracked'), undefined);
    });
  });

  test('every new file gets its own IV: 200 files, 200 IVs, 200 different ciphertexts of the same bytes', async () => {
    await withEnv({}, async (env) => {
      const same = markedData(64);
      const names = Array.from({ length: 200 }, (_, i) => `f${i}`);
      for (const n of names) await env.writeFile(n, same);
      const ivs = new Set(names.map((n) => env.fileInfo(n)!.iv.toString('hex')));
      assert.equal(ivs.size, 200);
      const keyIds = new Set(names.map((n) => env.fileInfo(n)!.keyId));
      assert.equal(keyIds.size, 1, 'one data key, so the IVs alone keep the streams apart');
      const disk = new Set<string>();
      for (const n of names) disk.add((await readFile(join(dataDir, n))).toString('hex'));
      assert.equal(disk.size, 200);
      // A rewrite under the same name (remove + create) gets a new IV too.
      const before = env.fileInfo('f0')!.iv;
      await env.remove('f0');
      await env.writeFile('f0', same);
      assert.ok(!env.fileInfo('f0')!.iv.equals(before));
    });
  });

  test('the dictionary entry is durable before the file: a crash right after it leaves a stale entry that reopen drops', async () => {
    await withEnv({}, async (e) => e.writeFile('keep', Buffer.from('kept')));
    const crashed = await open({ exclusive: false, faults: crashAt('create', 'entry-durable') });
    await assert.rejects(crashed.create('lost'), SimulatedCrash);
    assert.ok(crashed.fileInfo('lost'), 'the entry was made first');
    assert.ok((await loadDictionary()).has('lost'), 'and it is on disk');
    assert.equal(await crashed.exists('lost'), false, 'no data file before its entry');

    const cap = captureLogger();
    await withEnv({ logger: cap.logger }, async (env) => {
      assert.equal(env.fileInfo('lost'), undefined);
      assert.deepEqual(trackedNames(env), ['keep']);
      assert.equal((await env.readFile('keep')).toString(), 'kept');
      await env.writeFile('lost', Buffer.from('now it exists'));
      assert.equal((await env.readFile('lost')).toString(), 'now it exists');
    });
    assert.equal(cap.lines.filter((l) => l.level >= 50).length, 0);
    await crashed.close();
  });

  for (const step of ['entry-linked', 'renamed']) {
    for (const targetExists of [false, true]) {
      test(`rename: a crash at '${step}' ${targetExists ? 'over an existing target' : 'to a new name'} leaves every name readable`, async () => {
        const a = markedData(3000);
        const b = markedData(1000);
        const setup = await open();
        await setup.writeFile('a', a);
        if (targetExists) await setup.writeFile('b', b);
        const ivA = setup.fileInfo('a')!.iv;
        const ivB = setup.fileInfo('b')?.iv;
        await setup.close();

        const crashed = await open({ exclusive: false, faults: crashAt('rename', step) });
        await assert.rejects(crashed.rename('a', 'b'), SimulatedCrash);

        await withEnv({}, async (env) => {
          const onDisk = await namesOnDisk();
          const renamed = step === 'renamed';
          assert.deepEqual(onDisk, renamed ? ['b'] : targetExists ? ['a', 'b'] : ['a']);
          assert.deepEqual(trackedNames(env), onDisk, 'no stale entries, no untracked files');
          assert.deepEqual(await env.list(), onDisk);
          if (onDisk.includes('a')) {
            assert.ok((await env.readFile('a')).equals(a));
            assert.ok(env.fileInfo('a')!.iv.equals(ivA));
          }
          if (onDisk.includes('b')) {
            const expected = renamed ? a : b;
            assert.ok((await env.readFile('b')).equals(expected));
            assert.ok(env.fileInfo('b')!.iv.equals(renamed ? ivA : ivB!));
          }
          // The recovered dictionary on disk is clean: no rename left in flight.
          const onDiskDict = await loadDictionary();
          assert.deepEqual([...onDiskDict.entries()].map(([p]) => p).sort(), onDisk);
          assert.ok([...onDiskDict.entries()].every(([, e]) => e.pending === undefined), 'a rename is still pending');
          // Finishing the interrupted rename works.
          if (!renamed) {
            await env.rename('a', 'b');
            assert.deepEqual(await namesOnDisk(), ['b']);
            assert.ok((await env.readFile('b')).equals(a));
          }
        });
        await crashed.close();
        await withEnv({}, async (env) => {
          assert.deepEqual(trackedNames(env), ['b']);
          assert.ok((await env.readFile('b')).equals(a));
        });
      });
    }
  }

  test('rename without a crash: replaces the target, keeps key and IV, entries follow', async () => {
    await withEnv({}, async (env) => {
      const a = markedData(500);
      await env.writeFile('a', a);
      await env.writeFile('b', markedData(100));
      const info = env.fileInfo('a')!;
      await env.mkdir('sub/dir');
      await env.rename('a', 'sub/dir/c');
      assert.deepEqual(trackedNames(env), ['b', 'sub/dir/c']);
      assert.deepEqual(env.fileInfo('sub/dir/c'), info);
      await env.rename('sub/dir/c', 'b');
      assert.deepEqual(trackedNames(env), ['b']);
      assert.ok((await env.readFile('b')).equals(a));
      await assert.rejects(env.rename('nope', 'x'), expectCode('FILE_NOT_TRACKED'));
    });
  });

  test('link: both names readable; removing one keeps the other; a crash before the link drops the entry', async () => {
    const data = markedData(4000);
    await withEnv({}, async (env) => {
      await env.writeFile('a', data);
      await env.link('a', 'b');
      assert.ok((await env.readFile('a')).equals(data));
      assert.ok((await env.readFile('b')).equals(data));
      assert.deepEqual(env.fileInfo('b'), env.fileInfo('a'), 'one inode, one (key, IV) stream');
      await assert.rejects(env.link('a', 'b'), expectCode('FILE_EXISTS'));
      await env.remove('a');
      assert.equal(await env.exists('a'), false);
      assert.ok((await env.readFile('b')).equals(data));
    });
    await withEnv({}, async (env) => {
      // rename() onto another name of the same file: POSIX does nothing, the env removes `from`.
      await env.link('b', 'b2');
      await env.rename('b', 'b2');
      assert.equal(await env.exists('b'), false);
      assert.deepEqual(trackedNames(env), ['b2']);
      assert.ok((await env.readFile('b2')).equals(data));
      await env.rename('b2', 'b');
    });
    const crashed = await open({ exclusive: false, faults: crashAt('link', 'entry-linked') });
    await assert.rejects(crashed.link('b', 'c'), SimulatedCrash);
    await withEnv({}, async (env) => {
      assert.deepEqual(trackedNames(env), ['b']);
      assert.deepEqual(await namesOnDisk(), ['b']);
      assert.ok((await env.readFile('b')).equals(data));
    });
    await crashed.close();
  });

  test('remove: file and entry go; a crash between the two leaves a stale entry that reopen drops', async () => {
    const crashed = await open({ exclusive: false, faults: crashAt('remove', 'unlinked') });
    await crashed.writeFile('a', Buffer.from('a'));
    await crashed.writeFile('b', Buffer.from('b'));
    await crashed.writeFile('c', Buffer.from('c'));
    // Without a fault for this operation name, remove completes.
    await assert.rejects(crashed.remove('a'), SimulatedCrash);
    assert.equal(await crashed.exists('a'), false);
    assert.ok(crashed.fileInfo('a'), 'the entry outlives the file until the second step');

    await withEnv({}, async (env) => {
      assert.deepEqual(trackedNames(env), ['b', 'c']);
      await env.remove('b');
      assert.equal(env.fileInfo('b'), undefined);
      assert.equal(await env.exists('b'), false);
      assert.deepEqual(await env.list(), ['c']);
      await assert.rejects(env.remove('b'), expectCode('FILE_NOT_FOUND'));
      await assert.rejects(env.openRead('b'), expectCode('FILE_NOT_TRACKED'));
    });
    await crashed.close();
    await withEnv({}, async (env) => assert.deepEqual(trackedNames(env), ['c']));
  });

  test('an untracked file is FILE_NOT_TRACKED, never read as plaintext, and is not adopted later', async () => {
    await withEnv({}, async (env) => {
      await env.writeFile('real', Buffer.from('tracked'));
      await writeFile(join(dataDir, 'intruder'), 'looks like plaintext');
      await assert.rejects(env.openRead('intruder'), expectCode('FILE_NOT_TRACKED', 'intruder', 'never reads such a file as plaintext'));
      await assert.rejects(env.readFile('intruder'), expectCode('FILE_NOT_TRACKED'));
    });
    await withEnv({}, async (env) => {
      assert.equal(env.fileInfo('intruder'), undefined, 'only a brand-new data dir adopts files');
      await assert.rejects(env.readFile('intruder'), expectCode('FILE_NOT_TRACKED'));
    });
  });

  test('the data dir can be moved: dictionary paths are relative', async () => {
    const files = new Map([
      ['a', markedData(10)],
      ['sub/b', markedData(70_000)],
      ['sub/deeper/c', markedData(5)],
    ]);
    await withEnv({}, async (env) => {
      await env.mkdir('sub/deeper');
      for (const [p, d] of files) await env.writeFile(p, d);
    });
    for (const name of [SNAPSHOT_NAME, LOG_NAME, KEY_DICT_NAME]) {
      assert.equal((await readFile(join(dataDir, META_DIR, name))).indexOf(Buffer.from(root)), -1, `${name} holds an absolute path`);
    }
    const moved = join(root, 'elsewhere', 'data');
    await mkdir(join(root, 'elsewhere'));
    await rename(dataDir, moved);
    dataDir = moved;
    await withEnv({}, async (env) => {
      assert.deepEqual(trackedNames(env), [...files.keys()].sort());
      for (const [p, d] of files) assert.ok((await env.readFile(p)).equals(d), p);
    });
  });

  test('turning encryption on: old plaintext files stay readable and plaintext, new files are encrypted; stats count both', async () => {
    const p1 = markedData(2000);
    const p2 = markedData(3000);
    await withEnv({ method: 'plaintext' }, async (env) => {
      await env.writeFile('p1', p1);
      await env.writeFile('p2', p2);
      assert.equal(new KeyAdmin(env).currentDataKey(), undefined);
      assert.deepEqual(env.stats(), { files: 2, byMethod: { plaintext: 2 }, byKeyId: { 0: 2 } });
    });
    assert.ok((await readFile(join(dataDir, 'p1'))).equals(p1));
    const n1 = markedData(5000);
    await withEnv({ method: 'aes256-ctr' }, async (env) => {
      assert.deepEqual(env.fileInfo('p1')!.method, 'plaintext');
      assert.ok((await env.readFile('p1')).equals(p1));
      assert.ok((await env.readFile('p2')).equals(p2));
      await env.writeFile('n1', n1);
      const key = new KeyAdmin(env).currentDataKey()!;
      assert.equal(key.method, 'aes256-ctr');
      assert.deepEqual(env.fileInfo('n1')!.method, 'aes256-ctr');
      assert.equal(env.fileInfo('n1')!.keyId, key.id);
      assert.equal((await readFile(join(dataDir, 'n1'))).indexOf(MARKER), -1);
      assert.deepEqual(env.stats(), { files: 3, byMethod: { plaintext: 2, 'aes256-ctr': 1 }, byKeyId: { 0: 2, [key.id]: 1 } });

      // A method change rotates to a key of the new method for new files only.
      await env.writeFile('n2', n1);
    });
    await withEnv({ method: 'sm4-ctr' }, async (env) => {
      await env.writeFile('n3', n1);
      assert.equal(env.fileInfo('n3')!.method, 'sm4-ctr');
      assert.equal(env.fileInfo('n1')!.method, 'aes256-ctr');
      for (const n of ['n1', 'n2', 'n3']) assert.ok((await env.readFile(n)).equals(n1));
      const s = env.stats();
      assert.deepEqual(s.byMethod, { plaintext: 2, 'aes256-ctr': 2, 'sm4-ctr': 1 });
      assert.equal(s.files, 5);
      assert.equal(Object.keys(s.byKeyId).length, 3);
    });
  });

  test('a brand-new data dir with existing files is refused unless adoption is asked for, then adopts them as plaintext', async () => {
    await mkdir(join(dataDir, 'sub', 'deeper'), { recursive: true });
    const files = new Map([
      ['old1', markedData(100)],
      ['sub/old2', markedData(200)],
      ['sub/deeper/old3', Buffer.alloc(0)],
    ]);
    for (const [p, d] of files) await writeFile(join(dataDir, p), d);
    // They might be encrypted files whose encryption-meta/ was lost: never assume plaintext.
    const before = await snapshotTree(root);
    await assert.rejects(open(), expectCode('FILE_NOT_TRACKED', 'holds 3 file(s)', 'adopt-plaintext-files', 'restore it from a backup'));
    assertSameTree(await snapshotTree(root), before, 'a refused first open');
    const cap = captureLogger();
    await withEnv({ logger: cap.logger, adoptPlaintextFiles: true }, async (env) => {
      assert.deepEqual(trackedNames(env), [...files.keys()].sort());
      for (const [p, d] of files) {
        assert.equal(env.fileInfo(p)!.method, 'plaintext');
        assert.equal(env.fileInfo(p)!.keyId, 0);
        assert.ok((await env.readFile(p)).equals(d));
      }
      await env.writeFile('new', markedData(100));
      assert.equal(env.fileInfo('new')!.method, 'aes256-ctr');
    });
    assert.ok(cap.lines.some((l) => /adopted existing files as plaintext/.test(l.msg) && l['files'] === 3));
    // The adopted files are unchanged on disk.
    for (const [p, d] of files) assert.ok((await readFile(join(dataDir, p))).equals(d));
  });

  for (const crashAfter of ['key.dict', 'file.dict']) {
    test(`a first open that crashed after writing ${crashAfter} still adopts the existing files on the next open`, async () => {
      await mkdir(dataDir);
      const plain = markedData(500);
      await writeFile(join(dataDir, 'preexisting'), plain);
      // What the first open had written when it crashed (before adopting anything).
      const metaDir = join(dataDir, META_DIR);
      await mkdir(metaDir);
      const keys = await DataKeyStore.open({ path: join(metaDir, KEY_DICT_NAME), masterKey, logger: silentLogger() });
      const macKey = keys.dictMacKey()!;
      keys.close();
      if (crashAfter === 'file.dict') {
        const dict = await FileDictionary.load({ dir: metaDir, useLog: true, rewriteThreshold: 1_000_000, logger: silentLogger(), macKey });
        await dict.beginWrites();
        await dict.close();
      }
      await assert.rejects(open(), expectCode('FILE_NOT_TRACKED', 'preexisting'));
      await withEnv({ adoptPlaintextFiles: true }, async (env) => {
        assert.equal(env.fileInfo('preexisting')?.method, 'plaintext');
        assert.ok((await env.readFile('preexisting')).equals(plain));
      });
    });
  }

  test('a data dir that ever had a data key adopts nothing: untracked files stay untracked', async () => {
    await withEnv({}, async (env) => {
      await env.writeFile('f', Buffer.from('f'));
      await env.remove('f');
    });
    await writeFile(join(dataDir, 'dropped-in'), 'x');
    await withEnv({}, async (env) => {
      assert.equal(env.stats().files, 0);
      await assert.rejects(env.readFile('dropped-in'), expectCode('FILE_NOT_TRACKED'));
    });
  });

  test('data key rotation: new files use the new key, old files stay readable; unused keys retire only when no file uses them', async () => {
    const d1 = markedData(1000);
    const d2 = markedData(1000);
    const { k1, k2 } = await withEnv({}, async (env) => {
      await env.writeFile('f1', d1);
      const k1 = env.fileInfo('f1')!.keyId;
      assert.equal(new KeyAdmin(env).currentDataKey()!.id, k1);
      const rotated = await new KeyAdmin(env).rotateDataKey();
      const k2 = rotated.id;
      assert.notEqual(k2, k1);
      assert.equal(rotated.method, 'aes256-ctr');
      assert.equal(new KeyAdmin(env).currentDataKey()!.id, k2);
      assert.ok(!('key' in rotated), 'key metadata only');
      await env.writeFile('f2', d2);
      assert.equal(env.fileInfo('f2')!.keyId, k2);
      assert.ok((await env.readFile('f1')).equals(d1));

      assert.deepEqual(await new KeyAdmin(env).retireUnusedKeys(), [], 'k1 is in use, k2 is current');
      assert.deepEqual(new Set(new KeyAdmin(env).dataKeys().map((k) => k.id)), new Set([k1, k2]));
      // A key no file used retires at once; the current one never does.
      const k3 = (await new KeyAdmin(env).rotateDataKey()).id;
      const k4 = (await new KeyAdmin(env).rotateDataKey()).id;
      assert.deepEqual(await new KeyAdmin(env).retireUnusedKeys(), [k3]);
      assert.deepEqual(new Set(new KeyAdmin(env).dataKeys().map((k) => k.id)), new Set([k1, k2, k4]));
      return { k1, k2 };
    });
    await withEnv({}, async (env) => {
      assert.ok((await env.readFile('f1')).equals(d1));
      assert.ok((await env.readFile('f2')).equals(d2));
      await env.remove('f1');
      assert.deepEqual(await new KeyAdmin(env).retireUnusedKeys(), [k1]);
      assert.ok(!new KeyAdmin(env).dataKeys().some((k) => k.id === k1));
      assert.ok(new KeyAdmin(env).dataKeys().some((k) => k.id === k2), 'f2 still needs k2');
    });
    await withEnv({}, async (env) => {
      assert.ok(!new KeyAdmin(env).dataKeys().some((k) => k.id === k1), 'retirement is durable');
      assert.ok((await env.readFile('f2')).equals(d2));
    });
  });

  test('master key rotation online: the new key file opens the data dir, the old one no longer does', async () => {
    const data = markedData(2000);
    const next = await newFileMasterKey(root, 'next.key');
    const old = masterKey;
    try {
      await withEnv({}, async (env) => {
        await env.writeFile('before', data);
        await new KeyAdmin(env).rotateMasterKey(next);
        assert.equal(new KeyAdmin(env).masterKey, next);
        await env.writeFile('after', data);
        assert.ok((await env.readFile('before')).equals(data));
      });
      await withEnv({ masterKey: next }, async (env) => {
        for (const n of ['before', 'after']) assert.ok((await env.readFile(n)).equals(data));
      });
      const before = await snapshotTree(root);
      await assert.rejects(open({ masterKey: old }), expectCode('MASTER_KEY_WRONG', join(root, 'master.key')));
      assertSameTree(await snapshotTree(root), before, 'a refused open');
    } finally {
      next.close();
    }
  });

  test('previous-master-key: the env opens with the new key and re-seals', async () => {
    await withEnv({}, async (env) => env.writeFile('x', Buffer.from('x')));
    const next = await newFileMasterKey(root, 'next.key');
    try {
      await withEnv({ masterKey: next, previousMasterKey: masterKey }, async (env) => assert.equal((await env.readFile('x')).toString(), 'x'));
      await withEnv({ masterKey: next }, async (env) => assert.equal((await env.readFile('x')).toString(), 'x'));
    } finally {
      next.close();
    }
  });

  test('paths: absolute, escaping and reserved paths are INVALID_PATH; list() hides the dictionaries', async () => {
    await withEnv({}, async (env) => {
      await env.writeFile('ok', Buffer.from('ok'));
      const before = await snapshotTree(join(dataDir, META_DIR));
      const bad = ['/etc/passwd', join(root, 'x'), '..', '../x', 'a/../../x', 'encryption-meta', 'encryption-meta/x', `encryption-meta/${KEY_DICT_NAME}`, './encryption-meta/file.dict', 'a/../encryption-meta/x', '', '.'];
      for (const p of bad) {
        await assert.rejects(env.create(p), expectCode('INVALID_PATH'), `create ${JSON.stringify(p)}`);
        await assert.rejects(env.openRead(p), expectCode('INVALID_PATH'), `openRead ${JSON.stringify(p)}`);
        await assert.rejects(env.remove(p), expectCode('INVALID_PATH'), `remove ${JSON.stringify(p)}`);
        await assert.rejects(env.rename('ok', p), expectCode('INVALID_PATH'), `rename to ${JSON.stringify(p)}`);
        await assert.rejects(env.link('ok', p), expectCode('INVALID_PATH'), `link to ${JSON.stringify(p)}`);
      }
      assertSameTree(await snapshotTree(join(dataDir, META_DIR)), before, 'the dictionaries after refused paths');
      assert.deepEqual(await env.list(), ['ok']);
      assert.deepEqual(await env.list('.'), ['ok']);
      await env.mkdir('sub');
      await env.writeFile('sub//x', Buffer.from('x'));
      assert.deepEqual(await env.list('sub'), ['x']);
      assert.deepEqual(await env.list(), ['ok', 'sub']);
      assert.equal(env.fileInfo('sub/./x')?.method, 'aes256-ctr');
      await assert.rejects(env.list('encryption-meta'), expectCode('INVALID_PATH'));
    });
  });

  test('a missing key.dict while file.dict lists encrypted files is KEY_DICTIONARY_DAMAGED, and nothing is written', async () => {
    await withEnv({}, async (env) => env.writeFile('enc', markedData(100)));
    await rm(join(dataDir, META_DIR, KEY_DICT_NAME));
    await rm(join(dataDir, META_DIR, KEY_DICT_NAME + '.copy'));
    const before = await snapshotTree(root);
    await assert.rejects(open(), expectCode('KEY_DICTIONARY_DAMAGED', join(dataDir, META_DIR, KEY_DICT_NAME), 'restore'));
    await assert.rejects(open({ readOnly: true }), expectCode('KEY_DICTIONARY_DAMAGED'));
    assertSameTree(await snapshotTree(root), before, 'a refused open');
  });

  test('a wrong master key is MASTER_KEY_WRONG and no byte under the data dir changes', async () => {
    await withEnv({}, async (env) => {
      await env.writeFile('a', markedData(100));
      await env.remove('a');
      await env.writeFile('b', markedData(100));
    });
    // Leftovers that a successful open would clean up must survive a failed one too.
    await writeFile(join(dataDir, META_DIR, `${SNAPSHOT_NAME}.tmp`), 'stray');
    await writeFile(join(dataDir, META_DIR, LOG_NAME), Buffer.alloc(10), { flag: 'a' });
    const before = await snapshotTree(root);
    const wrong = await newFileMasterKey(root, 'wrong.key');
    const after = await snapshotTree(root);
    try {
      await assert.rejects(open({ masterKey: wrong }), expectCode('MASTER_KEY_WRONG', 'authentication failed', join(root, 'wrong.key')));
    } finally {
      wrong.close();
    }
    before.set('wrong.key', after.get('wrong.key')!);
    assertSameTree(await snapshotTree(root), before, 'a refused open');
  });

  test('read-only: reads work, every write is refused, and nothing on disk changes', async () => {
    const data = markedData(3000);
    await withEnv({}, async (env) => {
      await env.writeFile('a', data);
      await env.writeFile('b', data);
    });
    const before = await snapshotTree(root);
    const env = await open({ readOnly: true, method: 'sm4-ctr', rotationPeriodMs: 1 });
    try {
      assert.ok((await env.readFile('a')).equals(data));
      assert.deepEqual(trackedNames(env), ['a', 'b']);
      const refused = expectCode('INVALID_ARGUMENT', 'read-only');
      await assert.rejects(env.create('c'), refused);
      await assert.rejects(env.writeFile('c', data), refused);
      await assert.rejects(env.remove('a'), refused);
      assert.ok(await env.exists('a'), 'a refused remove must not unlink the file');
      await assert.rejects(env.rename('a', 'c'), refused);
      await assert.rejects(env.link('a', 'c'), refused);
      await assert.rejects(env.mkdir('newdir'), refused);
      await assert.rejects(new KeyAdmin(env).rotateDataKey(), refused);
      await assert.rejects(new KeyAdmin(env).retireUnusedKeys(), refused);
      await assert.rejects(new KeyAdmin(env).rotateMasterKey(masterKey), refused);
      assert.ok((await env.readFile('a')).equals(data), 'still readable after refused writes');
    } finally {
      await env.close();
    }
    assertSameTree(await snapshotTree(root), before, 'a read-only session');
  });

  test('read-only on a directory that is not a data dir creates nothing', async () => {
    await mkdir(dataDir);
    await assert.rejects(open({ readOnly: true }), expectCode('FILE_NOT_FOUND', dataDir));
    assert.deepEqual(await readdir(dataDir), []);
  });

  test('KMS unreachable on the first open: MASTER_KEY_UNAVAILABLE and the data dir is left as it was', async () => {
    await mkdir(dataDir);
    await writeFile(join(dataDir, 'preexisting'), 'plain');
    const before = await snapshotTree(root);
    const kms = new KmsMasterKey({ type: 'kms', keyId: 'arn:aws:kms:eu-west-1:111122223333:key/unreachable', region: 'eu-west-1', endpoint: `http://127.0.0.1:${await closedPort()}`, timeoutMs: 500, maxAttempts: 1 });
    try {
      await assert.rejects(open({ masterKey: kms, adoptPlaintextFiles: true }), expectCode('MASTER_KEY_UNAVAILABLE'));
    } finally {
      kms.close();
    }
    assertSameTree(await snapshotTree(root), before, 'a failed first open');
    // The next attempt is still a first open: the existing file can be adopted.
    await withEnv({ adoptPlaintextFiles: true }, async (env) => assert.equal((await env.readFile('preexisting')).toString(), 'plain'));
  });

  test('reencrypt moves files onto the current key and method, content unchanged; then the old key retires', async () => {
    const files = new Map([
      ['a', markedData(3 * 1024 * 1024 + 5)],
      ['sub/b', markedData(100)],
      ['empty', Buffer.alloc(0)],
    ]);
    await withEnv({ method: 'plaintext' }, async (env) => {
      await env.mkdir('sub');
      for (const [p, d] of files) await env.writeFile(p, d);
    });
    await withEnv({}, async (env) => {
      await env.writeFile('new', markedData(10));
      const oldKey = new KeyAdmin(env).currentDataKey()!.id;
      await new KeyAdmin(env).rotateDataKey();
      const current = new KeyAdmin(env).currentDataKey()!.id;
      assert.deepEqual(env.filesNotOnCurrentKey().sort(), ['a', 'empty', 'new', 'sub/b']);
      let bytes = 0;
      for (const p of env.filesNotOnCurrentKey()) assert.equal(await env.reencrypt(p, (n) => (bytes += n)), true);
      assert.equal(bytes, [...files.values()].reduce((n, d) => n + d.length, 0) + 10);
      assert.deepEqual(env.filesNotOnCurrentKey(), []);
      assert.equal(await env.reencrypt('a'), false, 'already on the current key');
      for (const [p, d] of files) {
        assert.deepEqual({ method: env.fileInfo(p)!.method, keyId: env.fileInfo(p)!.keyId }, { method: 'aes256-ctr', keyId: current });
        assert.ok((await env.readFile(p)).equals(d));
        const onDisk = await readFile(join(dataDir, p));
        if (d.length > 0) assert.equal(onDisk.indexOf(MARKER), -1, `${p} is ciphertext now`);
      }
      assert.deepEqual(await new KeyAdmin(env).retireUnusedKeys(), [oldKey]);
      assert.deepEqual(await namesOnDisk(), ['a', 'empty', 'new', 'sub/b']);
    });
  });

  test('a crash during reencrypt leaves the original intact and no leftover copy after reopening', async () => {
    const data = markedData(200_000);
    await withEnv({}, async (env) => {
      await env.writeFile('f', data);
      await new KeyAdmin(env).rotateDataKey();
    });
    for (const [op, step] of [
      ['reencrypt', 'copied'],
      ['rename', 'entry-linked'],
      ['rename', 'renamed'],
    ] as const) {
      const crashed = await open({ exclusive: false, faults: crashAt(op, step) });
      const before = crashed.fileInfo('f')!;
      await assert.rejects(crashed.reencrypt('f'), SimulatedCrash, `${op}/${step}`);
      await withEnv({}, async (env) => {
        assert.ok((await env.readFile('f')).equals(data), `${op}/${step}: content`);
        assert.deepEqual(await namesOnDisk(), ['f'], `${op}/${step}: no leftover copy`);
        assert.deepEqual(trackedNames(env), ['f']);
        const after = env.fileInfo('f')!;
        // Before the rename took effect the old file stays; after it, the new one is complete.
        if (step === 'renamed') assert.notDeepEqual(after.iv, before.iv);
        else assert.deepEqual(after, before);
      });
      await crashed.close();
    }
  });

  test('no key material and no file content ever reaches the logs or error messages (invariant 8)', async () => {
    const cap = captureLogger();
    const data = markedData(5000);
    const next = await writeKeyFile(root, 'next.key');
    const errors: string[] = [];
    await withEnv({ logger: cap.logger }, async (env) => {
      await env.writeFile('f', data);
      await new KeyAdmin(env).rotateDataKey();
      await env.reencrypt('f');
      await new KeyAdmin(env).retireUnusedKeys();
      await new KeyAdmin(env).rotateMasterKey(await FileMasterKey.load(next.path));
      await env.readFile('nope').catch((e: Error) => errors.push(e.message));
      await env.create('f').catch((e: Error) => errors.push(e.message));
    });
    const wrongKey = await newFileMasterKey(root, 'wrong.key');
    await open({ masterKey: wrongKey, logger: cap.logger }).catch((e: Error) => errors.push(e.message));
    const secrets = (await withEnv({ masterKey: await FileMasterKey.load(next.path) }, async (env) => new KeyAdmin(env).exportDataKeys())).map((k) => k.key.toString('hex'));
    const masterHexes = [next.hex, (await readFile(join(root, 'master.key'), 'latin1')).trim()];
    const text = JSON.stringify(cap.lines) + errors.join('\n');
    assert.ok(cap.lines.length >= 4, 'the lifecycle was logged');
    assert.ok(errors.length === 3, errors.join(' | '));
    for (const secret of [...secrets, ...masterHexes]) {
      assert.equal(text.includes(secret), false, 'a key in the logs');
      assert.equal(text.includes(Buffer.from(secret, 'hex').toString('base64')), false, 'a key in base64 in the logs');
    }
    assert.equal(text.includes(MARKER.toString()), false, 'file content in the logs');
  });

  test('an open reader keeps its own copy of the key: retiring keys or closing the env does not garble it', async () => {
    const data = markedData(10_000);
    const env = await open();
    await env.writeFile('old', data);
    const reader = await env.openRead('old');
    await new KeyAdmin(env).rotateDataKey();
    await env.remove('old');
    assert.equal((await new KeyAdmin(env).retireUnusedKeys()).length, 1);
    await env.close();
    assert.ok(reader.readSync(0, data.length).equals(data));
    assert.ok((await reader.read(5000, 100)).equals(data.subarray(5000, 5100)));
    reader.close();
    assert.throws(() => reader.readSync(0, 1), expectCode('CLOSED'));
  });

  test('a closed env refuses everything with CLOSED', async () => {
    const env = await open();
    await env.writeFile('a', Buffer.from('a'));
    await env.close();
    await env.close(); // idempotent
    await assert.rejects(env.create('b'), expectCode('CLOSED'));
    await assert.rejects(env.openRead('a'), expectCode('CLOSED'));
    await assert.rejects(env.remove('a'), expectCode('CLOSED'));
    await assert.rejects(new KeyAdmin(env).rotateDataKey(), expectCode('CLOSED'));
    assert.equal((await stat(join(dataDir, 'a'))).size, 1);
  });
});
