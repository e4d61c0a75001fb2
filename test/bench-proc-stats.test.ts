import assert from 'node:assert/strict';
import { test } from 'node:test';
import { procStats } from '../bench/server-process.js';

/*
 * The server bench reports the server's CPU and minor page faults per line from /proc
 * (bench/server-process.ts procStats). Faults must count first writes to fresh memory, the
 * cost the bench is there to show, and not move when memory already in is written again.
 */

test('procStats counts the minor faults of first writes to fresh memory, not of writes to memory already in', async () => {
  const pages = 4096;
  const fresh = new Uint8Array(new SharedArrayBuffer(pages * 4096));
  const before = await procStats(process.pid);
  assert.ok(before, '/proc/PID/stat and status are readable');
  for (let i = 0; i < fresh.length; i += 4096) fresh[i] = 1;
  const after = await procStats(process.pid);
  assert.ok(after);
  const firstWrites = after.minorFaults - before.minorFaults;
  assert.ok(firstWrites >= pages * 0.9, `${firstWrites} faults for ${pages} fresh pages`);
  for (let i = 0; i < fresh.length; i += 4096) fresh[i] = 2;
  const again = await procStats(process.pid);
  assert.ok(again);
  assert.ok(again.minorFaults - after.minorFaults < pages / 4, `${again.minorFaults - after.minorFaults} faults writing ${pages} pages already in`);
  assert.ok(after.cpuSeconds >= before.cpuSeconds);
  assert.ok(after.peakRssKiB >= pages * 4 * 0.9, 'the pages written are resident');
});
