import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { isTdekvError } from '../../src/errors.js';
import type { BackupStorage } from '../../src/backup/storage/backup-storage.js';

/** A body that yields `chunks` pieces of the data, then (optionally) fails instead of ending. */
export function chunkedBody(data: Buffer, chunks: number, failAfter?: number): Readable {
  const size = Math.ceil(data.length / chunks);
  let i = 0;
  return new Readable({
    read() {
      if (failAfter !== undefined && i >= failAfter) {
        this.destroy(new Error('the source failed midway'));
        return;
      }
      if (i * size >= data.length) {
        this.push(null);
        return;
      }
      this.push(data.subarray(i * size, (i + 1) * size));
      i++;
    },
  });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

async function listed(storage: BackupStorage, prefix: string): Promise<Array<{ name: string; size: number }>> {
  const out: Array<{ name: string; size: number }> = [];
  for await (const o of storage.list(prefix)) out.push(o);
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export interface ContractOptions {
  /** Opens a fresh, empty storage (a new prefix); the contract closes it. */
  open: () => Promise<BackupStorage>;
  /** Size of the streamed object (the S3 suite uses it to go multipart). */
  streamSize?: number;
}

/** The behaviour every BackupStorage backend must show; run by each backend's test file. */
export function storageContract(backend: string, opts: ContractOptions): void {
  const use = async (fn: (s: BackupStorage) => Promise<void>): Promise<void> => {
    const storage = await opts.open();
    try {
      await fn(storage);
    } finally {
      await storage.close();
    }
  };

  test(`${backend}: put, get, getBuffer, stat of a buffer and of a stream; an empty object`, () =>
    use(async (s) => {
      const small = randomBytes(1000);
      await s.put('backups/one/manifest', small, small.length);
      assert.deepEqual(await s.getBuffer('backups/one/manifest'), small);
      assert.deepEqual(await readAll(await s.get('backups/one/manifest')), small);
      assert.deepEqual(await s.stat('backups/one/manifest'), { size: 1000 });

      const big = randomBytes(opts.streamSize ?? 300_000);
      await s.put('objects/ab/cdef', chunkedBody(big, 7), big.length);
      assert.deepEqual(await s.stat('objects/ab/cdef'), { size: big.length });
      assert.ok((await readAll(await s.get('objects/ab/cdef'))).equals(big));

      await s.put('empty', Buffer.alloc(0), 0);
      assert.deepEqual(await s.stat('empty'), { size: 0 });
      assert.equal((await s.getBuffer('empty')).length, 0);
    }));

  test(`${backend}: overwrite replaces the whole object`, () =>
    use(async (s) => {
      await s.put('a/b', Buffer.from('a longer first version'), 22);
      await s.put('a/b', Buffer.from('short'), 5);
      assert.equal((await s.getBuffer('a/b')).toString(), 'short');
      assert.deepEqual(await s.stat('a/b'), { size: 5 });
      await s.put('a/b', chunkedBody(Buffer.from('streamed again'), 3), 14);
      assert.equal((await s.getBuffer('a/b')).toString(), 'streamed again');
    }));

  test(`${backend}: a missing object: get and getBuffer fail with BACKUP_OBJECT_MISSING, stat is undefined, remove is quiet`, () =>
    use(async (s) => {
      await assert.rejects(s.get('backups/none/manifest'), (e) => isTdekvError(e, 'BACKUP_OBJECT_MISSING') && e.message.includes('backups/none/manifest'));
      await assert.rejects(s.getBuffer('nope'), (e) => isTdekvError(e, 'BACKUP_OBJECT_MISSING'));
      assert.equal(await s.stat('nope'), undefined);
      await s.remove('nope');
      await s.remove('deeper/nope');
    }));

  test(`${backend}: names with subdirectories list by prefix; remove removes`, () =>
    use(async (s) => {
      const names = ['backups/1/manifest', 'backups/1/extra', 'backups/2/manifest', 'objects/aa/x', 'objects/ab/y', 'top'];
      for (const [i, n] of names.entries()) await s.put(n, Buffer.alloc(i + 1, i), i + 1);
      assert.deepEqual(
        (await listed(s, '')).map((o) => o.name),
        [...names].sort(),
      );
      assert.deepEqual(await listed(s, 'backups/1/'), [
        { name: 'backups/1/extra', size: 2 },
        { name: 'backups/1/manifest', size: 1 },
      ]);
      assert.deepEqual((await listed(s, 'objects/a')).map((o) => o.name), ['objects/aa/x', 'objects/ab/y']);
      assert.deepEqual((await listed(s, 'backups/2')).map((o) => o.name), ['backups/2/manifest']);
      assert.deepEqual(await listed(s, 'missing/'), []);
      await s.remove('backups/1/extra');
      assert.equal(await s.stat('backups/1/extra'), undefined);
      assert.deepEqual((await listed(s, 'backups/')).map((o) => o.name), ['backups/1/manifest', 'backups/2/manifest']);
    }));

  test(`${backend}: an upload whose body fails midway, or is shorter or longer than announced, leaves no object (and keeps an older one whole)`, () =>
    use(async (s) => {
      const data = randomBytes(opts.streamSize ?? 300_000);
      await assert.rejects(s.put('objects/failed', chunkedBody(data, 8, 4), data.length));
      assert.equal(await s.stat('objects/failed'), undefined);
      await assert.rejects(s.put('objects/short', chunkedBody(data.subarray(0, 1000), 2), 2000));
      assert.equal(await s.stat('objects/short'), undefined);
      await assert.rejects(s.put('objects/long', chunkedBody(data.subarray(0, 3000), 2), 2000));
      assert.equal(await s.stat('objects/long'), undefined);
      await assert.rejects(s.put('objects/buf', data.subarray(0, 10), 11));
      assert.equal(await s.stat('objects/buf'), undefined);

      await s.put('objects/kept', Buffer.from('old whole'), 9);
      await assert.rejects(s.put('objects/kept', chunkedBody(data, 8, 4), data.length));
      assert.equal((await s.getBuffer('objects/kept')).toString(), 'old whole');
      assert.deepEqual((await listed(s, 'objects/')).map((o) => o.name), ['objects/kept']);
    }));

  test(`${backend}: names that could leave the root are refused`, () =>
    use(async (s) => {
      for (const bad of ['../escape', 'a/../../b', '/abs', 'a//b', '', 'a/./b', 'a\\b']) {
        await assert.rejects(s.put(bad, Buffer.from('x'), 1), (e) => isTdekvError(e, 'INVALID_PATH'), bad);
        await assert.rejects(s.get(bad), (e) => isTdekvError(e, 'INVALID_PATH'), bad);
      }
    }));
}
