import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ReadLatency } from '../src/engine/read-latency.js';

describe('ReadLatency', () => {
  const FAST = 0.005;
  const SLOW = 2;
  /** A disk that reads a block whenever asked how many it has read. */
  let disk = 0;
  const diskReads = (): number => ++disk;

  test('page-cached reads are never slow, even with a slow one now and then', () => {
    let now = 0;
    const l = new ReadLatency(() => now, diskReads);
    for (let i = 0; i < 10_000; i++) {
      l.note(i % 10 === 0 ? SLOW : FAST);
      now += 0.01;
      assert.equal(l.slow, false, `read ${i}`);
    }
  });

  test('a run of slow reads makes it slow for SLOW_PERIOD_MS, then the reads are timed again', () => {
    let now = 1000;
    const l = new ReadLatency(() => now, diskReads);
    let n = 0;
    while (!l.slow) {
      l.note(SLOW);
      n++;
      assert.ok(n < 20, 'slow within a few reads');
    }
    assert.ok(n >= 3 && n <= 6, `${n} slow reads`);
    now += ReadLatency.SLOW_PERIOD_MS - 1;
    assert.equal(l.slow, true);
    now += 2;
    assert.equal(l.slow, false, 'the period is over');
    // Fast reads now keep it fast; the old slow reads do not count any more.
    l.note(SLOW);
    l.note(FAST);
    assert.equal(l.slow, false);
  });

  test('reads slow because the thread was not scheduled (no block read from a disk) are not slow', () => {
    let now = 0;
    const l = new ReadLatency(
      () => now,
      () => 7,
    );
    for (let i = 0; i < 1000; i++) {
      l.note(SLOW);
      now += 3;
      assert.equal(l.slow, false, `read ${i}`);
    }
  });

  test('a slow share above a quarter of the reads makes it slow', () => {
    let now = 0;
    const l = new ReadLatency(() => now, diskReads);
    let becameSlow = false;
    for (let i = 0; i < 1000 && !becameSlow; i++) {
      l.note(i % 2 === 0 ? SLOW : FAST);
      becameSlow = l.slow;
    }
    assert.ok(becameSlow, 'half the reads slow');
  });
});
