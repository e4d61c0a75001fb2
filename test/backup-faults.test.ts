import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup-run.js';
import { runList } from '../src/backup/list-run.js';
import { OfflineSource } from '../src/backup/offline-source.js';
import { runRestore } from '../src/backup/restore-run.js';
import { runVerify } from '../src/backup/verify-run.js';
import { TEMP_MARK } from '../src/backup/storage/object-name.js';
import { isTdekvError } from '../src/errors.js';
import { setFileFaults, WRITE_OPS } from '../src/util/file-io.js';
import { backupMachine, localStorage, readAll, rows, writeData, type BackupMachine } from './support/backup-fixture.js';
import { cleanup, tempDir } from './support/fs-helpers.js';

// A backup and a restore on a disk that fails or lies, through the file-I/O seam both now use:
// a write that stores only part of its bytes (the OS may) must be finished, not leave a short
// object or a file with a hole; a full disk must fail clearly, list no complete backup, leave
// no temporary object and no half-restored data dir, and change nothing at the source.
describe('backup and restore on a failing disk', () => {
  let root: string;
  let src: BackupMachine;
  let expected: Map<string, string>;
  const protector = () => ({ kind: 'master-key' as const, masterKey: src.config.security.encryption.masterKey });
  const available = () => ({ masterKeys: [src.config.security.encryption.masterKey] });
  const backupOf = async (storeDir: string) => {
    const storage = await localStorage(storeDir);
    const source = await OfflineSource.open(src.config);
    try {
      return { storage, result: await runBackup(source, storage, { protector: protector() }) };
    } finally {
      await source.close();
    }
  };

  before(async () => {
    root = await tempDir('tdekv-backup-faults-');
    src = await backupMachine(root, 'source');
    await writeData(src, rows(2000, 'faults'));
    expected = await readAll(src);
  });
  after(async () => {
    setFileFaults(undefined);
    await cleanup(root);
  });

  test('writes that store half their bytes: the backup objects and the restored files are still whole', async () => {
    const storeDir = join(root, 'store-short');
    const target = await backupMachine(root, 'target-short');
    // The first write of every file in the backup directory and in the restore's staging
    // directory stores half its bytes and says so; the rest must follow where it stopped.
    const shorted = new Set<string>();
    setFileFaults((op, path) => {
      if ((op !== 'fh.write' && op !== 'fh.writev') || !(path.startsWith(storeDir) || path.includes('tdekv-restore')) || shorted.has(path)) return undefined;
      shorted.add(path);
      return 'short';
    });
    try {
      const { storage } = await backupOf(storeDir);
      assert.equal((await runVerify(storage, { available: available() })).ok, true, 'every object is whole');
      await runRestore(storage, target.config, { available: available() });
    } finally {
      setFileFaults(undefined);
    }
    assert.ok(shorted.size > 5, `${shorted.size} files saw a short write`);
    assert.deepEqual(await readAll(target), expected);
  });

  test('a full backup disk: the backup fails naming ENOSPC, lists as incomplete, leaves no temporary object; a later one succeeds', async () => {
    const storeDir = join(root, 'store-full');
    let writes = 0;
    // The disk fills after the first few writes: mid-way through the objects.
    setFileFaults((op, path) => (WRITE_OPS.has(op) && path.startsWith(storeDir) && ++writes > 3 ? 'ENOSPC' : undefined));
    try {
      await assert.rejects(backupOf(storeDir), (err: unknown) => isTdekvError(err, 'IO_FAILED') && /ENOSPC.*free space/.test((err as Error).message));
    } finally {
      setFileFaults(undefined);
    }
    const storage = await localStorage(storeDir);
    const listed = await runList(storage);
    assert.equal(listed.filter((b) => b.complete).length, 0, 'no complete backup');
    const leftovers = (await readdir(storeDir, { recursive: true })).filter((n) => n.includes(TEMP_MARK));
    assert.deepEqual(leftovers, []);
    assert.deepEqual(await readAll(src), expected, 'the source is unchanged');
    await backupOf(storeDir);
    assert.equal((await runList(storage)).filter((b) => b.complete).length, 1);
  });

  test('a full target disk during restore: refused naming ENOSPC, no data dir left; the next restore succeeds', async () => {
    const { storage } = await backupOf(join(root, 'store-restore'));
    const target = await backupMachine(root, 'target-full');
    let writes = 0;
    setFileFaults((op, path) => (WRITE_OPS.has(op) && path.includes('tdekv-restore') && ++writes > 5 ? 'ENOSPC' : undefined));
    try {
      await assert.rejects(runRestore(storage, target.config, { available: available() }), /ENOSPC|no space/i);
    } finally {
      setFileFaults(undefined);
    }
    const left = (await readdir(target.dir)).filter((n) => n === 'data' || n.includes('tdekv-restore'));
    assert.deepEqual(left, [], 'neither the data dir nor its staging directory is left');
    await runRestore(storage, target.config, { available: available() });
    assert.deepEqual(await readAll(target), expected);
  });
});
