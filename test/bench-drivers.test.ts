import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DataSet } from '../bench/engine-data.js';
import { openDriver, TDEKV_ENGINES, type Driver } from '../bench/engine-driver.js';
import { gets, load, mix, scan } from '../bench/engine-workloads.js';
import { withTempDir } from './support/fs-helpers.js';

/*
 * The engine bench's tdekv drivers (the peers need `npm run bench`'s install and are not
 * covered here) must return the right answers: a bench that times a wrong answer is
 * worthless. Each driver gets a tiny data set through the bench's own workloads and then
 * every key and the whole scan are compared with what was written.
 */

const LOADED = 300;
const SYNC_KEYS = 40;
const BATCH = 64;

function bytes(v: Uint8Array | undefined): Buffer | undefined {
  return v === undefined ? undefined : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** Every entry the driver's scan visits, copied (some stores reuse their buffers). */
async function entries(driver: Driver): Promise<Array<[string, Buffer]>> {
  const seen: Array<[string, Buffer]> = [];
  const n = await driver.scan((k, v) => seen.push([Buffer.from(k).toString('hex'), Buffer.from(v)]));
  assert.equal(n, seen.length, 'the scan reports the number of entries it visited');
  return seen;
}

function inKeyOrder(expected: ReadonlyMap<string, Buffer>): Array<[string, Buffer]> {
  return [...expected].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function assertHolds(driver: Driver, expected: ReadonlyMap<string, Buffer>, data: DataSet, count: number): void {
  for (let i = 0; i < count; i++) {
    const key = data.key(i);
    assert.deepEqual(bytes(driver.get(key)), expected.get(key.toString('hex')), `get of key #${i}`);
  }
}

describe('engine bench drivers (tdekv)', () => {
  for (const engine of TDEKV_ENGINES) {
    it(`${engine}: puts, gets, scan and the mix read back exactly what was written, with and without fsync`, async () => {
      await withTempDir(async (dir) => {
        const data = new DataSet(LOADED + SYNC_KEYS + 1);
        const expected = new Map<string, Buffer>();
        const driver = await openDriver(engine, { dir, sync: false });
        try {
          const loaded = await load(driver, data, { from: 0, to: LOADED, batch: BATCH }, () => {});
          assert.deepEqual([loaded.ops, loaded.timedOut], [LOADED, false]);
          for (let i = 0; i < LOADED; i++) expected.set(data.key(i).toString('hex'), data.value(i));
          assertHolds(driver, expected, data, LOADED + 1);

          assert.equal(gets(driver, data, LOADED, 500).ops, 500);
          assert.equal((await scan(driver, LOADED)).ops, LOADED);
          assert.deepEqual(await entries(driver), inKeyOrder(expected), 'the scan is every key once, in order, with its value');

          const onWrite = (k: number, version: number): void => void expected.set(data.key(k).toString('hex'), data.value(k, version));
          const mixed = await mix(driver, data, LOADED, 400, 60_000, { onWrite });
          assert.equal(mixed.reads + mixed.writes, 400);
          assert.ok(mixed.writes > 0, 'the mix wrote');
          assertHolds(driver, expected, data, LOADED);

          await driver.setSync(true);
          await load(driver, data, { from: LOADED, to: LOADED + SYNC_KEYS, batch: 16 }, () => {});
          for (let i = LOADED; i < LOADED + SYNC_KEYS; i++) expected.set(data.key(i).toString('hex'), data.value(i));
          await mix(driver, data, LOADED, 200, 60_000, { seed: 7, firstVersion: 1 + mixed.writes, onWrite });
          assertHolds(driver, expected, data, LOADED + SYNC_KEYS + 1);
          assert.deepEqual(await entries(driver), inKeyOrder(expected));
        } finally {
          await driver.close();
        }
      });
    });
  }
});
