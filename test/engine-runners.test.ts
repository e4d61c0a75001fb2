import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { JobContext } from '../src/engine/background-job.js';
import { BlockCache } from '../src/engine/block-cache.js';
import { DropRule } from '../src/engine/compaction/drop-rule.js';
import { runCompaction, type CompactionContext } from '../src/engine/compaction/runner.js';
import { tableName } from '../src/engine/file-names.js';
import { writeMemtable } from '../src/engine/flush.js';
import { MAX_SEQUENCE, ValueKind } from '../src/engine/internal-key.js';
import { Memtable } from '../src/engine/memtable.js';
import { resolveTuning } from '../src/engine/options.js';
import { TableCache } from '../src/engine/table-cache.js';
import type { FileMeta } from '../src/engine/version-edit.js';
import { openEnv, type ManagedEnv } from '../src/env/open-env.js';
import { encryptionConfig, SMALL_TUNING } from './support/engine-helpers.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

// The flush and compaction runners are functions of table metadata, an output context and a
// snapshot boundary (issue 11: they are to run on a worker thread later). These tests run
// them with no Engine at all, on a real encrypted env.

const b = (s: string): Buffer => Buffer.from(s);
const { Value, Deletion } = ValueKind;

let root: string;
let managed: ManagedEnv;
let tables: TableCache;
let nextNumber: number;

beforeEach(async () => {
  root = await tempDir('runners-');
  managed = await openEnv(join(root, 'data'), encryptionConfig((await writeKeyFile(root)).path));
  tables = new TableCache((n) => managed.env.openReadSync(tableName(n)), { maxOpenFiles: 16, blockCache: new BlockCache(64 * 1024) });
  nextNumber = 100;
});

afterEach(async () => {
  tables.close();
  await managed.close();
  await cleanup(root);
});

function context(sliceMs = 1, yieldSlice: () => Promise<void> = () => yieldToEventLoop()): CompactionContext & JobContext {
  return {
    output: { env: managed.env, tuning: resolveTuning(SMALL_TUNING), newFileNumber: () => nextNumber++, pendingOutputs: new Set() },
    sliceMs: () => sliceMs,
    yieldSlice,
    openTable: (n) => tables.iterator(n),
    openTableReader: (n) => tables.acquire(n),
  };
}

/** Every entry of the tables, in order, as key@seq:value (a tombstone's value is "-"). */
function entries(files: readonly FileMeta[]): string[] {
  const out: string[] = [];
  for (const f of files) {
    const it = tables.iterator(f.number);
    for (it.seekToFirst(); it.valid(); it.next()) out.push(`${it.userKey().toString()}@${it.seq()}:${it.kind() === Deletion ? '-' : it.value().toString()}`);
    it.close();
  }
  return out;
}

test('the drop rule: hidden versions go once every snapshot sees the newer one; tombstones only at the bottom', () => {
  const run = (rule: DropRule, input: Array<[string, number, ValueKind]>): string[] =>
    input.filter(([k, seq, kind]) => !rule.dropsVersion(b(k), seq, kind)).map(([k, seq]) => `${k}@${seq}`);
  const input: Array<[string, number, ValueKind]> = [
    ['a', 9, Value],
    ['a', 5, Value],
    ['a', 2, Value],
    ['b', 8, Deletion],
    ['b', 3, Value],
    ['c', 4, Deletion],
  ];
  // A snapshot at 5: a@5 is what it reads, a@2 is hidden from it and from every newer reader.
  assert.deepEqual(run(new DropRule(5), input), ['a@9', 'a@5', 'b@8', 'b@3', 'c@4']);
  // Bottommost: c's tombstone (seen by every snapshot) hides nothing; b's (newer than the snapshot) stays.
  assert.deepEqual(run(new DropRule(5, () => true), input), ['a@9', 'a@5', 'b@8', 'b@3']);
  // No snapshot older than the newest write: only the newest version of each key is left.
  assert.deepEqual(run(new DropRule(MAX_SEQUENCE, () => true), input), ['a@9']);
  assert.deepEqual(run(new DropRule(MAX_SEQUENCE), input), ['a@9', 'b@8', 'c@4']);
});

test('flush then compaction run on metadata and an output context alone, and return the output tables', async () => {
  const mem = new Memtable();
  mem.add(1, Value, b('a'), b('a1'));
  mem.add(2, Value, b('b'), b('b2'));
  mem.add(3, Value, b('a'), b('a3'));
  mem.add(4, Deletion, b('b'), Buffer.alloc(0));
  mem.add(5, Value, b('c'), b('c5'));
  // A snapshot at 2: the flush keeps what it reads (a@1, b@2) under the newer versions.
  const flushed = await writeMemtable(context(), mem, 2);
  assert.equal(flushed.length, 1);
  assert.deepEqual(entries(flushed), ['a@3:a3', 'a@1:a1', 'b@4:-', 'b@2:b2', 'c@5:c5']);

  // Level 0 to 1 with nothing below: with that snapshot released, old versions and the tombstone go.
  const job = { level: 0, outputLevel: 1, inputs: [flushed, []] as [FileMeta[], FileMeta[]], levelsBelow: [], smallestSnapshot: 5, rewriteInPlace: false };
  const compacted = await runCompaction(job, context());
  assert.deepEqual(entries(compacted), ['a@3:a3', 'c@5:c5']);
  assert.ok(compacted.every((f) => f.number >= 100 && f.entries > 0 && f.size > 0));

  // A deeper level that may hold b keeps its tombstone.
  const below: FileMeta[] = [{ number: 1, size: 1, entries: 1, smallest: Buffer.from('b\0\0\0\0\0\0\0\0'), largest: Buffer.from('b\0\0\0\0\0\0\0\0') }];
  const kept = await runCompaction({ ...job, levelsBelow: [below] }, context());
  assert.deepEqual(entries(kept), ['a@3:a3', 'b@4:-', 'c@5:c5']);
});

test('a compaction abandoned between slices removes what it wrote and leaves the inputs', async () => {
  const mem = new Memtable();
  for (let i = 0; i < 2000; i++) mem.add(i + 1, Value, b(`key${String(i).padStart(5, '0')}`), Buffer.alloc(100, i));
  const flushed = await writeMemtable(context(), mem, MAX_SEQUENCE);
  const before = await managed.env.list('');
  // A zero budget makes every 64th entry the end of a slice: the host's turn comes deterministically.
  const ctx = context(0, async () => {
    throw new Error('closing');
  });
  await assert.rejects(runCompaction({ level: 0, outputLevel: 1, inputs: [flushed, []], levelsBelow: [], smallestSnapshot: MAX_SEQUENCE, rewriteInPlace: false }, ctx), /closing/);
  assert.deepEqual(await managed.env.list(''), before);
  assert.equal(ctx.output.pendingOutputs.size, 0);
  assert.equal(entries(flushed).length, 2000);
});

test('a rewrite in place (the encryption scan) copies every block under the current key: same entries, new key, tags verify', async () => {
  const mem = new Memtable();
  for (let i = 0; i < 3000; i++) mem.add(i + 1, i % 7 === 0 ? Deletion : Value, b(`key${String(i).padStart(5, '0')}`), i % 7 === 0 ? Buffer.alloc(0) : Buffer.alloc(50, i));
  const [input] = await writeMemtable(context(), mem, MAX_SEQUENCE);
  const oldKey = managed.env.fileInfo(tableName(input!.number))!.keyId;
  const before = entries([input!]);
  await managed.keyAdmin.rotateDataKey();
  const out = await runCompaction({ level: 2, outputLevel: 2, inputs: [[input!], []], levelsBelow: [], smallestSnapshot: MAX_SEQUENCE, rewriteInPlace: true }, context());
  assert.equal(out.length, 1);
  const info = managed.env.fileInfo(tableName(out[0]!.number))!;
  assert.notEqual(info.keyId, oldKey);
  assert.equal(info.authenticated, true);
  // Nothing dropped: the tombstones stay (that is compaction's work), every entry is there in order.
  assert.deepEqual(entries(out), before);
  assert.equal(out[0]!.entries, input!.entries);
  assert.ok(out[0]!.smallest.equals(input!.smallest) && out[0]!.largest.equals(input!.largest));
  const { reader, release } = tables.acquire(out[0]!.number);
  try {
    assert.equal(reader.properties.fileSize, out[0]!.size);
    assert.ok(reader.verifyAll().entries === input!.entries);
  } finally {
    release();
  }
});
