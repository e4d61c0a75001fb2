import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_WAIT_MS, WritePacer } from '../src/engine/write-pacing.js';

/*
 * The wait of a write while the memtable is past write-buffer-size and the last one is still
 * being flushed (engine.ts, #makeRoomForWrite). Time is simulated: each wait is slept by
 * moving the clock, as the engine's sleep would.
 */

const MiB = 1024 * 1024;
const W = 16 * MiB;
const LIMIT = 1.5 * W;

/** A pacer that has measured one flush of `bytes` taking `ms`, ending at time 0. */
function measured(bytes: number, ms: number): WritePacer {
  const p = new WritePacer();
  p.flushStarted(bytes, -ms);
  p.flushEnded(0);
  return p;
}

test('until a flush has been measured there is no pace: the engine keeps its fixed wait', () => {
  const p = new WritePacer();
  assert.equal(p.waitMs(100_000, W, LIMIT, 0), undefined);
  p.flushStarted(W, 0);
  assert.equal(p.waitMs(100_000, W, LIMIT, 5), undefined);
  assert.equal(p.bytesPerMs, 0);
});

test('no pace without a flush running, and none from a flush that failed', () => {
  const p = measured(10 * MiB, 100);
  assert.equal(p.waitMs(MiB, W, LIMIT, 0), undefined, 'no flush running');
  p.flushStarted(10 * MiB, 0);
  assert.ok(p.waitMs(MiB, W, LIMIT, 0)! > 0);
  p.flushAbandoned();
  assert.equal(p.waitMs(MiB, W, LIMIT, 5_000), undefined, 'the failed flush is not paced by');
  assert.equal(p.bytesPerMs, (10 * MiB) / 100, 'nor measured');
});

test('one write waits at most MAX_WAIT_MS, however slow the measured flushes were', () => {
  const p = measured(1000, 60_000); // a pathological measurement: 1,000 bytes a minute
  p.flushStarted(10 * MiB, 0);
  let now = 0;
  for (let i = 0; i < 20; i++) {
    const ms = p.waitMs(MiB, W + i * 10, LIMIT, now)!;
    assert.ok(ms <= MAX_WAIT_MS, `waited ${ms} ms`);
    now += ms;
  }
  assert.equal(p.waitMs(MiB, W, LIMIT, now), MAX_WAIT_MS);
});

test('the measured speed is a moving average of the flushes', () => {
  const p = measured(10 * MiB, 100);
  assert.equal(p.bytesPerMs, (10 * MiB) / 100);
  p.flushStarted(10 * MiB, 1000);
  p.flushEnded(1200); // half as fast
  assert.equal(p.bytesPerMs, ((10 * MiB) / 100 + (10 * MiB) / 200) / 2);
});

test('a write waits its share of the flush time left, twice over: 1/2 MiB of an 8 MiB grace with 100 ms left waits 12.5 ms', () => {
  const p = measured(10 * MiB, 100); // 100 ms for 10 MiB
  p.flushStarted(10 * MiB, 1000); // expected to end at 1100
  // At 1000: 100 ms left, ×2 margin = 200 ms for the 8 MiB of grace; 1/2 MiB of it is 12.5 ms.
  assert.equal(p.waitMs(MiB / 2, W, LIMIT, 1000), 12);
  // The pace is a clock: the next 1/2 MiB at the same instant waits behind the first (+200/15 ms).
  assert.equal(p.waitMs(MiB / 2, W + MiB / 2, LIMIT, 1000), Math.floor(12.5 + 200 / 15));
});

test('small writes wait together: their shares add up to whole milliseconds', () => {
  const p = measured(10 * MiB, 100);
  p.flushStarted(10 * MiB, 0);
  let now = 0;
  let waited = 0;
  let mem = W;
  for (let i = 0; i < 2000; i++) {
    const ms = p.waitMs(100, mem, LIMIT, now)!;
    waited += ms;
    now += ms;
    mem += 100;
  }
  // 2000 × 100 B of 8 MiB, at ~200 ms for the whole grace: about 4.8 ms in all, taken in whole ms.
  assert.ok(waited >= 4 && waited <= 5, `waited ${waited} ms`);
});

test('a flush running late slows writes more, not less', () => {
  const onTime = measured(10 * MiB, 100);
  onTime.flushStarted(10 * MiB, 0);
  const late = measured(10 * MiB, 100);
  late.flushStarted(10 * MiB, 0);
  // Same memtable, same write; one 50 ms into a 100 ms flush, one 300 ms into it.
  const a = onTime.waitMs(MiB / 2, W + 4 * MiB, LIMIT, 50)!;
  const b = late.waitMs(MiB / 2, W + 4 * MiB, LIMIT, 300)!;
  assert.ok(b > a, `late ${b} ms, on time ${a} ms`);
  // On time: 50 ms left, ×2, for 1/2 of 4 MiB left. Late: taken to need half as long again as it has run (150 ms), ×2.
  assert.equal(a, 12);
  assert.equal(b, 37);
});

/**
 * A bulk loader: batches of 130 KB that take 1.2 ms each to make (108 KB/ms, a little faster
 * than the flushes measured at 100 KB/ms), starting on an empty memtable as a flush of 24 MiB
 * begins. Returns the memtable's bytes when the flush ends after `flushMs`.
 */
function load(flushMs: number, wait: (p: WritePacer, mem: number, now: number) => number): number {
  const p = measured(10 * MiB, 100 * (10 / 10.24)); // ~102 KB/ms… measured as 10 MiB per 97.7 ms
  p.flushStarted(24 * MiB, 0);
  let now = 0;
  let mem = 0;
  const batch = 130_000;
  while (now < flushMs) {
    if (mem >= LIMIT) return mem; // a stop: the memtable is full with the flush still running
    if (mem >= W) now += wait(p, mem, now);
    mem += batch;
    now += 1.2;
  }
  return mem;
}

test('a bulk load meets a flush a third slower than measured without stopping; a fixed 1 ms per write stops', () => {
  const paced = load(330, (p, mem, now) => p.waitMs(130_000, mem, LIMIT, now)!);
  assert.ok(paced < LIMIT, `paced: the memtable reached ${paced} of ${LIMIT} bytes`);
  const fixed = load(330, () => 1);
  assert.ok(fixed >= LIMIT, `1 ms per write: the memtable reached ${fixed} of ${LIMIT} bytes`);
});
