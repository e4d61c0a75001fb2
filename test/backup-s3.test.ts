import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { OfflineSource } from '../src/backup/offline-source.js';
import { runBackup } from '../src/backup/backup-run.js';
import { runRestore } from '../src/backup/restore-run.js';
import { runVerify } from '../src/backup/verify-run.js';
import { openStorage } from '../src/backup/storage/open-storage.js';
import { parseStorageUrl } from '../src/backup/storage/storage-url.js';
import type { BackupStorage } from '../src/backup/storage/backup-storage.js';
import { startS3rver, type Emulator } from './support/storage-emulators.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { backupMachine, readAll, rows, writeData } from './support/backup-fixture.js';

process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER';
process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER';
process.env['AWS_REGION'] = 'us-east-1';

describe('backup and restore through S3 (s3rver on loopback)', () => {
  let root: string;
  let s3: Emulator;

  before(async () => {
    root = await tempDir('tdekv-backup-s3-');
    s3 = await startS3rver(root, ['backups']);
  });
  after(async () => {
    await s3.stop();
    await cleanup(root);
  });

  test('full + incremental with SSE flags, verify, restore without them on another machine; no plaintext in any object', async () => {
    const src = await backupMachine(root, 'source');
    await writeData(src, rows(1000, 's3marker'));
    const crypter = (await writeKeyFile(root, 'crypter.key')).path;
    const open = (sse: boolean): Promise<BackupStorage> =>
      openStorage(parseStorageUrl('s3://backups/prod', { flags: { 's3.endpoint': s3.endpoint, ...(sse ? { 's3.sse': 'aws:kms', 's3.sse-kms-key-id': 'test-key' } : {}) }, env: {} }));
    const storage = await open(true);
    const backup = async (incremental: boolean) => {
      const source = await OfflineSource.open(src.config);
      try {
        return await runBackup(source, storage, { protector: { kind: 'key-file', method: 'aes256-ctr', path: crypter }, incremental, available: { keyFile: crypter } });
      } finally {
        await source.close();
      }
    };
    await backup(false);
    await writeData(src, rows(10, 's3marker2', 5));
    const want = await readAll(src);
    const second = await backup(true);
    assert.ok(second.manifest.objects.some((o) => !o.added));
    for (const o of second.manifest.objects) assert.equal((await storage.getBuffer(o.object)).includes(Buffer.from('s3marker')), false, `${o.file} holds plaintext`);
    await storage.close();

    const plain = await open(false);
    try {
      assert.equal((await runVerify(plain, { available: { keyFile: crypter } })).ok, true);
      const dst = await backupMachine(root, 'target');
      await runRestore(plain, dst.config, { available: { keyFile: crypter } });
      assert.deepEqual(await readAll(dst), want);
    } finally {
      await plain.close();
    }
  });
});
