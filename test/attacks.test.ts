import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cp, open, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { EncryptionConfig } from '../src/config/types.js';
import type { EncryptionMethod } from '../src/crypto/method.js';
import { TAG_BYTES } from '../src/crypto/file-auth.js';
import { Block } from '../src/engine/block.js';
import { BlockCache } from '../src/engine/block-cache.js';
import { crc32c } from '../src/engine/crc32c.js';
import { Engine } from '../src/engine/engine.js';
import { RECORD_HEADER_BYTES, encodeRecord as encodeLogRecord } from '../src/engine/log-format.js';
import { encodeFooter, tableLayout, verifyBlock, type BlockHandle } from '../src/engine/table-format.js';
import { TableReader } from '../src/engine/table-reader.js';
import { decodeEdit, encodeEdit } from '../src/engine/version-edit.js';
import { encodeBatch } from '../src/engine/write-batch.js';
import { KEY_DICT_NAME } from '../src/env/encrypted-env.js';
import { openEnv, type ManagedEnv } from '../src/env/open-env.js';
import { META_DIR } from '../src/env/paths.js';
import { isTdekvError } from '../src/errors.js';
import { LOG_NAME } from '../src/keys/file-dictionary.js';
import { encodeLegacyRecord, encodeRecord as encodeDictRecord, type FileRecord } from '../src/keys/file-dictionary-format.js';
import { runCli } from './support/cli.js';
import { verifyDataDir, type VerifyReport } from '../src/cli/verify.js';
import { encryptionConfig } from './support/engine-helpers.js';
import { assertSameTree, cleanup, expectCode, snapshotTree, tempDir, writeKeyFile } from './support/fs-helpers.js';

/**
 * The forgeries of issue 9 items 1-3, done as an attacker who can write the disk but holds
 * no key would do them, against every encrypted method. The test reads plaintext with the
 * key only to find where the attacker's known plaintext sits (an attacker who knows the
 * record layout and the old value knows this too); every forgery is then made from file
 * bytes alone: XOR (old ^ new) into the CTR stream, plus the CRC correction that used to
 * make such a change pass (CRC is linear, so crc(a ^ d) = crc(a) ^ crc(d) ^ crc(0)).
 * Every one must end in an error naming the file, never in `balance=9999999`.
 */
const METHODS: readonly EncryptionMethod[] = ['aes128-ctr', 'aes192-ctr', 'aes256-ctr', 'sm4-ctr'];
const ALICE = Buffer.from('acct:alice');
const OLD = Buffer.from('balance=0000100');
const NEW = Buffer.from('balance=9999999');
const FORGED = NEW.toString();

interface Fixture {
  root: string;
  dataDir: string;
  enc: EncryptionConfig;
  /** A TOML config for `tdekv ctl`, naming dataDir and the master key. */
  config: string;
}

async function fixture(t: { after: (fn: () => Promise<void>) => void }, method: EncryptionMethod): Promise<Fixture> {
  const root = await tempDir('tdekv-attacks-');
  t.after(() => cleanup(root));
  const { path } = await writeKeyFile(root);
  const config = join(root, 'tdekv.toml');
  await writeFile(config, `[storage]\ndata-dir = "data"\n[security.encryption]\ndata-encryption-method = "${method}"\n[security.encryption.master-key]\ntype = "file"\npath = "master.key"\n`);
  return { root, dataDir: join(root, 'data'), enc: encryptionConfig(path, method), config };
}

async function openEngine(f: Fixture, walRecoveryMode?: 'point-in-time'): Promise<{ managed: ManagedEnv; engine: Engine }> {
  const managed = await openEnv(f.dataDir, f.enc);
  try {
    return { managed, engine: await Engine.open({ env: managed.env, ...(walRecoveryMode ? { walRecoveryMode } : {}) }) };
  } catch (err) {
    await managed.close();
    throw err;
  }
}

/** The plaintext of an engine file: the test's use of the key, only to locate known plaintext. */
async function plaintextOf(f: Fixture, name: string): Promise<Buffer> {
  const managed = await openEnv(f.dataDir, f.enc, { readOnly: true });
  try {
    return await managed.env.readFile(name);
  } finally {
    await managed.close();
  }
}

/** XORs `delta` into the file at `offset`: all an attacker without the key can do to a CTR stream. */
async function xorInto(path: string, offset: number, delta: Uint8Array): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const buf = Buffer.alloc(delta.length);
    await fh.read(buf, 0, buf.length, offset);
    for (let i = 0; i < buf.length; i++) buf[i]! ^= delta[i]!;
    await fh.write(buf, 0, buf.length, offset);
  } finally {
    await fh.close();
  }
}

function xor(a: Uint8Array, b: Uint8Array): Buffer {
  assert.equal(a.length, b.length);
  return Buffer.from(a.map((x, i) => x ^ b[i]!));
}

/**
 * The CRC-32C correction for XOR-ing `delta` at `at` of a checksummed span of `length`
 * bytes, computed without the span's content: CRC is affine over GF(2).
 */
function crcCorrection(length: number, at: number, delta: Uint8Array): Buffer {
  const d = Buffer.alloc(length);
  d.set(delta, at);
  const out = Buffer.alloc(4);
  out.writeUInt32LE((crc32c(d) ^ crc32c(Buffer.alloc(length))) >>> 0);
  return out;
}

async function engineFiles(dataDir: string, pattern: RegExp): Promise<string[]> {
  return (await readdir(dataDir)).filter((n) => pattern.test(n)).sort();
}

/** The single occurrence of `needle` in `hay`. */
function onlyOffsetOf(hay: Buffer, needle: Buffer, what: string): number {
  const at = hay.indexOf(needle);
  assert.ok(at >= 0, `${what}: the known plaintext is not in the file`);
  assert.equal(hay.indexOf(needle, at + 1), -1, `${what}: the known plaintext occurs more than once`);
  return at;
}

const isDamageNaming = (file: string) => (err: unknown): boolean => isTdekvError(err, 'DATA_CORRUPTED') && err.message.includes(file);

/**
 * Opens the forged data dir and reads acct:alice: the open or the read must fail with
 * DATA_CORRUPTED naming `file`; the forged value must never come back.
 */
async function assertForgeryRefused(f: Fixture, file: string, what: string): Promise<void> {
  let opened: { managed: ManagedEnv; engine: Engine } | undefined;
  try {
    opened = await openEngine(f);
  } catch (err) {
    assert.ok(isDamageNaming(file)(err), `${what}: the open failed, but not with DATA_CORRUPTED naming ${file}: ${String(err)}`);
    return;
  }
  try {
    let got: Buffer | undefined;
    try {
      got = opened.engine.getSync(ALICE);
    } catch (err) {
      assert.ok(isDamageNaming(file)(err), `${what}: get failed, but not with DATA_CORRUPTED naming ${file}: ${String(err)}`);
      return;
    }
    assert.notEqual(got?.toString(), FORGED, `${what}: the forged value was returned`);
    assert.fail(`${what}: the forgery went unnoticed (get returned ${got?.toString()})`);
  } finally {
    await opened.engine.close();
    await opened.managed.close();
  }
}

/**
 * `tdekv ctl verify` must fail and report `file` as damaged: the real command when `cli`,
 * else the function it runs (in-process, to keep the suite fast).
 */
async function assertVerifyReports(f: Fixture, file: string, what: string, cli: boolean): Promise<void> {
  let report: Pick<VerifyReport, 'damaged' | 'files'>;
  if (cli) {
    const r = await runCli(['ctl', '--config', f.config, 'verify', '--json']);
    assert.notEqual(r.code, 0, `${what}: ctl verify passed:\n${r.stdout}`);
    report = JSON.parse(r.stdout) as VerifyReport;
  } else {
    const managed = await openEnv(f.dataDir, f.enc, { readOnly: true });
    try {
      report = await verifyDataDir(managed.env);
    } finally {
      await managed.close();
    }
  }
  const verdict = report.files.find((v) => v.path === file);
  assert.ok(verdict && !verdict.ok, `${what}: ctl verify did not report ${file} as damaged: ${JSON.stringify(report.files)}`);
  assert.ok(report.damaged > 0, what);
}

/** Puts alice's balance (with neighbours, so the table has several blocks), flushed into one table. */
async function tableWithAlice(f: Fixture): Promise<string> {
  const { managed, engine } = await openEngine(f);
  try {
    const filler = Buffer.alloc(40, 'f');
    const ops = Array.from({ length: 60 }, (_, i) => ({ type: 'put' as const, key: Buffer.from(`acct:a${String(i).padStart(3, '0')}`), value: filler }));
    await engine.write([...ops, { type: 'put', key: ALICE, value: OLD }, { type: 'put', key: Buffer.from('acct:bob'), value: Buffer.from('balance=0000200') }]);
    await engine.flush();
    assert.equal(engine.liveTables().length, 1);
  } finally {
    await engine.close();
    await managed.close();
  }
  const [table] = await engineFiles(f.dataDir, /\.sst$/);
  assert.ok(table);
  return table;
}

/** The data block of `table` holding plaintext offset `at`. */
async function dataBlockAt(f: Fixture, table: string, at: number): Promise<BlockHandle> {
  const managed = await openEnv(f.dataDir, f.enc, { readOnly: true });
  try {
    const reader = TableReader.open(managed.env.openReadSync(table), Number(table.slice(0, 6)), new BlockCache(0));
    try {
      assert.equal(reader.authenticated, f.enc.dataEncryptionMethod !== 'plaintext', `only encrypted tables carry tags (${f.enc.dataEncryptionMethod})`);
      const { footer, file } = reader;
      const layout = tableLayout(file.auth);
      const index = new Block(verifyBlock(file.readSync(footer.index.offset, footer.index.size + layout.trailerBytes), footer.index, table, layout), table, footer.index.offset);
      const it = index.iterator();
      for (it.seekToFirst(); it.valid(); it.next()) {
        const h = reader.handleAt(it);
        if (at >= h.offset && at < h.offset + h.size) return h;
      }
      throw new Error(`offset ${at} is in no data block of ${table}`);
    } finally {
      reader.close();
    }
  } finally {
    await managed.close();
  }
}

/**
 * The engine's files, without encryption-meta/: an engine open that refuses runs after the
 * env's open succeeded, and a writable env open advances the dictionaries' generations
 * (same entries, new MACs) before the engine reads anything. The engine files, which the
 * refusal is about, must stay exactly as they were.
 */
async function engineTree(dataDir: string): Promise<Map<string, Buffer>> {
  const tree = await snapshotTree(dataDir);
  for (const k of [...tree.keys()]) if (k.startsWith(META_DIR)) tree.delete(k);
  return tree;
}

async function restoreFrom(pristine: string, dataDir: string): Promise<void> {
  await rm(dataDir, { recursive: true, force: true });
  await cp(pristine, dataDir, { recursive: true });
}

for (const method of METHODS) {
  describe(`forgeries without keys (${method})`, () => {
    test('item 1: a value changed inside a table block, with and without the CRC correction, is DATA_CORRUPTED naming the table', async (t) => {
      const f = await fixture(t, method);
      const table = await tableWithAlice(f);
      const plain = await plaintextOf(f, table);
      const at = onlyOffsetOf(plain, OLD, table);
      const block = await dataBlockAt(f, table, at);
      const delta = xor(OLD, NEW);
      const pristine = join(f.root, 'pristine');
      await cp(f.dataDir, pristine, { recursive: true });
      const path = join(f.dataDir, table);
      // The checksummed span of the old format: contents + type byte, CRC right after it.
      const correction = crcCorrection(block.size + 1, at - block.offset, delta);
      const forgeries: Array<[string, () => Promise<void>]> = [
        ['value only', () => xorInto(path, at, delta)],
        ['value and the CRC-32C correction where format 1 keeps it', async () => (await xorInto(path, at, delta), await xorInto(path, block.offset + block.size + 1, correction))],
        ['value and the correction in the last 4 tag bytes', async () => (await xorInto(path, at, delta), await xorInto(path, block.offset + block.size + 1 + TAG_BYTES - 4, correction))],
      ];
      for (const [what, forge] of forgeries) {
        await restoreFrom(pristine, f.dataDir);
        await forge();
        await assertForgeryRefused(f, table, `${method} table, ${what}`);
        await assertVerifyReports(f, table, `${method} table, ${what}`, forge === forgeries[0]![1]);
      }
      // Untouched, the true value reads back.
      await restoreFrom(pristine, f.dataDir);
      const { managed, engine } = await openEngine(f);
      try {
        assert.equal(engine.getSync(ALICE)?.toString(), OLD.toString());
      } finally {
        await engine.close();
        await managed.close();
      }
    });

    test('item 1: a value changed in the last record of the write-ahead log is refused at replay naming the WAL', async (t) => {
      const f = await fixture(t, method);
      const crashed = join(f.root, 'crashed');
      // A crash right after an acknowledged (synced) write: copy the data dir while the engine is open.
      {
        const { managed, engine } = await openEngine(f);
        try {
          await engine.put(Buffer.from('acct:bob'), Buffer.from('balance=0000200'), { sync: true });
          await engine.put(ALICE, OLD, { sync: true });
          // The copied LOCK file holds no lock: the kernel's lock belongs to this process's descriptor.
          await cp(f.dataDir, crashed, { recursive: true });
        } finally {
          await engine.close();
          await managed.close();
        }
      }
      await restoreFrom(crashed, f.dataDir);
      const [wal] = await engineFiles(f.dataDir, /\.log$/);
      assert.ok(wal);
      const plain = await plaintextOf(f, wal);
      const at = onlyOffsetOf(plain, OLD, wal);
      // The record holding it: the last one (records are [hcrc][len][type][payload][tag]).
      let recordAt = 0;
      while (recordAt + RECORD_HEADER_BYTES + plain.readUInt32LE(recordAt + 4) + TAG_BYTES <= at) recordAt += RECORD_HEADER_BYTES + plain.readUInt32LE(recordAt + 4) + TAG_BYTES;
      const len = plain.readUInt32LE(recordAt + 4);
      // After the last record, the WAL's reserved space: zeros on disk, as the crash left them.
      const end = recordAt + RECORD_HEADER_BYTES + len + TAG_BYTES;
      assert.ok((await readFile(join(f.dataDir, wal))).subarray(end).every((byte) => byte === 0), 'alice is in the last record');
      const delta = xor(OLD, NEW);
      const path = join(f.dataDir, wal);
      // Format 1's CRC covers length, type and payload (bytes 4..end of the record).
      const correction = crcCorrection(4 + 1 + len, at - recordAt - 4, delta);
      const forgeries: Array<[string, () => Promise<void>]> = [
        ['value only', () => xorInto(path, at, delta)],
        ['value and the CRC-32C correction where format 1 keeps it', async () => (await xorInto(path, at, delta), await xorInto(path, recordAt, correction))],
        ['value and the correction in the tag', async () => (await xorInto(path, at, delta), await xorInto(path, recordAt + RECORD_HEADER_BYTES + len, correction))],
      ];
      for (const [what, forge] of forgeries) {
        await restoreFrom(crashed, f.dataDir);
        await forge();
        const before = await engineTree(f.dataDir);
        await assert.rejects(openEngine(f), expectCode('DATA_CORRUPTED', wal, `offset ${recordAt}`), `${method} WAL, ${what}`);
        assertSameTree(await engineTree(f.dataDir), before, `${method} WAL, ${what}: the refused open`);
        await assertVerifyReports(f, wal, `${method} WAL, ${what}`, forge === forgeries[0]![1]);
        // The explicit way out drops the damaged record: never the forged value.
        const { managed, engine } = await openEngine(f, 'point-in-time');
        try {
          assert.equal(engine.getSync(ALICE), undefined, `${method} WAL, ${what}: point-in-time recovery`);
          assert.equal(engine.getSync(Buffer.from('acct:bob'))?.toString(), 'balance=0000200');
        } finally {
          await engine.close();
          await managed.close();
        }
      }
      await restoreFrom(crashed, f.dataDir);
      const { managed, engine } = await openEngine(f);
      try {
        assert.equal(engine.getSync(ALICE)?.toString(), OLD.toString());
      } finally {
        await engine.close();
        await managed.close();
      }
    });

    test("item 1: a manifest record changed to move a table to another level or give it another size is refused naming the manifest", async (t) => {
      const f = await fixture(t, method);
      const table = await tableWithAlice(f);
      const manifests = await engineFiles(f.dataDir, /^MANIFEST-\d+$/);
      assert.equal(manifests.length, 1);
      const manifest = manifests[0]!;
      const plain = await plaintextOf(f, manifest);
      // Find the edit that adds the table; the attacker knows the edit encoding.
      let rec: { offset: number; payload: Buffer } | undefined;
      for (let off = 0; off < plain.length; ) {
        const len = plain.readUInt32LE(off + 4);
        const payload = plain.subarray(off + RECORD_HEADER_BYTES, off + RECORD_HEADER_BYTES + len);
        if (decodeEdit(payload, manifest).newFiles.some((n) => n.file.number === Number(table.slice(0, 6)))) rec = { offset: off, payload };
        off += RECORD_HEADER_BYTES + len + TAG_BYTES;
      }
      assert.ok(rec, 'an edit adds the table');
      const edit = decodeEdit(rec.payload, manifest);
      const variants: Array<[string, (e: ReturnType<typeof decodeEdit>) => void]> = [
        ['another level', (e) => void e.newFiles.forEach((n) => (n.level = n.level === 0 ? 1 : 0))],
        ['another size', (e) => void e.newFiles.forEach((n) => (n.file.size += 1))],
      ];
      const pristine = join(f.root, 'pristine');
      await cp(f.dataDir, pristine, { recursive: true });
      const path = join(f.dataDir, manifest);
      for (const [what, change] of variants) {
        const forged = decodeEdit(rec.payload, manifest);
        change(forged);
        const newPayload = encodeEdit(forged);
        assert.equal(newPayload.length, rec.payload.length, `${what}: the change keeps the record's length`);
        assert.notDeepEqual(forged, edit);
        const delta = xor(rec.payload, newPayload);
        const correction = crcCorrection(4 + 1 + delta.length, 5, delta);
        for (const [how, withCrc] of [['payload only', undefined], ['and the correction in the tag', rec.offset + RECORD_HEADER_BYTES + delta.length]] as const) {
          await restoreFrom(pristine, f.dataDir);
          await xorInto(path, rec.offset + RECORD_HEADER_BYTES, delta);
          if (withCrc !== undefined) await xorInto(path, withCrc, correction);
          const label = `${method} manifest, ${what}, ${how}`;
          const before = await engineTree(f.dataDir);
          await assert.rejects(openEngine(f), expectCode('DATA_CORRUPTED', manifest, `offset ${rec.offset}`), label);
          assertSameTree(await engineTree(f.dataDir), before, `${label}: the refused open`);
          await assertVerifyReports(f, manifest, label, withCrc === undefined && what === variants[0]![0]);
        }
      }
    });

    test('downgrade: an authenticated table footer rewritten into a format-1 footer is refused naming the table', async (t) => {
      const f = await fixture(t, method);
      const table = await tableWithAlice(f);
      const plain = await plaintextOf(f, table);
      const size = plain.length;
      const footer80 = plain.subarray(size - 80);
      const handle = (i: number): BlockHandle => ({ offset: Number(footer80.readBigUInt64LE(i * 16)), size: Number(footer80.readBigUInt64LE(i * 16 + 8)) });
      const handles = { filter: handle(0), index: handle(1), properties: handle(2) };
      // Format 1 needs no key: handles, version 1, CRC-32C and magic. The attacker is even
      // granted the plaintext of the old footer's tag (stronger than any real one).
      const format1 = encodeFooter(handles);
      assert.equal(format1.length, 64);
      const pristine = join(f.root, 'pristine');
      await cp(f.dataDir, pristine, { recursive: true });
      const path = join(f.dataDir, table);
      const forgeries: Array<[string, () => Promise<void>]> = [
        [
          'cut to a 64-byte format-1 footer',
          async () => {
            await xorInto(path, size - 80, xor(plain.subarray(size - 80, size - 16), format1));
            await truncate(path, size - 16);
          },
        ],
        [
          'a format-1 footer at the end, the file length kept',
          async () => xorInto(path, size - 64, xor(plain.subarray(size - 64), format1)),
        ],
        [
          'version set to 1 in the 80-byte footer, its CRC fixed',
          async () => {
            const changed = Buffer.from(footer80);
            changed.writeUInt32LE(1, 80 - 16);
            changed.writeUInt32LE(crc32c(changed.subarray(0, 80 - 12)), 80 - 12);
            await xorInto(path, size - 80, xor(footer80, changed));
          },
        ],
      ];
      for (const [what, forge] of forgeries) {
        await restoreFrom(pristine, f.dataDir);
        await forge();
        await assertForgeryRefused(f, table, `${method} footer, ${what}`);
        await assertVerifyReports(f, table, `${method} footer, ${what}`, forge === forgeries[0]![1]);
      }
    });

    test('item 2: a forged file.dict.log record declaring a plaintext WAL is refused, and the forged write never read', async (t) => {
      const f = await fixture(t, method);
      {
        const { managed, engine } = await openEngine(f);
        try {
          await engine.put(Buffer.from('user:alice:role'), Buffer.from('user'), { sync: true });
        } finally {
          await engine.close();
          await managed.close();
        }
      }
      const logPath = join(f.dataDir, META_DIR, LOG_NAME);
      const good = await readFile(logPath);
      // A plaintext WAL numbered after everything, holding the attacker's write in format 1.
      const forgedWal = '000099.log';
      const batch = encodeBatch([{ type: 'put', key: Buffer.from('user:alice:role'), value: Buffer.from('admin') }], 1_000_000);
      await writeFile(join(f.dataDir, forgedWal), encodeLogRecord(batch));
      const forged: FileRecord = { op: 'set', path: forgedWal, entry: { method: 'plaintext', keyId: 0, iv: Buffer.alloc(16), authenticated: false } };
      const body = encodeDictRecord(forged);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(body.length);
      const crc = Buffer.alloc(4);
      crc.writeUInt32LE(crc32(len) >>> 0);
      for (const [what, bytes] of [
        ['a legacy record', Buffer.concat([good, encodeLegacyRecord(forged)])],
        ['a batch with a made-up MAC', Buffer.concat([good, len, crc, randomBytes(32), body])],
      ] as const) {
        await writeFile(logPath, bytes);
        const before = await snapshotTree(f.dataDir);
        await assert.rejects(openEngine(f), expectCode('FILE_DICTIONARY_DAMAGED', logPath), `${method}: ${what}`);
        assertSameTree(await snapshotTree(f.dataDir), before, `${method}: ${what}: the refused open`);
        const r = await runCli(['ctl', '--config', f.config, 'verify']);
        assert.notEqual(r.code, 0, `${method}: ${what}: ctl verify passed`);
        assert.ok(r.stderr.includes(LOG_NAME), `${method}: ${what}: ctl verify should name ${LOG_NAME}: ${r.stderr}`);
      }
      // The true log back: the forged WAL is never read as plaintext.
      await writeFile(logPath, good);
      await rm(join(f.dataDir, forgedWal));
      const { managed, engine } = await openEngine(f);
      try {
        assert.equal(engine.getSync(Buffer.from('user:alice:role'))?.toString(), 'user');
      } finally {
        await engine.close();
        await managed.close();
      }
    });

    test('item 3: key.dict and its copy rolled back to before a rotation are refused naming key.dict', async (t) => {
      const f = await fixture(t, method);
      const keyPath = join(f.dataDir, META_DIR, KEY_DICT_NAME);
      const copyPath = keyPath + '.copy';
      {
        const { managed, engine } = await openEngine(f);
        try {
          await engine.put(Buffer.from('before'), Buffer.from('rotation'));
          await engine.flush();
        } finally {
          await engine.close();
          await managed.close();
        }
      }
      const oldKey = await readFile(keyPath);
      const oldCopy = await readFile(copyPath);
      {
        const { managed, engine } = await openEngine(f);
        try {
          await managed.keyAdmin.rotateDataKey();
          await engine.put(ALICE, OLD);
          await engine.flush();
        } finally {
          await engine.close();
          await managed.close();
        }
      }
      let newKey = await readFile(keyPath);
      let newCopy = await readFile(copyPath);
      assert.ok(!newKey.equals(oldKey));
      for (const [what, k, c] of [
        ['both rolled back', oldKey, oldCopy],
        ['key.dict rolled back', oldKey, newCopy],
      ] as const) {
        await writeFile(keyPath, k);
        await writeFile(copyPath, c);
        const before = await snapshotTree(f.dataDir);
        let opened: { managed: ManagedEnv; engine: Engine } | undefined;
        try {
          opened = await openEngine(f);
        } catch (err) {
          assert.ok(isTdekvError(err, 'KEY_DICTIONARY_DAMAGED') && err.message.includes(KEY_DICT_NAME), `${method}: ${what}: ${String(err)}`);
          assertSameTree(await snapshotTree(f.dataDir), before, `${method}: ${what}: the refused open`);
        }
        if (opened) {
          // Only acceptable if the good copy was used: every value intact.
          try {
            assert.equal(what, 'key.dict rolled back', `${method}: ${what}: opened`);
            assert.equal(opened.engine.getSync(ALICE)?.toString(), OLD.toString());
            assert.equal(opened.engine.getSync(Buffer.from('before'))?.toString(), 'rotation');
          } finally {
            await opened.engine.close();
            await opened.managed.close();
          }
          // The open repaired key.dict and moved both dictionaries on: that is the state now.
          newKey = await readFile(keyPath);
          newCopy = await readFile(copyPath);
        } else {
          await writeFile(keyPath, newKey);
          await writeFile(copyPath, newCopy);
        }
      }
      const { managed, engine } = await openEngine(f);
      try {
        assert.equal(engine.getSync(ALICE)?.toString(), OLD.toString());
        assert.equal(engine.getSync(Buffer.from('before'))?.toString(), 'rotation');
      } finally {
        await engine.close();
        await managed.close();
      }
    });
  });
}

/**
 * The control: against format 1 (CRC only, what every encrypted file used before tags and
 * what plaintext files still use) the same key-free forgeries return the forged value. This
 * proves the forgeries above are the real attack of issue 9 item 1, not a test that could
 * not have succeeded anyway.
 */
describe('control: the same forgeries succeed against CRC-only files (plaintext method)', () => {
  test('table block: value and CRC-32C correction -> get returns the forged value', async (t) => {
    const f = await fixture(t, 'plaintext');
    const table = await tableWithAlice(f);
    const plain = await readFile(join(f.dataDir, table));
    const at = onlyOffsetOf(plain, OLD, table);
    const block = await dataBlockAt(f, table, at);
    const delta = xor(OLD, NEW);
    await xorInto(join(f.dataDir, table), at, delta);
    await xorInto(join(f.dataDir, table), block.offset + block.size + 1, crcCorrection(block.size + 1, at - block.offset, delta));
    const { managed, engine } = await openEngine(f);
    try {
      assert.equal(engine.getSync(ALICE)?.toString(), FORGED);
    } finally {
      await engine.close();
      await managed.close();
    }
  });

  test('WAL record: value and CRC-32C correction -> replay returns the forged value', async (t) => {
    const f = await fixture(t, 'plaintext');
    const crashed = join(f.root, 'crashed');
    {
      const { managed, engine } = await openEngine(f);
      try {
        await engine.put(ALICE, OLD, { sync: true });
        await cp(f.dataDir, crashed, { recursive: true });
      } finally {
        await engine.close();
        await managed.close();
      }
    }
    await restoreFrom(crashed, f.dataDir);
    const [wal] = await engineFiles(f.dataDir, /\.log$/);
    assert.ok(wal);
    const path = join(f.dataDir, wal);
    const plain = await readFile(path);
    const at = onlyOffsetOf(plain, OLD, wal);
    const end = plain.readUInt32LE(4) + RECORD_HEADER_BYTES;
    assert.ok(plain.subarray(end).every((byte) => byte === 0), 'one format-1 record, then the reserved zeros');
    const delta = xor(OLD, NEW);
    await xorInto(path, at, delta);
    await xorInto(path, 0, crcCorrection(end - 4, at - 4, delta));
    const { managed, engine } = await openEngine(f);
    try {
      assert.equal(engine.getSync(ALICE)?.toString(), FORGED);
    } finally {
      await engine.close();
      await managed.close();
    }
  });
});
