/**
 * File grants (src/env/file-grant.ts): how background work on a worker thread reads and
 * writes exactly the files it is handed, with their keys, and nothing else.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { AuthDomain, TAG_BYTES } from '../src/crypto/file-auth.js';
import type { EncryptedEnv } from '../src/env/encrypted-env.js';
import { createGranted, openGrantedRead } from '../src/env/file-grant.js';
import type { MasterKey } from '../src/masterkey/master-key.js';
import { cleanup, expectCode, newFileMasterKey, openTestEnv, tempDir } from './support/fs-helpers.js';

let root: string;
let env: EncryptedEnv;
let masterKey: MasterKey;

before(async () => {
  root = await tempDir('tdekv-grant-');
  masterKey = await newFileMasterKey(root);
  env = await openTestEnv(`${root}/data`, masterKey);
});
after(async () => {
  await env.close();
  await cleanup(root);
});

describe('file grants', () => {
  test('a create grant writes a file the env reads back, under the entry the env recorded', async () => {
    const grant = await env.grantCreate('granted-1');
    assert.equal(grant.access, 'create');
    assert.equal(grant.method, 'aes256-ctr');
    const w = await createGranted(grant);
    assert.ok(grant.key.every((b) => b === 0), 'the grant\'s key is wiped once the file is open');
    await w.append(Buffer.from('hello, granted world'));
    await w.sync();
    await w.close();
    const r = await env.openRead('granted-1');
    assert.equal(r.readSync(0, r.size).toString(), 'hello, granted world');
    r.close();
    // And the bytes on disk are not the plaintext.
    const { readFile } = await import('node:fs/promises');
    assert.ok(!(await readFile(`${root}/data/granted-1`)).toString('latin1').includes('granted world'));
  });

  test('the name is taken as soon as the grant exists: a second create fails, however late the holder opens', async () => {
    const grant = await env.grantCreate('granted-2');
    await assert.rejects(env.create('granted-2'), expectCode('FILE_EXISTS'));
    await assert.rejects(env.grantCreate('granted-2'), expectCode('FILE_EXISTS'));
    const w = await createGranted(grant);
    await w.append(Buffer.from('x'));
    await w.close();
  });

  test('a grant is good once: a used or copied grant is refused, never a second writer under the same IV', async () => {
    const grant = await env.grantCreate('granted-3');
    const copy = { ...grant, key: Buffer.from(grant.key) };
    const w = await createGranted(grant);
    await w.append(Buffer.from('first writer'));
    await w.sync();
    await assert.rejects(createGranted(copy), expectCode('FILE_EXISTS', 'written already'));
    await assert.rejects(createGranted(grant), expectCode('INVALID_ARGUMENT', 'used already'));
    await w.close();
    const read = env.grantRead('granted-3');
    await assert.rejects(createGranted(read), expectCode('INVALID_ARGUMENT', 'not create'));
    const reader = openGrantedRead(read);
    assert.equal(reader.readSync(0, reader.size).toString(), 'first writer');
    reader.close();
    assert.throws(() => openGrantedRead(read), expectCode('INVALID_ARGUMENT', 'used already'));
  });

  test('a worker thread holding only grants reads one file and writes another, with tags the env verifies', async () => {
    const w = await env.create('source');
    await w.append(Buffer.from('written on the main thread'));
    await w.sync();
    await w.close();
    const read = env.grantRead('source');
    const create = await env.grantCreate('from-worker');
    const worker = new Worker(new URL('./support/grant-worker.js', import.meta.url), { workerData: { read, create } });
    const result = await new Promise<{ readKeyWiped: boolean; createKeyWiped: boolean; bytes: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    // The worker got copies (structured clone): it wiped its own; ours are wiped here, as a holder must.
    assert.deepEqual(result, { readKeyWiped: true, createKeyWiped: true, bytes: 'written on the main thread'.length });
    read.key.fill(0);
    create.key.fill(0);
    const r = await env.openRead('from-worker');
    const all = r.readSync(0, r.size);
    const body = all.subarray(0, all.length - TAG_BYTES);
    assert.equal(body.toString(), 'WRITTEN ON THE MAIN THREAD');
    assert.ok(r.auth!.verify(AuthDomain.LogRecord, 0, body, all.subarray(all.length - TAG_BYTES)), 'the tag made in the worker verifies under the env\'s key for the file');
    r.close();
  });
});
