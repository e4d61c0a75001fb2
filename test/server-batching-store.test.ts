import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Engine } from '../src/engine/engine.js';
import type { BatchOp } from '../src/engine/types.js';
import { BatchingStore } from '../src/server/keyspace/batching-store.js';
import { decodeBatch, type WriteBatchBuilder } from '../src/engine/write-batch.js';
import { ValueKind } from '../src/engine/internal-key.js';

/**
 * An engine whose writes succeed or fail on command: a failing disk cannot be produced on
 * demand with real files, so this stands in for the engine's writeBatch() only.
 */
function scriptedEngine(): { engine: Engine; applied: Map<string, Buffer>; settle: (ok: boolean) => void; recover: () => void; applyNow: (on: boolean) => void } {
  const applied = new Map<string, Buffer>();
  /** Whether writeBatchNow applies a batch on the spot (as the engine does when its queue is idle). */
  let now = false;
  /** What the engine's writeFailure() reports: set by a failed write, cleared by recover(). */
  let failure: { error: Error; recoverable: boolean } | undefined;
  const pending: Array<{ ops: readonly BatchOp[]; resolve: () => void; reject: (e: unknown) => void }> = [];
  const engine = {
    getSync: (key: Buffer) => applied.get(key.toString('latin1')),
    iterator: (range: { gte: Buffer; lt: Buffer }) => {
      const lo = range.gte.toString('latin1');
      const hi = range.lt.toString('latin1');
      const rows = [...applied].filter(([k]) => k >= lo && k < hi).sort(([a], [b]) => (a < b ? -1 : 1));
      let i = 0;
      return { next: () => (i < rows.length ? [Buffer.from(rows[i]![0], 'latin1'), rows[i++]![1]] : undefined), seek: () => undefined, close: () => undefined };
    },
    // The store hands over encoded batches: decoded here as the engine's log replay would.
    writeBatch: (batch: WriteBatchBuilder) => {
      const ops: BatchOp[] = [];
      decodeBatch(batch.take(), (_seq, kind, key, value) => ops.push(kind === ValueKind.Value ? { type: 'put', key: Buffer.from(key), value: Buffer.from(value) } : { type: 'del', key: Buffer.from(key) }));
      return new Promise<void>((resolve, reject) => pending.push({ ops, resolve, reject }));
    },
    // As the engine: only when nothing is in flight, and never once writes are refused.
    writeBatchNow: (batch: WriteBatchBuilder) => {
      if (!now || pending.length > 0) return false;
      if (failure) {
        // As the engine's: a refused batch is emptied, not left for the next commit.
        batch.take();
        throw failure.error;
      }
      decodeBatch(batch.take(), (_seq, kind, key, value) => (kind === ValueKind.Value ? applied.set(Buffer.from(key).toString('latin1'), Buffer.from(value)) : applied.delete(Buffer.from(key).toString('latin1'))));
      return true;
    },
    writeFailure: () => failure,
  } as unknown as Engine;
  const settle = (ok: boolean): void => {
    const p = pending.shift()!;
    if (!ok) {
      failure = { error: new Error('disk full'), recoverable: true };
      return p.reject(failure.error);
    }
    for (const op of p.ops) {
      if (op.type === 'put') applied.set(Buffer.from(op.key).toString('latin1'), Buffer.from(op.value));
      else applied.delete(Buffer.from(op.key).toString('latin1'));
    }
    p.resolve();
  };
  return {
    engine,
    applied,
    settle,
    recover: () => {
      failure = undefined;
    },
    applyNow: (on: boolean) => {
      now = on;
    },
  };
}

const B = (s: string): Buffer => Buffer.from(s);
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('batching store', () => {
  for (const rowCacheBytes of [0, 1 << 20]) {
    test(`a failed batch is reported, its writes disappear and the store refuses to pretend (row cache ${rowCacheBytes ? 'on' : 'off'})`, async () => {
      const { engine, settle } = scriptedEngine();
      const store = new BatchingStore(engine, { sync: false, rowCacheBytes });
      const settled: Array<[number, unknown]> = [];
      store.onBatchSettled((id, err) => settled.push([id, err]));

      store.put(B('a'), B('1'));
      store.commit();
      settle(true);
      await tick();
      assert.deepEqual(settled, [[1, undefined]]);
      assert.equal(store.dependency, 0);

      store.put(B('a'), B('2'));
      store.put(B('b'), B('x'));
      assert.equal(store.get(B('a'))?.toString(), '2', 'pending writes are visible');
      assert.equal(store.dependency, 2, 'a reply now waits for batch 2');
      store.commit();
      settle(false);
      await tick();
      assert.equal(settled.length, 2);
      assert.equal(settled[1]![0], 2);
      assert.match(String(settled[1]![1]), /disk full/);
      assert.match(String(store.failure), /disk full/);
      assert.equal(store.get(B('a'))?.toString(), '1', 'the failed batch is no longer visible');
      assert.equal(store.get(B('b')), undefined);
      assert.equal(store.pendingWrites, 0);
    });
  }

  test('a batch the engine applies on the spot settles before commit() returns; one it refuses on the spot fails as a queued one does', async () => {
    const { engine, settle, applyNow, recover, applied } = scriptedEngine();
    const store = new BatchingStore(engine, { sync: false, rowCacheBytes: 1 << 20 });
    const settled: Array<[number, unknown]> = [];
    store.onBatchSettled((id, err) => settled.push([id, err]));
    applyNow(true);
    store.put(B('a'), B('1'));
    assert.equal(store.dependency, 1);
    store.commit();
    assert.deepEqual(settled, [[1, undefined]], 'settled synchronously');
    assert.equal(store.dependency, 0);
    assert.equal(store.pendingWrites, 0);
    assert.equal(store.get(B('a'))?.toString(), '1');

    // A queued batch fails and the engine refuses writes from then on: the next batch's
    // writeBatchNow throws, and the store reports that failure after the turn, as a queued one.
    applyNow(false);
    store.put(B('b'), B('x'));
    store.commit();
    settle(false);
    await tick();
    applyNow(true);
    store.put(B('c'), B('y'));
    store.commit();
    assert.equal(settled.length, 2, 'no failure is reported inside commit()');
    await tick();
    assert.deepEqual(settled.map(([id]) => id), [1, 2, 3]);
    assert.ok(settled.slice(1).every(([, err]) => /disk full/.test(String(err))), 'batches 2 and 3 failed');
    assert.match(String(store.failure), /disk full/);
    assert.equal(store.get(B('a'))?.toString(), '1');
    for (const k of ['b', 'c']) assert.equal(store.get(B(k)), undefined, `${k} is not visible`);

    // Once the engine takes writes again, the next batch holds only its own ops.
    recover();
    store.put(B('e'), B('w'));
    store.commit();
    assert.equal(applied.get('e')?.toString(), 'w');
    assert.equal(applied.has('c'), false, 'the refused batch is not applied with the next one');
  });

  test('a batch the engine could take on the spot still settles after an older one the engine applied but the store has not settled yet', async () => {
    const { engine, settle, applyNow } = scriptedEngine();
    const store = new BatchingStore(engine, { sync: false, rowCacheBytes: 1 << 20 });
    const settled: number[] = [];
    store.onBatchSettled((id) => settled.push(id));
    store.put(B('a'), B('1'));
    store.commit();
    // The engine applies batch 1; its promise's reaction (the store's settle) is still queued
    // when the next commit comes, in the same microtask checkpoint.
    settle(true);
    applyNow(true);
    store.put(B('a'), B('2'));
    store.commit();
    assert.deepEqual(settled, [], 'batch 2 is not settled on the spot while batch 1 is unsettled');
    settle(true);
    await tick();
    assert.deepEqual(settled, [1, 2], 'batches settle in id order');
    assert.equal(store.dependency, 0, 'no reply waits for a batch that has settled');
    assert.equal(store.pendingWrites, 0);
    assert.equal(store.get(B('a'))?.toString(), '2');
  });

  test('the failure clears once the engine accepts writes again (it recovers from a full disk by itself)', async () => {
    const { engine, settle, recover, applied } = scriptedEngine();
    const store = new BatchingStore(engine, { sync: false });
    store.put(B('a'), B('1'));
    store.commit();
    settle(false);
    await tick();
    assert.match(String(store.failure), /disk full/, 'refused while the engine refuses');
    assert.match(String(store.failure), /disk full/, 'and still on a second look');
    recover();
    assert.equal(store.failure, undefined, 'cleared once the engine recovered');
    store.put(B('a'), B('2'));
    store.commit();
    settle(true);
    await tick();
    assert.equal(applied.get('a')?.toString(), '2');
    assert.equal(store.failure, undefined);
  });

  test('a settled batch leaves the writes of later batches (in flight or gathering) visible, and only those', async () => {
    const { engine, settle } = scriptedEngine();
    // No row cache: reads after the overlay come from the (scripted) engine alone.
    const store = new BatchingStore(engine, { sync: false });
    store.put(B('a'), B('1'));
    store.put(B('b'), B('1'));
    store.commit(); // batch 1
    store.put(B('b'), B('2'));
    store.commit(); // batch 2: b overwritten
    store.put(B('c'), B('3')); // gathering batch 3
    settle(true);
    await tick();
    assert.equal(store.pendingWrites, 2, 'b (batch 2) and c (gathering) are still pending');
    assert.equal(store.get(B('b'))?.toString(), '2');
    assert.equal(store.get(B('c'))?.toString(), '3');
    assert.equal(store.get(B('a'))?.toString(), '1', 'a is read from the engine now');
    store.commit(); // batch 3
    settle(true);
    await tick();
    assert.equal(store.pendingWrites, 1, 'c waits for batch 3');
    settle(true);
    await tick();
    assert.equal(store.pendingWrites, 0, 'the last batch settled with nothing gathered since: nothing pending');
    assert.deepEqual(['a', 'b', 'c'].map((k) => store.get(B(k))?.toString()), ['1', '2', '3']);
    // The newest committed batch settles while the next one is being gathered.
    store.put(B('d'), B('4'));
    store.commit(); // batch 4
    store.put(B('e'), B('5'));
    settle(true);
    await tick();
    assert.equal(store.get(B('e'))?.toString(), '5', 'a write gathered after the settled batch stays visible');
    assert.equal(store.pendingWrites, 1);
  });

  // With the row cache on, pending writes are found in it until it forgets something; then an
  // overlay is built from them. A tiny cache forgets every few writes.
  for (const rowCacheBytes of [0, 300, 1 << 20]) {
    test(`reads and range listings see the newest write, whatever is pending, applied, failed or forgotten by the cache (row cache ${rowCacheBytes} bytes)`, async () => {
      const key = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f');
      const op = fc.oneof(
        { weight: 6, arbitrary: fc.tuple(fc.constant('put' as const), key, fc.string({ minLength: 1, maxLength: 40 })) },
        { weight: 2, arbitrary: fc.tuple(fc.constant('del' as const), key) },
        { weight: 6, arbitrary: fc.tuple(fc.constant('get' as const), key) },
        { weight: 1, arbitrary: fc.constant(['list'] as const) },
        { weight: 1, arbitrary: fc.constant(['clear'] as const) },
        { weight: 2, arbitrary: fc.constant(['commit'] as const) },
        { weight: 2, arbitrary: fc.constant(['commitNow'] as const) },
        { weight: 2, arbitrary: fc.constant(['settle'] as const) },
        { weight: 1, arbitrary: fc.constant(['fail'] as const) },
      );
      await fc.assert(
        fc.asyncProperty(fc.array(op, { maxLength: 80 }), async (ops) => {
          const { engine, settle, recover, applyNow } = scriptedEngine();
          const store = new BatchingStore(engine, { sync: false, rowCacheBytes });
          const settledIds: number[] = [];
          store.onBatchSettled((id) => settledIds.push(id));
          // The model: what was applied, and the writes of each batch in flight and of the one gathering.
          const applied = new Map<string, string>();
          const inFlight: Array<Array<[string, string | null]>> = [];
          let gathering: Array<[string, string | null]> = [];
          // The store counts the writes made through put and del, not the deletions of a clear.
          let clearDeletes = 0;
          const inFlightClearDeletes: number[] = [];
          const visible = (): Map<string, string> => {
            const m = new Map(applied);
            for (const w of [...inFlight, gathering]) for (const [k, v] of w) v === null ? m.delete(k) : m.set(k, v);
            return m;
          };
          const settleNext = async (ok: boolean): Promise<void> => {
            const w = inFlight.shift();
            if (w === undefined) return;
            inFlightClearDeletes.shift();
            if (ok) for (const [k, v] of w) v === null ? applied.delete(k) : applied.set(k, v);
            settle(ok);
            await tick();
            recover();
          };
          for (const o of ops) {
            if (o[0] === 'put') {
              store.put(B(o[1]), B(o[2]));
              gathering.push([o[1], o[2]]);
            } else if (o[0] === 'del') {
              store.del(B(o[1]));
              gathering.push([o[1], null]);
            } else if (o[0] === 'get') {
              assert.equal(store.get(B(o[1]))?.toString(), visible().get(o[1]), `get ${o[1]}`);
            } else if (o[0] === 'clear') {
              // FLUSHDB: every key visible now is deleted, atomically with the batch being gathered.
              const keys = [...visible().keys()];
              store.clear({ gte: B('a'), lt: B('z') });
              for (const k of keys) gathering.push([k, null]);
              clearDeletes += keys.length;
            } else if (o[0] === 'list') {
              const listed = [...store.entries({ gte: B('a'), lt: B('z') })].map(([k, v]) => [k.toString(), v.toString()]);
              assert.deepEqual(listed, [...visible()].sort(([a], [b]) => (a < b ? -1 : 1)));
            } else if (o[0] === 'commit' || o[0] === 'commitNow') {
              if (gathering.length === 0) continue;
              // commitNow: the engine applies the batch on the spot if nothing is in flight.
              const onTheSpot = o[0] === 'commitNow' && inFlight.length === 0;
              const settledBefore = settledIds.length;
              applyNow(o[0] === 'commitNow');
              store.commit();
              applyNow(false);
              if (onTheSpot) {
                for (const [k, v] of gathering) v === null ? applied.delete(k) : applied.set(k, v);
                assert.equal(settledIds.length, settledBefore + 1, 'a batch applied on the spot is settled before commit() returns');
                assert.equal(store.dependency, 0, 'no reply waits for it');
              } else {
                inFlight.push(gathering);
                inFlightClearDeletes.push(clearDeletes);
                assert.equal(settledIds.length, settledBefore, 'a queued batch settles later');
              }
              gathering = [];
              clearDeletes = 0;
            } else await settleNext(o[0] === 'settle');
          }
          const cleared = inFlightClearDeletes.reduce((n, d) => n + d, clearDeletes);
          assert.equal(store.pendingWrites, inFlight.reduce((n, w) => n + w.length, gathering.length) - cleared);
          while (inFlight.length > 0) await settleNext(true);
          for (const k of ['a', 'b', 'c', 'd', 'e', 'f']) assert.equal(store.get(B(k))?.toString(), visible().get(k));
        }),
        { numRuns: 300 },
      );
    });
  }

  test('with the row cache on, a failed batch empties the cache and the later pending writes are still read', async () => {
    const { engine, settle } = scriptedEngine();
    const store = new BatchingStore(engine, { sync: false, rowCacheBytes: 1 << 20 });
    store.put(B('a'), B('1'));
    store.commit(); // batch 1, to fail
    store.put(B('a'), B('2'));
    store.put(B('b'), B('2'));
    store.commit(); // batch 2, in flight
    store.put(B('c'), B('3')); // gathering
    assert.equal(store.overlayBuilt, false, 'nothing forgotten: pending writes are read from the cache');
    settle(false);
    await tick();
    assert.deepEqual(['a', 'b', 'c'].map((k) => store.get(B(k))?.toString()), ['2', '2', '3']);
    assert.equal(store.overlayBuilt, true, 'the cache was emptied: the pending writes are read from an overlay');
    settle(true);
    store.commit();
    settle(true);
    await tick();
    assert.equal(store.overlayBuilt, false, 'dropped once everything pending is applied');
    assert.deepEqual(['a', 'b', 'c'].map((k) => store.get(B(k))?.toString()), ['2', '2', '3']);
    // New pending writes, and a read that misses the cache: the cache forgot nothing since they began.
    store.put(B('d'), B('4'));
    assert.equal(store.get(B('e')), undefined);
    assert.equal(store.overlayBuilt, false, 'what the cache forgot before these writes does not matter');
  });

  test('batches settle in order and drain() waits for the last one', async () => {
    const { engine, applied, settle } = scriptedEngine();
    const store = new BatchingStore(engine, { sync: false, rowCacheBytes: 1 << 20 });
    const order: number[] = [];
    store.onBatchSettled((id) => order.push(id));
    store.put(B('k1'), B('v'));
    store.commit();
    store.put(B('k2'), B('v'));
    let drained = false;
    const d = store.drain().then(() => (drained = true));
    await tick();
    assert.equal(drained, false);
    settle(true);
    await tick();
    assert.equal(drained, false, 'batch 2 is still in flight');
    settle(true);
    await d;
    assert.deepEqual(order, [1, 2]);
    assert.deepEqual([...applied.keys()].sort(), ['k1', 'k2']);
  });
});
