import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BlockBuilder } from '../src/engine/block-builder.js';
import { Block, BlockIterator } from '../src/engine/block.js';
import { compareBytes } from '../src/engine/compare-bytes.js';
import { encodeInternalKey, MAX_SEQUENCE, ValueKind } from '../src/engine/internal-key.js';
import { expectCode } from './support/fs-helpers.js';
import { assertAt, assertEmptyEverywhere, normalize, walkProbes, type ModelEntry, type Step } from './support/iterator-model.js';
/** Small alphabets, so keys share prefixes and repeat (several versions of one key). */
const arbKey = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 6 }).map((a) => Buffer.from(a.map((b) => b % 4))),
  fc.uint8Array({ minLength: 0, maxLength: 40 }).map((a) => Buffer.from(a)),
);
const arbSeq = fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: MAX_SEQUENCE }));
const arbEntry: fc.Arbitrary<ModelEntry> = fc.record({
  key: arbKey,
  seq: arbSeq,
  kind: fc.constantFrom<ValueKind>(ValueKind.Value, ValueKind.Deletion),
  value: fc.oneof(fc.constant(Buffer.alloc(0)), fc.uint8Array({ maxLength: 50 }).map((a) => Buffer.from(a))),
});
/** A target for seeks: near a model entry or anywhere. */
const arbTarget = fc.record({ key: arbKey, seq: arbSeq });

const arbOps = fc.array(fc.constantFrom<Step>('next', 'prev'), { maxLength: 40 });


function buildBlock(model: ModelEntry[], restartInterval: number): Block {
  const b = new BlockBuilder(restartInterval);
  for (const e of model) b.add(encodeInternalKey(e.key, e.seq, e.kind), e.value);
  return new Block(Buffer.from(b.finish()), 'sst/000007.sst', 4096);
}

describe('block', () => {
  test('iterates forward and backward in internal order, with keys that outlive the cursor', () => {
    fc.assert(
      fc.property(fc.array(arbEntry, { maxLength: 120 }), fc.integer({ min: 1, max: 20 }), (raw, interval) => {
        const model = normalize(raw);
        const block = buildBlock(model, interval);
        const it = block.iterator();
        const keys: Buffer[] = [];
        let i = 0;
        for (it.seekToFirst(); it.valid(); it.next()) {
          assertAt(it, model, i, 'forward');
          keys.push(it.userKey());
          i++;
        }
        assert.equal(i, model.length);
        // Returned keys are not views of a scratch buffer the cursor reuses.
        keys.forEach((k, j) => assert.deepEqual(k, model[j]!.key));
        i = model.length - 1;
        for (it.seekToLast(); it.valid(); it.prev()) assertAt(it, model, i--, 'backward');
        assert.equal(i, -1);
      }),
      { numRuns: 200 },
    );
  });

  test('seek, seekForPrev, next and prev agree with a sorted array', () => {
    fc.assert(
      fc.property(fc.array(arbEntry, { maxLength: 80 }), fc.integer({ min: 1, max: 20 }), fc.array(fc.tuple(arbTarget, fc.boolean(), arbOps), { maxLength: 10 }), (raw, interval, probes) => {
        const model = normalize(raw);
        const it = buildBlock(model, interval).iterator();
        walkProbes(it, model, probes);
      }),
      { numRuns: 300 },
    );
  });

  test('seeking to existing versions lands on them exactly', () => {
    const model = normalize(
      Array.from({ length: 300 }, (_, n) => ({ key: Buffer.from(`key-${String(n % 50).padStart(3, '0')}`), seq: n, kind: n % 7 === 0 ? ValueKind.Deletion : ValueKind.Value, value: Buffer.from(`v${n}`) })),
    );
    const it = buildBlock(model, 16).iterator();
    model.forEach((e, i) => {
      it.seek(e.key, e.seq);
      assertAt(it, model, i, `seek ${i}`);
      it.seekForPrev(e.key, e.seq);
      assertAt(it, model, i, `seekForPrev ${i}`);
    });
    // Newest visible version: seek with a sequence between two versions.
    it.seek(Buffer.from('key-010'), 200);
    assert.equal(it.seq(), 160);
  });

  test('an empty block has no entries in any direction', () => {
    const b = new BlockBuilder(16);
    assert.equal(b.empty, true);
    const block = new Block(Buffer.from(b.finish()), 'x.sst', 0);
    const it = block.iterator();
    assertEmptyEverywhere(it);
  });

  test('the size estimate is the finished size, and reset starts a new block', () => {
    const b = new BlockBuilder(3);
    for (let n = 0; n < 10; n++) b.add(encodeInternalKey(Buffer.from(`k${n}`), 1, ValueKind.Value), Buffer.from('v'));
    const estimate = b.currentSizeEstimate();
    assert.equal(b.finish().length, estimate);
    b.reset();
    assert.equal(b.empty, true);
    b.add(encodeInternalKey(Buffer.from('only'), 9, ValueKind.Value), Buffer.from('x'));
    const it = new Block(Buffer.from(b.finish()), 'x.sst', 0).iterator();
    it.seekToFirst();
    assert.deepEqual(it.userKey(), Buffer.from('only'));
    it.next();
    assert.equal(it.valid(), false);
  });

  test('prefix compression shrinks blocks of similar keys', () => {
    const b = new BlockBuilder(16);
    let raw = 0;
    for (let n = 0; n < 100; n++) {
      const ik = encodeInternalKey(Buffer.from(`user:000000000000:${String(n).padStart(4, '0')}`), 5, ValueKind.Value);
      raw += ik.length;
      b.add(ik, Buffer.alloc(0));
    }
    assert.ok(b.finish().length < raw / 2, 'shared prefixes are stored once per restart interval');
  });

  describe('malformed contents are DATA_CORRUPTED naming the file and block offset', () => {
    const valid = (() => {
      const b = new BlockBuilder(2);
      for (let n = 0; n < 6; n++) b.add(encodeInternalKey(Buffer.from(`key${n}`), 1, ValueKind.Value), Buffer.from('value'));
      return Buffer.from(b.finish());
    })();

    function walk(data: Buffer): void {
      const it = new Block(data, 'sst/000042.sst', 8192).iterator();
      // Bounded, so a cursor that stops moving fails instead of hanging.
      let steps = 0;
      for (it.seekToFirst(); it.valid(); it.next()) assert.ok(++steps <= 6);
      for (it.seekToLast(); it.valid(); it.prev()) assert.ok(++steps <= 12);
      it.seek(Buffer.from('key3'), 1);
    }

    test('the valid block walks cleanly', () => {
      walk(valid);
    });

    test('too short for a restart count', () => {
      assert.throws(() => walk(Buffer.from([1, 0])), expectCode('DATA_CORRUPTED', 'sst/000042.sst', 'offset 8192'));
    });

    test('restart count larger than the block', () => {
      const d = Buffer.from(valid);
      d.writeUInt32LE(1000, d.length - 4);
      assert.throws(() => walk(d), expectCode('DATA_CORRUPTED', 'sst/000042.sst', 'offset 8192', 'restart count'));
    });

    test('restart offset outside the entries', () => {
      const d = Buffer.from(valid);
      const n = d.readUInt32LE(d.length - 4);
      d.writeUInt32LE(0xfffff, d.length - 4 - 4 * (n - 1));
      assert.throws(() => walk(d), expectCode('DATA_CORRUPTED', 'sst/000042.sst', 'offset 8192', 'restart point'));
    });

    test('an entry claiming more bytes than the block holds', () => {
      const d = Buffer.from(valid);
      d[2] = 0x7f; // value length of the first entry
      assert.throws(() => walk(d), expectCode('DATA_CORRUPTED', 'sst/000042.sst', 'offset 8192'));
    });

    test('a varint that runs into the restart array', () => {
      const n = valid.readUInt32LE(valid.length - 4);
      const entriesEnd = valid.length - 4 - 4 * n;
      const d = Buffer.from(valid);
      d.fill(0xff, 0, entriesEnd);
      assert.throws(() => walk(d), expectCode('DATA_CORRUPTED', 'sst/000042.sst', 'offset 8192'));
    });

    test('a shared prefix longer than the previous key', () => {
      const d = Buffer.from(valid);
      // The second entry (not a restart point at interval 2) starts after the first one.
      const firstLen = 3 + 12 + 5;
      d[firstLen] = 60;
      assert.throws(() => walk(d), expectCode('DATA_CORRUPTED', 'sst/000042.sst', 'offset 8192'));
    });
  });

  test('compareBytes orders like Buffer.compare, short and long keys alike', () => {
    const arbBytes = fc.oneof(fc.uint8Array({ maxLength: 8 }).map((a) => a.map((b) => b % 3)), fc.uint8Array({ maxLength: 100 }));
    fc.assert(
      fc.property(arbBytes, arbBytes, fc.nat(50), fc.nat(50), fc.boolean(), (a, b, before, after, samePrefix) => {
        // Long shared prefixes exercise the hand-off from the JS loop to the native compare.
        const x = samePrefix ? Buffer.concat([Buffer.alloc(40, 9), a]) : Buffer.from(a);
        const y = samePrefix ? Buffer.concat([Buffer.alloc(40, 9), b]) : Buffer.from(b);
        const host = Buffer.concat([Buffer.alloc(before, 5), x, Buffer.alloc(after, 6)]);
        assert.equal(compareBytes(host, before, before + x.length, y), Buffer.compare(x, y));
      }),
      { numRuns: 1000 },
    );
  });

  test('a block cursor can be re-pointed at another block', () => {
    const a = buildBlock([{ key: Buffer.from('a'), seq: 1, kind: ValueKind.Value, value: Buffer.from('1') }], 16);
    const b = buildBlock([{ key: Buffer.from('b'), seq: 2, kind: ValueKind.Deletion, value: Buffer.alloc(0) }], 16);
    const it = new BlockIterator(a);
    it.seekToFirst();
    const keyA = it.userKey();
    it.reset(b);
    assert.equal(it.valid(), false);
    it.seekToFirst();
    assert.deepEqual(it.userKey(), Buffer.from('b'));
    assert.equal(it.kind(), ValueKind.Deletion);
    assert.deepEqual(keyA, Buffer.from('a'));
  });
});
