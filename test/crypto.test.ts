import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { ctrStreamAt, ctrTransformAt, ivAtOffset } from '../src/crypto/ctr.js';
import { ENCRYPTION_METHODS, keyLengthOf, methodCode, methodFromCode } from '../src/crypto/method.js';
import { AuthenticationFailure, seal, unseal } from '../src/crypto/seal.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// NIST SP 800-38A, F.5.1 / F.5.3 / F.5.5 (CTR-AES*.Encrypt).
const NIST_COUNTER = hex('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff');
const NIST_PLAINTEXT = hex(`6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
  30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710`);
const NIST = [
  {
    method: 'aes128-ctr' as const,
    key: hex('2b7e151628aed2a6abf7158809cf4f3c'),
    ciphertext: hex(`874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff
      5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee`),
  },
  {
    method: 'aes192-ctr' as const,
    key: hex('8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b'),
    ciphertext: hex(`1abc932417521ca24f2b0459fe7e6e0b 090339ec0aa6faefd5ccc2c6f4ce8e94
      1e36b26bd1ebc670d1bd1d665620abf7 4f78a7f6d29809585a97daec58c6b050`),
  },
  {
    method: 'aes256-ctr' as const,
    key: hex('603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4'),
    ciphertext: hex(`601ec313775789a5b7a7f504bbf3d228 f443e3ca4d62b59aca84e990cacaf5c5
      2b0930daa23de94ce87017ba2d84988d dfc9c58db67aada613c2dd08457941a6`),
  },
];

// draft-ribose-cfrg-sm4-10, A.2.5.1 (SM4-CTR).
const SM4 = {
  key: hex('0123456789abcdeffedcba9876543210'),
  iv: hex('000102030405060708090a0b0c0d0e0f'),
  plaintext: hex('aa'.repeat(8) + 'bb'.repeat(8) + 'cc'.repeat(8) + 'dd'.repeat(8) + 'ee'.repeat(8) + 'ff'.repeat(8) + 'ee'.repeat(8) + 'aa'.repeat(8)),
  ciphertext: hex(`ac3236cb970cc20791364c395a1342d1 a3cbc1878c6f30cd074cce385cdd70c7
    f234bc0e24c11980fd1286310ce37b92 2a46b894bee4feb79a3822940c935405`),
};

for (const v of NIST) {
  test(`${v.method} matches NIST SP 800-38A at every byte offset`, () => {
    assert.deepEqual(ctrTransformAt(v.method, v.key, NIST_COUNTER, 0, NIST_PLAINTEXT), v.ciphertext);
    for (let off = 0; off < NIST_PLAINTEXT.length; off++) {
      const part = ctrTransformAt(v.method, v.key, NIST_COUNTER, off, NIST_PLAINTEXT.subarray(off));
      assert.deepEqual(part, v.ciphertext.subarray(off), `offset ${off}`);
      assert.deepEqual(ctrTransformAt(v.method, v.key, NIST_COUNTER, off, part), NIST_PLAINTEXT.subarray(off));
    }
  });
}

test('sm4-ctr matches the published SM4-CTR vector at every byte offset', () => {
  assert.deepEqual(ctrTransformAt('sm4-ctr', SM4.key, SM4.iv, 0, SM4.plaintext), SM4.ciphertext);
  for (let off = 1; off < SM4.plaintext.length; off++) {
    assert.deepEqual(ctrTransformAt('sm4-ctr', SM4.key, SM4.iv, off, SM4.plaintext.subarray(off)), SM4.ciphertext.subarray(off));
  }
});

test('ivAtOffset carries across the 64-bit boundary and wraps at 2^128', () => {
  assert.deepEqual(ivAtOffset(hex('0000000000000000ffffffffffffffff'), 16), hex('00000000000000010000000000000000'));
  assert.deepEqual(ivAtOffset(hex('ffffffffffffffffffffffffffffffff'), 32), hex('00000000000000000000000000000001'));
  assert.deepEqual(ivAtOffset(hex('000000000000000000000000000000ff'), 15), hex('000000000000000000000000000000ff'));
  assert.deepEqual(ivAtOffset(hex('00000000000000000000000000000000'), 2 ** 40 * 16), hex('00000000000000000000010000000000'));
});

test('a stream whose counter crosses 2^64 decrypts identically from any offset', () => {
  // Counter low half at 2^64 - 2: the third block carries into the high half, as OpenSSL does.
  const iv = hex('0102030405060708fffffffffffffffe');
  const key = randomBytes(32);
  const data = randomBytes(16 * 6 + 5);
  const whole = ctrTransformAt('aes256-ctr', key, iv, 0, data);
  for (const off of [0, 7, 16, 31, 32, 33, 48, 64, 100]) {
    assert.deepEqual(ctrTransformAt('aes256-ctr', key, iv, off, data.subarray(off)), whole.subarray(off), `offset ${off}`);
  }
  // The third block's keystream is the block for counter 0102030405060709 0000000000000000.
  const third = ctrTransformAt('aes256-ctr', key, hex('01020304050607090000000000000000'), 0, data.subarray(32, 48));
  assert.deepEqual(third, whole.subarray(32, 48));
});

test('ciphertext has the plaintext size, and plaintext method is the identity', () => {
  for (const method of ENCRYPTION_METHODS) {
    const key = randomBytes(keyLengthOf(method));
    for (const n of [0, 1, 15, 16, 17, 4096, 4097]) {
      const data = randomBytes(n);
      const out = ctrTransformAt(method, key, randomBytes(16), 3, data);
      assert.equal(out.length, n);
      if (method === 'plaintext') assert.deepEqual(out, data);
    }
  }
});

test('method codes round-trip and match TiKV', () => {
  assert.deepEqual(ENCRYPTION_METHODS.map(methodCode), [1, 2, 3, 4, 5]);
  for (const m of ENCRYPTION_METHODS) assert.equal(methodFromCode(methodCode(m)), m);
  assert.equal(methodFromCode(0), undefined);
});

test('property: any split of a stream into reads at random offsets decrypts to the original', () => {
  const methods = ENCRYPTION_METHODS.filter((m) => m !== 'plaintext');
  fc.assert(
    fc.property(
      fc.constantFrom(...methods),
      fc.uint8Array({ minLength: 1, maxLength: 3000 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      (method, data, cuts, iv) => {
        const key = randomBytes(keyLengthOf(method));
        // Written by one stream, as the env's writable file does.
        const ciphertext = ctrStreamAt(method, key, iv, 0).update(data);
        const bounds = [...new Set([0, data.length, ...cuts.map((c) => c % data.length)])].sort((a, b) => a - b);
        const pieces: Buffer[] = [];
        // Read the ranges in shuffled order to prove independence from earlier reads.
        const ranges = bounds.slice(0, -1).map((b, i) => [b, bounds[i + 1]!] as const);
        const order = [...ranges.keys()].reverse();
        for (const i of order) {
          const [from, to] = ranges[i]!;
          pieces[i] = ctrTransformAt(method, key, iv, from, ciphertext.subarray(from, to));
        }
        assert.deepEqual(Buffer.concat(pieces), Buffer.from(data));
      },
    ),
    { numRuns: 300 },
  );
});

test('seal/unseal round-trips, uses a fresh nonce, and detects a wrong key or changed bytes', () => {
  const key = randomBytes(32);
  const aad = Buffer.from('header');
  const a = seal(key, Buffer.from('secret keys'), aad);
  const b = seal(key, Buffer.from('secret keys'), aad);
  assert.notDeepEqual(a.nonce, b.nonce);
  assert.deepEqual(unseal(key, a, aad), Buffer.from('secret keys'));
  assert.throws(() => unseal(randomBytes(32), a, aad), AuthenticationFailure);
  assert.throws(() => unseal(key, a, Buffer.from('other')), AuthenticationFailure);
  const flipped = { ...a, ciphertext: Buffer.from(a.ciphertext) };
  flipped.ciphertext[0]! ^= 1;
  assert.throws(() => unseal(key, flipped, aad), AuthenticationFailure);
});
