/**
 * The file dictionary after a compaction whose new log cannot be made: the snapshot is of a
 * newer generation than the log left in place, so that log is ignored at load, and no batch
 * may be appended to it afterwards, not even one queued before the failure (found by the
 * engine's fault-injection test once table creation moved to the background worker's timing).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { FileDictionary, LOG_NAME, type FileDictionaryOptions } from '../src/keys/file-dictionary.js';
import type { FileEntry } from '../src/keys/file-dictionary-format.js';
import { silentLogger } from '../src/log/logger.js';
import { setFileFaults } from '../src/util/file-io.js';
import { cleanup, tempDir } from './support/fs-helpers.js';

let dir: string;
before(async () => {
  dir = await tempDir('tdekv-dict-stale-');
});
after(async () => {
  setFileFaults(undefined);
  await cleanup(dir);
});

const entry = (): FileEntry => ({ method: 'aes256-ctr', keyId: 7, iv: randomBytes(16), authenticated: false });

test('a change queued behind a compaction whose new log could not be made is refused, never appended to the stale log and lost at reopen', async () => {
  const options: FileDictionaryOptions = { dir, useLog: true, rewriteThreshold: 1, logger: silentLogger(), macKey: randomBytes(32) };
  const dict = await FileDictionary.load(options);
  await dict.beginWrites();
  await dict.set('a', entry());
  await dict.set('b', entry());
  await dict.remove('a');
  // The next remove passes the threshold: the snapshot is written, then the new log fails,
  // and from then on the disk is full for every new file (the open log's handle still writes).
  let full = false;
  setFileFaults((_op, path) => {
    if (path.endsWith(`${LOG_NAME}.tmp`)) full = true;
    return full && path.endsWith('.tmp') ? 'ENOSPC' : undefined;
  });
  const compacting = dict.remove('b');
  // Queued while that batch is being written, before the failure is known.
  const queued = dict.set('c', entry()).then(
    () => 'acknowledged',
    (err: unknown) => err,
  );
  await compacting;
  const outcome = await queued;
  setFileFaults(undefined);
  await dict.close();
  const reloaded = await FileDictionary.load(options);
  assert.equal(reloaded.has('b'), false, 'the compacting batch was durable');
  if (outcome === 'acknowledged') assert.ok(reloaded.has('c'), 'an acknowledged set of c is missing after reopen: it went to the stale log');
  assert.ok(outcome instanceof Error && /could not be recreated/.test(outcome.message), `the queued change is refused with the failure (got ${String(outcome)})`);
});
