import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { ctrTransformAt } from '../src/crypto/ctr.js';
import { keyLengthOf } from '../src/crypto/method.js';
import { EncryptedEnv, KEY_DICT_NAME, type EnvOptions } from '../src/env/encrypted-env.js';
import { DataKeyStore } from '../src/keys/data-key-store.js';
import { isTdekvError } from '../src/errors.js';
import { silentLogger } from '../src/log/logger.js';
import type { MasterKey } from '../src/masterkey/master-key.js';
import { cleanup, newFileMasterKey, tempDir } from './support/fs-helpers.js';
import { KeyAdmin } from '../src/env/key-admin.js';

interface Fixture {
  dataDir: string;
  masterKey: MasterKey;
  open(overrides?: Partial<EnvOptions>): Promise<EncryptedEnv>;
}

async function fixture(t: { after: (fn: () => Promise<void>) => void }): Promise<Fixture> {
  const root = await tempDir('tdekv-races-');
  t.after(() => cleanup(root));
  const masterKey = await newFileMasterKey(root);
  const dataDir = join(root, 'data');
  return {
    dataDir,
    masterKey,
    open: (overrides = {}) =>
      EncryptedEnv.open({
        dataDir,
        method: 'aes256-ctr',
        rotationPeriodMs: 3600_000,
        masterKey,
        fileDictionaryLog: true,
        fileDictionaryRewriteThreshold: 1_000_000,
        logger: silentLogger(),
        ...overrides,
      }),
  };
}

async function createWith(env: EncryptedEnv, name: string, data: Buffer): Promise<void> {
  const f = await env.create(name);
  try {
    await f.append(data);
    await f.sync();
  } finally {
    await f.close();
  }
}

/**
 * After a reopen, every file reads back exactly, and none was encrypted under the all-zero
 * key (what a wiped shared key Buffer turns into).
 */
async function assertAllReadBack(fx: Fixture, written: Map<string, Buffer>): Promise<void> {
  const env = await fx.open();
  try {
    for (const [name, data] of written) {
      const info = env.fileInfo(name);
      assert.ok(info, `${name} is tracked`);
      assert.notEqual(info.method, 'plaintext');
      const raw = await readFile(join(fx.dataDir, name));
      const underZeroKey = ctrTransformAt(info.method, Buffer.alloc(keyLengthOf(info.method)), info.iv, 0, raw);
      assert.ok(!underZeroKey.equals(data), `${name} was encrypted under the all-zero key`);
      assert.ok((await env.readFile(name)).equals(data), `${name} reads back its exact contents`);
    }
  } finally {
    await env.close();
  }
}

test('retiring keys while a create holds a key that stopped being current keeps that key', async (t) => {
  const fx = await fixture(t);
  const written = new Map<string, Buffer>();
  let env: EncryptedEnv | undefined;
  const retired: number[] = [];
  // Between choosing its key and writing its entry, the create is invisible to the file
  // dictionary: rotate (so its key is no longer current) and retire right there.
  env = await fx.open({
    faults: async (op, step) => {
      if (op === 'create' && step === 'key-chosen') {
        // Twice: the key in between is used by no file and must go.
        await new KeyAdmin(env!).rotateDataKey();
        await new KeyAdmin(env!).rotateDataKey();
        retired.push(...(await new KeyAdmin(env!).retireUnusedKeys()));
      }
    },
  });
  for (let i = 0; i < 5; i++) {
    const data = randomBytes(1000 + i);
    await createWith(env, `f${i}`, data);
    written.set(`f${i}`, data);
  }
  // The keys of the files stay; the ones rotated past with no file are retired.
  assert.ok(retired.length > 0, 'unused keys are still retired');
  for (const [name] of written) assert.ok(!retired.includes(env.fileInfo(name)!.keyId), `${name}'s key was not retired`);
  await env.close();
  await assertAllReadBack(fx, written);
});

test('close() during a create waits for it; the file is encrypted under its real key and reads back', async (t) => {
  const fx = await fixture(t);
  const written = new Map<string, Buffer>();
  for (let round = 0; round < 8; round++) {
    let env: EncryptedEnv | undefined;
    let closing: Promise<void> | undefined;
    // Close starts after the entry is durable and before the create builds its cipher: the
    // window where the old close() zero-filled the key the cipher was about to be built from.
    env = await fx.open({
      faults: (op, step) => {
        if (op === 'create' && step === 'entry-durable' && !closing) closing = env!.close();
      },
    });
    const names = Array.from({ length: 4 }, (_, i) => `r${round}-f${i}`);
    const files = await Promise.allSettled(names.map((n) => env!.create(n)));
    const data = new Map<string, Buffer>();
    for (const [i, r] of files.entries()) {
      if (r.status === 'rejected') {
        assert.ok(isTdekvError(r.reason, 'CLOSED'), `a create after close() began is refused as CLOSED: ${String(r.reason)}`);
        continue;
      }
      // The writable file holds its own cipher: it works after the env closed.
      const d = randomBytes(2000 + i);
      await r.value.append(d);
      await r.value.sync();
      await r.value.close();
      data.set(names[i]!, d);
    }
    assert.ok(closing, 'close() ran inside a create');
    await closing;
    assert.ok(data.size > 0, 'the create that was in flight when close() began succeeded');
    await assert.rejects(env.create(`r${round}-late`), (err) => isTdekvError(err, 'CLOSED'));
    for (const [n, d] of data) written.set(n, d);
  }
  await assertAllReadBack(fx, written);
});

test('many concurrent create+append+sync against rotate, retireUnusedKeys and close: every file keeps its key and contents', async (t) => {
  const fx = await fixture(t);
  const written = new Map<string, Buffer>();
  for (let round = 0; round < 6; round++) {
    let env: EncryptedEnv | undefined;
    let creates = 0;
    // Every create yields between choosing its key and writing its entry, and again before
    // building its cipher, so the key changes below land inside those windows.
    env = await fx.open({
      faults: async (op, step) => {
        if (op !== 'create') return;
        creates += 1;
        if (step === 'key-chosen' && creates % 3 === 0) await new KeyAdmin(env!).rotateDataKey();
        if (creates % 4 === 0) await new KeyAdmin(env!).retireUnusedKeys();
        await yieldTurn();
      },
    });
    const jobs: Array<Promise<unknown>> = [];
    for (let i = 0; i < 12; i++) {
      const name = `r${round}-f${i}`;
      const data = randomBytes(500 + 37 * i);
      jobs.push(createWith(env, name, data).then(() => written.set(name, data)));
      if (i % 4 === 3) jobs.push(new KeyAdmin(env).rotateDataKey().then(() => new KeyAdmin(env!).retireUnusedKeys()));
    }
    const results = await Promise.allSettled([...jobs, env.close()]);
    for (const r of results) {
      if (r.status === 'rejected') assert.ok(isTdekvError(r.reason, 'CLOSED'), `only refusals after close() began: ${String(r.reason)}`);
    }
  }
  assert.ok(written.size > 0);
  await assertAllReadBack(fx, written);
});

test('two concurrent creates of one name: one wins, the other gets FILE_EXISTS, and the winner reads back', async (t) => {
  const fx = await fixture(t);
  const env = await fx.open();
  const written = new Map<string, Buffer>();
  for (let round = 0; round < 10; round++) {
    const name = `dup-${round}`;
    const results = await Promise.allSettled([env.create(name), env.create(name)]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    assert.equal(won.length, 1, 'exactly one create succeeds');
    assert.ok(isTdekvError(lost[0]!.reason, 'FILE_EXISTS'), `the other is FILE_EXISTS: ${String(lost[0]!.reason)}`);
    const f = won[0]!.value;
    const data = randomBytes(3000 + round);
    await f.append(data);
    await f.sync();
    await f.close();
    written.set(name, data);
    assert.ok((await env.readFile(name)).equals(data), `${name} reads back before reopen`);
  }
  await env.close();
  await assertAllReadBack(fx, written);
});

test('the key store hands out copies, leases keep a key from retirement, and a closed store serves no wiped key', async (t) => {
  const fx = await fixture(t);
  await (await fx.open()).close();
  const store = await DataKeyStore.open({ path: join(fx.dataDir, 'encryption-meta', KEY_DICT_NAME), masterKey: fx.masterKey, logger: silentLogger() });
  const policy = { method: 'aes256-ctr' as const, periodMs: 3600_000, masterKeyProtects: true };
  const first = (await store.current(policy))!;
  first.key.fill(0);
  assert.ok(!store.get(first.id).key.equals(Buffer.alloc(32)), 'wiping a copy leaves the store\'s key intact');

  const lease = (await store.lease(policy))!;
  assert.equal(lease.key.id, first.id);
  await store.rotate('aes256-ctr');
  assert.deepEqual(await store.retireUnused(() => new Set()), [], 'a leased key is kept');
  lease.release();
  assert.ok(lease.key.key.equals(Buffer.alloc(32)), 'release wipes the lease\'s copy');
  assert.deepEqual(await store.retireUnused(() => new Set()), [first.id], 'once released and unused, it goes');

  const held = store.get(store.currentKeyId);
  store.close();
  assert.ok(!held.key.equals(Buffer.alloc(32)), 'close wipes the store\'s keys, not copies handed out');
  assert.throws(() => store.get(held.id), (err) => isTdekvError(err, 'CLOSED'));
  await assert.rejects(store.current(policy), (err) => isTdekvError(err, 'CLOSED'));
  await assert.rejects(store.lease(policy), (err) => isTdekvError(err, 'CLOSED'));
});
