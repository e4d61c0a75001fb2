import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { reconcile } from '../src/env/reconcile.js';
import type { FileEntry, FileInfo } from '../src/keys/file-dictionary-format.js';

const info = (keyId: number): FileInfo => ({ method: 'aes256-ctr', keyId, iv: randomBytes(16), authenticated: true });

async function run(entries: Record<string, FileEntry>, onDisk: string[]) {
  const disk = new Set(onDisk);
  return reconcile(Object.entries(entries), async (p) => disk.has(p));
}

test('reconcile leaves a consistent dictionary alone', async () => {
  assert.deepEqual(await run({ a: info(1), b: info(2) }, ['a', 'b']), []);
});

test('reconcile drops entries of files that are not on disk', async () => {
  assert.deepEqual(await run({ a: info(1), gone: info(2) }, ['a']), [{ op: 'remove', path: 'gone' }]);
});

test('a rename whose source is gone happened: finish it', async () => {
  const moved = info(1);
  const records = await run({ from: moved, to: { ...moved, pending: { from: 'from', previous: info(9) } } }, ['to']);
  assert.deepEqual(records, [
    { op: 'remove', path: 'from' },
    { op: 'set', path: 'to', entry: moved },
  ]);
});

test('a rename whose source still exists never happened: restore the replaced entry, or drop the new one', async () => {
  const moved = info(1);
  const old = info(2);
  assert.deepEqual(await run({ from: moved, to: { ...moved, pending: { from: 'from', previous: old } } }, ['from', 'to']), [{ op: 'set', path: 'to', entry: old }]);
  assert.deepEqual(await run({ from: moved, to: { ...moved, pending: { from: 'from' } } }, ['from']), [{ op: 'remove', path: 'to' }]);
});
