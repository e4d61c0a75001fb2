import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RowCache } from '../src/server/keyspace/row-cache.js';

describe('row cache', () => {
  test('keeps values and known absences, and forgets the least recently used generation', () => {
    const c = new RowCache(2 * (64 + 2 + 1) * 3); // room for about three entries per generation
    c.set('k1', Buffer.from('a'));
    c.set('k2', null);
    assert.equal(c.get('k1')?.toString(), 'a');
    assert.equal(c.get('k2'), null, 'a cached absence is null, not undefined');
    assert.equal(c.get('nope'), undefined);
    for (let i = 3; i < 12; i++) c.set(`k${i}`, Buffer.from('x'));
    assert.equal(c.get('k1'), undefined, 'two generations later the first entries are gone');
    assert.ok(c.entries <= 8, `bounded (${c.entries} entries)`);
    assert.equal(c.hits, 2);
    assert.equal(c.misses, 2);
  });

  test('a hit in the old generation survives the next rotation', () => {
    const c = new RowCache(2 * (64 + 2 + 1) * 3);
    c.set('k0', Buffer.from('keep'));
    c.set('k1', Buffer.from('x'));
    c.set('k2', Buffer.from('x')); // rotates: k0..k2 are old now
    assert.equal(c.get('k0')?.toString(), 'keep'); // promoted to the young generation
    c.set('k3', Buffer.from('x'));
    c.set('k4', Buffer.from('x')); // rotates again: the old generation (k1, k2) is dropped
    assert.equal(c.get('k0')?.toString(), 'keep');
    assert.equal(c.get('k1'), undefined);
  });

  test('a zero budget caches nothing', () => {
    const c = new RowCache(0);
    c.set('k', Buffer.from('v'));
    assert.equal(c.enabled, false);
    assert.equal(c.get('k'), undefined);
  });
});
