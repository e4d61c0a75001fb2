import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { open as openFs, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { crc32c } from '../src/engine/crc32c.js';
import { encodeInternalKey, MAX_SEQUENCE, ValueKind } from '../src/engine/internal-key.js';
import { BlockCache } from '../src/engine/block-cache.js';
import { TableBuilder, type TableBuilderOptions } from '../src/engine/table-builder.js';
import { TableCache } from '../src/engine/table-cache.js';
import { tableLayout, verifyBlock, type BlockHandle, type TableProperties } from '../src/engine/table-format.js';
import { AuthDomain, TAG_BYTES } from '../src/crypto/file-auth.js';
import { TableReader } from '../src/engine/table-reader.js';
import { EncryptedEnv } from '../src/env/encrypted-env.js';
import type { EncryptedReadableFile } from '../src/env/readable-file.js';
import type { EncryptedWritableFile } from '../src/env/writable-file.js';
import { isTdekvError } from '../src/errors.js';
import { silentLogger } from '../src/log/logger.js';
import type { MasterKey } from '../src/masterkey/master-key.js';
import { cleanup, expectCode, newFileMasterKey, tempDir } from './support/fs-helpers.js';
import { assertAt, lowerBound, normalize, upperBoundPrev, walkProbes, type ModelEntry } from './support/iterator-model.js';

// ---- a sorted-array model of a table (the block tests have their own copy) ----

/** What get(key, seq) must return: the newest version at or below seq, deletions included. */
function expectedGet(model: ModelEntry[], key: Buffer, seq: number): ModelEntry | undefined {
  const e = model[lowerBound(model, key, seq)];
  return e && e.key.equals(key) ? e : undefined;
}


const arbKey = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 5 }).map((a) => Buffer.from(a.map((b) => b % 3))),
  fc.uint8Array({ minLength: 0, maxLength: 60 }).map((a) => Buffer.from(a)),
);
const arbSeq = fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: MAX_SEQUENCE }));
const arbEntry: fc.Arbitrary<ModelEntry> = fc.record({
  key: arbKey,
  seq: arbSeq,
  kind: fc.constantFrom<ValueKind>(ValueKind.Value, ValueKind.Value, ValueKind.Deletion),
  value: fc.oneof(fc.constant(Buffer.alloc(0)), fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a))),
});
const arbOptions: fc.Arbitrary<TableBuilderOptions> = fc.record({
  blockSize: fc.oneof(fc.integer({ min: 1, max: 600 }), fc.constant(4096)),
  blockRestartInterval: fc.integer({ min: 1, max: 16 }),
  bloomFilterBitsPerKey: fc.constantFrom(0, 1, 10),
});

function entriesOf(n: number, valueOf: (i: number) => Buffer = (i) => Buffer.from(`value-${i}`)): ModelEntry[] {
  return Array.from({ length: n }, (_, i) => ({ key: Buffer.from(`key-${String(i).padStart(6, '0')}`), seq: 1000 + i, kind: i % 9 === 4 ? ValueKind.Deletion : ValueKind.Value, value: i % 9 === 4 ? Buffer.alloc(0) : valueOf(i) }));
}

// ---- env ----

const DAY = 24 * 3600 * 1000;
let root: string;
let dataDir: string;
let masterKey: MasterKey;
let env: EncryptedEnv;

beforeEach(async () => {
  root = await tempDir();
  dataDir = join(root, 'data');
  masterKey = await newFileMasterKey(root);
  env = await EncryptedEnv.open({
    dataDir,
    method: 'aes256-ctr',
    rotationPeriodMs: 7 * DAY,
    masterKey,
    fileDictionaryLog: true,
    fileDictionaryRewriteThreshold: 1_000_000,
    logger: silentLogger(),
  });
});

afterEach(async () => {
  await env.close();
  masterKey.close();
  await cleanup(root);
});

const DEFAULTS: TableBuilderOptions = { blockSize: 4096, blockRestartInterval: 16, bloomFilterBitsPerKey: 10 };

async function writeTable(name: string, model: ModelEntry[], options: Partial<TableBuilderOptions> = {}): Promise<TableProperties> {
  const b = new TableBuilder(await env.create(name), { ...DEFAULTS, ...options });
  for (const e of model) b.add(e.key, e.seq, e.kind, e.value);
  return b.finish();
}

async function openTable(name: string, fileNumber = 1, cache = new BlockCache(1 << 20)): Promise<TableReader> {
  return TableReader.open(await env.openRead(name), fileNumber, cache);
}

/** Every check a table must pass against its model. */
function checkTable(t: TableReader, model: ModelEntry[], probes: Array<{ key: Buffer; seq: number }> = []): void {
  assert.deepEqual(t.verifyAll().entries, model.length);
  const it = t.iterator();
  let i = 0;
  for (it.seekToFirst(); it.valid(); it.next()) assertAt(it, model, i++, 'forward scan');
  assert.equal(i, model.length);
  i = model.length - 1;
  for (it.seekToLast(); it.valid(); it.prev()) assertAt(it, model, i--, 'backward scan');
  assert.equal(i, -1);
  it.close();

  const targets = [...model.flatMap((e) => [{ key: e.key, seq: e.seq }, { key: e.key, seq: Math.max(0, e.seq - 1) }, { key: e.key, seq: MAX_SEQUENCE }]), ...probes];
  for (const { key, seq } of targets) {
    const want = expectedGet(model, key, seq);
    const got = t.get(key, seq);
    if (!want) {
      assert.equal(got, undefined, `get of an absent key/version returned something`);
    } else {
      assert.ok(got, 'get missed an entry');
      assert.equal(got.kind, want.kind);
      assert.equal(got.seq, want.seq);
      assert.deepEqual(got.value, want.value);
      assert.equal(t.mayContain(key), true);
    }
  }
}

describe('SSTable', () => {
  test('round trip of random entries: gets, scans, seeks in both directions, properties', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(arbEntry, { maxLength: 250 }),
        arbOptions,
        fc.array(fc.tuple(fc.record({ key: arbKey, seq: arbSeq }), fc.boolean(), fc.array(fc.constantFrom('next', 'prev'), { maxLength: 30 })), { maxLength: 12 }),
        async (raw, options, probes) => {
          const model = normalize(raw);
          const name = `${String(++run).padStart(6, '0')}.sst`;
          const props = await writeTable(name, model, options);
          assert.equal(props.entries, model.length);
          assert.equal(props.deletions, model.filter((e) => e.kind === ValueKind.Deletion).length);
          const first = model[0];
          const last = model[model.length - 1];
          assert.deepEqual(props.smallest, first ? encodeInternalKey(first.key, first.seq, first.kind) : Buffer.alloc(0));
          assert.deepEqual(props.largest, last ? encodeInternalKey(last.key, last.seq, last.kind) : Buffer.alloc(0));
          const t = await openTable(name);
          try {
            assert.equal(props.fileSize, t.file.size);
            assert.deepEqual(t.properties, props);
            checkTable(t, model, probes.map(([p]) => p));
            const it = t.iterator();
            walkProbes(it, model, probes);
            it.close();
          } finally {
            t.close();
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  test('a larger table: every key found, absent keys filtered, data encrypted on disk', async () => {
    const marker = Buffer.from('TDEKV-SSTABLE-MARKER-51c2');
    const model = entriesOf(20_000, (i) => Buffer.concat([marker, Buffer.from(String(i))]));
    model.splice(5000, 0, { key: Buffer.from('key-004999-big'), seq: 1, kind: ValueKind.Value, value: Buffer.alloc(200 * 1024, 7) });
    const b = new TableBuilder(await env.create('big.sst'), DEFAULTS);
    let lastSize = 0;
    for (const [i, e] of model.entries()) {
      b.add(e.key, e.seq, e.kind, e.value);
      if (i % 1000 === 999) {
        assert.ok(b.approximateSize > lastSize, 'approximateSize grows');
        lastSize = b.approximateSize;
        await b.drain();
      }
    }
    const props = await b.finish();
    assert.ok(props.dataBytes > 20_000 * 20 && props.dataBytes < props.fileSize);
    const onDisk = await readFile(join(dataDir, 'big.sst'));
    assert.equal(onDisk.length, props.fileSize);
    assert.equal(onDisk.indexOf(marker), -1, 'values are not on disk in plaintext');

    const cache = new BlockCache(1 << 20);
    const t = await openTable('big.sst', 9, cache);
    try {
      checkTable(t, model);
      assert.ok(cache.usage > 0 && cache.usage <= cache.capacity);
      assert.deepEqual(cache.files(), [9]);
      let falsePositives = 0;
      for (let i = 0; i < 5000; i++) {
        const k = Buffer.from(`absent-${i}`);
        assert.equal(t.get(k, MAX_SEQUENCE), undefined);
        if (t.mayContain(k)) falsePositives++;
      }
      assert.ok(falsePositives < 150, `bloom false positives: ${falsePositives}/5000`);
      const v = t.get(Buffer.from('key-004999-big'), MAX_SEQUENCE);
      assert.deepEqual(v?.value, Buffer.alloc(200 * 1024, 7));
    } finally {
      t.close();
    }
  });

  test('index entries are the shortest separators between blocks, and every key between two blocks reads right', async () => {
    // Random 16-byte keys, as most stores have: adjacent blocks' keys differ early, so their
    // separator is a byte or two; a few keys ending in 0xff bytes, where no shorter key fits.
    const keys = new Set<string>();
    while (keys.size < 6000) keys.add(Buffer.from(Array.from({ length: 16 }, () => randomInt(256))).toString('latin1'));
    for (let i = 0; i < 50; i++) keys.add(Buffer.concat([Buffer.from([i, 0xff, 0xff]), Buffer.alloc(i % 3, 0xff)]).toString('latin1'));
    const model = normalize([...keys].map((k, i) => ({ key: Buffer.from(k, 'latin1'), seq: 10 + i, kind: ValueKind.Value, value: Buffer.alloc(100, i % 251) })));
    await writeTable('sep.sst', model);
    const t = await openTable('sep.sst');
    try {
      const indexKeys: Buffer[] = [];
      for await (const { indexKey } of t.dataBlocks()) indexKeys.push(indexKey);
      assert.ok(indexKeys.length > 100, `${indexKeys.length} data blocks`);
      const userLengths = indexKeys.map((k) => k.length - 8);
      const short = userLengths.filter((n) => n <= 3).length;
      assert.ok(short >= indexKeys.length * 0.9, `index user keys of at most 3 bytes: ${short} of ${indexKeys.length} (lengths ${userLengths.slice(0, 20).join(',')}...)`);
      // verifyAll checks each index key against its block's last key and the next block's
      // first; the probes read at, just below and just above each separator.
      const probes = indexKeys.flatMap((k) => {
        const user = k.subarray(0, k.length - 8);
        const below = Buffer.from(user);
        below[below.length - 1] = below[below.length - 1]! - 1;
        return [user, below, Buffer.concat([user, Buffer.from([0])]), Buffer.concat([below, Buffer.from([0xff, 0xff])])].flatMap((key) => [
          { key, seq: MAX_SEQUENCE },
          { key, seq: 0 },
        ]);
      });
      checkTable(t, model, probes);
      const it = t.iterator();
      for (const { key } of probes) {
        it.seek(key, MAX_SEQUENCE);
        assertAt(it, model, lowerBound(model, key, MAX_SEQUENCE), `seek to ${key.toString('hex')}`);
        it.seekForPrev(key, 0);
        assertAt(it, model, upperBoundPrev(model, key, 0), `seekForPrev to ${key.toString('hex')}`);
      }
      it.close();
    } finally {
      t.close();
    }

    // Keys that differ by one in their last differing byte ("user:000123:name", then
    // "user:000124:age"): raising that byte would reach the next key's, so the separator keeps
    // it and raises the byte after it instead ("user:000123;").
    const fields = ['age', 'mail', 'name'];
    const users = normalize(
      Array.from({ length: 3000 }, (_, i) => fields.map((f, j) => ({ key: Buffer.from(`user:${String(i).padStart(6, '0')}:${f}`), seq: 5 + i * 3 + j, kind: ValueKind.Value, value: Buffer.alloc(60, j) }))).flat(),
    );
    await writeTable('users.sst', users);
    const u = await openTable('users.sst', 2);
    try {
      const separators: string[] = [];
      for await (const { indexKey } of u.dataBlocks()) separators.push(indexKey.subarray(0, indexKey.length - 8).toString('latin1'));
      assert.ok(separators.length > 50, `${separators.length} blocks`);
      // Each at most "user:000123;" (12 bytes; "user:00008:" where the carry is earlier), the last block's just "v".
      const long = separators.filter((k) => k.length > 12);
      assert.deepEqual(long, [], 'every separator is cut after the id');
      assert.equal(separators.at(-1), 'v', 'the last block: the first byte raised');
      assert.ok(separators.filter((k) => /^user:\d{6};$/.test(k)).length > separators.length / 2, separators.slice(0, 8).join(' '));
      checkTable(u, users, separators.flatMap((k) => [{ key: Buffer.from(k, 'latin1'), seq: MAX_SEQUENCE }, { key: Buffer.from(`${k.slice(0, -1)}:zzz`, 'latin1'), seq: 0 }]));
    } finally {
      u.close();
    }
  });

  test('blocks queue until the caller yields; needsDrain asks for a drain past 4 MiB', async () => {
    const b = new TableBuilder(await env.create('queue.sst'), DEFAULTS);
    const model = entriesOf(60_000, () => Buffer.alloc(100, 3));
    for (const e of model) b.add(e.key, e.seq, e.kind, e.value);
    assert.ok(b.pendingBytes > 4 << 20, `pending ${b.pendingBytes}`);
    assert.equal(b.needsDrain, true);
    await b.drain();
    assert.equal(b.pendingBytes, 0);
    assert.equal(b.needsDrain, false);
    const props = await b.finish();
    assert.equal(props.entries, model.length);
    const t = await openTable('queue.sst');
    try {
      assert.equal(t.verifyAll().entries, model.length);
    } finally {
      t.close();
    }
  });

  test('the filter holds one entry per user key, however many versions it has', async () => {
    const versions = Array.from({ length: 2000 }, (_, i) => ({ key: Buffer.from(`k${i % 10}`), seq: 10_000 - i, kind: ValueKind.Value, value: Buffer.from('v') }));
    await writeTable('versions.sst', normalize(versions), { bloomFilterBitsPerKey: 10 });
    await writeTable('distinct.sst', entriesOf(2000), { bloomFilterBitsPerKey: 10 });
    const few = await openTable('versions.sst');
    const many = await openTable('distinct.sst', 2);
    try {
      // 10 keys × 10 bits = 13 bytes, plus the probe count byte (2000 versions would need 2501).
      assert.equal(few.footer.filter.size, 14);
      assert.equal(many.footer.filter.size, 2000 * 10 / 8 + 1);
      checkTable(few, normalize(versions));
    } finally {
      few.close();
      many.close();
    }
  });

  test('an empty table opens, reads as empty and verifies', async () => {
    const props = await writeTable('empty.sst', []);
    assert.equal(props.entries, 0);
    const t = await openTable('empty.sst');
    try {
      assert.deepEqual(t.verifyAll().entries, 0);
      const it = t.iterator();
      it.seekToFirst();
      assert.equal(it.valid(), false);
      it.seekForPrev(Buffer.from('a'), 1);
      assert.equal(it.valid(), false);
      assert.equal(t.get(Buffer.from('a'), MAX_SEQUENCE), undefined);
    } finally {
      t.close();
    }
  });

  test('entries out of internal order are refused as INVALID_ARGUMENT', async () => {
    const b = new TableBuilder(await env.create('bad.sst'), DEFAULTS);
    b.add(Buffer.from('b'), 5, ValueKind.Value, Buffer.from('1'));
    assert.throws(() => b.add(Buffer.from('a'), 9, ValueKind.Value, Buffer.from('2')), expectCode('INVALID_ARGUMENT', 'bad.sst', 'order'));
    assert.throws(() => b.add(Buffer.from('b'), 5, ValueKind.Deletion, Buffer.alloc(0)), expectCode('INVALID_ARGUMENT'), 'same key and sequence twice');
    assert.throws(() => b.add(Buffer.from('b'), 6, ValueKind.Value, Buffer.alloc(0)), expectCode('INVALID_ARGUMENT'), 'a newer version after an older one');
    b.add(Buffer.from('b'), 4, ValueKind.Deletion, Buffer.alloc(0));
    b.add(Buffer.from('c'), 9, ValueKind.Value, Buffer.alloc(0));
    await b.abandon();
    await env.remove('bad.sst');
    assert.equal(await env.exists('bad.sst'), false);
  });

  test('a failed append surfaces from drain, add and finish, never as an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown): void => void unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const boom = new Error('disk on fire');
      let closed = false;
      const fake = {
        path: 'fake.sst',
        append: async () => {
          await new Promise((r) => setImmediate(r));
          throw boom;
        },
        sync: async () => {},
        close: async () => {
          closed = true;
        },
      } as unknown as EncryptedWritableFile;
      const b = new TableBuilder(fake, { ...DEFAULTS, blockSize: 32 });
      for (let i = 0; i < 10; i++) b.add(Buffer.from(`k${i}`), 1, ValueKind.Value, Buffer.alloc(40));
      await assert.rejects(b.drain(), (err) => err === boom);
      assert.throws(() => b.add(Buffer.from('z'), 1, ValueKind.Value, Buffer.alloc(1)), (err) => err === boom);
      await assert.rejects(b.finish(), (err) => err === boom);
      await b.abandon();
      assert.equal(closed, true);
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  test('flipping any single byte of a table on disk is detected, never read as a wrong value', async () => {
    const model = entriesOf(40);
    await writeTable('flip.sst', model, { blockSize: 200, blockRestartInterval: 4, bloomFilterBitsPerKey: 10 });
    const abs = join(dataDir, 'flip.sst');
    const fh = await openFs(abs, 'r+');
    const size = (await fh.stat()).size;
    assert.ok(size > 1000 && size < 6000, `small table: ${size} bytes`);
    const isDamage = (err: unknown): boolean => {
      assert.ok(isTdekvError(err, 'DATA_CORRUPTED') || isTdekvError(err, 'FORMAT_TOO_NEW'), `unexpected error ${String(err)}`);
      assert.ok(err.message.includes('flip.sst'), `the message names the file: ${err.message}`);
      return true;
    };
    let failedAtOpen = 0;
    let failedAtRead = 0;
    try {
      const one = Buffer.alloc(1);
      for (let pos = 0; pos < size; pos++) {
        await fh.read(one, 0, 1, pos);
        const original = one[0]!;
        one[0] = original ^ randomInt(1, 256);
        await fh.write(one, 0, 1, pos);
        try {
          let t: TableReader;
          try {
            t = await openTable('flip.sst');
          } catch (err) {
            isDamage(err);
            failedAtOpen++;
            continue;
          }
          try {
            assert.throws(() => t.verifyAll(), isDamage, `byte ${pos}: verifyAll passed`);
            assert.throws(
              () => {
                const it = t.iterator();
                for (it.seekToFirst(); it.valid(); it.next());
              },
              isDamage,
              `byte ${pos}: a full scan passed`,
            );
            // Gets either fail or return the right answer.
            for (const e of model) {
              let got;
              try {
                got = t.get(e.key, MAX_SEQUENCE);
              } catch (err) {
                isDamage(err);
                continue;
              }
              assert.ok(got && got.seq === e.seq && got.kind === e.kind && got.value.equals(e.value), `byte ${pos}: a get returned a wrong answer`);
            }
            failedAtRead++;
          } finally {
            t.close();
          }
        } finally {
          one[0] = original;
          await fh.write(one, 0, 1, pos);
        }
      }
    } finally {
      await fh.close();
    }
    assert.equal(failedAtOpen + failedAtRead, size);
    assert.ok(failedAtRead > 0 && failedAtOpen > 80, `${failedAtOpen} at open, ${failedAtRead} at read`);
    // Restored: the table reads again.
    const t = await openTable('flip.sst');
    checkTable(t, model);
    t.close();
  });

  test('a table from a newer format is FORMAT_TOO_NEW with the fix', async () => {
    await writeTable('cur.sst', entriesOf(10));
    const plain = await env.readFile('cur.sst');
    const t0 = await openTable('cur.sst');
    const layout = tableLayout(t0.file.auth);
    assert.equal(layout.version, 2);
    const dataEnd = t0.properties.dataBytes;
    // One data block (10 small entries): it starts at 0 and its trailer ends at dataEnd.
    const { footer } = t0;
    const handles = [footer.filter, footer.properties, footer.index, { offset: 0, size: dataEnd - layout.trailerBytes }].filter((h) => h.size > 0);
    t0.close();
    await writeRetagged('newer.sst', plain, handles, (b) => b.writeUInt32LE(3, b.length - 16));
    await assert.rejects(openTable('newer.sst'), expectCode('FORMAT_TOO_NEW', 'newer.sst', 'upgrade'));

    // A block type this version does not know, under a valid tag.
    await writeRetagged('typed.sst', plain, handles, (b) => {
      b[dataEnd - layout.trailerBytes] = 1;
    });
    const t = await openTable('typed.sst');
    try {
      assert.throws(() => t.verifyAll(), expectCode('FORMAT_TOO_NEW', 'typed.sst', 'upgrade'));
    } finally {
      t.close();
    }
  });

  /**
   * Writes `plain` (a table's plaintext) to a new file `name`, first letting `edit` change it
   * and then re-making every tag under the new file's key, as only a writer holding the data
   * key could.
   */
  async function writeRetagged(name: string, plain: Buffer, handles: BlockHandle[], edit: (b: Buffer) => void): Promise<void> {
    const out = Buffer.from(plain);
    edit(out);
    const file = await env.create(name);
    const auth = file.auth!;
    for (const h of handles) auth.tag(AuthDomain.TableBlock, h.offset, out.subarray(h.offset, h.offset + h.size + 1)).copy(out, h.offset + h.size + 1);
    const layout = tableLayout(auth);
    const footerAt = out.length - layout.footerBytes;
    const versionAt = out.length - 16;
    const covered = Buffer.concat([out.subarray(footerAt, footerAt + 48), out.subarray(versionAt, versionAt + 4)]);
    auth.tag(AuthDomain.TableFooter, footerAt, covered).copy(out, footerAt + 48);
    out.writeUInt32LE(crc32c(out.subarray(footerAt, out.length - 12)), out.length - 12);
    await file.append(out);
    await file.sync();
    await file.close();
  }

  test('forgery without the key: a table copied into another file, or a block replayed at another offset, fails its tag', async () => {
    await writeTable('orig.sst', entriesOf(200), { blockSize: 512 });
    const plain = await env.readFile('orig.sst');
    assert.equal(tableLayout((await openTable('orig.sst')).file.auth).trailerBytes, 1 + TAG_BYTES);
    // The same plaintext written as another file: its tags were made under orig.sst's key.
    const copy = await env.create('copy.sst');
    await copy.append(plain);
    await copy.sync();
    await copy.close();
    await assert.rejects(openTable('copy.sst'), expectCode('DATA_CORRUPTED', 'copy.sst', 'authentication tag'));
    // A block with its valid tag, presented at another offset of the same file: refused.
    const f = await env.openRead('orig.sst');
    try {
      const layout = tableLayout(f.auth);
      const t = await openTable('orig.sst');
      const { index } = t.footer;
      t.close();
      const raw = f.readSync(index.offset, index.size + layout.trailerBytes);
      assert.equal(verifyBlock(raw, index, 'orig.sst', layout).length, index.size);
      assert.throws(() => verifyBlock(raw, { offset: index.offset + 1, size: index.size }, 'orig.sst', layout), expectCode('DATA_CORRUPTED', 'orig.sst', 'authentication tag'));
    } finally {
      f.close();
    }
  });

  test('files that are not tables are DATA_CORRUPTED naming the file', async () => {
    await env.writeFile('tiny.sst', Buffer.from('hello'));
    await assert.rejects(openTable('tiny.sst'), expectCode('DATA_CORRUPTED', 'tiny.sst', 'too small'));
    await env.writeFile('other.sst', Buffer.alloc(500, 1));
    await assert.rejects(openTable('other.sst'), expectCode('DATA_CORRUPTED', 'other.sst', 'magic', 'restore'));
  });

  test('a damaged data block names the file and offset and says to restore it', async () => {
    await writeTable('dmg.sst', entriesOf(200), { blockSize: 512 });
    const fh = await openFs(join(dataDir, 'dmg.sst'), 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 600);
    b[0] = b[0]! ^ 0x10;
    await fh.write(b, 0, 1, 600);
    await fh.close();
    const t = await openTable('dmg.sst');
    try {
      assert.throws(() => {
        for (const e of entriesOf(200)) t.get(e.key, MAX_SEQUENCE);
      }, expectCode('DATA_CORRUPTED', 'dmg.sst', 'block at offset', 'authentication tag', 'restore the file from a backup'));
    } finally {
      t.close();
    }
  });
});

describe('table cache', () => {
  async function threeTables(): Promise<{ opener: (n: number) => EncryptedReadableFile; opens: Map<number, number>; models: Map<number, ModelEntry[]> }> {
    const models = new Map<number, ModelEntry[]>();
    const ready = new Map<number, EncryptedReadableFile[]>();
    for (const n of [1, 2, 3]) {
      const model = entriesOf(300).map((e) => ({ ...e, value: Buffer.from(`t${n}:${e.value.toString()}`) }));
      models.set(n, model);
      await writeTable(`${n}.sst`, model, { blockSize: 256 });
      // The engine opens synchronously; here readers are opened ahead, a few per file for reopens.
      ready.set(n, await Promise.all([0, 1, 2, 3].map(() => env.openRead(`${n}.sst`))));
    }
    const opens = new Map<number, number>();
    const opener = (n: number): EncryptedReadableFile => {
      opens.set(n, (opens.get(n) ?? 0) + 1);
      const f = ready.get(n)?.shift();
      if (!f) throw new Error(`test opener: no reader left for ${n}`);
      return f;
    };
    return { opener, opens, models };
  }

  function isClosed(t: TableReader): boolean {
    try {
      t.file.readSync(0, 1);
      return false;
    } catch (err) {
      return isTdekvError(err, 'CLOSED');
    }
  }

  test('keeps at most maxOpenFiles tables open and closes the ones it evicts', async () => {
    const { opener, opens, models } = await threeTables();
    const cache = new TableCache(opener, { maxOpenFiles: 2, blockCache: new BlockCache(1 << 20) });
    const t1 = cache.get(1);
    assert.equal(cache.get(1), t1, 'a hit returns the open table');
    const t2 = cache.get(2);
    const t3 = cache.get(3);
    assert.equal(cache.openTables, 2);
    assert.equal(isClosed(t1), true);
    assert.equal(isClosed(t2) || isClosed(t3), false);
    const k = models.get(1)![7]!;
    assert.deepEqual(cache.get(1).get(k.key, MAX_SEQUENCE)?.value, k.value);
    assert.equal(opens.get(1), 2, 'table 1 was reopened');
    assert.equal(isClosed(t2), true, 'the least recently used table was closed');
    cache.close();
    assert.equal(isClosed(t3), true);
    assert.throws(() => cache.get(3), expectCode('CLOSED'));
  });

  test('an iterator keeps its table open after eviction until it is closed', async () => {
    const { opener, models } = await threeTables();
    // No block cache: every block read goes to the file.
    const cache = new TableCache(opener, { maxOpenFiles: 1, blockCache: new BlockCache(0) });
    const it = cache.iterator(1);
    it.seekToFirst();
    const t1 = cache.get(1);
    cache.get(2); // evicts table 1 while the iterator reads it
    cache.evict(1);
    const model = models.get(1)!;
    let i = 0;
    for (; it.valid(); it.next()) assertAt(it, model, i++, 'pinned scan');
    assert.equal(i, model.length);
    assert.equal(isClosed(t1), false);
    it.close();
    assert.equal(isClosed(t1), true, 'closed with its last iterator');
    it.close(); // idempotent
  });

  test('evict closes the table and drops its blocks from the block cache', async () => {
    const { opener, models } = await threeTables();
    const blocks = new BlockCache(1 << 20);
    const cache = new TableCache(opener, { maxOpenFiles: 10, blockCache: blocks });
    for (const n of [1, 2]) for (const e of models.get(n)!) cache.get(n).get(e.key, MAX_SEQUENCE);
    const has = (n: number): boolean => blocks.files().includes(n);
    assert.ok(has(1) && has(2));
    const t1 = cache.get(1);
    const usage = blocks.usage;
    cache.evict(1);
    assert.equal(isClosed(t1), true);
    assert.equal(has(1), false);
    assert.ok(has(2), 'other tables keep their blocks');
    assert.ok(blocks.usage < usage);
    assert.equal(cache.openTables, 1);
    cache.close();
  });
});
