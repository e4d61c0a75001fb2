import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { FileDictionary, LOG_NAME, SNAPSHOT_NAME, type FileDictionaryOptions } from '../src/keys/file-dictionary.js';
import { HEADER_LENGTH, LOG_PREAMBLE_LENGTH, encodeRecord, type FileEntry, type FileRecord } from '../src/keys/file-dictionary-format.js';

const macKey = randomBytes(32);
/** Bytes one logged batch takes: its frame (length, checksum, MAC) and its records. */
const batchLength = (records: readonly FileRecord[]) => 8 + 32 + records.reduce((n, r) => n + encodeRecord(r).length, 0);
import { silentLogger, type Logger } from '../src/log/logger.js';
import { captureLogger, cleanup, expectCode, snapshotTree, assertSameTree, tempDir } from './support/fs-helpers.js';

let root: string;
let dir: string;

function options(useLog: boolean, logger: Logger = silentLogger(), rewriteThreshold = 1_000_000, at = dir): FileDictionaryOptions {
  return { dir: at, useLog, rewriteThreshold, logger, macKey };
}

async function openDict(o: FileDictionaryOptions): Promise<FileDictionary> {
  const d = await FileDictionary.load(o);
  await d.beginWrites();
  return d;
}

let nextKeyId = 1000;
function entry(method: FileEntry['method'] = 'aes256-ctr'): FileEntry {
  return { method, keyId: method === 'plaintext' ? 0 : nextKeyId++, iv: randomBytes(16), authenticated: false };
}

/** A comparable view of a dictionary's contents. */
function stateOf(entries: Iterable<[string, FileEntry]>): Array<[string, string]> {
  return [...entries]
    .map(([p, e]): [string, string] => [p, describeEntry(e)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function describeEntry(e: FileEntry): string {
  const info = (i: Omit<FileEntry, 'pending'>) => `${i.method}/${i.keyId}/${i.iv.toString('hex')}`;
  const p = e.pending;
  return info(e) + (p ? ` pending(from=${p.from}${p.previous ? ` previous=${info(p.previous)}` : ''})` : '');
}

/** What replaying `records` onto `start` gives. */
function replay(records: readonly FileRecord[], start: Map<string, FileEntry> = new Map()): Map<string, FileEntry> {
  const m = new Map(start);
  for (const r of records) {
    if (r.op === 'set') m.set(r.path, r.entry);
    else m.delete(r.path);
  }
  return m;
}

const generationOf = async (name: string) => (await readFile(join(dir, name))).readBigUInt64LE(10);

/** A representative mix: plain sets, a rename-style pair, a pending rename with a replaced target, removes. */
function sampleRecords(n: number): FileRecord[][] {
  const out: FileRecord[][] = [];
  for (let i = 0; i < n; i++) {
    switch (i % 6) {
      case 0:
      case 1:
        out.push([{ op: 'set', path: `db/${String(i).padStart(6, '0')}.sst`, entry: entry(i % 12 === 1 ? 'plaintext' : 'aes256-ctr') }]);
        break;
      case 2:
        out.push([{ op: 'set', path: `wal/${i}.log`, entry: { ...entry('sm4-ctr'), pending: { from: `wal/${i}.tmp`, previous: entry('aes128-ctr') } } }]);
        break;
      case 3: {
        const e = entry();
        out.push([
          { op: 'remove', path: `db/${String(i - 3).padStart(6, '0')}.sst` },
          { op: 'set', path: `MANIFEST-${i}`, entry: e },
        ]);
        break;
      }
      case 4:
        out.push([{ op: 'set', path: `dir/deeper/ünïcødé-${i}`, entry: { ...entry('aes192-ctr'), pending: { from: `tmp-${i}` } } }]);
        break;
      default:
        out.push([{ op: 'remove', path: `wal/${i - 3}.log` }]);
    }
  }
  return out;
}

/** Applies sampleRecords(n) one batch at a time; returns the log size after each batch. */
async function writeLog(n: number): Promise<{ batches: FileRecord[][]; boundaries: number[]; logPath: string }> {
  const d = await openDict(options(true));
  const batches = sampleRecords(n);
  const boundaries: number[] = [];
  const logPath = join(dir, LOG_NAME);
  for (const b of batches) {
    await d.apply(b);
    boundaries.push((await stat(logPath)).size);
  }
  await d.close();
  return { batches, boundaries, logPath };
}

beforeEach(async () => {
  root = await tempDir();
  dir = join(root, 'encryption-meta');
});

afterEach(async () => {
  await cleanup(root);
});

describe('FileDictionary', () => {
  for (const useLog of [true, false]) {
    test(`${useLog ? 'log' : 'snapshot'} mode: set, remove and rename-style records survive reopen`, async () => {
      const d = await openDict(options(useLog));
      const batches = sampleRecords(18);
      for (const b of batches) await d.apply(b);
      await d.set('single', entry('aes128-ctr'));
      await d.remove('db/000000.sst'); // already removed: a no-op record
      await d.remove('single');
      const expected = stateOf(replay(batches.flat()));
      assert.deepEqual(stateOf(d.entries()), expected);
      assert.ok(expected.length > 8);
      await d.close();

      const files = (await readdir(dir)).sort();
      assert.deepEqual(files, useLog ? [SNAPSHOT_NAME, LOG_NAME] : [SNAPSHOT_NAME]);

      const loaded = await FileDictionary.load(options(useLog));
      assert.deepEqual(stateOf(loaded.entries()), expected);
      await loaded.beginWrites();
      await loaded.close();
      const again = await FileDictionary.load(options(!useLog));
      assert.deepEqual(stateOf(again.entries()), expected, 'the other mode reads the same state');
    });
  }

  test('log mode appends records instead of rewriting the snapshot', async () => {
    const d = await openDict(options(true));
    const snapPath = join(dir, SNAPSHOT_NAME);
    const logPath = join(dir, LOG_NAME);
    const snapBefore = await stat(snapPath);
    const snapBytes = await readFile(snapPath);
    const gen = await generationOf(SNAPSHOT_NAME);
    let logSize = (await stat(logPath)).size;
    assert.equal(logSize, LOG_PREAMBLE_LENGTH);
    await new Promise((r) => setTimeout(r, 20)); // so that an mtime change would show
    for (const batch of sampleRecords(12)) {
      await d.apply(batch);
      const size = (await stat(logPath)).size;
      assert.equal(size, logSize + batchLength(batch), 'the log grows by exactly the records');
      logSize = size;
    }
    const snapAfter = await stat(snapPath);
    assert.equal(snapAfter.ino, snapBefore.ino, 'the snapshot was not replaced');
    assert.equal(snapAfter.size, snapBefore.size);
    assert.equal(snapAfter.mtimeMs, snapBefore.mtimeMs);
    assert.ok((await readFile(snapPath)).equals(snapBytes));
    assert.equal(await generationOf(SNAPSHOT_NAME), gen);
    await d.close();
  });

  test('snapshot mode rewrites the snapshot per change and keeps no log', async () => {
    const d = await openDict(options(false));
    const gen = await generationOf(SNAPSHOT_NAME);
    await d.set('a', entry());
    await d.set('b', entry());
    assert.equal(await generationOf(SNAPSHOT_NAME), gen + 2n, 'one snapshot per change');
    assert.deepEqual(stateOf((await FileDictionary.load(options(false))).entries()), stateOf(d.entries()));
    assert.deepEqual(await readdir(dir), [SNAPSHOT_NAME]);
    await d.close();
  });

  test('compaction: when removes exceed the threshold, the log shrinks to its header and the snapshot holds the state', async () => {
    const d = await openDict(options(true, silentLogger(), 3));
    for (let i = 0; i < 10; i++) await d.set(`f${i}`, entry());
    const gen = await generationOf(SNAPSHOT_NAME);
    assert.equal(await generationOf(LOG_NAME), gen);
    for (let i = 0; i < 3; i++) await d.remove(`f${i}`);
    assert.equal(await generationOf(SNAPSHOT_NAME), gen, 'three removes do not exceed a threshold of 3');
    assert.ok((await stat(join(dir, LOG_NAME))).size > LOG_PREAMBLE_LENGTH);
    const expected = stateOf([...d.entries()].filter(([p]) => p !== 'f3'));

    await d.remove('f3');
    assert.equal((await stat(join(dir, LOG_NAME))).size, LOG_PREAMBLE_LENGTH);
    assert.equal(await generationOf(SNAPSHOT_NAME), gen + 1n);
    assert.equal(await generationOf(LOG_NAME), gen + 1n);
    assert.deepEqual(stateOf(d.entries()), expected);

    // The snapshot alone holds the state: an empty log adds nothing.
    const fromDisk = await FileDictionary.load(options(true));
    assert.deepEqual(stateOf(fromDisk.entries()), expected);
    assert.equal(fromDisk.size, 6);

    // The counter restarted: three more removes do not compact again.
    for (let i = 4; i < 7; i++) await d.remove(`f${i}`);
    assert.equal(await generationOf(SNAPSHOT_NAME), gen + 1n);
    await d.close();
  });

  test('crash at any byte of the last three records: loads, keeps complete records, drops only the torn one with a warning', async () => {
    const { batches, boundaries, logPath } = await writeLog(14);
    const snapshot = await readFile(join(dir, SNAPSHOT_NAME));
    const log = await readFile(logPath);
    assert.equal(boundaries.at(-1), log.length);

    const from = boundaries[batches.length - 4]!; // start of the third-to-last record
    let torn = 0;
    for (let offset = from; offset <= log.length; offset++) {
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir);
      await writeFile(join(dir, SNAPSHOT_NAME), snapshot);
      const cut = log.subarray(0, offset);
      await writeFile(logPath, cut);

      const complete = boundaries.filter((b) => b <= offset).length;
      const expected = stateOf(replay(batches.slice(0, complete).flat()));
      const cap = captureLogger();
      const loaded = await FileDictionary.load(options(true, cap.logger));
      assert.deepEqual(stateOf(loaded.entries()), expected, `offset ${offset}`);
      const warnings = cap.warnings();
      if (boundaries.includes(offset)) {
        assert.equal(warnings.length, 0, `offset ${offset} is a record boundary`);
      } else {
        torn++;
        assert.equal(warnings.length, 1, `offset ${offset}`);
        assert.equal(warnings[0]!['file'], logPath);
        assert.equal(warnings[0]!['offset'], boundaries[complete - 1]);
        assert.equal(warnings[0]!['droppedBytes'], offset - boundaries[complete - 1]!);
        assert.match(warnings[0]!.msg, /incomplete append/);
      }
      assert.ok((await readFile(logPath)).equals(cut), 'load must not change the log');

      await loaded.beginWrites();
      await loaded.close();
      const cap2 = captureLogger();
      const reloaded = await FileDictionary.load(options(true, cap2.logger));
      assert.deepEqual(stateOf(reloaded.entries()), expected, `offset ${offset} after beginWrites`);
      assert.equal(cap2.warnings().length, 0, `offset ${offset}: the torn tail is gone after beginWrites`);
      assert.equal((await stat(logPath)).size, LOG_PREAMBLE_LENGTH);
    }
    assert.ok(torn > 60, `only ${torn} torn offsets were tried`);
  });

  test('a zero-filled tail (a crash after the size grew, before the data landed) is a torn tail', async () => {
    const d = await openDict(options(true));
    const batches = sampleRecords(6);
    for (const b of batches) await d.apply(b);
    await d.close();
    const logPath = join(dir, LOG_NAME);
    const good = await readFile(logPath);
    const expected = stateOf(replay(batches.flat()));

    await appendFile(logPath, Buffer.alloc(100));
    let cap = captureLogger();
    let loaded = await FileDictionary.load(options(true, cap.logger));
    assert.deepEqual(stateOf(loaded.entries()), expected);
    assert.equal(cap.warnings().length, 1);
    assert.equal(cap.warnings()[0]!['offset'], good.length);
    assert.equal(cap.warnings()[0]!['file'], logPath);

    // The last batch's bytes zeroed in place: that batch is dropped, the rest kept.
    const lastLen = batchLength(batches.at(-1)!);
    const zeroed = Buffer.concat([good.subarray(0, good.length - lastLen), Buffer.alloc(lastLen)]);
    await writeFile(logPath, zeroed);
    cap = captureLogger();
    loaded = await FileDictionary.load(options(true, cap.logger));
    assert.deepEqual(stateOf(loaded.entries()), stateOf(replay(batches.slice(0, -1).flat())));
    assert.equal(cap.warnings()[0]!['offset'], good.length - lastLen);
    await loaded.beginWrites();
    await loaded.close();
    cap = captureLogger();
    await FileDictionary.load(options(true, cap.logger));
    assert.equal(cap.warnings().length, 0);
  });

  test('a damaged length field before an intact last write is damage, not a torn tail', async () => {
    const { boundaries, logPath } = await writeLog(5);
    const bad = await readFile(logPath);
    // The second-to-last record now claims to run past the end of the file.
    const at = boundaries[2]!;
    bad.writeUInt32LE(60_000, at);
    await writeFile(logPath, bad);
    await assert.rejects(FileDictionary.load(options(true)), expectCode('FILE_DICTIONARY_DAMAGED', logPath, `at offset ${at}`));
  });

  test('one apply() is all or nothing: a write cut between its records drops all of them', async () => {
    const d = await openDict(options(true));
    await d.set('kept', entry());
    const logPath = join(dir, LOG_NAME);
    const before = (await stat(logPath)).size;
    const batch: FileRecord[] = [
      { op: 'remove', path: 'kept' },
      { op: 'set', path: 'new', entry: entry() },
    ];
    await d.apply(batch);
    await d.close();
    const full = await readFile(logPath);
    // Cut exactly after the first record of the batch: a record boundary, yet incomplete.
    const cut = before + 8 + 32 + encodeRecord(batch[0]!).length;
    await writeFile(logPath, full.subarray(0, cut));
    const cap = captureLogger();
    const loaded = await FileDictionary.load(options(true, cap.logger));
    assert.deepEqual([...loaded.entries()].map(([p]) => p), ['kept']);
    assert.equal(cap.warnings().length, 1);
    assert.equal(cap.warnings()[0]!['offset'], before);
  });

  test('damage before the tail refuses to load, naming the file and the offset, and changes nothing', async () => {
    const { boundaries, logPath } = await writeLog(8);
    const good = await readFile(logPath);

    // Records 2, 3 and 5 (0-based): a payload byte, a CRC byte, the last payload byte.
    const cases = [
      { start: boundaries[1]!, at: boundaries[1]! + 8 + 3 },
      { start: boundaries[2]!, at: boundaries[2]! + 5 },
      { start: boundaries[4]!, at: boundaries[5]! - 1 },
    ];
    for (const { start, at } of cases) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x40;
      await writeFile(logPath, bad);
      const before = await snapshotTree(root);
      await assert.rejects(FileDictionary.load(options(true)), expectCode('FILE_DICTIONARY_DAMAGED', logPath, `at offset ${start}`));
      assertSameTree(await snapshotTree(root), before, 'a refused load');
    }
  });

  test('a damaged snapshot is FILE_DICTIONARY_DAMAGED naming it; a newer snapshot is FORMAT_TOO_NEW', async () => {
    const d = await openDict(options(false));
    for (const b of sampleRecords(6)) await d.apply(b);
    await d.close();
    const snapPath = join(dir, SNAPSHOT_NAME);
    const good = await readFile(snapPath);

    const flipped = Buffer.from(good);
    flipped[HEADER_LENGTH + 20]! ^= 1;
    const badMagic = Buffer.from(good);
    badMagic[0]! ^= 1;
    for (const [what, bytes] of [
      ['a flipped record byte', flipped],
      ['a missing last byte', good.subarray(0, good.length - 1)],
      ['a zero-filled tail', Buffer.concat([good, Buffer.alloc(32)])],
      ['bad magic', badMagic],
      ['a cut header', good.subarray(0, HEADER_LENGTH - 1)],
    ] as const) {
      await writeFile(snapPath, bytes);
      await assert.rejects(FileDictionary.load(options(false)), expectCode('FILE_DICTIONARY_DAMAGED', snapPath), what);
    }

    const newer = Buffer.from(good);
    newer.writeUInt16LE(3, 8);
    newer.writeUInt32LE(crc32(newer.subarray(0, HEADER_LENGTH - 4)) >>> 0, HEADER_LENGTH - 4);
    await writeFile(snapPath, newer);
    await assert.rejects(FileDictionary.load(options(false)), expectCode('FORMAT_TOO_NEW', snapPath, 'version 3'));
  });

  test('a log in a newer format is FORMAT_TOO_NEW and says how to downgrade', async () => {
    const d = await openDict(options(true));
    await d.set('a', entry());
    await d.close();
    const logPath = join(dir, LOG_NAME);
    const log = await readFile(logPath);
    log.writeUInt16LE(log.readUInt16LE(8) + 1, 8);
    log.writeUInt32LE(crc32(log.subarray(0, HEADER_LENGTH - 4)) >>> 0, HEADER_LENGTH - 4);
    await writeFile(logPath, log);
    await assert.rejects(FileDictionary.load(options(true)), expectCode('FORMAT_TOO_NEW', logPath, '`enable-file-dictionary-log = false`'));
  });

  test('a stale log (crash after the snapshot was written during compaction) is ignored', async () => {
    const d = await openDict(options(true, silentLogger(), 2));
    await d.set('ghost', entry());
    await d.set('a', entry());
    await d.set('b', entry());
    await d.set('survivor', entry());
    const oldLog = await readFile(join(dir, LOG_NAME));
    const gen = await generationOf(LOG_NAME);
    await d.remove('ghost');
    await d.remove('a');
    await d.remove('b'); // third remove > 2: compaction to gen + 1
    assert.equal(await generationOf(SNAPSHOT_NAME), gen + 1n);
    const expected = stateOf(d.entries());
    assert.deepEqual(expected.map(([p]) => p), ['survivor']);
    await d.close();

    // The new log never got written: the old one, with records already in the snapshot, is back.
    await writeFile(join(dir, LOG_NAME), oldLog);
    const cap = captureLogger();
    const loaded = await FileDictionary.load(options(true, cap.logger));
    assert.deepEqual(stateOf(loaded.entries()), expected, 'records of the stale log must not be replayed');
    assert.equal(cap.warnings().length, 0);
    await loaded.beginWrites();
    await loaded.set('after', entry());
    await loaded.close();
    assert.equal(await generationOf(LOG_NAME), await generationOf(SNAPSHOT_NAME));
    const reloaded = await FileDictionary.load(options(true));
    assert.deepEqual(stateOf(reloaded.entries()).map(([p]) => p), ['after', 'survivor']);
  });

  test('a log newer than the snapshot (mixed backups) is FILE_DICTIONARY_DAMAGED; so is a log without snapshot', async () => {
    const d = await openDict(options(true, silentLogger(), 0));
    await d.set('a', entry());
    const oldSnapshot = await readFile(join(dir, SNAPSHOT_NAME));
    await d.remove('a'); // compacts
    await d.set('b', entry());
    await d.close();
    await writeFile(join(dir, SNAPSHOT_NAME), oldSnapshot);
    await assert.rejects(FileDictionary.load(options(true)), expectCode('FILE_DICTIONARY_DAMAGED', join(dir, LOG_NAME), join(dir, SNAPSHOT_NAME), 'same one'));

    await rm(join(dir, SNAPSHOT_NAME));
    await assert.rejects(FileDictionary.load(options(true)), expectCode('FILE_DICTIONARY_DAMAGED', join(dir, SNAPSHOT_NAME), 'missing'));
  });

  test('load changes nothing on disk; beginWrites removes stray tmp files', async () => {
    const d = await openDict(options(true));
    await d.set('a', entry());
    await d.close();
    await writeFile(join(dir, `${SNAPSHOT_NAME}.tmp`), 'half a snapshot');
    await writeFile(join(dir, `${LOG_NAME}.tmp`), 'half a log');
    await writeFile(join(dir, 'key.dict.tmp'), 'half a key dictionary');
    await writeFile(join(dir, 'unrelated'), 'kept');
    const before = await snapshotTree(root);
    const loaded = await FileDictionary.load(options(true));
    assertSameTree(await snapshotTree(root), before, 'load');
    await loaded.beginWrites();
    await loaded.close();
    assert.deepEqual((await readdir(dir)).sort(), [SNAPSHOT_NAME, LOG_NAME, 'unrelated'].sort());
    assert.equal(loaded.size, 1);
  });

  test('load of a missing dir creates nothing; apply before beginWrites is refused', async () => {
    const d = await FileDictionary.load(options(true));
    assert.equal(d.size, 0);
    await assert.rejects(d.set('a', entry()), expectCode('CLOSED'));
    assert.deepEqual(await readdir(root), []);
  });

  test('switching the log off folds it into the snapshot and removes it; switching back works', async () => {
    const d = await openDict(options(true));
    for (const b of sampleRecords(9)) await d.apply(b);
    const expected = stateOf(d.entries());
    await d.close();
    assert.ok((await stat(join(dir, LOG_NAME))).size > LOG_PREAMBLE_LENGTH);

    const off = await openDict(options(false));
    assert.deepEqual(await readdir(dir), [SNAPSHOT_NAME]);
    assert.deepEqual(stateOf(off.entries()), expected);
    await off.set('written-without-log', entry());
    assert.deepEqual(await readdir(dir), [SNAPSHOT_NAME]);
    const expected2 = stateOf(off.entries());
    await off.close();

    // The snapshot alone has everything.
    assert.deepEqual(stateOf((await FileDictionary.load(options(false))).entries()), expected2);
    const on = await openDict(options(true));
    assert.deepEqual(stateOf(on.entries()), expected2);
    await on.set('with-log-again', entry());
    await on.close();
    assert.deepEqual((await readdir(dir)).sort(), [SNAPSHOT_NAME, LOG_NAME].sort());
    assert.equal((await FileDictionary.load(options(true))).size, expected2.length + 1);
  });

  for (const useLog of [true, false]) {
    test(`group commit (${useLog ? 'log' : 'snapshot'} mode): 100 concurrent applies all resolve, in order, and survive reopen`, async () => {
      const d = await openDict(options(useLog));
      const expected = new Map<string, FileEntry>();
      const pending: Array<Promise<void>> = [];
      for (let i = 0; i < 100; i++) {
        const e = entry();
        pending.push(d.set(`f${i}`, e));
        if (i % 2 === 1) pending.push(d.remove(`f${i}`)); // queued after its own set
        else expected.set(`f${i}`, e);
      }
      await Promise.all(pending);
      assert.deepEqual(stateOf(d.entries()), stateOf(expected));
      await d.close();
      const reloaded = await FileDictionary.load(options(useLog));
      assert.deepEqual(stateOf(reloaded.entries()), stateOf(expected));
      assert.equal(reloaded.size, 50);
    });
  }

  test('usedKeyIds includes the previous key of a rename in flight, never 0', async () => {
    const d = await openDict(options(true));
    const a = entry('aes256-ctr');
    const previous = entry('sm4-ctr');
    await d.set('a', a);
    await d.set('plain', entry('plaintext'));
    await d.set('b', { ...entry('aes128-ctr'), pending: { from: 'x', previous } });
    await d.set('c', { ...entry('plaintext'), pending: { from: 'y', previous: entry('plaintext') } });
    const used = d.usedKeyIds();
    assert.ok(used.has(a.keyId));
    assert.ok(used.has(previous.keyId), 'the replaced file may still exist after a crash');
    assert.ok(used.has(d.get('b')!.keyId));
    assert.ok(!used.has(0));
    assert.equal(used.size, 3);
    await d.close();
  });
});
