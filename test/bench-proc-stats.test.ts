import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
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

test('procStats counts the main thread\'s CPU time apart from the other threads\'', async () => {
  const before = await procStats(process.pid);
  assert.ok(before);
  // Spin on this (the main) thread until the process has used 300 ms of CPU (however busy the
  // machine is), while the other threads have nothing to do.
  let after = before;
  const deadline = performance.now() + 20_000;
  while (after.cpuSeconds - before.cpuSeconds < 0.3 && performance.now() < deadline) {
    const until = performance.now() + 20;
    while (performance.now() < until);
    after = (await procStats(process.pid))!;
  }
  const process_ = after.cpuSeconds - before.cpuSeconds;
  const main = after.mainThreadCpuSeconds - before.mainThreadCpuSeconds;
  assert.ok(process_ >= 0.3, `the process used ${process_} s of CPU`);
  // Not all of it: V8 compiles the loop and collects garbage on threads of its own.
  assert.ok(main >= 0.5 * process_, `the main thread used ${main} s of the process's ${process_} s`);
  assert.ok(after.mainThreadCpuSeconds <= after.cpuSeconds + 0.01, 'the main thread is part of the process');

  // And a worker thread's spinning is counted in the process, not in the main thread.
  const quiet = (await procStats(process.pid))!;
  const worker = new Worker('const until = Date.now() + 400; while (Date.now() < until); require("node:worker_threads").parentPort.postMessage(1);', { eval: true });
  await once(worker, 'message');
  await worker.terminate();
  const spun = (await procStats(process.pid))!;
  const workerProcess = spun.cpuSeconds - quiet.cpuSeconds;
  const workerMain = spun.mainThreadCpuSeconds - quiet.mainThreadCpuSeconds;
  assert.ok(workerProcess >= 0.2, `the process used ${workerProcess} s while its worker spun`);
  assert.ok(workerMain < workerProcess / 2, `the main thread used ${workerMain} s of those ${workerProcess} s`);
});
