import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open as openFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../src/log/logger.js';
import { EncryptedEnv } from '../src/env/encrypted-env.js';
import { silentLogger } from '../src/log/logger.js';
import type { MasterKey } from '../src/masterkey/master-key.js';
import { crc32c } from '../src/engine/crc32c.js';
import { RECORD_HEADER_BYTES, SECTOR_BYTES } from '../src/engine/log-format.js';
import { AuthDomain, TAG_BYTES } from '../src/crypto/file-auth.js';
import { LogReader, readLog, type LogContents } from '../src/engine/log-reader.js';
import { LogWriter } from '../src/engine/log-writer.js';
import { captureLogger, cleanup, expectCode, newFileMasterKey, tempDir } from './support/fs-helpers.js';

const MARKER = Buffer.from('TDEKV-LOG-MARKER-5d1e');

let root: string;
let env: EncryptedEnv;
let masterKey: MasterKey;
let fileNo = 0;

before(async () => {
  root = await tempDir();
  masterKey = await newFileMasterKey(root);
  env = await EncryptedEnv.open({
    dataDir: join(root, 'data'),
    method: 'aes256-ctr',
    rotationPeriodMs: 7 * 24 * 3600 * 1000,
    masterKey,
    fileDictionaryLog: true,
    fileDictionaryRewriteThreshold: 1_000_000,
    logger: silentLogger(),
  });
});

after(async () => {
  await env.close();
  await cleanup(root);
});

interface Written {
  name: string;
  abs: string;
  payloads: Buffer[];
  types: number[];
  /** Offset of each record's header; offsets[payloads.length] is the file size. */
  offsets: number[];
}

/** Writes records without awaiting each append (their order is fixed at call time). */
async function writeLog(payloads: Buffer[], types: number[] = payloads.map(() => 1)): Promise<Written> {
  const name = `${String(++fileNo).padStart(6, '0')}.log`;
  const writer = new LogWriter(await env.create(name));
  const pending = payloads.map((p, i) => writer.addRecord(p, types[i]));
  await Promise.all(pending);
  await writer.sync();
  const offsets = [0];
  for (const p of payloads) offsets.push(offsets.at(-1)! + RECORD_HEADER_BYTES + p.length + TAG_BYTES);
  assert.equal(writer.size, offsets.at(-1));
  await writer.close();
  return { name, abs: join(env.dataDir, name), payloads, types, offsets };
}

type Reader = (name: string, logger?: Logger) => Promise<LogContents>;

/** The whole-file reader, and the streaming one with chunks small enough that records straddle them. */
const READERS: Array<[string, Reader]> = [
  ['readLog', (name, logger) => withFile(name, (f) => readLog(f, logger))],
  [
    'LogReader',
    (name, logger) =>
      withFile(name, (f) => {
        const reader = new LogReader(f, logger, 16);
        const records = [...reader];
        return reader.tornTailAt === undefined ? { records } : { records, tornTailAt: reader.tornTailAt };
      }),
  ],
];

async function withFile<T>(name: string, fn: (f: Awaited<ReturnType<EncryptedEnv['openRead']>>) => T): Promise<T> {
  const f = await env.openRead(name);
  try {
    return fn(f);
  } finally {
    f.close();
  }
}

function assertRecords(got: LogContents, w: Written, count: number, what: string): void {
  assert.equal(got.records.length, count, `${what}: record count`);
  got.records.forEach((r, i) => {
    assert.ok(r.payload.equals(w.payloads[i]!), `${what}: payload ${i}`);
    assert.equal(r.type, w.types[i], `${what}: type ${i}`);
    assert.equal(r.offset, w.offsets[i], `${what}: offset ${i}`);
  });
}

function randomPayloads(n: number, maxLength: number): Buffer[] {
  return Array.from({ length: n }, () => randomBytes(Math.floor(Math.random() * (maxLength + 1))));
}

async function flipByte(abs: string, offset: number): Promise<void> {
  const fh = await openFile(abs, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0]! ^= 0x10;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

describe('record log', () => {
  test('records round-trip in order, with their types and offsets, through an encrypted file', async () => {
    const payloads = [...randomPayloads(200, 300), Buffer.alloc(0), randomBytes(3 << 20), randomBytes(1 << 20), ...randomPayloads(20, 50)];
    payloads[7] = Buffer.concat([MARKER, MARKER]);
    const types = payloads.map((_, i) => i % 256);
    const w = await writeLog(payloads, types);
    const raw = await readFile(w.abs);
    assert.equal(raw.length, w.offsets.at(-1));
    assert.equal(raw.indexOf(MARKER), -1, 'the payload is not on disk in plaintext');
    for (const [label, read] of READERS) {
      const got = await read(w.name);
      assertRecords(got, w, payloads.length, label);
      assert.equal(got.tornTailAt, undefined, label);
    }
  });

  test('an empty log holds no records', async () => {
    const w = await writeLog([]);
    for (const [label, read] of READERS) assert.deepEqual(await read(w.name), { records: [] }, label);
  });

  test('the header checksum covers length and type; the tag covers them and the payload, bound to the offset', async () => {
    const w = await writeLog([Buffer.from('abcd'), Buffer.from('abc')], [5, 7]);
    const f = await env.openRead(w.name);
    const plain = f.readSync(0, f.size);
    try {
      const at = w.offsets[1]!;
      assert.equal(plain.readUInt32LE(at), crc32c(plain.subarray(at + 4, at + RECORD_HEADER_BYTES)));
      assert.equal(plain.readUInt32LE(at + 4), 3);
      assert.equal(plain[at + 8], 7);
      const tag = plain.subarray(at + RECORD_HEADER_BYTES + 3, at + RECORD_HEADER_BYTES + 3 + TAG_BYTES);
      assert.ok(f.auth!.verify(AuthDomain.LogRecord, at, plain.subarray(at, at + RECORD_HEADER_BYTES + 3), tag));
      // The same bytes at another offset, or as another kind of unit, do not verify.
      assert.ok(!f.auth!.verify(AuthDomain.LogRecord, 0, plain.subarray(at, at + RECORD_HEADER_BYTES + 3), tag));
      assert.ok(!f.auth!.verify(AuthDomain.TableBlock, at, plain.subarray(at, at + RECORD_HEADER_BYTES + 3), tag));
    } finally {
      f.close();
    }
  });

  test('an invalid record type is refused', async () => {
    const writer = new LogWriter(await env.create('bad-type.log'));
    await assert.rejects(writer.addRecord(Buffer.from('x'), 256), RangeError);
    await assert.rejects(writer.addRecord(Buffer.from('x'), -1), RangeError);
    await writer.close();
  });

  test('a log cut at any byte of a record keeps the records before it and reports the torn tail', async () => {
    const w = await writeLog(randomPayloads(8, 40).map((p, i) => (i === 3 ? Buffer.alloc(0) : p)));
    const raw = await readFile(w.abs);
    const n = w.payloads.length;
    for (const k of [0, 3, 5, n - 1]) {
      for (let cut = w.offsets[k]!; cut < w.offsets[k + 1]!; cut++) {
        await writeFile(w.abs, raw.subarray(0, cut));
        for (const [label, read] of READERS) {
          const capture = captureLogger();
          const got = await read(w.name, capture.logger);
          const what = `${label}, record ${k} cut at ${cut}`;
          assertRecords(got, w, k, what);
          if (cut === w.offsets[k]) {
            assert.equal(got.tornTailAt, undefined, what);
            assert.equal(capture.warnings().length, 0, what);
          } else {
            assert.equal(got.tornTailAt, w.offsets[k], what);
            const warnings = capture.warnings();
            assert.equal(warnings.length, 1, what);
            assert.equal(warnings[0]!.file, w.name, what);
            assert.equal(warnings[0]!.offset, w.offsets[k], what);
          }
        }
      }
    }
  });

  test('a flipped byte in a middle record is damage: DATA_CORRUPTED naming the file and offset', async () => {
    const w = await writeLog(randomPayloads(6, 60).map((p) => Buffer.concat([Buffer.from('x'), p])));
    const raw = await readFile(w.abs);
    for (const k of [0, 2, 4]) {
      const start = w.offsets[k]!;
      const end = w.offsets[k + 1]!;
      // header checksum, length, type, and every payload and tag byte.
      for (const at of [start, start + 3, start + 4, start + 7, start + 8, ...Array.from({ length: end - start - 9 }, (_, i) => start + 9 + i)]) {
        await writeFile(w.abs, raw);
        await flipByte(w.abs, at);
        for (const [label, read] of READERS) {
          await assert.rejects(read(w.name), expectCode('DATA_CORRUPTED', w.name, `offset ${start}`, 'restore'), `${label}: flip at ${at}`);
        }
      }
    }
  });

  test('a flipped byte in the last, complete record is damage, not a torn tail (it may be an acknowledged write)', async () => {
    const w = await writeLog(randomPayloads(5, 60).map((p) => Buffer.concat([Buffer.from('y'), p])));
    const raw = await readFile(w.abs);
    const last = w.payloads.length - 1;
    for (let at = w.offsets[last]!; at < w.offsets[last + 1]!; at++) {
      await writeFile(w.abs, raw);
      await flipByte(w.abs, at);
      for (const [label, read] of READERS) {
        await assert.rejects(read(w.name), expectCode('DATA_CORRUPTED', w.name, `offset ${w.offsets[last]}`), `${label}: flip at ${at}`);
      }
      // The explicit point-in-time mode stops there instead, keeping what came before.
      const got = await withFile(w.name, (f) => readLog(f, undefined, { onDamage: 'stop' }));
      assertRecords(got, w, last, `stop mode: flip at ${at}`);
      assert.equal(got.damagedAt, w.offsets[last]);
    }
  });

  test('garbage after the last record (a crash that extended the file but not its data) is a torn tail', async () => {
    const w = await writeLog(randomPayloads(4, 100));
    const raw = await readFile(w.abs);
    await writeFile(w.abs, Buffer.concat([raw, Buffer.alloc(4096)]));
    for (const [label, read] of READERS) {
      const got = await read(w.name);
      assertRecords(got, w, 4, label);
      assert.equal(got.tornTailAt, w.offsets[4], label);
    }
  });

  test('the torn-tail warning names the file and offset but never the record bytes', async () => {
    const secret = Buffer.from('user-secret-value-0123456789');
    const w = await writeLog([randomBytes(10), Buffer.concat([secret, secret])]);
    const raw = await readFile(w.abs);
    await writeFile(w.abs, raw.subarray(0, raw.length - 5));
    const capture = captureLogger();
    await READERS[0]![1](w.name, capture.logger);
    const text = JSON.stringify(capture.lines);
    assert.ok(text.includes(w.name) && text.includes(String(w.offsets[1])), text);
    for (const enc of ['utf8', 'hex', 'base64'] as const) assert.ok(!text.includes(secret.subarray(0, 12).toString(enc)), `no ${enc} payload in ${text}`);
  });

  test('space reserved ahead of synchronous appends reads as the end of the log; closing cuts it off', async () => {
    const name = `${String(++fileNo).padStart(6, '0')}.log`;
    const writer = new LogWriter(await env.create(name));
    writer.file.reserveAhead(4096);
    const payloads = Array.from({ length: 40 }, () => randomBytes(150));
    for (const p of payloads) writer.addRecordSync(p);
    await writer.sync();
    const abs = join(env.dataDir, name);
    const written = writer.size;
    assert.ok(written > 4096, `the records run past one step (${written} bytes)`);
    assert.equal((await readFile(abs)).length, Math.ceil(written / 4096) * 4096, 'the size is set in whole steps ahead');
    const offsets = [0];
    for (const p of payloads) offsets.push(offsets.at(-1)! + RECORD_HEADER_BYTES + p.length + TAG_BYTES);
    const w: Written = { name, abs, payloads, types: payloads.map(() => 1), offsets };
    for (const [label, read] of READERS) {
      const got = await read(name);
      assertRecords(got, w, payloads.length, `${label}, open`);
      assert.equal(got.tornTailAt, written, `${label}: the zeros after the last record end the log`);
    }
    await writer.close();
    assert.equal((await readFile(abs)).length, written, 'closed, the file ends at its last record');
    for (const [label, read] of READERS) {
      const got = await read(name);
      assertRecords(got, w, payloads.length, `${label}, closed`);
      assert.equal(got.tornTailAt, undefined, label);
    }
  });

  test('with zeros after it, the last record is torn only where 16 or more of its bytes never landed, with nothing after', async () => {
    // Three records of 125 bytes: all in the file's first 512-byte sector. On disk the bytes
    // are ciphertext; one whose last header byte happens to be zero (1 in 256) cannot be told
    // from a header cut short once the rest of the record is zeroed, so such a log is written
    // again (the reader is right to call that torn).
    let w = await writeLog([randomBytes(100), randomBytes(100), randomBytes(100)]);
    let raw = await readFile(w.abs);
    while (raw[w.offsets[2]! + RECORD_HEADER_BYTES - 1] === 0) {
      w = await writeLog([randomBytes(100), randomBytes(100), randomBytes(100)]);
      raw = await readFile(w.abs);
    }
    const last = w.offsets[2]!;
    assert.ok(w.offsets[3]! < SECTOR_BYTES);
    const withTail = (edit: (b: Buffer) => void): Buffer => {
      const b = Buffer.concat([raw, Buffer.alloc(8192)]);
      edit(b);
      return b;
    };
    const damaged: Array<[string, Buffer]> = [
      ['a header byte of the last record flipped', withTail((b) => (b[last + 5]! ^= 0x01))],
      ['a tag byte of the last record flipped', withTail((b) => (b[w.offsets[3]! - 1]! ^= 0x80))],
      ['the last record\'s final 10 bytes zeroed: fewer than a cut-short write leaves', withTail((b) => b.fill(0, w.offsets[3]! - 10, w.offsets[3]!))],
      ['a header byte of the last record flipped, the rest of it zeroed', withTail((b) => ((b[last + 2]! ^= 0x04), b.fill(0, last + RECORD_HEADER_BYTES, w.offsets[3]!)))],
      ['a middle header flipped, intact records after it', withTail((b) => (b[w.offsets[1]! + 1]! ^= 0x10))],
    ];
    for (const [what, bytes] of damaged) {
      await writeFile(w.abs, bytes);
      const at = what.startsWith('a middle') ? w.offsets[1]! : last;
      for (const [label, read] of READERS) await assert.rejects(read(w.name), expectCode('DATA_CORRUPTED', w.name, `offset ${at}`), `${label}: ${what}`);
    }
    // Torn: the last record's share of its sector is zeros (an append that never landed), its
    // last 20 bytes are (a write the disk filled part way), or its header was cut short.
    const torn: Array<[string, Buffer]> = [
      ['its sector share zeroed', withTail((b) => b.fill(0, last, w.offsets[3]!))],
      ['its final 20 bytes zeroed', withTail((b) => b.fill(0, w.offsets[3]! - 20, w.offsets[3]!))],
      ['zeros from inside its header on', withTail((b) => b.fill(0, last + 5, w.offsets[3]!))],
    ];
    for (const [what, bytes] of torn) {
      await writeFile(w.abs, bytes);
      for (const [label, read] of READERS) {
        const got = await read(w.name);
        assertRecords(got, w, 2, `${label}: ${what}`);
        assert.equal(got.tornTailAt, last, `${label}: ${what}`);
      }
    }
  });

  test('fewer than 16 zero bytes at a sector edge of the last record are damage, not a torn write', async () => {
    // The fourth record runs 5 bytes into the second sector; those 5 zeroed could be a sector
    // that never landed, or chance and damage: under 16 bytes, the reader refuses.
    const w = await writeLog([randomBytes(100), randomBytes(100), randomBytes(100), randomBytes(117)]);
    assert.equal(w.offsets[4], SECTOR_BYTES + 5);
    const raw = await readFile(w.abs);
    const bytes = Buffer.concat([raw, Buffer.alloc(4096)]);
    bytes.fill(0, SECTOR_BYTES, SECTOR_BYTES + 5);
    await writeFile(w.abs, bytes);
    for (const [label, read] of READERS) await assert.rejects(read(w.name), expectCode('DATA_CORRUPTED', w.name, `offset ${w.offsets[3]}`), label);
  });

  test('the damage message says the file is damaged and what to do', async () => {
    const w = await writeLog([randomBytes(20), randomBytes(20), randomBytes(20)]);
    await flipByte(w.abs, w.offsets[1]! + 12);
    const err = await READERS[0]![1](w.name).then(
      () => assert.fail('expected an error'),
      (e: unknown) => e as Error,
    );
    assert.match(err.message, new RegExp(`^${w.name.replace('.', '\\.')} is damaged at offset ${w.offsets[1]}: .*complete but it fails its authentication tag.*not cut short by a crash.*restore the data dir from a backup`));
  });
});

describe('record log, format 1 (plaintext files: CRC-32C, no tag)', () => {
  test('a torn last record is dropped; a complete record failing its checksum is damage, last or not', async () => {
    const dir = join(root, 'plain');
    const plainEnv = await EncryptedEnv.open({
      dataDir: dir,
      method: 'plaintext',
      rotationPeriodMs: 7 * 24 * 3600 * 1000,
      masterKey,
      fileDictionaryLog: true,
      fileDictionaryRewriteThreshold: 1_000_000,
      logger: silentLogger(),
    });
    try {
      const payloads = randomPayloads(5, 40).map((p) => Buffer.concat([Buffer.from('z'.repeat(20)), p]));
      const writer = new LogWriter(await plainEnv.create('p.log'));
      assert.equal(writer.file.auth, undefined, 'a plaintext file has no key to make tags with');
      for (const p of payloads) await writer.addRecord(p);
      await writer.sync();
      await writer.close();
      const abs = join(dir, 'p.log');
      const raw = await readFile(abs);
      const offsets = [0];
      for (const p of payloads) offsets.push(offsets.at(-1)! + RECORD_HEADER_BYTES + p.length);
      assert.equal(raw.length, offsets.at(-1), 'format 1 records carry no tag');
      const last = payloads.length - 1;
      const read = async (): Promise<LogContents> => {
        const f = await plainEnv.openRead('p.log');
        try {
          return readLog(f);
        } finally {
          f.close();
        }
      };
      await writeFile(abs, raw.subarray(0, offsets[last]! + 4));
      const torn = await read();
      assert.equal(torn.records.length, last);
      assert.equal(torn.tornTailAt, offsets[last]);
      for (const at of [offsets[1]! + 10, offsets[last]! + 10]) {
        await writeFile(abs, raw);
        await flipByte(abs, at);
        await assert.rejects(read(), expectCode('DATA_CORRUPTED', 'p.log'), `flip at ${at}`);
      }
    } finally {
      await plainEnv.close();
    }
  });
});
