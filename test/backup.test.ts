import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isTdekvError, type TdekvErrorCode } from '../src/errors.js';
import { openEnvFromConfig } from '../src/env/open-env.js';
import { OfflineSource } from '../src/backup/offline-source.js';
import { runBackup, type BackupOptions } from '../src/backup/backup-run.js';
import { runRestore, stagingDirOf } from '../src/backup/restore-run.js';
import { runVerify } from '../src/backup/verify-run.js';
import { runList } from '../src/backup/list-run.js';
import { runPrune } from '../src/backup/prune-run.js';
import { authenticateManifest, manifestName, parseManifest } from '../src/backup/backup-format.js';
import { unwrapBackupKey, type ProtectorChoice } from '../src/backup/protector.js';
import type { BackupStorage } from '../src/backup/storage/backup-storage.js';
import type { BackupProgress } from '../src/backup/backup-progress.js';
import { cleanup, flipByte, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { backupMachine, localStorage, readAll, rows, writeData, type BackupMachine } from './support/backup-fixture.js';

function rejectsWith(code: TdekvErrorCode, pattern?: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isTdekvError(err, code), `expected ${code}, got ${String(err)}`);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

async function backupOf(m: BackupMachine, storage: BackupStorage, options: Partial<BackupOptions> = {}) {
  const source = await OfflineSource.open(m.config);
  try {
    return await runBackup(source, storage, { protector: { kind: 'master-key', masterKey: m.config.security.encryption.masterKey }, ...options });
  } finally {
    await source.close();
  }
}

describe('backup and restore (offline source, local storage)', () => {
  let root: string;
  let src: BackupMachine;
  let expected: Map<string, string>;

  before(async () => {
    root = await tempDir('tdekv-backup-');
    src = await backupMachine(root, 'source');
    await writeData(src, rows(600, 'a'), ['key-000007']);
    expected = await readAll(src);
    assert.equal(expected.size, 599);
  });
  after(() => cleanup(root));

  test('a full backup restores on another machine (a different master key) with the data equal, every object ciphertext', async () => {
    const storage = await localStorage(join(root, 'store-roundtrip'));
    const events: BackupProgress[] = [];
    const { id, manifest } = await backupOf(src, storage, { onProgress: (p) => events.push(p) });
    assert.ok(manifest.objects.some((o) => o.kind === 'table'), 'tables backed up');
    assert.ok(manifest.objects.some((o) => o.kind === 'manifest') && manifest.objects.some((o) => o.kind === 'current'));
    assert.equal(events.at(-1)?.done, true);
    assert.equal(events.at(-1)?.files, manifest.objects.length);
    // No plaintext in the storage: the values' marker never appears in any object.
    for (const o of manifest.objects) {
      const bytes = await storage.getBuffer(o.object);
      assert.equal(bytes.includes(Buffer.from('a-value-')), false, `${o.file} holds plaintext`);
    }
    const dst = await backupMachine(root, 'target-roundtrip');
    const r = await runRestore(storage, dst.config, { available: { masterKeys: [src.config.security.encryption.masterKey] } });
    assert.equal(r.id, id);
    assert.deepEqual(await readAll(dst), expected);
    // The restored data dir needs only the target's own master key from now on.
    assert.notEqual(await readFile(dst.keyPath, 'utf8'), await readFile(src.keyPath, 'utf8'));
    await storage.close();
  });

  test('the key-file protector: restore with the key file, refused without it or with another, naming what is needed', async () => {
    const storage = await localStorage(join(root, 'store-keyfile'));
    const crypter = (await writeKeyFile(root, 'crypter.key')).path;
    const other = (await writeKeyFile(root, 'other.key')).path;
    const protector: ProtectorChoice = { kind: 'key-file', method: 'aes256-ctr', path: crypter };
    await backupOf(src, storage, { protector });
    const dst = await backupMachine(root, 'target-keyfile');
    await assert.rejects(runRestore(storage, dst.config, { available: {} }), rejectsWith('BACKUP_KEY_UNAVAILABLE', /key file .*crypter\.key \(aes256-ctr\).*--crypter\.key-file/));
    await assert.rejects(runRestore(storage, dst.config, { available: { keyFile: other } }), rejectsWith('BACKUP_KEY_UNAVAILABLE', /holds another key/));
    await assert.rejects(runRestore(storage, dst.config, { available: { masterKeys: [dst.config.security.encryption.masterKey] } }), rejectsWith('BACKUP_KEY_UNAVAILABLE'));
    assert.deepEqual(await readdir(dst.dir).then((n) => n.includes('data')), false, 'a refused restore leaves no data dir');
    await runRestore(storage, dst.config, { available: { keyFile: crypter } });
    assert.deepEqual(await readAll(dst), expected);
  });

  test('the master-key protector on a machine without the source master key is refused, naming the key', async () => {
    const storage = await localStorage(join(root, 'store-mk'));
    await backupOf(src, storage);
    const dst = await backupMachine(root, 'target-mk');
    await assert.rejects(
      runRestore(storage, dst.config, { available: { masterKeys: [dst.config.security.encryption.masterKey] } }),
      rejectsWith('BACKUP_KEY_UNAVAILABLE', new RegExp(`the master key: file ${src.keyPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`)),
    );
  });

  test('every byte of the manifest changed is detected (parse, canonical form or MAC)', async () => {
    const storage = await localStorage(join(root, 'store-flip'));
    const { id } = await backupOf(src, storage);
    const raw = await storage.getBuffer(manifestName(id));
    const parsed = parseManifest(raw, manifestName(id));
    const key = await unwrapBackupKey(parsed.body.key, id, { masterKeys: [src.config.security.encryption.masterKey] });
    authenticateManifest(parsed, key);
    for (let i = 0; i < raw.length; i++) {
      for (const bit of [0x01, 0x20]) {
        const bad = Buffer.from(raw);
        bad[i]! ^= bit;
        assert.throws(
          () => {
            const p = parseManifest(bad, manifestName(id));
            authenticateManifest(p, key);
          },
          (err: unknown) => isTdekvError(err, 'BACKUP_DAMAGED'),
          `byte ${i} ^ ${bit} not detected`,
        );
      }
    }
  });

  test('an object byte flipped: verify and restore name the object; the refused restore removes what it made', async () => {
    const storage = await localStorage(join(root, 'store-object'));
    const { manifest } = await backupOf(src, storage);
    assert.equal((await runVerify(storage, { available: { masterKeys: [src.config.security.encryption.masterKey] } })).ok, true);
    const victim = manifest.objects.find((o) => o.kind === 'table')!;
    const path = join(root, 'store-object', victim.object);
    const bytes = await readFile(path);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x04;
    await writeFile(path, bytes);
    const v = await runVerify(storage);
    assert.equal(v.ok, false);
    assert.equal(v.backups[0]!.macChecked, false);
    assert.match(v.backups[0]!.macNote ?? '', /MAC was not checked/);
    assert.match(v.backups[0]!.problems.join('\n'), new RegExp(`object ${victim.object} \\(file ${victim.file}\\) fails its SHA-256`));
    const dst = await backupMachine(root, 'target-object');
    await assert.rejects(runRestore(storage, dst.config, { available: { masterKeys: [src.config.security.encryption.masterKey] } }), rejectsWith('BACKUP_DAMAGED', new RegExp(victim.object)));
    assert.equal((await readdir(dst.dir)).includes('data'), false);
  });

  test('the manifest rolled back (an older backup\'s put in the newest one\'s place): verify and restore refuse, naming it', async () => {
    const storage = await localStorage(join(root, 'store-rollback'));
    const older = await backupOf(src, storage);
    const newer = await backupOf(src, storage);
    const available = { masterKeys: [src.config.security.encryption.masterKey] };
    assert.equal((await runVerify(storage, { available })).ok, true);
    // What the storage's writer can do without any key: copy the older manifest over the newer one.
    await writeFile(join(root, 'store-rollback', manifestName(newer.id)), await readFile(join(root, 'store-rollback', manifestName(older.id))));
    const v = await runVerify(storage, { available });
    assert.equal(v.ok, false);
    assert.match(JSON.stringify(v.backups), new RegExp(`manifest of backup ${older.id}, put in another backup's place`));
    const dst = await backupMachine(root, 'target-rollback');
    await assert.rejects(runRestore(storage, dst.config, { available, backupId: newer.id }), rejectsWith('BACKUP_DAMAGED', new RegExp(older.id)));
    await assert.rejects(runRestore(storage, dst.config, { available }), rejectsWith('BACKUP_DAMAGED', /put in another backup's place/));
    assert.equal((await readdir(dst.dir)).includes('data'), false);
  });

  test('an object deleted, two objects swapped: verify names each, restore refuses naming one', async () => {
    const storage = await localStorage(join(root, 'store-swap'));
    const { manifest } = await backupOf(src, storage);
    const tables = manifest.objects.filter((o) => o.kind === 'table');
    assert.ok(tables.length >= 3);
    const [a, b, gone] = tables as [typeof tables[0], typeof tables[0], typeof tables[0]];
    const at = (o: { object: string }) => join(root, 'store-swap', o.object);
    const [ba, bb] = [await readFile(at(a)), await readFile(at(b))];
    await writeFile(at(a), bb);
    await writeFile(at(b), ba);
    const { rm } = await import('node:fs/promises');
    await rm(at(gone));
    const v = await runVerify(storage, { available: { masterKeys: [src.config.security.encryption.masterKey] } });
    assert.equal(v.backups[0]!.macChecked, true);
    const problems = v.backups[0]!.problems.join('\n');
    assert.match(problems, new RegExp(`object ${gone.object} \\(file ${gone.file}\\) is missing`));
    for (const o of [a, b]) assert.match(problems, new RegExp(`object ${o.object} \\(file ${o.file}\\) (fails its SHA-256|is \\d+ bytes)`));
    const dst = await backupMachine(root, 'target-swap');
    await assert.rejects(runRestore(storage, dst.config, { available: { masterKeys: [src.config.security.encryption.masterKey] } }), rejectsWith('BACKUP_DAMAGED', /object objects\/.* \(file \d+\.sst\)/));
  });

  test('incremental: the second backup uploads only the new tables and restores the new data; prune keeps what the kept backup needs', async () => {
    const m = await backupMachine(root, 'incr-source');
    await writeData(m, rows(2000, 'b'));
    const storage = await localStorage(join(root, 'store-incr'));
    const first = await backupOf(m, storage);
    // 1% of the keys changed.
    await writeData(m, rows(20, 'c', 1000));
    const want = await readAll(m);
    const second = await backupOf(m, storage, { incremental: true, available: { masterKeys: [m.config.security.encryption.masterKey] } });
    const s = second.manifest;
    assert.equal(s.parent, first.id);
    assert.equal(s.chain, first.id);
    const referenced = s.objects.filter((o) => !o.added);
    assert.ok(referenced.length > 0, 'unchanged tables are referenced');
    assert.ok(referenced.every((o) => o.kind === 'table'));
    const addedTables = s.objects.filter((o) => o.added && o.kind === 'table');
    const firstTables = first.manifest.objects.filter((o) => o.kind === 'table');
    assert.ok(addedTables.length < firstTables.length, `${addedTables.length} tables uploaded again of ${firstTables.length}`);
    assert.ok(s.totals.addedBytes <= first.manifest.totals.bytes * 0.1, `added ${s.totals.addedBytes} of ${first.manifest.totals.bytes}`);
    const listing = await runList(storage);
    assert.deepEqual(listing.map((l) => [l.id, l.complete, l.addedBytes]), [[first.id, true, first.manifest.totals.addedBytes], [second.id, true, s.totals.addedBytes]]);

    const objectsBefore = await countObjects(join(root, 'store-incr'));
    const pruned = await runPrune(storage, 1);
    assert.deepEqual(pruned.kept, [second.id]);
    assert.deepEqual(pruned.removedBackups, [first.id]);
    assert.equal(await countObjects(join(root, 'store-incr')), objectsBefore - pruned.removedObjects);
    assert.equal(objectsBefore - pruned.removedObjects, s.objects.length, 'exactly the kept backup\'s objects remain');
    const dst = await backupMachine(root, 'incr-target');
    await runRestore(storage, dst.config, { available: { masterKeys: [m.config.security.encryption.masterKey] } });
    assert.deepEqual(await readAll(dst), want);
    assert.equal((await runVerify(storage, { available: { masterKeys: [m.config.security.encryption.masterKey] } })).ok, true);
  });

  test('a non-empty target is refused, naming it, and left untouched', async () => {
    const storage = await localStorage(join(root, 'store-roundtrip'));
    const dst = await backupMachine(root, 'target-nonempty');
    await writeFile(join(root, 'target-nonempty', 'keep.txt'), 'x');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dst.dataDir);
    await writeFile(join(dst.dataDir, 'precious'), 'mine');
    await assert.rejects(runRestore(storage, dst.config, { available: { masterKeys: [src.config.security.encryption.masterKey] } }), rejectsWith('BACKUP_REFUSED', new RegExp(`${dst.dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not empty \\(it holds precious\\)`)));
    assert.deepEqual(await readdir(dst.dataDir), ['precious']);
    assert.equal(await readFile(join(dst.dataDir, 'precious'), 'utf8'), 'mine');
  });

  test('a restore killed half way leaves the target as it was; the next run removes its staging directory and succeeds', async () => {
    const storage = await localStorage(join(root, 'store-roundtrip'));
    const dst = await backupMachine(root, 'target-killed');
    // What a SIGKILL mid-restore leaves: a half-built staging directory beside the (absent) target.
    const staging = stagingDirOf(dst.dataDir);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(staging, 'encryption-meta'), { recursive: true });
    await writeFile(join(staging, '000005.sst'), 'half');
    assert.equal((await readdir(dst.dir)).includes('data'), false, 'the target was never created');
    await runRestore(storage, dst.config, { available: { masterKeys: [src.config.security.encryption.masterKey] } });
    assert.deepEqual(await readAll(dst), expected);
    assert.deepEqual((await readdir(dst.dir)).filter((n) => n.includes('tdekv-restore')), []);
  });

  test('a byte of a live table changed without the key stops the backup on its export worker, naming the table; no backup is listed', async () => {
    const m = await backupMachine(root, 'tampered');
    await writeData(m, rows(400, 't'));
    const table = (await readdir(m.dataDir)).filter((n) => n.endsWith('.sst')).sort()[0]!;
    await flipByte(join(m.dataDir, table), 100, 0x04);
    const storage = await localStorage(join(root, 'store-tampered'));
    const source = await OfflineSource.open(m.config);
    try {
      // The table goes to a worker thread (ExportPool): its error comes back as the same TdekvError.
      await assert.rejects(runBackup(source, storage, { protector: { kind: 'master-key', masterKey: m.config.security.encryption.masterKey } }), rejectsWith('DATA_CORRUPTED', new RegExp(table)));
    } finally {
      await source.close();
    }
    assert.deepEqual((await runList(storage)).filter((b) => b.complete), []);
  });

  test('--offline is refused while the data dir is in use (a running server holds its lock)', async () => {
    const managed = await openEnvFromConfig(src.config);
    try {
      await assert.rejects(OfflineSource.open(src.config), rejectsWith('BACKUP_REFUSED', /the server is running.*run without --offline/));
    } finally {
      await managed.close();
    }
  });
});

async function countObjects(storeRoot: string): Promise<number> {
  let n = 0;
  for (const d of await readdir(join(storeRoot, 'objects'))) n += (await readdir(join(storeRoot, 'objects', d))).length;
  return n;
}
