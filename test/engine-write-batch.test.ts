import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ValueKind } from '../src/engine/internal-key.js';
import type { BatchOp } from '../src/engine/types.js';
import { BATCH_HEADER_BYTES, batchByteSize, decodeBatch, encodeBatch, WriteBatchBuilder } from '../src/engine/write-batch.js';
import { isTdekvError } from '../src/errors.js';

const bytes = (max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength: max });
// Lengths around the one- and two-byte varint boundaries matter more than big ones.
const sizedBytes = fc.oneof(bytes(4), bytes(200), fc.integer({ min: 120, max: 20_000 }).map((n) => new Uint8Array(n).fill(n & 0xff)));
const op: fc.Arbitrary<BatchOp> = fc.oneof(
  fc.record({ type: fc.constant('put' as const), key: sizedBytes, value: sizedBytes }),
  fc.record({ type: fc.constant('del' as const), key: sizedBytes }),
);
const ops = fc.array(op, { maxLength: 20 });
// Small enough to try every prefix, still crossing the one/two-byte varint boundary.
const smallBytes = fc.oneof(bytes(4), bytes(140));
const smallOps = fc.array(
  fc.oneof(
    fc.record({ type: fc.constant('put' as const), key: smallBytes, value: smallBytes }),
    fc.record({ type: fc.constant('del' as const), key: smallBytes }),
  ),
  { maxLength: 6 },
);
const firstSeq = fc.oneof(fc.nat(1000), fc.integer({ min: 2 ** 32 - 5, max: 2 ** 32 + 5 }), fc.constant(2 ** 53 - 100));

interface Decoded {
  seq: number;
  kind: ValueKind;
  key: Buffer;
  value: Buffer;
}

function decodeAll(payload: Buffer): { ops: Decoded[]; firstSeq: number; count: number } {
  const out: Decoded[] = [];
  const info = decodeBatch(payload, (seq, kind, key, value) => out.push({ seq, kind, key, value }));
  return { ops: out, ...info };
}

/** Malformed input must be refused with RangeError or TdekvError, never with a crash of another kind. */
function isFormatError(err: unknown): boolean {
  return err instanceof RangeError || isTdekvError(err);
}

describe('write batch codec', () => {
  test('round trip: sequences, kinds, keys and values come back, with the exact size', () => {
    fc.assert(
      fc.property(ops, firstSeq, (batch, first) => {
        const payload = encodeBatch(batch, first);
        assert.equal(payload.length, batchByteSize(batch));
        const got = decodeAll(payload);
        assert.equal(got.firstSeq, first);
        assert.equal(got.count, batch.length);
        assert.equal(got.ops.length, batch.length);
        got.ops.forEach((d, i) => {
          const o = batch[i]!;
          assert.equal(d.seq, first + i);
          assert.equal(d.kind, o.type === 'put' ? ValueKind.Value : ValueKind.Deletion);
          assert.ok(d.key.equals(o.key));
          assert.ok(d.value.equals(o.type === 'put' ? o.value : Buffer.alloc(0)));
        });
      }),
    );
  });

  test('keys and values are views of the payload, not copies', () => {
    const payload = encodeBatch([{ type: 'put', key: Buffer.from('k'), value: Buffer.from('v') }], 5);
    const got = decodeAll(payload);
    assert.equal(got.ops[0]!.key.buffer, payload.buffer);
    assert.equal(got.ops[0]!.value.buffer, payload.buffer);
  });

  test('an empty batch is just the header', () => {
    const payload = encodeBatch([], 42);
    assert.equal(payload.length, BATCH_HEADER_BYTES);
    assert.deepEqual(decodeAll(payload), { ops: [], firstSeq: 42, count: 0 });
  });

  test('every proper prefix of a batch is refused', () => {
    fc.assert(
      fc.property(smallOps, firstSeq, (batch, first) => {
        const payload = encodeBatch(batch, first);
        for (let len = 0; len < payload.length; len++) {
          assert.throws(() => decodeAll(payload.subarray(0, len)), isFormatError, `prefix of ${len} of ${payload.length} bytes`);
        }
      }),
      { numRuns: 60 },
    );
  });

  test('trailing bytes, unknown kinds, oversized lengths and counts are refused', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 8 }), fc.nat(1000), fc.uint8Array({ minLength: 1, maxLength: 8 }), (batch, first, extra) => {
        const payload = encodeBatch(batch, first);
        assert.throws(() => decodeAll(Buffer.concat([payload, extra])), isFormatError, 'trailing bytes');

        const badKind = Buffer.from(payload);
        badKind[BATCH_HEADER_BYTES] = 2 + (extra[0]! % 250);
        assert.throws(() => decodeAll(badKind), /unknown kind/);

        const moreOps = Buffer.from(payload);
        moreOps.writeUInt32LE(batch.length + 1, 8);
        assert.throws(() => decodeAll(moreOps), isFormatError, 'count larger than the ops present');

        const fewerOps = Buffer.from(payload);
        fewerOps.writeUInt32LE(batch.length - 1, 8);
        assert.throws(() => decodeAll(fewerOps), isFormatError, 'count smaller than the ops present');

        // The last op's value (or key) length claims one byte more than the batch holds.
        const last = batch.at(-1)!;
        const tail = last.type === 'put' ? last.value : last.key;
        if (tail.length < 127) {
          const longer = Buffer.from(payload);
          longer[payload.length - tail.length - 1] = tail.length + 1;
          assert.throws(() => decodeAll(longer), /runs past the end/);
        }
      }),
    );
  });

  test('a length varint longer than 53 bits is refused', () => {
    const payload = Buffer.concat([encodeBatch([], 1), Buffer.from([ValueKind.Deletion]), Buffer.alloc(9, 0xff), Buffer.from([1])]);
    payload.writeUInt32LE(1, 8);
    assert.throws(() => decodeAll(payload), /malformed/);
  });

  test('arbitrary bytes after a plausible header either decode consistently or are refused with a format error', () => {
    fc.assert(
      fc.property(fc.nat(4), fc.uint8Array({ maxLength: 48 }), (count, body) => {
        const payload = Buffer.concat([encodeBatch([], 7), body]);
        payload.writeUInt32LE(count, 8);
        let got;
        try {
          got = decodeAll(payload);
        } catch (err) {
          assert.ok(isFormatError(err), String(err));
          return;
        }
        // What decodes re-encodes to the same bytes: the format has one encoding per batch.
        const reencoded = encodeBatch(
          got.ops.map((d): BatchOp => (d.kind === ValueKind.Value ? { type: 'put', key: d.key, value: d.value } : { type: 'del', key: d.key })),
          got.firstSeq,
        );
        // Varints may be written non-minimally by hand; only minimal ones are canonical.
        if (reencoded.length === payload.length) assert.ok(reencoded.equals(payload));
      }),
      { numRuns: 2000 },
    );
  });

  test('a sequence beyond 2^53 or a bad first sequence is refused', () => {
    const payload = encodeBatch([{ type: 'del', key: Buffer.from('a') }], 1);
    const huge = Buffer.from(payload);
    huge.writeUInt32LE(0x0020_0000, 4);
    assert.throws(() => decodeAll(huge), RangeError);
    assert.throws(() => encodeBatch([], -1), RangeError);
    assert.throws(() => encodeBatch([], 1.5), RangeError);
    assert.throws(() => encodeBatch([{ type: 'del', key: Buffer.from('a') }, { type: 'del', key: Buffer.from('b') }], Number.MAX_SAFE_INTEGER), RangeError);
  });

  test('a batch built op by op is byte for byte the batch encodeBatch makes of the same ops, and the builder starts over after take()', () => {
    // A builder reused across batches (as a chained batch or the server's turn is), starting
    // small so that it grows, with ops around the copy loop's 64-byte edge.
    const builder = new WriteBatchBuilder(16);
    fc.assert(
      fc.property(fc.array(ops, { minLength: 1, maxLength: 4 }), (batches) => {
        for (const batch of batches) {
          for (const o of batch) {
            if (o.type === 'put') builder.put(o.key, o.value);
            else builder.del(o.key);
          }
          assert.equal(builder.count, batch.length);
          assert.equal(builder.byteLength, batchByteSize(batch));
          const taken = builder.take();
          assert.ok(taken.equals(encodeBatch(batch, 0)), 'the same bytes as encodeBatch');
          assert.equal(builder.count, 0);
          assert.equal(builder.byteLength, BATCH_HEADER_BYTES);
          // What was taken is the caller's: building the next batch does not change it.
          const copy = Buffer.from(taken);
          builder.put(Buffer.alloc(300, 7), Buffer.alloc(300, 9));
          builder.clear();
          assert.ok(taken.equals(copy));
        }
      }),
      { numRuns: 300 },
    );
  });

  test('a builder copies what it is given, refuses what is not bytes, and clear() drops its ops', () => {
    const builder = new WriteBatchBuilder();
    const key = Buffer.from('key-1');
    const value = Buffer.alloc(100, 1);
    builder.put(key, value);
    key.write('KEY-2');
    value.fill(2);
    builder.del(key);
    const got = decodeAll(builder.take());
    assert.deepEqual(
      got.ops.map((d) => [d.kind, d.key.toString(), d.value.length > 0 ? d.value[0] : -1]),
      [
        [ValueKind.Value, 'key-1', 1],
        [ValueKind.Deletion, 'KEY-2', -1],
      ],
    );
    assert.throws(() => builder.put('k' as unknown as Buffer, Buffer.alloc(1)), (e: unknown) => isTdekvError(e) && /key must be a Buffer or Uint8Array/.test((e as Error).message));
    assert.throws(() => builder.put(Buffer.from('k'), 5 as unknown as Buffer), (e: unknown) => isTdekvError(e) && /value must be a Buffer or Uint8Array/.test((e as Error).message));
    assert.throws(() => builder.del(undefined as unknown as Buffer), (e: unknown) => isTdekvError(e) && /key must be/.test((e as Error).message));
    assert.equal(builder.count, 0, 'a refused op is not counted');
    builder.put(Buffer.from('a'), Buffer.from('b'));
    builder.clear();
    assert.equal(builder.count, 0);
    assert.equal(decodeAll(builder.take()).count, 0);
  });

  test('one huge batch does not make the batches after it huge', () => {
    const builder = new WriteBatchBuilder();
    builder.put(Buffer.from('big'), Buffer.alloc(4 * 1024 * 1024, 1));
    assert.equal(decodeAll(builder.take()).ops[0]!.value.length, 4 * 1024 * 1024);
    for (let i = 0; i < 3; i++) {
      builder.put(Buffer.from(`k${i}`), Buffer.from('v'));
      const small = builder.take();
      assert.deepEqual(decodeAll(small).ops.map((d) => d.key.toString()), [`k${i}`]);
      // The first small batch may start with the huge one's room; the ones after it do not.
      if (i > 0) assert.ok(small.buffer.byteLength <= 64 * 1024, `batch ${i} sits in ${small.buffer.byteLength} bytes`);
    }
  });
});
