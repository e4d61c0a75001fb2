import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BlockCache } from '../src/engine/block-cache.js';
import type { Block } from '../src/engine/block.js';

const block = (id: number): Block => ({ id }) as unknown as Block;

test('block cache: least recently used blocks leave first, bounded by total charge', () => {
  const c = new BlockCache(100);
  c.set(1, 0, block(1), 40);
  c.set(1, 40, block(2), 40);
  assert.ok(c.get(1, 0));
  c.set(2, 0, block(3), 40); // evicts (1, 40): (1, 0) was used more recently
  assert.equal(c.get(1, 40), undefined);
  assert.ok(c.get(1, 0));
  assert.ok(c.get(2, 0));
  assert.equal(c.usage, 80);
  assert.equal(c.size, 2);
  // Replacing the only cached block of a file keeps it findable.
  c.set(3, 0, block(4), 10);
  c.set(3, 0, block(5), 10);
  assert.ok(c.get(3, 0));
});

test('block cache: evictFile drops only that file; capacity 0 keeps nothing; oversize blocks are not kept', () => {
  const c = new BlockCache(1000);
  for (let i = 0; i < 5; i++) {
    c.set(7, i * 10, block(i), 10);
    c.set(8, i * 10, block(i), 10);
  }
  c.evictFile(7);
  assert.deepEqual(c.files(), [8]);
  assert.equal(c.usage, 50);
  c.set(9, 0, block(1), 2000);
  assert.equal(c.get(9, 0), undefined);
  const none = new BlockCache(0);
  none.set(1, 0, block(1), 1);
  assert.equal(none.get(1, 0), undefined);
  assert.equal(none.usage, 0);
});

test('block cache matches an LRU model under random operations', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom('get', 'set', 'evict'), fc.nat(3), fc.nat(5), fc.integer({ min: 1, max: 30 })), { maxLength: 200 }), (ops) => {
      const cap = 60;
      const c = new BlockCache(cap);
      let model: Array<{ k: string; charge: number }> = [];
      for (const [op, file, off, charge] of ops) {
        const k = `${file}:${off}`;
        if (op === 'get') {
          const hit = c.get(file, off) !== undefined;
          const i = model.findIndex((e) => e.k === k);
          assert.equal(hit, i >= 0);
          if (i >= 0) model = [model[i]!, ...model.filter((_, j) => j !== i)];
        } else if (op === 'set') {
          c.set(file, off, block(charge), charge);
          model = model.filter((e) => e.k !== k);
          model.unshift({ k, charge });
          while (model.reduce((s, e) => s + e.charge, 0) > cap) model.pop();
        } else {
          c.evictFile(file);
          model = model.filter((e) => !e.k.startsWith(`${file}:`));
        }
        assert.equal(c.usage, model.reduce((s, e) => s + e.charge, 0));
        assert.equal(c.size, model.length);
      }
    }),
  );
});
