import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/engine/engine.js';
import { engineFsOf } from '../src/engine/engine-fs.js';
import { EncryptedEnv } from '../src/env/encrypted-env.js';
import { openTestDb, SMALL_TUNING } from './support/engine-helpers.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

/** Names an object answers to, own or inherited (Object.prototype's excepted). */
function reachableNames(o: object): string[] {
  const names = new Set<string>();
  for (let p: object | null = o; p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const n of Object.getOwnPropertyNames(p)) names.add(n);
  }
  return [...names].sort();
}

const KEY_ADMINISTRATION = ['rotateDataKey', 'rotateMasterKey', 'retireUnusedKeys', 'exportDataKeys', 'dataKeys', 'masterKey', 'currentDataKey', 'close'];

test('the engine holds a narrow EngineFs facade, never the encrypted env: no key export or rotation, not even through a cast (issue 11 item 2)', async (t) => {
  const root = await tempDir('tdekv-engine-fs-');
  t.after(() => cleanup(root));
  const { path } = await writeKeyFile(root);
  const db = await openTestDb(root, path, { tuning: SMALL_TUNING });
  try {
    const held = db.engine.env as unknown as Record<string, unknown>;
    assert.ok(!(held instanceof EncryptedEnv), 'the engine holds the env itself');
    assert.notEqual(held, db.managed.env);
    assert.ok(Object.isFrozen(held));
    assert.deepEqual(
      reachableNames(held),
      ['create', 'dataDir', 'exists', 'freeSpace', 'grantCreate', 'grantRead', 'list', 'mkdir', 'needsRewrite', 'openRead', 'openReadSync', 'remove', 'rename'],
    );
    for (const name of KEY_ADMINISTRATION) assert.equal(held[name], undefined, name);
    // The facade works: the engine writes through it.
    await db.engine.put(Buffer.from('k'), Buffer.from('v'));
    await db.engine.flush();
    assert.ok((await db.engine.env.list('')).some((n) => n.endsWith('.sst')));
  } finally {
    await db.close();
  }
});

test('engineFsOf of a facade is a facade again, and Engine.open narrows whatever it is given', async (t) => {
  const root = await tempDir('tdekv-engine-fs-');
  t.after(() => cleanup(root));
  const { path } = await writeKeyFile(root);
  const db = await openTestDb(root, path);
  await db.engine.close();
  const engine = await Engine.open({ env: engineFsOf(db.managed.env), ...SMALL_TUNING });
  try {
    assert.ok(!(engine.env instanceof EncryptedEnv));
    assert.equal(engine.env.dataDir, db.managed.env.dataDir);
  } finally {
    await engine.close();
    await db.managed.close();
  }
});
