import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { DataKeyStore } from '../src/keys/data-key-store.js';
import { newKeyId, type RotationPolicy } from '../src/keys/data-key.js';
import { decodeSealedFile } from '../src/keys/key-dictionary-format.js';
import { FileMasterKey } from '../src/masterkey/file.js';
import { KmsMasterKey } from '../src/masterkey/kms.js';
import type { MasterKey } from '../src/masterkey/master-key.js';
import { PlaintextMasterKey } from '../src/masterkey/plaintext.js';
import { silentLogger, type Logger } from '../src/log/logger.js';
import { FakeKms, closedPort } from './support/fake-kms.js';
import { captureLogger, cleanup, expectCode, newFileMasterKey, tempDir, writeKeyFile } from './support/fs-helpers.js';

const KMS_A = 'arn:aws:kms:eu-west-1:111122223333:key/aaaaaaaa-0000-0000-0000-00000000000a';
const KMS_B = 'arn:aws:kms:eu-west-1:111122223333:key/bbbbbbbb-0000-0000-0000-00000000000b';
const DAY = 24 * 3600 * 1000;
const AES256: RotationPolicy = { method: 'aes256-ctr', periodMs: 7 * DAY, masterKeyProtects: true };

let kms: FakeKms;
let dir: string;
let dictPath: string;

before(async () => {
  kms = await new FakeKms([KMS_A, KMS_B]).start();
});

after(async () => {
  await kms.close();
});

beforeEach(async () => {
  kms.deny = false;
  kms.hang = false;
  kms.failNext(0);
  resetKmsCalls();
});

function resetKmsCalls(): void {
  for (const op of Object.keys(kms.calls) as Array<keyof FakeKms['calls']>) kms.calls[op] = 0;
}

function kmsKey(keyId: string, endpoint = kms.url): KmsMasterKey {
  return new KmsMasterKey({ type: 'kms', keyId, region: 'eu-west-1', endpoint, timeoutMs: 1000, maxAttempts: 2 });
}

function open(masterKey: MasterKey, previousMasterKey?: MasterKey, logger: Logger = silentLogger(), readOnly = false): Promise<DataKeyStore> {
  return DataKeyStore.open({ path: dictPath, masterKey, ...(previousMasterKey ? { previousMasterKey } : {}), logger, readOnly });
}

/** Opens, runs `fn`, always closes. */
async function withStore<T>(mk: MasterKey, fn: (s: DataKeyStore) => Promise<T>, previous?: MasterKey): Promise<T> {
  const s = await open(mk, previous);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}

/** key.dict and its copy: both must be damaged before the dictionary is lost (issue 9 item 15). */
async function writeBoth(bytes: Uint8Array): Promise<void> {
  await writeFile(dictPath, bytes);
  await writeFile(dictPath + '.copy', bytes);
}

/** Key material as a comparable, copied structure. */
function snapshotKeys(s: DataKeyStore): Array<{ id: number; method: string; createdAtMs: number; exposed: boolean; key: string }> {
  return s
    .exportKeys()
    .map((k) => ({ id: k.id, method: k.method, createdAtMs: k.createdAtMs, exposed: k.exposed, key: k.key.toString('hex') }))
    .sort((a, b) => a.id - b.id);
}

/** A dictionary with three keys sealed under `mk`; returns its bytes. */
async function populate(mk: MasterKey): Promise<Buffer> {
  await withStore(mk, async (s) => {
    await s.current(AES256);
    await s.rotate('aes128-ctr');
    await s.rotate('sm4-ctr');
  });
  return readFile(dictPath);
}

describe('DataKeyStore', () => {
  beforeEach(async () => {
    if (dir) await cleanup(dir);
    dir = await tempDir();
    dictPath = join(dir, 'key.dict');
  });

  after(async () => {
    if (dir) await cleanup(dir);
  });

  test('creation then reopen with the same key file gives the same keys; key.dict is 0600 and holds no key bytes', async () => {
    const { path: keyPath, hex } = await writeKeyFile(dir);
    const first = await open(await FileMasterKey.load(keyPath));
    const k1 = await first.current(AES256);
    assert.ok(k1);
    const k2 = await first.rotate('aes128-ctr');
    const before = snapshotKeys(first);
    first.close();
    assert.equal(before.length, 2);
    assert.equal((await stat(dictPath)).mode & 0o777, 0o600);

    const raw = await readFile(dictPath);
    for (const k of before) assert.equal(raw.indexOf(Buffer.from(k.key, 'hex')), -1, `key ${k.id} is stored in the clear`);
    assert.equal(raw.indexOf(Buffer.from(hex, 'hex')), -1);
    assert.equal(raw.indexOf(Buffer.from(hex)), -1);

    await withStore(await FileMasterKey.load(keyPath), async (s) => {
      assert.deepEqual(snapshotKeys(s), before);
      assert.equal(s.currentKeyId, k2.id);
      assert.ok(s.has(k1.id));
      assert.equal(s.get(k2.id).method, 'aes128-ctr');
    });
    // Reopening does not rewrite the file.
    assert.ok((await readFile(dictPath)).equals(raw));
  });

  test('an unknown key id is DATA_KEY_MISSING naming the id and the file', async () => {
    await withStore(await newFileMasterKey(dir), async (s) => {
      assert.throws(() => s.get(12345), expectCode('DATA_KEY_MISSING', '12345', dictPath));
    });
  });

  test('a wrong file master key is MASTER_KEY_WRONG (authentication failed) and key.dict is unchanged', async () => {
    const bytes = await populate(await newFileMasterKey(dir, 'a.key'));
    const wrong = await newFileMasterKey(dir, 'b.key');
    await assert.rejects(open(wrong), expectCode('MASTER_KEY_WRONG', dictPath, 'authentication failed', join(dir, 'b.key')));
    assert.ok((await readFile(dictPath)).equals(bytes));
    assert.deepEqual((await readdir(dir)).sort(), ['a.key', 'b.key', 'key.dict', 'key.dict.copy']);
  });

  test('a flipped byte anywhere in key.dict is KEY_DICTIONARY_DAMAGED, never a wrong key or a newer format', async () => {
    const mk = await newFileMasterKey(dir, 'a.key');
    const wrong = await newFileMasterKey(dir, 'b.key');
    const good = await populate(mk);
    const sealed = decodeSealedFile(good);
    // Sanity for the positions below: header, nonce, ciphertext, tag and CRC all get hit.
    assert.ok(sealed.sealed.ciphertext.length > 100);
    for (let offset = 0; offset < good.length; offset++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = Buffer.from(good);
        bad[offset]! ^= mask;
        await writeBoth(bad);
        for (const key of [mk, wrong]) {
          await assert.rejects(open(key), (err) => {
            expectCode('KEY_DICTIONARY_DAMAGED', dictPath, 'not a wrong master key')(err);
            return true;
          }, `offset ${offset} mask ${mask}`);
        }
        assert.ok((await readFile(dictPath)).equals(bad), 'a failed open must not touch the file');
      }
    }
    await writeBoth(good);
    await withStore(mk, async (s) => assert.equal(s.list().length, 3));
  });

  test('a truncated or extended key.dict is KEY_DICTIONARY_DAMAGED', async () => {
    const mk = await newFileMasterKey(dir);
    const good = await populate(mk);
    const lengths = [0, 1, 8, 9, 10, 11, 15, 30, good.length - 20, good.length - 16, good.length - 5, good.length - 4, good.length - 1];
    for (const len of lengths) {
      await writeBoth(good.subarray(0, len));
      await assert.rejects(open(mk), expectCode('KEY_DICTIONARY_DAMAGED', dictPath), `length ${len}`);
    }
    await writeBoth(Buffer.concat([good, Buffer.of(0)]));
    await assert.rejects(open(mk), expectCode('KEY_DICTIONARY_DAMAGED', dictPath));
  });

  test('a newer format version with a valid checksum is FORMAT_TOO_NEW', async () => {
    const mk = await newFileMasterKey(dir);
    const good = await populate(mk);
    const newer = Buffer.from(good);
    newer.writeUInt16LE(3, 8);
    newer.writeUInt32LE(crc32(newer.subarray(0, newer.length - 4)) >>> 0, newer.length - 4);
    await writeBoth(newer);
    await assert.rejects(open(mk), expectCode('FORMAT_TOO_NEW', dictPath, 'version 3'));
    assert.ok((await readFile(dictPath)).equals(newer));
  });

  test('previous-master-key opens a dictionary sealed under it and re-seals under the current key', async () => {
    const a = await newFileMasterKey(dir, 'a.key');
    const b = await newFileMasterKey(dir, 'b.key');
    const sealedUnderA = await populate(a);
    const keysBefore = await withStore(a, async (s) => snapshotKeys(s));

    const cap = captureLogger();
    const s = await open(b, a, cap.logger);
    assert.equal(s.masterKey, b);
    assert.deepEqual(snapshotKeys(s), keysBefore);
    s.close();
    assert.ok(!(await readFile(dictPath)).equals(sealedUnderA), 'the dictionary must be re-sealed');
    assert.ok(cap.lines.some((l) => l.msg.includes('re-sealed under the current master key')));

    await withStore(b, async (s2) => assert.deepEqual(snapshotKeys(s2), keysBefore));
    await assert.rejects(open(a), expectCode('MASTER_KEY_WRONG', 'authentication failed'));
  });

  test('when neither current nor previous master key fits, MASTER_KEY_WRONG names both and nothing changes', async () => {
    const bytes = await populate(await newFileMasterKey(dir, 'sealer.key'));
    const c = await newFileMasterKey(dir, 'c.key');
    const d = await newFileMasterKey(dir, 'd.key');
    await assert.rejects(
      open(c, d),
      expectCode('MASTER_KEY_WRONG', dictPath, `master-key (file ${join(dir, 'c.key')})`, `previous-master-key (file ${join(dir, 'd.key')})`, 'Neither key'),
    );
    assert.ok((await readFile(dictPath)).equals(bytes));
  });

  test('previous-master-key of another type is not consulted when the current key works', async () => {
    const a = await newFileMasterKey(dir);
    const bytes = await populate(a);
    const previous = kmsKey(KMS_A);
    try {
      await withStore(a, async (s) => assert.equal(s.list().length, 3), previous);
    } finally {
      previous.close();
    }
    assert.deepEqual(kms.calls, { GenerateDataKey: 0, Decrypt: 0, Encrypt: 0 });
    assert.ok((await readFile(dictPath)).equals(bytes), 'no re-seal when the current key works');
  });

  test('previous KMS key is not consulted when the current KMS key works: exactly one Decrypt', async () => {
    const current = kmsKey(KMS_A);
    const previous = kmsKey(KMS_B);
    try {
      const bytes = await populate(current);
      resetKmsCalls();
      await withStore(current, async (s) => assert.equal(s.list().length, 3), previous);
      assert.deepEqual(kms.calls, { GenerateDataKey: 0, Decrypt: 1, Encrypt: 0 });
      assert.ok((await readFile(dictPath)).equals(bytes));
    } finally {
      current.close();
      previous.close();
    }
  });

  test('rotating between KMS keys via previous-master-key: Decrypt with both, one GenerateDataKey, then the new key alone', async () => {
    const a = kmsKey(KMS_A);
    const b = kmsKey(KMS_B);
    try {
      await populate(a);
      const keys = await withStore(a, async (s) => snapshotKeys(s));
      resetKmsCalls();
      await withStore(b, async (s) => assert.deepEqual(snapshotKeys(s), keys), a);
      assert.deepEqual(kms.calls, { GenerateDataKey: 1, Decrypt: 2, Encrypt: 0 });
      resetKmsCalls();
      await withStore(b, async (s) => assert.deepEqual(snapshotKeys(s), keys));
      assert.deepEqual(kms.calls, { GenerateDataKey: 0, Decrypt: 1, Encrypt: 0 });
      await assert.rejects(open(a), expectCode('MASTER_KEY_WRONG', KMS_A, 'IncorrectKeyException'));
    } finally {
      a.close();
      b.close();
    }
  });

  test('every persist seals with a fresh nonce: same content, different bytes', async () => {
    const mk = await newFileMasterKey(dir);
    await populate(mk);
    const s = await open(mk);
    const keys = snapshotKeys(s);
    const seen: Buffer[] = [await readFile(dictPath)];
    for (let i = 0; i < 3; i++) {
      await s.rotateMasterKey(mk);
      seen.push(await readFile(dictPath));
    }
    s.close();
    const nonces = seen.map((b) => decodeSealedFile(b).sealed.nonce.toString('hex'));
    const ciphertexts = seen.map((b) => decodeSealedFile(b).sealed.ciphertext.toString('hex'));
    assert.equal(new Set(nonces).size, seen.length);
    assert.equal(new Set(ciphertexts).size, seen.length);
    assert.ok(seen.every((b) => b.length === seen[0]!.length), 'same content, same size');
    await withStore(mk, async (s2) => assert.deepEqual(snapshotKeys(s2), keys));
  });

  test('rotation reasons: no current key, method change, period expiry, on demand; persisted each time', async () => {
    const mk = await newFileMasterKey(dir);
    const cap = captureLogger();
    const s = await open(mk, undefined, cap.logger);
    const reasons = () => cap.lines.filter((l) => l.msg === 'data key rotated').map((l) => [l['reason'], l['method'], l['id']]);
    const t0 = Date.now();
    const period = 1000;

    assert.equal(await s.current({ method: 'plaintext', periodMs: period, masterKeyProtects: true }, t0), undefined);
    assert.equal(s.list().length, 0, 'plaintext needs no key');

    const k1 = (await s.current({ method: 'aes256-ctr', periodMs: period, masterKeyProtects: true }, t0))!;
    assert.deepEqual(reasons(), [['no-current-key', 'aes256-ctr', k1.id]]);
    assert.equal(k1.createdAtMs, t0);
    assert.equal(k1.key.length, 32);
    assert.equal(k1.exposed, false);

    const same = await s.current({ method: 'aes256-ctr', periodMs: period, masterKeyProtects: true }, t0 + period - 1);
    assert.equal(same!.id, k1.id, 'not yet expired');

    const k2 = (await s.current({ method: 'aes128-ctr', periodMs: period, masterKeyProtects: true }, t0 + 1))!;
    assert.notEqual(k2.id, k1.id);
    assert.equal(k2.key.length, 16);
    assert.deepEqual(reasons().at(-1), ['method-changed', 'aes128-ctr', k2.id]);

    const k3 = (await s.current({ method: 'aes128-ctr', periodMs: period, masterKeyProtects: true }, t0 + 1 + period))!;
    assert.deepEqual(reasons().at(-1), ['expired', 'aes128-ctr', k3.id]);

    const k4 = await s.rotate('aes128-ctr');
    assert.deepEqual(reasons().at(-1), ['requested', 'aes128-ctr', k4.id]);
    assert.throws(() => s.rotate('plaintext'), expectCode('INVALID_ARGUMENT', 'plaintext'));

    assert.equal(reasons().length, 4);
    assert.equal(new Set([k1.id, k2.id, k3.id, k4.id]).size, 4);
    const all = snapshotKeys(s);
    s.close();

    await withStore(mk, async (s2) => {
      assert.equal(s2.currentKeyId, k4.id);
      assert.deepEqual(snapshotKeys(s2), all);
    });
  });

  test('concurrent current() calls that need a rotation make exactly one new key', async () => {
    const mk = await newFileMasterKey(dir);
    await withStore(mk, async (s) => {
      const got = await Promise.all(Array.from({ length: 20 }, () => s.current(AES256)));
      assert.equal(new Set(got.map((k) => k!.id)).size, 1);
      assert.equal(s.list().length, 1);
    });
  });

  test('a plaintext master key marks keys exposed, and does not rotate them for that', async () => {
    const pt = new PlaintextMasterKey();
    await withStore(pt, async (s) => {
      const k = (await s.current(AES256))!;
      assert.equal(k.exposed, true);
      assert.equal((await s.current(AES256))!.id, k.id, 'no protecting key: rotating would not help');
    });
    await withStore(pt, async (s) => assert.ok(s.list().every((k) => k.exposed)));
  });

  test('switching from plaintext to a file master key via previous-master-key rotates the exposed key on current()', async () => {
    const pt = new PlaintextMasterKey();
    const old = await withStore(pt, async (s) => (await s.current(AES256))!.id);
    const file = await newFileMasterKey(dir);
    const cap = captureLogger();
    const s = await open(file, pt, cap.logger);
    try {
      assert.equal(s.currentKeyId, old);
      assert.equal(s.list()[0]!.exposed, true);
      const fresh = (await s.current(AES256))!;
      assert.notEqual(fresh.id, old);
      assert.equal(fresh.exposed, false);
      assert.ok(cap.lines.some((l) => l.msg === 'data key rotated' && l['reason'] === 'exposed'));
      assert.ok(s.has(old), 'the exposed key stays for the files that use it');
      assert.equal(s.get(old).exposed, true);
    } finally {
      s.close();
    }
    // The exposure is remembered under the new master key.
    await withStore(file, async (s2) => {
      assert.equal(s2.get(old).exposed, true);
      assert.equal(s2.currentKeyId === old, false);
    });
    await assert.rejects(open(pt), expectCode('MASTER_KEY_WRONG'));
  });

  test('rotateMasterKey to plaintext marks every key exposed; back to a file key rotates on current()', async () => {
    const file = await newFileMasterKey(dir);
    await withStore(file, async (s) => {
      const k = (await s.current(AES256))!;
      await s.rotateMasterKey(new PlaintextMasterKey());
      assert.ok(s.list().every((i) => i.exposed));
      await s.rotateMasterKey(file);
      const next = (await s.current(AES256))!;
      assert.notEqual(next.id, k.id);
      assert.equal(next.exposed, false);
    });
  });

  test('newKeyId: 10k ids are unique, non-zero, safe integers, never in the taken set', () => {
    const taken = new Set<number>();
    for (let i = 0; i < 10_000; i++) {
      const id = newKeyId(taken);
      assert.ok(Number.isSafeInteger(id) && id > 0 && id <= Number.MAX_SAFE_INTEGER, `bad id ${id}`);
      assert.ok(!taken.has(id), `id ${id} collides`);
      taken.add(id);
    }
    assert.equal(taken.size, 10_000);
  });

  test('newKeyId skips 0 and taken ids when the random source produces them (TiKV #14583)', () => {
    // Forced draws: (hi, lo) pairs giving id 0, then a taken id, then a free one.
    const taken = new Set([3 * 2 ** 27 + 5]);
    const draws = [0, 0, 3, 5, 3, 6];
    const real = crypto.randomInt;
    let calls = 0;
    (crypto as { randomInt: unknown }).randomInt = () => {
      const v = draws[calls++];
      if (v === undefined) throw new Error('newKeyId drew more values than expected');
      return v;
    };
    syncBuiltinESMExports();
    try {
      assert.equal(newKeyId(taken), 3 * 2 ** 27 + 6);
      assert.equal(calls, 6);
    } finally {
      crypto.randomInt = real;
      syncBuiltinESMExports();
    }
  });

  test('data key ids in one dictionary stay unique over many rotations', async () => {
    await withStore(await newFileMasterKey(dir), async (s) => {
      for (let i = 0; i < 200; i++) await s.rotate(i % 2 === 0 ? 'aes256-ctr' : 'sm4-ctr');
      const ids = s.list().map((k) => k.id);
      assert.equal(ids.length, 200);
      assert.equal(new Set(ids).size, 200);
      assert.ok(!ids.includes(0));
    });
  });

  test('retireUnused drops only keys neither current nor used, and the change is durable', async () => {
    const mk = await newFileMasterKey(dir);
    const ids = await withStore(mk, async (s) => {
      const k1 = (await s.current(AES256))!.id;
      const k2 = (await s.rotate('aes256-ctr')).id;
      const k3 = (await s.rotate('aes256-ctr')).id;
      const k4 = (await s.rotate('aes256-ctr')).id;
      assert.deepEqual(await s.retireUnused(new Set([k1, k4])), [k2, k3]);
      assert.deepEqual(new Set(s.list().map((k) => k.id)), new Set([k1, k4]));
      // Nothing to retire: no change, and the current key survives an empty used set.
      const before = await readFile(dictPath);
      assert.deepEqual(await s.retireUnused(new Set([k1])), []);
      assert.ok((await readFile(dictPath)).equals(before));
      assert.deepEqual(await s.retireUnused(new Set()), [k1]);
      return { k1, k4 };
    });
    await withStore(mk, async (s) => {
      assert.deepEqual(s.list().map((k) => k.id), [ids.k4]);
      assert.equal(s.currentKeyId, ids.k4);
      assert.throws(() => s.get(ids.k1), expectCode('DATA_KEY_MISSING'));
    });
  });

  test('rotateMasterKey re-seals online: the new key opens it, the old one no longer does', async () => {
    const oldKey = await newFileMasterKey(dir, 'old.key');
    const newKey = await newFileMasterKey(dir, 'new.key');
    await populate(oldKey);
    const keys = await withStore(oldKey, async (s) => {
      const before = snapshotKeys(s);
      await s.rotateMasterKey(newKey);
      assert.equal(s.masterKey, newKey);
      assert.deepEqual(snapshotKeys(s), before, 'the data keys themselves do not change');
      // Still usable after the rotation, and later changes are sealed under the new key.
      await s.rotate('aes192-ctr');
      return snapshotKeys(s);
    });
    assert.equal(keys.length, 4);
    await withStore(newKey, async (s) => assert.deepEqual(snapshotKeys(s), keys));
    await assert.rejects(open(oldKey), expectCode('MASTER_KEY_WRONG', join(dir, 'old.key')));
  });

  test('KMS master key: one GenerateDataKey at creation, one Decrypt per open, none for later re-seals', async () => {
    const mk = kmsKey(KMS_A);
    try {
      const s = await open(mk);
      assert.deepEqual(kms.calls, { GenerateDataKey: 1, Decrypt: 0, Encrypt: 0 });
      await s.current(AES256);
      await s.rotate('aes128-ctr');
      await s.retireUnused(new Set());
      s.close();
      assert.deepEqual(kms.calls, { GenerateDataKey: 1, Decrypt: 0, Encrypt: 0 });
      const sealed = decodeSealedFile(await readFile(dictPath));
      assert.equal(sealed.masterKeyType, 'kms');
      assert.ok(sealed.envelope.length > 32, 'the KMS ciphertext is kept in the file');

      resetKmsCalls();
      const s2 = await open(mk);
      assert.deepEqual(kms.calls, { GenerateDataKey: 0, Decrypt: 1, Encrypt: 0 });
      assert.equal(s2.list().length, 1);
      await s2.rotate('aes256-ctr');
      await s2.rotate('sm4-ctr');
      s2.close();
      assert.deepEqual(kms.calls, { GenerateDataKey: 0, Decrypt: 1, Encrypt: 0 });
    } finally {
      mk.close();
    }
  });

  test('KMS unreachable on first open: MASTER_KEY_UNAVAILABLE and no key.dict or tmp left behind (TiKV #9488)', async () => {
    const mk = kmsKey(KMS_A, `http://127.0.0.1:${await closedPort()}`);
    try {
      await assert.rejects(open(mk), expectCode('MASTER_KEY_UNAVAILABLE', KMS_A));
    } finally {
      mk.close();
    }
    assert.deepEqual(await readdir(dir), []);
  });

  test('KMS denying GenerateDataKey on first open leaves nothing on disk', async () => {
    kms.deny = true;
    const mk = kmsKey(KMS_A);
    try {
      await assert.rejects(open(mk), expectCode('MASTER_KEY_UNAVAILABLE', 'AccessDeniedException', 'kms:GenerateDataKey'));
    } finally {
      mk.close();
    }
    assert.deepEqual(await readdir(dir), []);
  });

  test('KMS denying Decrypt on reopen is an error and key.dict is unchanged; it opens once KMS allows it', async () => {
    const mk = kmsKey(KMS_A);
    try {
      const bytes = await populate(mk);
      kms.deny = true;
      await assert.rejects(open(mk), expectCode('MASTER_KEY_UNAVAILABLE', 'AccessDeniedException', 'kms:Decrypt', 'nothing on disk was changed'));
      // An unavailable current key is not a wrong one: previous-master-key must not be tried.
      const prev = await newFileMasterKey(dir);
      await assert.rejects(open(mk, prev), expectCode('MASTER_KEY_UNAVAILABLE'));
      assert.ok((await readFile(dictPath)).equals(bytes));
      assert.deepEqual((await readdir(dir)).sort(), ['key.dict', 'key.dict.copy', 'master.key']);
      kms.deny = false;
      await withStore(mk, async (s) => assert.equal(s.list().length, 3));
    } finally {
      mk.close();
    }
  });

  test('read-only: a missing dictionary is not created, and previous-master-key does not re-seal', async () => {
    const a = await newFileMasterKey(dir, 'a.key');
    await assert.rejects(open(a, undefined, silentLogger(), true), expectCode('FILE_NOT_FOUND', dictPath));
    assert.deepEqual(await readdir(dir), ['a.key']);

    const bytes = await populate(a);
    const b = await newFileMasterKey(dir, 'b.key');
    const s = await open(b, a, silentLogger(), true);
    try {
      assert.equal(s.list().length, 3);
      await assert.rejects(s.rotate('aes256-ctr'), expectCode('INVALID_ARGUMENT', 'read-only'));
      await assert.rejects(s.rotateMasterKey(b), expectCode('INVALID_ARGUMENT', 'read-only'));
      await assert.rejects(s.retireUnused(new Set()), expectCode('INVALID_ARGUMENT', 'read-only'));
    } finally {
      s.close();
    }
    assert.ok((await readFile(dictPath)).equals(bytes));
  });
});
