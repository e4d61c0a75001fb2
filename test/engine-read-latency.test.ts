import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ReadLatency } from '../src/engine/read-latency.js';

const FAST = 0.005;
const SLOW = 2;
/** A 4 KiB block, in getrusage's 512-byte units of block input. */
const BLOCK = 8;

/** A ReadLatency on a fake clock and a fake count of block-device reads. */
function fake(): { l: ReadLatency; clock: { now: number; blocks: number } } {
  const clock = { now: 1000, blocks: 0 };
  return {
    l: new ReadLatency(
      () => clock.now,
      () => clock.blocks,
    ),
    clock,
  };
}

/** Slow synchronous reads, each from the disk, until it calls the reads slow; how many it took. */
function slowDown(l: ReadLatency, clock: { blocks: number }): number {
  let n = 0;
  while (!l.slow) {
    clock.blocks += BLOCK;
    l.note(SLOW);
    n++;
    assert.ok(n < 20, 'slow within a few reads');
  }
  return n;
}

describe('ReadLatency', () => {
  test('page-cached reads are never slow, even with a slow one from the disk now and then', () => {
    const { l, clock } = fake();
    for (let i = 0; i < 10_000; i++) {
      if (i % 10 === 0) {
        clock.blocks += BLOCK;
        l.note(SLOW);
      } else l.note(FAST);
      clock.now += 0.01;
      assert.equal(l.slow, false, `read ${i}`);
    }
  });

  test('reads slow only because the thread was not scheduled (no block read from a disk) are not slow', () => {
    const { l, clock } = fake();
    for (let i = 0; i < 1000; i++) {
      l.note(SLOW);
      clock.now += 3;
      assert.equal(l.slow, false, `read ${i}`);
    }
  });

  test('a run of slow reads from the disk makes it slow; it stays slow while the disk serves the thread pool, at most SLOW_PERIOD_MS', () => {
    const { l, clock } = fake();
    const n = slowDown(l, clock);
    assert.ok(n >= 3 && n <= 6, `${n} slow reads`);
    const started = clock.now;
    // Every read on the thread pool comes from the disk.
    while (clock.now + ReadLatency.CHECK_MS < started + ReadLatency.SLOW_PERIOD_MS) {
      for (let i = 0; i < 10; i++) l.noteAsyncRead(4096);
      clock.blocks += 10 * BLOCK;
      clock.now += ReadLatency.CHECK_MS;
      assert.equal(l.slow, true, `${clock.now - started} ms in`);
    }
    clock.now = started + ReadLatency.SLOW_PERIOD_MS;
    assert.equal(l.slow, false, 'the period is over: synchronous reads decide again');
    l.note(FAST);
    assert.equal(l.slow, false);
  });

  test('it ends at the first check after the page cache has come to serve the thread pool', () => {
    const { l, clock } = fake();
    slowDown(l, clock);
    for (let i = 0; i < 10; i++) l.noteAsyncRead(4096);
    clock.blocks += 2 * BLOCK; // a fifth from the disk
    clock.now += ReadLatency.CHECK_MS / 2;
    assert.equal(l.slow, true, 'no check before CHECK_MS');
    clock.now += ReadLatency.CHECK_MS / 2;
    assert.equal(l.slow, false);
  });

  test('a while with no read on the thread pool keeps it slow: it says nothing of the disk', () => {
    const { l, clock } = fake();
    slowDown(l, clock);
    for (let i = 0; i < 20; i++) {
      clock.now += ReadLatency.CHECK_MS;
      assert.equal(l.slow, true, `idle check ${i}`);
    }
  });

  test('half of the reads slow makes it slow', () => {
    const { l, clock } = fake();
    let becameSlow = false;
    for (let i = 0; i < 1000 && !becameSlow; i++) {
      if (i % 2 === 0) {
        clock.blocks += BLOCK;
        l.note(SLOW);
      } else l.note(FAST);
      becameSlow = l.slow;
    }
    assert.ok(becameSlow);
  });
});
