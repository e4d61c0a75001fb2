import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openStorage } from '../src/backup/storage/open-storage.js';
import { parseStorageUrl } from '../src/backup/storage/storage-url.js';
import { cleanup, tempDir } from './support/fs-helpers.js';
import { chunkedBody, storageContract } from './support/storage-contract.js';

const dirs: string[] = [];
test.after(() => cleanup(...dirs));

storageContract('local', {
  open: async () => {
    const dir = await tempDir('backup-local-');
    dirs.push(dir);
    return openStorage(parseStorageUrl(`local://${join(dir, 'store')}`));
  },
});

test('local: a failed upload leaves no temporary file behind, and a plain path works the same', async () => {
  const dir = await tempDir('backup-local-');
  dirs.push(dir);
  const s = await openStorage(parseStorageUrl('store', { cwd: dir }));
  assert.equal(s.displayUrl, `local://${join(dir, 'store')}`);
  await s.put('objects/ok', Buffer.from('fine'), 4);
  await assert.rejects(s.put('objects/bad', chunkedBody(Buffer.alloc(100_000, 1), 10, 5), 100_000));
  assert.deepEqual(await readdir(join(dir, 'store', 'objects')), ['ok']);
  // Backups are ciphertext, but their names and sizes are still nobody else's business.
  assert.equal((await stat(join(dir, 'store', 'objects', 'ok'))).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, 'store', 'objects'))).mode & 0o777, 0o700);
});
