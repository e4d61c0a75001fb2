import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, open, readdir, readFile, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import type { EncryptionConfig } from '../src/config/types.js';
import { Block } from '../src/engine/block.js';
import { Engine } from '../src/engine/engine.js';
import { RECORD_HEADER_BYTES, SECTOR_BYTES } from '../src/engine/log-format.js';
import { BlockCache } from '../src/engine/block-cache.js';
import type { EngineTuning } from '../src/engine/options.js';
import { tableLayout, verifyBlock } from '../src/engine/table-format.js';
import { TAG_BYTES } from '../src/crypto/file-auth.js';
import { TableReader } from '../src/engine/table-reader.js';
import { openEnv, type ManagedEnv } from '../src/env/open-env.js';
import { isTdekvError } from '../src/errors.js';
import { assertSameTree, cleanup, expectCode, flipByte, snapshotTree, tempDir, withoutLock, writeKeyFile } from './support/fs-helpers.js';

// Every engine file is a CTR stream: flipping a ciphertext bit flips the same plaintext bit,
// exactly what a bad disk or a careless edit does to a plaintext file. The engine's tags
// must turn every such flip into DATA_CORRUPTED naming the file, never into a wrong value.

interface Fixture {
  root: string;
  dataDir: string;
  enc: EncryptionConfig;
}

async function fixture(t: { after: (fn: () => Promise<void>) => void }): Promise<Fixture> {
  const root = await tempDir('tdekv-engine-corruption-');
  t.after(() => cleanup(root));
  const { path } = await writeKeyFile(root);
  const enc: EncryptionConfig = {
    dataEncryptionMethod: 'aes256-ctr',
    dataKeyRotationPeriodMs: 7 * 24 * 3600_000,
    enableFileDictionaryLog: true,
    fileDictionaryRewriteThreshold: 1_000_000,
    masterKey: { type: 'file', path },
  };
  return { root, dataDir: join(root, 'data'), enc };
}


/**
 * Every regular file under `dir` (relative path → SHA-256 of its bytes), sorted by path;
 * LOCK is left out: taking the lock creates it, and it never holds data.
 */

/** Masks that flip one low bit, one high bit, or every bit. */
const MASKS = [0x01, 0x80, 0xff, 0x10];

function keyOf(i: number): Buffer {
  return Buffer.from(`key-${String(i).padStart(5, '0')}`);
}

function valueOf(i: number, generation = 0): Buffer {
  return Buffer.from(`value-${i}-${generation}-${'x'.repeat(i % 23)}`);
}

async function engineFiles(dataDir: string, pattern: RegExp): Promise<string[]> {
  return (await readdir(dataDir)).filter((n) => pattern.test(n)).sort();
}

/** The plaintext offsets and sizes of every record of an authenticated log file (WAL or manifest). */
function recordsOf(plain: Buffer): Array<{ offset: number; size: number }> {
  const out: Array<{ offset: number; size: number }> = [];
  for (let off = 0; off < plain.length; ) {
    const size = RECORD_HEADER_BYTES + plain.readUInt32LE(off + 4) + TAG_BYTES;
    out.push({ offset: off, size });
    off += size;
  }
  assert.equal(out.reduce((s, r) => s + r.size, 0), plain.length, 'records tile the file');
  return out;
}

async function openEngine(dataDir: string, enc: EncryptionConfig): Promise<{ managed: ManagedEnv; engine: Engine }> {
  const managed = await openEnv(dataDir, enc);
  try {
    return { managed, engine: await Engine.open({ env: managed.env }) };
  } catch (err) {
    await managed.close();
    throw err;
  }
}

describe('engine corruption: a flipped byte is an error naming the file, never a wrong value', () => {
  test('SSTable: sampled bytes of every block (data, filter, index, properties, footer)', async (t) => {
    const { dataDir, enc } = await fixture(t);
    const N = 240;
    // Small blocks: a table of ~9 KiB with over a dozen data blocks keeps the number of cases small.
    // No block cache: every scan, synchronous or not, reads the damaged bytes itself.
    const tuning: Partial<EngineTuning> = { blockSize: 512, bloomFilterBitsPerKey: 10, blockCacheSize: 0 };
    const managed = await openEnv(dataDir, enc);
    t.after(() => managed.close());
    const { env } = managed;
    {
      const engine = await Engine.open({ env, ...tuning });
      for (let i = 0; i < N; i += 50) {
        await engine.write(Array.from({ length: Math.min(50, N - i) }, (_, j) => ({ type: 'put' as const, key: keyOf(i + j), value: valueOf(i + j) })));
      }
      // An older generation of some values and deleted keys, so stale data exists to resurface.
      await engine.flush();
      for (let i = 0; i < N; i += 7) await engine.put(keyOf(i), valueOf(i, 1));
      await engine.del(keyOf(N - 1));
      await engine.compactRange();
      assert.equal(engine.liveTables().length, 1, 'one table after a full compaction');
      await engine.close();
    }
    const expected = new Map<string, Buffer>();
    for (let i = 0; i < N - 1; i++) expected.set(keyOf(i).toString(), valueOf(i, i % 7 === 0 ? 1 : 0));

    const [table] = await engineFiles(dataDir, /\.sst$/);
    assert.ok(table);
    const tablePath = join(dataDir, table);

    // The block layout, to name each case's region and to check that the sample covers them all.
    const regions: Array<{ name: string; start: number; end: number }> = [];
    let layout = tableLayout(undefined);
    {
      const reader = TableReader.open(env.openReadSync(table), Number(table.slice(0, 6)), new BlockCache(0));
      try {
        const { footer, file } = reader;
        assert.ok(reader.authenticated, 'an aes256-ctr table carries authentication tags');
        layout = tableLayout(file.auth);
        const index = new Block(verifyBlock(file.readSync(footer.index.offset, footer.index.size + layout.trailerBytes), footer.index, table, layout), table, footer.index.offset);
        const it = index.iterator();
        let n = 0;
        for (it.seekToFirst(); it.valid(); it.next()) {
          const h = reader.handleAt(it);
          regions.push({ name: `data block ${n++}`, start: h.offset, end: h.offset + h.size + layout.trailerBytes });
        }
        for (const [name, h] of [['filter', footer.filter], ['properties', footer.properties], ['index', footer.index]] as const) {
          if (h.size > 0) regions.push({ name, start: h.offset, end: h.offset + h.size + layout.trailerBytes });
        }
        regions.push({ name: 'footer', start: file.size - layout.footerBytes, end: file.size });
        assert.ok(n >= 5, `only ${n} data blocks`);
        assert.ok(footer.filter.size > 0, 'the table has a bloom filter');
      } finally {
        reader.close();
      }
    }
    const size = regions.reduce((m, r) => Math.max(m, r.end), 0);
    const regionOf = (off: number): string => regions.find((r) => off >= r.start && off < r.end)?.name ?? 'between blocks';

    const offsets = new Set<number>();
    for (let off = 0; off < size; off += 37) offsets.add(off);
    for (let off = size - 64; off < size; off++) offsets.add(off);
    // Each block's first byte, its type byte and a tag byte.
    for (const r of regions) offsets.add(r.start).add(r.end - layout.trailerBytes).add(r.end - 2);
    const covered = new Set([...offsets].map(regionOf));
    assert.deepEqual([...covered].sort(), regions.map((r) => r.name).sort(), 'the sample hits every block');

    const isTableError = (err: unknown): boolean => isTdekvError(err) && (err.code === 'DATA_CORRUPTED' || err.code === 'FORMAT_TOO_NEW') && err.message.includes(table);
    let cases = 0;
    for (const off of [...offsets].sort((a, b) => a - b)) {
      const mask = MASKS[cases++ % MASKS.length]!;
      const where: string = `${table} byte ${off} (${regionOf(off)}) ^ 0x${mask.toString(16)}`;
      await flipByte(tablePath, off, mask);
      try {
        const engine = await Engine.open({ env, ...tuning });
        let detected = 0;
        try {
          for (let i = 0; i < N; i++) {
            const k = keyOf(i);
            let got: Buffer | undefined;
            try {
              got = engine.getSync(k);
            } catch (err) {
              assert.ok(isTableError(err), `${where}: getSync threw ${String(err)}`);
              detected++;
              continue;
            }
            const want = expected.get(k.toString());
            assert.ok(want === undefined ? got === undefined : got !== undefined && got.equals(want), `${where}: getSync(${k}) returned a wrong value`);
          }
          // A scan returns exactly the expected entries in order, up to where it stops with an
          // error: reading synchronously (next()) and on the thread pool in runs of blocks (nextBatch).
          const want = [...expected];
          for (const mode of ['next', 'nextBatch'] as const) {
            const it = engine.iterator();
            let n = 0;
            try {
              for (;;) {
                const batch = mode === 'next' ? [it.next()].filter((e) => e !== undefined) : await it.nextBatch(13);
                for (const e of batch) {
                  assert.ok(n < want.length, `${where}: the ${mode} scan returned more entries than exist`);
                  assert.equal(e[0].toString(), want[n]![0], `${where}: the ${mode} scan returned a wrong key at position ${n}`);
                  assert.ok(e[1].equals(want[n]![1]), `${where}: the ${mode} scan returned a wrong value for ${want[n]![0]}`);
                  n++;
                }
                if (batch.length === 0 || (mode === 'nextBatch' && batch.length < 13)) break;
              }
              assert.equal(n, want.length, `${where}: the ${mode} scan ended early without an error`);
            } catch (err) {
              if (err instanceof assert.AssertionError) throw err;
              assert.ok(isTableError(err), `${where}: the ${mode} scan threw ${String(err)}`);
              detected++;
            } finally {
              it.close();
            }
          }
        } finally {
          await engine.close();
        }
        // Every byte is under a tag. Only in the bloom filter could a flip be harmless by
        // design (the filter is read at open and verified then, so this never happens now;
        // a false positive would cost a block read, never a wrong answer).
        if (regionOf(off) !== 'filter') assert.ok(detected > 0, `${where}: the damage went unnoticed`);
      } finally {
        await flipByte(tablePath, off, mask);
      }
    }
    t.diagnostic(`${cases} flipped bytes in a ${size}-byte table of ${regions.length} blocks`);

    // Restored: everything reads back.
    const engine = await Engine.open({ env, ...tuning });
    try {
      for (const [k, v] of expected) assert.ok(engine.getSync(Buffer.from(k))?.equals(v), k);
    } finally {
      await engine.close();
    }
  });

  /**
   * Writes `count` synced single-put batches and copies the data dir while the engine is
   * open and idle: the copy is what a crash at that moment leaves (the memtable was never
   * flushed, so the next open replays the WAL). The copy's LOCK is dropped, as a dead
   * process's lock is taken over. The engine itself is then closed normally.
   */
  async function crashedWithWal(dataDir: string, crashCopy: string, enc: EncryptionConfig, count: number): Promise<{ wal: string; plain: Buffer }> {
    const { managed, engine } = await openEngine(dataDir, enc);
    try {
      for (let i = 0; i < count; i++) await engine.put(keyOf(i), valueOf(i), { sync: true });
      const [wal] = await engineFiles(dataDir, /\.log$/);
      assert.ok(wal);
      await cp(dataDir, crashCopy, { recursive: true });
      await rm(join(crashCopy, 'encryption-meta', 'LOCK'));
      // A live WAL ends in space reserved ahead of its appends (zeros on disk), as a crash leaves it.
      const plain = await managed.env.readFile(wal);
      let end = 0;
      for (let i = 0; i < count; i++) end += RECORD_HEADER_BYTES + plain.readUInt32LE(end + 4) + TAG_BYTES;
      const raw = await readFile(join(crashCopy, wal));
      assert.ok(raw.length > end && raw.subarray(end).every((b) => b === 0), 'the crashed WAL ends in reserved zeros');
      return { wal, plain: plain.subarray(0, end) };
    } finally {
      await engine.close();
      await managed.close();
    }
  }

  test('write-ahead log: a damaged record, even the last complete one, refuses to open naming the file and offset', async (t) => {
    const { root, dataDir, enc } = await fixture(t);
    const COUNT = 10;
    const pristine = join(root, 'pristine');
    const { wal, plain } = await crashedWithWal(dataDir, pristine, enc, COUNT);
    const records = recordsOf(plain);
    assert.equal(records.length, COUNT, 'one record per synced write');
    const restore = async (): Promise<void> => {
      await rm(dataDir, { recursive: true, force: true });
      await cp(pristine, dataDir, { recursive: true });
    };

    // Header checksum, length (low and high byte), type, payload and tag bytes: of a middle
    // record and of the last one. Each was acknowledged with sync: none may vanish quietly.
    const positions = (r: { offset: number; size: number }): number[] => [0, 3, 4, 7, 8, RECORD_HEADER_BYTES, Math.floor(r.size / 2), r.size - TAG_BYTES, r.size - 1].map((p) => r.offset + p);
    for (const index of [0, 4, COUNT - 2, COUNT - 1]) {
      const rec = records[index]!;
      for (const [n, at] of positions(rec).entries()) {
        await restore();
        await flipByte(join(dataDir, wal), at, MASKS[n % MASKS.length]!);
        const managed = await openEnv(dataDir, enc);
        try {
          await assert.rejects(Engine.open({ env: managed.env }), expectCode('DATA_CORRUPTED', wal, `offset ${rec.offset}`), `record ${index}, byte ${at}`);
        } finally {
          await managed.close();
        }
      }
    }

    // The explicit recovery mode opens at the point before the damage.
    const last = records[COUNT - 1]!;
    await restore();
    await flipByte(join(dataDir, wal), last.offset + RECORD_HEADER_BYTES + 2, 0x01);
    {
      const managed = await openEnv(dataDir, enc);
      try {
        const engine = await Engine.open({ env: managed.env, walRecoveryMode: 'point-in-time' });
        try {
          for (let i = 0; i < COUNT - 1; i++) assert.ok(engine.getSync(keyOf(i))?.equals(valueOf(i)), `write ${i} lost`);
          assert.equal(engine.getSync(keyOf(COUNT - 1)), undefined, 'the damaged write was replayed');
        } finally {
          await engine.close();
        }
      } finally {
        await managed.close();
      }
    }

    // Untouched, everything replays.
    await restore();
    const { managed, engine } = await openEngine(dataDir, enc);
    try {
      for (let i = 0; i < COUNT; i++) assert.ok(engine.getSync(keyOf(i))?.equals(valueOf(i)), `write ${i}`);
    } finally {
      await engine.close();
      await managed.close();
    }
  });

  test('write-ahead log: a last record cut short by a crash, or a zero-filled tail, is dropped and the rest replays', async (t) => {
    const { root, dataDir, enc } = await fixture(t);
    const COUNT = 6;
    const pristine = join(root, 'pristine');
    const { wal, plain } = await crashedWithWal(dataDir, pristine, enc, COUNT);
    const last = recordsOf(plain)[COUNT - 1]!;
    const walPath = join(dataDir, wal);
    const cases: Array<[string, () => Promise<void>]> = [
      ['cut inside the header', () => truncate(walPath, last.offset + 5)],
      ['cut inside the payload', () => truncate(walPath, last.offset + RECORD_HEADER_BYTES + 2)],
      ['cut inside the tag', () => truncate(walPath, last.offset + last.size - 3)],
      [
        // A crash leaves whole sectors of an append unwritten: here the last record's share of its sector.
        'the record zero-filled where its sector never landed',
        async () => {
          const fh = await open(walPath, 'r+');
          const from = Math.max(last.offset, Math.floor((last.offset + last.size - 1) / SECTOR_BYTES) * SECTOR_BYTES);
          try {
            await fh.write(Buffer.alloc(last.offset + last.size - from), 0, last.offset + last.size - from, from);
          } finally {
            await fh.close();
          }
        },
      ],
      [
        'a preallocated zero tail after the last record',
        async () => {
          const size = (await stat(walPath)).size;
          const fh = await open(walPath, 'r+');
          try {
            await fh.write(Buffer.alloc(4096), 0, 4096, size);
          } finally {
            await fh.close();
          }
        },
      ],
    ];
    for (const [what, damage] of cases) {
      await rm(dataDir, { recursive: true, force: true });
      await cp(pristine, dataDir, { recursive: true });
      await damage();
      const { managed, engine } = await openEngine(dataDir, enc);
      try {
        for (let i = 0; i < COUNT - 1; i++) assert.ok(engine.getSync(keyOf(i))?.equals(valueOf(i)), `${what}: write ${i} lost`);
        const lastValue = engine.getSync(keyOf(COUNT - 1));
        if (what.startsWith('a preallocated')) assert.ok(lastValue?.equals(valueOf(COUNT - 1)), `${what}: the last write is intact and must replay`);
        else assert.equal(lastValue, undefined, `${what}: a torn write was replayed`);
        // The database goes on cleanly: new writes land in a new WAL, and the next open is clean.
        await engine.put(keyOf(COUNT), valueOf(COUNT, 2), { sync: true });
      } finally {
        await engine.close();
        await managed.close();
      }
      const again = await openEngine(dataDir, enc);
      try {
        assert.ok(again.engine.getSync(keyOf(COUNT))?.equals(valueOf(COUNT, 2)), what);
        assert.ok(again.engine.getSync(keyOf(0))?.equals(valueOf(0)), what);
      } finally {
        await again.engine.close();
        await again.managed.close();
      }
    }
  });

  test('a refused open changes no byte on disk, so putting the damaged byte back recovers everything (invariant 11)', async (t) => {
    const { root, dataDir, enc } = await fixture(t);
    const COUNT = 5;
    const { wal, plain } = await crashedWithWal(dataDir, join(root, 'crash'), enc, COUNT);
    const crashDir = join(root, 'crash');
    const at = recordsOf(plain)[2]!.offset + RECORD_HEADER_BYTES + 1;
    await flipByte(join(crashDir, wal), at, 0x04);
    const before = withoutLock(await snapshotTree(crashDir));
    // The server and TdekvLevel open the env with its writes deferred, then the engine reads
    // its manifest and logs: the refusal comes before anything is written.
    const managed = await openEnv(crashDir, enc, { deferOpenWrites: true });
    try {
      await assert.rejects(Engine.open({ env: managed.env }), expectCode('DATA_CORRUPTED', wal, 'offset'));
    } finally {
      await managed.close();
    }
    assertSameTree(withoutLock(await snapshotTree(crashDir)), before, 'a refused open');
    await flipByte(join(crashDir, wal), at, 0x04);
    const { managed: m2, engine } = await openEngine(crashDir, enc);
    try {
      for (let i = 0; i < COUNT; i++) assert.ok(engine.getSync(keyOf(i))?.equals(valueOf(i)), `write ${i}`);
    } finally {
      await engine.close();
      await m2.close();
    }
  });

  /** Five rounds of 20 keys, each flushed (one version edit each); returns the manifest's name. */
  async function manifestAfterFlushes(dataDir: string, enc: Parameters<typeof openEngine>[1]): Promise<string> {
    const { managed, engine } = await openEngine(dataDir, enc);
    for (let round = 0; round < 5; round++) {
      await engine.write(Array.from({ length: 20 }, (_, j) => ({ type: 'put' as const, key: keyOf(round * 20 + j), value: valueOf(round * 20 + j) })));
      await engine.flush();
    }
    await engine.close();
    await managed.close();
    const [manifest] = await engineFiles(dataDir, /^MANIFEST-\d+$/);
    assert.ok(manifest);
    return manifest;
  }

  test('MANIFEST: damage before its last record refuses to open naming it', async (t) => {
    const { root, dataDir, enc } = await fixture(t);
    const manifest = await manifestAfterFlushes(dataDir, enc);
    const reader = await openEnv(dataDir, enc, { readOnly: true });
    const plain = await reader.env.readFile(manifest);
    await reader.close();
    const records = recordsOf(plain);
    assert.ok(records.length >= 5, `only ${records.length} manifest records`);
    const pristine = join(root, 'pristine');
    await cp(dataDir, pristine, { recursive: true });

    for (const index of [0, 1, Math.floor(records.length / 2), records.length - 2]) {
      const rec = records[index]!;
      for (const [n, rel] of [0, 4, 8, RECORD_HEADER_BYTES, Math.floor(rec.size / 2), rec.size - 1].entries()) {
        await rm(dataDir, { recursive: true, force: true });
        await cp(pristine, dataDir, { recursive: true });
        await flipByte(join(dataDir, manifest), rec.offset + rel, MASKS[n % MASKS.length]!);
        const managed = await openEnv(dataDir, enc);
        try {
          await assert.rejects(Engine.open({ env: managed.env }), expectCode('DATA_CORRUPTED', manifest, `offset ${rec.offset}`), `record ${index} byte ${rel}`);
        } finally {
          await managed.close();
        }
      }
    }

    await rm(dataDir, { recursive: true, force: true });
    await cp(pristine, dataDir, { recursive: true });
    const { managed, engine } = await openEngine(dataDir, enc);
    try {
      for (let i = 0; i < 100; i++) assert.ok(engine.getSync(keyOf(i))?.equals(valueOf(i)), `key ${i}`);
    } finally {
      await engine.close();
      await managed.close();
    }
  });

  test(
    'MANIFEST: damage inside its last, complete record refuses to open naming the file and offset',
    async (t) => {
      const { dataDir, enc } = await fixture(t);
      const manifest = await manifestAfterFlushes(dataDir, enc);
      const reader = await openEnv(dataDir, enc, { readOnly: true });
      const records = recordsOf(await reader.env.readFile(manifest));
      await reader.close();
      // A bit flipped inside the last record, every byte of which is present: not a torn append.
      const last = records[records.length - 1]!;
      await flipByte(join(dataDir, manifest), last.offset + RECORD_HEADER_BYTES + 3, 0x01);
      const managed = await openEnv(dataDir, enc);
      try {
        await assert.rejects(Engine.open({ env: managed.env }), expectCode('DATA_CORRUPTED', manifest, `offset ${last.offset}`));
      } finally {
        await managed.close();
      }
      // Put back, the data dir opens with every flushed write.
      await flipByte(join(dataDir, manifest), last.offset + RECORD_HEADER_BYTES + 3, 0x01);
      const { managed: m2, engine } = await openEngine(dataDir, enc);
      try {
        const lost = Array.from({ length: 100 }, (_, i) => i).filter((i) => !engine.getSync(keyOf(i))?.equals(valueOf(i)));
        assert.deepEqual(lost, [], 'flushed writes lost');
      } finally {
        await engine.close();
        await m2.close();
      }
    },
  );
});
