import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EncryptedBufferSink, type FileFrame } from '../src/env/encrypted-buffer-sink.js';
import { newKeyId } from '../src/keys/data-key.js';
import { openEnv } from '../src/env/open-env.js';
import { b, collect, encryptionConfig, openTestDb, SMALL_TUNING, type TestDb } from './support/engine-helpers.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';
import type { EngineCheckpoint } from '../src/engine/checkpoint.js';

/*
 * A checkpoint's files exported under a key of nobody's dictionary (a backup's) and put in
 * place in another data dir under another master key: the engine there opens them and reads
 * exactly the data of the pinned version.
 */

function backupFrame(key: Buffer, keyId: number): FileFrame {
  return { method: 'aes256-ctr', key, keyId, iv: randomBytes(16) };
}

async function exportAll(cp: EngineCheckpoint, key: Buffer, keyId: number): Promise<Array<{ name: string; iv: Buffer; bytes: Buffer }>> {
  const out = [];
  for (const f of cp.files()) {
    const frame = backupFrame(key, keyId);
    const sink = new EncryptedBufferSink(f.name, frame);
    await cp.export(f.name, sink);
    out.push({ name: f.name, iv: frame.iv, bytes: sink.take() });
  }
  return out;
}

async function restoreInto(root: string, name: string, files: Array<{ name: string; iv: Buffer; bytes: Buffer }>, key: Buffer, keyId: number): Promise<TestDb> {
  const keyFile = await writeKeyFile(root, `${name}.key`);
  // A fresh env (its own master key and current data key), with the backup's key imported.
  const seed = await openEnv(join(root, name), encryptionConfig(keyFile.path));
  await seed.keyAdmin.importDataKey({ id: keyId, method: 'aes256-ctr', key, createdAtMs: Date.now(), exposed: false });
  for (const f of files) {
    await seed.env.importFile(f.name, { method: 'aes256-ctr', keyId, iv: f.iv, authenticated: true }, (async function* () {
      yield f.bytes;
    })());
  }
  await seed.close();
  return openTestDb(root, keyFile.path, { dataDir: join(root, name) });
}

describe('engine checkpoint, exported under a backup key and imported elsewhere', () => {
  let root: string;
  before(async () => {
    root = await tempDir('checkpoint-');
  });
  after(async () => cleanup(root));

  for (const method of ['aes256-ctr', 'plaintext'] as const) {
    it(`holds exactly the pinned version (source ${method}), survives compaction while pinned, and reads back under another master key`, async () => {
      const key = await writeKeyFile(root, `src-${method}.key`);
      const src = await openTestDb(root, key.path, { method, dataDir: join(root, `src-${method}`), tuning: SMALL_TUNING });
      const expected: Array<[string, string]> = [];
      for (let i = 0; i < 600; i++) {
        const k = `k${String(i).padStart(5, '0')}`;
        const v = `v${i}-${'x'.repeat(i % 50)}`;
        await src.engine.put(b(k), b(v));
        expected.push([k, v]);
      }
      const cp = await src.engine.checkpoint();
      // After the checkpoint: overwrites, deletes and a full compaction. None of it is in the backup,
      // and the pinned tables survive the compaction's removal of its inputs.
      for (let i = 0; i < 600; i += 3) await src.engine.put(b(`k${String(i).padStart(5, '0')}`), b('changed'));
      await src.engine.del(b('k00001'));
      await src.engine.compactRange();
      const backupKey = randomBytes(32);
      const backupKeyId = newKeyId(new Set());
      const files = await exportAll(cp, backupKey, backupKeyId);
      cp.release();
      assert.ok(files.some((f) => f.name.endsWith('.sst')), 'the checkpoint has tables');
      // No exported byte sequence shows the data in clear.
      for (const f of files) assert.ok(!f.bytes.includes(Buffer.from('xxxxxxxxxxxxxxxxxxxx')), `${f.name} is encrypted`);
      await src.close();

      const dst = await restoreInto(root, `dst-${method}`, files, backupKey, backupKeyId);
      try {
        assert.deepEqual(collect(dst.engine.iterator()), expected);
        await dst.engine.put(b('after-restore'), b('1'));
        assert.equal(dst.engine.getSync(b('after-restore'))?.toString(), '1');
      } finally {
        await dst.close();
      }
    });
  }

  it('a byte changed in an exported table is refused when the restored table is read', async () => {
    const key = await writeKeyFile(root, 'src-flip.key');
    const src = await openTestDb(root, key.path, { dataDir: join(root, 'src-flip') });
    for (let i = 0; i < 300; i++) await src.engine.put(b(`k${i}`), b(`value-${i}`));
    const cp = await src.engine.checkpoint();
    const backupKey = randomBytes(32);
    const backupKeyId = newKeyId(new Set());
    const files = await exportAll(cp, backupKey, backupKeyId);
    cp.release();
    await src.close();
    const table = files.find((f) => f.name.endsWith('.sst'))!;
    table.bytes[10] = table.bytes[10]! ^ 0x01;
    const dst = await restoreInto(root, 'dst-flip', files, backupKey, backupKeyId);
    try {
      assert.throws(() => collect(dst.engine.iterator()), (err: Error & { code?: string }) => err.code === 'DATA_CORRUPTED' && err.message.includes(table.name));
    } finally {
      await dst.close();
    }
  });

  it('a released checkpoint exports nothing, and its tables are removed once compacted away', async () => {
    const key = await writeKeyFile(root, 'src-release.key');
    const src = await openTestDb(root, key.path, { dataDir: join(root, 'src-release') });
    try {
      for (let i = 0; i < 300; i++) await src.engine.put(b(`k${i}`), b(`value-${i}`));
      const cp = await src.engine.checkpoint();
      const pinned = cp.files().filter((f) => f.kind === 'table').map((f) => f.name);
      await src.engine.compactRange();
      await src.engine.waitForBackgroundWork();
      const whilePinned = await readdir(src.dataDir);
      for (const t of pinned) assert.ok(whilePinned.includes(t), `${t} kept while pinned`);
      cp.release();
      await assert.rejects(cp.export(pinned[0]!, new EncryptedBufferSink('x', backupFrame(randomBytes(32), 1))), /released/);
      await src.engine.compactRange();
      await src.engine.waitForBackgroundWork();
      const afterRelease = await readdir(src.dataDir);
      assert.ok(pinned.some((t) => !afterRelease.includes(t)), 'compacted-away tables are removed after release');
      assert.ok((await readFile(join(src.dataDir, pinned[0]!)).catch(() => undefined)) === undefined || afterRelease.includes(pinned[0]!));
    } finally {
      await src.close();
    }
  });
});
