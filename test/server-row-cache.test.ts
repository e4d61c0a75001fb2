import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { INLINE_VALUE_BYTES, RowCache, type ValueLocation } from '../src/server/keyspace/row-cache.js';

const B = (s: string): Buffer => Buffer.from(s);

describe('row cache', () => {
  test('keeps values and known absences, and forgets the least recently used generation', () => {
    const c = new RowCache(2 * (64 + 2 + 1) * 3); // room for about three entries per generation
    c.set(B('k1'), Buffer.from('a'));
    c.set(B('k2'), null);
    assert.equal(c.get(B('k1'))?.toString(), 'a');
    assert.equal(c.get(B('k2')), null, 'a cached absence is null, not undefined');
    assert.equal(c.get(B('nope')), undefined);
    for (let i = 3; i < 12; i++) c.set(B(`k${i}`), Buffer.from('x'));
    assert.equal(c.get(B('k1')), undefined, 'two generations later the first entries are gone');
    assert.ok(c.entries <= 8, `bounded (${c.entries} entries)`);
    assert.equal(c.hits, 2);
    assert.equal(c.misses, 2);
  });

  test('a hit in the old generation survives the next rotation', () => {
    const c = new RowCache(2 * (64 + 2 + 1) * 3);
    c.set(B('k0'), Buffer.from('keep'));
    c.set(B('k1'), Buffer.from('x'));
    c.set(B('k2'), Buffer.from('x')); // rotates: k0..k2 are old now
    assert.equal(c.get(B('k0'))?.toString(), 'keep'); // promoted to the young generation
    c.set(B('k3'), Buffer.from('x'));
    c.set(B('k4'), Buffer.from('x')); // rotates again: the old generation (k1, k2) is dropped
    assert.equal(c.get(B('k0'))?.toString(), 'keep');
    assert.equal(c.get(B('k1')), undefined);
  });

  test('with room for everything it answers exactly as a Map would, through growth of its tables', () => {
    const c = new RowCache(1 << 30);
    const model = new Map<string, Buffer | null>();
    // Keys of many lengths, prefixes of one another, zero bytes, and the empty key.
    const keyOf = (i: number): Buffer => (i % 97 === 0 ? Buffer.alloc(i % 5) : Buffer.from(`k${'\0'.repeat(i % 3)}${i % 4000}`));
    for (let i = 0; i < 20_000; i++) {
      const key = keyOf((i * 7919) % 9000);
      if (i % 3 === 0) {
        // Values shorter and longer than the prefix, and empty ones.
        // Values empty, small (inline) and past INLINE_VALUE_BYTES (held by reference).
        const value = i % 11 === 0 ? null : i % 13 === 0 ? Buffer.alloc(0) : Buffer.from(String(i).repeat(i % 17 === 0 ? 80 : 1 + (i % 7)));
        c.set(key, value);
        model.set(key.toString('latin1'), value);
      } else {
        const want = model.get(key.toString('latin1'));
        const got = c.get(key);
        assert.equal(got === null ? 'null' : got?.toString(), want === null ? 'null' : want?.toString(), `key ${key.toString('hex')} at step ${i}`);
        // Where the value lies agrees with the value.
        const at: ValueLocation = { buf: Buffer.alloc(0), start: 0 };
        const n = c.locate(key, at);
        assert.equal(n, want === undefined ? -2 : want === null ? -1 : want.length, `located length of ${key.toString('hex')} at step ${i}`);
        if (want) assert.deepEqual(at.buf.subarray(at.start, at.start + n), want);
      }
    }
    assert.equal(c.entries, model.size);
  });

  test('through many generations a read is never stale, and each new generation starts with the room its predecessor reached', () => {
    const c = new RowCache(256 * 1024);
    const model = new Map<string, string | null>();
    const first = c.youngSizes;
    let forgotten = 0;
    let largest = first;
    for (let i = 0; i < 60_000; i++) {
      const k = `key:${(i * 7919) % 5000}`;
      if (i % 4 !== 3) {
        const v = i % 10 === 0 ? null : `v${i}`.repeat(1 + (i % 5));
        c.set(B(k), v === null ? null : B(v));
        model.set(k, v);
      } else {
        const got = c.get(B(k));
        if (got === undefined) forgotten++;
        else assert.equal(got === null ? null : got.toString(), model.get(k), `${k} at step ${i}`);
      }
      const now = c.youngSizes;
      // Without presizing, each rotation started the young generation over at its first size.
      assert.ok(now.arenaBytes >= largest.arenaBytes && now.slotBits >= largest.slotBits, `step ${i}: ${JSON.stringify(now)} after ${JSON.stringify(largest)}`);
      largest = now;
    }
    assert.ok(forgotten > 0, 'the budget made generations turn over');
    assert.ok(largest.arenaBytes > first.arenaBytes && largest.slotBits > first.slotBits, JSON.stringify({ first, largest }));
  });

  test('the key is copied: a reused buffer does not change what was cached', () => {
    const c = new RowCache(1 << 20);
    const key = Buffer.from('abc');
    c.set(key, Buffer.from('1'));
    key.write('xyz');
    assert.equal(c.get(B('abc'))?.toString(), '1');
    assert.equal(c.get(B('xyz')), undefined);
  });

  test('keys that all share one hash (crafted by a client) stay correct and bounded: the cache empties rather than chains', () => {
    const c = new RowCache(1 << 30, () => 7);
    const model = new Map<string, string>();
    for (let i = 0; i < 5000; i++) {
      const key = B(`crafted-${i % 700}`);
      if (i % 2 === 0) {
        c.set(key, B(String(i)));
        model.set(key.toString(), String(i));
      }
      const got = c.get(key);
      // A cache may forget; it must never answer with a value the key does not have.
      if (got !== undefined) assert.equal(got?.toString(), model.get(key.toString()), `key ${key.toString()} at step ${i}`);
      const at: ValueLocation = { buf: Buffer.alloc(0), start: 0 };
      const n = c.locate(key, at);
      if (n !== -2) assert.equal(at.buf.subarray(at.start, at.start + n).toString(), model.get(key.toString()), `located ${key.toString()} at step ${i}`);
    }
    assert.ok(c.overflows > 0, 'crowded slots emptied the cache');
    assert.ok(c.entries <= 2 * 33, `no generation holds more than a probe run of one hash (${c.entries})`);
    const last = B('crafted-1');
    c.set(last, B('fresh'));
    assert.equal(c.get(last)?.toString(), 'fresh', 'what was just written is there');
  });

  test('a value handed out stays as it was when its key is overwritten, the arena grows and the generations turn', () => {
    const c = new RowCache(256 * 1024);
    const held: Array<[Buffer, string]> = [];
    const big = Buffer.alloc(INLINE_VALUE_BYTES + 1, 98);
    for (let i = 0; i < 20_000; i++) {
      const key = B(`k${i % 50}`);
      const value = i % 500 === 0 ? big : B(`value-${i}`);
      c.set(key, value);
      const got = c.get(key)!;
      assert.equal(got.toString(), value.toString());
      if (i % 250 === 0) held.push([got, value.toString()]);
      const at: ValueLocation = { buf: Buffer.alloc(0), start: 0 };
      assert.equal(c.locate(key, at), value.length);
      assert.equal(at.buf.subarray(at.start, at.start + value.length).toString(), value.toString());
    }
    // get() hands out copies of small values, which are overwritten in place: what a reply
    // still holds cannot change.
    for (const [buf, text] of held) assert.equal(buf.toString(), text);
    assert.ok(c.entries <= 100);
  });

  test('a new value that fits its entry is written in place: overwriting hot keys neither grows the cache nor turns its generations', () => {
    const c = new RowCache(64 * 1024);
    const keys = Array.from({ length: 100 }, (_, i) => B(`key:${String(i).padStart(12, '0')}`));
    // A known absence first, as a SET's lookup leaves it, then records of 12 bytes (a 3-byte value).
    for (const k of keys) c.set(k, null);
    const sizes = c.youngSizes;
    for (let i = 0; i < 50_000; i++) {
      const k = keys[(i * 37) % keys.length]!;
      const v = B(`${String(i % 1000).padStart(9, '0')}abc`);
      c.set(k, v);
      const at: ValueLocation = { buf: Buffer.alloc(0), start: 0 };
      assert.equal(c.locate(k, at), v.length);
      assert.equal(at.buf.subarray(at.start, at.start + v.length).toString(), v.toString(), `step ${i}`);
    }
    // 50,000 appended values would have been ~600 KB: nine times the budget.
    assert.equal(c.forgets, 0, 'no generation was dropped');
    assert.deepEqual(c.youngSizes, sizes, 'the arena did not grow');
    assert.equal(c.entries, keys.length);
  });

  test('a value that outgrows its room moves to a new entry, through every size and back, big values included', () => {
    const c = new RowCache(1 << 24);
    const k = B('k');
    const other = B('other');
    c.set(other, B('stays'));
    c.set(k, null);
    const lengths = [0, 1, 15, 16, 17, 40, INLINE_VALUE_BYTES, INLINE_VALUE_BYTES + 1, 3, 1000, 0, 255, null, 16, 300, 2];
    for (const [i, n] of lengths.entries()) {
      const v = n === null ? null : Buffer.alloc(n, 97 + (i % 26));
      c.set(k, v);
      assert.equal(c.get(k)?.toString('hex') ?? c.get(k), v === null ? null : v.toString('hex'), `value ${i} (${n} bytes)`);
      const at: ValueLocation = { buf: Buffer.alloc(0), start: 0 };
      assert.equal(c.locate(k, at), v === null ? -1 : v.length);
      if (v !== null) assert.deepEqual(at.buf.subarray(at.start, at.start + v.length), v);
      assert.equal(c.get(other)?.toString(), 'stays', `the neighbour after value ${i}`);
    }
    assert.equal(c.entries, 2, 'a moved entry replaces its key, it is not a second one');
  });

  test('a zero budget caches nothing', () => {
    const c = new RowCache(0);
    c.set(B('k'), Buffer.from('v'));
    assert.equal(c.enabled, false);
    assert.equal(c.get(B('k')), undefined);
  });
});
