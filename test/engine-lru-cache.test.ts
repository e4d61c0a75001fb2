import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LruCache } from '../src/engine/lru-cache.js';

function tracked(capacity: number): { cache: LruCache<string>; evicted: string[] } {
  const evicted: string[] = [];
  const cache = new LruCache<string>(capacity, (key, value) => evicted.push(`${key}=${value}`));
  return { cache, evicted };
}

describe('LRU cache', () => {
  test('evicts least recently used entries by charge, calling onEvict', () => {
    const { cache, evicted } = tracked(100);
    cache.set('a', 'A', 40);
    cache.set('b', 'B', 40);
    assert.equal(cache.usage, 80);
    assert.equal(cache.get('a'), 'A'); // a is now the most recent
    cache.set('c', 'C', 40);
    assert.deepEqual(evicted, ['b=B']);
    assert.equal(cache.get('b'), undefined);
    assert.equal(cache.usage, 80);
    cache.set('d', 'D', 90);
    assert.deepEqual(evicted, ['b=B', 'a=A', 'c=C']);
    assert.equal(cache.usage, 90);
    assert.equal(cache.size, 1);
  });

  test('an entry larger than the capacity is not kept', () => {
    const { cache, evicted } = tracked(10);
    cache.set('small', 's', 5);
    cache.set('huge', 'h', 11);
    assert.equal(cache.get('huge'), undefined);
    assert.equal(cache.get('small'), 's', 'a refused entry does not flush the others');
    assert.deepEqual(evicted, ['huge=h']);
  });

  test('capacity 0 disables caching', () => {
    const { cache } = tracked(0);
    cache.set('a', 'A', 1);
    assert.equal(cache.get('a'), undefined);
    assert.equal(cache.usage, 0);
    assert.equal(cache.capacity, 0);
  });

  test('replacing a key recharges it and evicts the old value', () => {
    const { cache, evicted } = tracked(100);
    cache.set('a', 'A1', 30);
    cache.set('a', 'A2', 50);
    assert.equal(cache.usage, 50);
    assert.equal(cache.get('a'), 'A2');
    assert.deepEqual(evicted, ['a=A1']);
  });

  test('delete and deleteWhere by prefix or predicate', () => {
    const { cache, evicted } = tracked(1000);
    for (const k of ['7:0', '7:4096', '71:0', '8:0']) cache.set(k, k, 10);
    assert.equal(cache.deleteWhere('7:'), 2);
    assert.deepEqual(evicted.sort(), ['7:0=7:0', '7:4096=7:4096']);
    assert.equal(cache.get('71:0'), '71:0', 'a prefix does not match a longer file number');
    assert.equal(cache.deleteWhere((k) => k.startsWith('8')), 1);
    assert.equal(cache.delete('71:0'), true);
    assert.equal(cache.delete('71:0'), false);
    assert.equal(cache.usage, 0);
  });

  test('clear evicts everything', () => {
    const { cache, evicted } = tracked(1000);
    cache.set('x', 'X', 1);
    cache.set('y', 'Y', 1);
    cache.clear();
    assert.equal(cache.size, 0);
    assert.equal(cache.usage, 0);
    assert.deepEqual(evicted.sort(), ['x=X', 'y=Y']);
  });

  test('matches a simple model: usage within capacity, evictions oldest-first', () => {
    type Cmd = { op: 'get'; key: number } | { op: 'set'; key: number; charge: number } | { op: 'del'; key: number };
    const arbCmd: fc.Arbitrary<Cmd> = fc.oneof(
      fc.record({ op: fc.constant('get' as const), key: fc.nat(9) }),
      fc.record({ op: fc.constant('set' as const), key: fc.nat(9), charge: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ op: fc.constant('del' as const), key: fc.nat(9) }),
    );
    fc.assert(
      fc.property(fc.array(arbCmd, { maxLength: 200 }), (cmds) => {
        const capacity = 60;
        const live = new Set<string>();
        const cache = new LruCache<number>(capacity, (k) => live.delete(k));
        // Model: keys from least to most recent, with charges.
        let model: Array<[string, number]> = [];
        for (const c of cmds) {
          const k = String(c.key);
          if (c.op === 'get') {
            const i = model.findIndex(([mk]) => mk === k);
            assert.equal(cache.get(k), i >= 0 ? c.key : undefined);
            if (i >= 0) model = [...model.slice(0, i), ...model.slice(i + 1), model[i]!];
          } else if (c.op === 'del') {
            cache.delete(k);
            model = model.filter(([mk]) => mk !== k);
          } else {
            model = model.filter(([mk]) => mk !== k);
            live.add(k);
            cache.set(k, c.key, c.charge);
            if (c.charge <= capacity) {
              model.push([k, c.charge]);
              while (model.reduce((s, [, ch]) => s + ch, 0) > capacity) model.shift();
            }
          }
          assert.equal(cache.usage, model.reduce((s, [, ch]) => s + ch, 0));
          assert.ok(cache.usage <= capacity);
          assert.deepEqual([...cache.keys()], model.map(([mk]) => mk));
          assert.deepEqual([...live].sort(), model.map(([mk]) => mk).sort(), 'onEvict saw exactly the values that left');
        }
      }),
    );
  });
});
