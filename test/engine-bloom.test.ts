import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BloomHashCollector, bloomMayContain, bloomProbes, buildBloom, hash32 } from '../src/engine/bloom.js';

function keyOf(n: number, prefix = 'key'): Buffer {
  return Buffer.from(`${prefix}${n}`);
}

function falsePositiveRate(bitsPerKey: number, n = 10_000): number {
  const keys = Array.from({ length: n }, (_, i) => keyOf(i));
  const filter = buildBloom(keys, bitsPerKey);
  let hits = 0;
  const probes = 10_000;
  for (let i = 0; i < probes; i++) if (bloomMayContain(filter, keyOf(i + 1_000_000_000, 'absent'))) hits++;
  return hits / probes;
}

describe('bloom filter', () => {
  test('the hash is LevelDB\'s (its published test vectors, high bytes included)', () => {
    assert.equal(hash32(new Uint8Array(0), 0xbc9f1d34), 0xbc9f1d34);
    assert.equal(hash32(Buffer.from([0x62]), 0xbc9f1d34), 0xef1345c4);
    assert.equal(hash32(Buffer.from([0xc3, 0x97]), 0xbc9f1d34), 0x5b663814);
    assert.equal(hash32(Buffer.from([0xe2, 0x99, 0xa5]), 0xbc9f1d34), 0x323c078f);
    assert.equal(hash32(Buffer.from([0xe1, 0x80, 0xb9, 0x32]), 0xbc9f1d34), 0xed21633a);
    const data5 = Buffer.alloc(48);
    data5.set([0x01, 0xc0], 0);
    data5[16] = 0x14;
    data5[22] = 0x04;
    data5[27] = 0x14;
    data5[31] = 0x18;
    data5[32] = 0x28;
    data5[40] = 0x02;
    assert.equal(hash32(data5, 0x12345678), 0xf333dabb);
  });

  test('hashing a subrange equals hashing a copy of it', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.nat(40), fc.nat(40), (bytes, a, b) => {
        const start = Math.min(a, b, bytes.length);
        const end = Math.min(Math.max(a, b), bytes.length);
        assert.equal(hash32(bytes, undefined, start, end), hash32(bytes.slice(start, end)));
      }),
    );
  });

  test('never a false negative', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 30 }), { maxLength: 300 }), fc.integer({ min: 1, max: 25 }), (keys, bits) => {
        const filter = buildBloom(keys, bits);
        for (const k of keys) assert.ok(bloomMayContain(filter, k), 'an added key must be reported as possibly present');
      }),
      { numRuns: 200 },
    );
  });

  test('the false-positive rate follows bits per key', () => {
    const at10 = falsePositiveRate(10);
    const at5 = falsePositiveRate(5);
    const at20 = falsePositiveRate(20);
    assert.ok(at10 < 0.02, `10 bits per key: ${at10}`);
    assert.ok(at10 > 0.002, `10 bits per key should cost about 1% false positives, got ${at10} (is the filter answering at all?)`);
    assert.ok(at5 < 0.15 && at5 > at10, `5 bits per key: ${at5}`);
    assert.ok(at20 < 0.002, `20 bits per key: ${at20}`);
  });

  test('a filter over collected hashes equals one over the keys', () => {
    const keys = Array.from({ length: 3000 }, (_, i) => keyOf(i));
    const c = new BloomHashCollector();
    for (const k of keys) c.add(k);
    assert.equal(c.count, 3000);
    assert.deepEqual(buildBloom(c.hashes(), 10), buildBloom(keys, 10));
  });

  test('probes: round(bits × ln 2), clamped to 1..30, stored in the last byte', () => {
    assert.equal(bloomProbes(10), 7);
    assert.equal(bloomProbes(0.1), 1);
    assert.equal(bloomProbes(100), 30);
    const f = buildBloom([Buffer.from('a')], 10);
    assert.equal(f[f.length - 1], 7);
    assert.ok(f.length - 1 >= 8, 'at least 64 bits even for one key');
  });

  test('filters it cannot read answer "may contain"', () => {
    const f = buildBloom(Array.from({ length: 100 }, (_, i) => keyOf(i)), 10);
    const absent = Array.from({ length: 200 }, (_, i) => keyOf(i, 'no'));
    assert.ok(absent.some((k) => !bloomMayContain(f, k)), 'the intact filter excludes some keys');
    const garbled = Buffer.from(f);
    garbled[garbled.length - 1] = 31;
    for (const k of absent) assert.ok(bloomMayContain(garbled, k));
    assert.ok(bloomMayContain(Buffer.alloc(0), Buffer.from('x')));
    assert.ok(bloomMayContain(Buffer.from([7]), Buffer.from('x')));
  });

  test('an empty filter excludes everything it can', () => {
    const f = buildBloom([], 10);
    assert.equal(bloomMayContain(f, Buffer.from('anything')), false);
  });
});
