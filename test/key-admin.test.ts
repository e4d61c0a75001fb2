import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EncryptedEnv } from '../src/env/encrypted-env.js';
import { encryptionFacts, encryptionStatus } from '../src/env/encryption-status.js';
import { KeyAdmin } from '../src/env/key-admin.js';
import { KmsMasterKey } from '../src/masterkey/kms.js';
import { PlaintextMasterKey } from '../src/masterkey/plaintext.js';
import { createMetricsRegistry } from '../src/metrics/registry.js';
import { encryptionInfo } from '../src/server/info.js';
import { statusReport } from '../src/server/status-report.js';
import { expectCode, newFileMasterKey, tempDir, cleanup } from './support/fs-helpers.js';
import { openOpsFixture, parseSamples, sampleOf, writeSomeData, type OpsFixture } from './support/ops-fixture.js';

const KEY_ADMINISTRATION = ['rotateDataKey', 'retireUnusedKeys', 'rotateMasterKey', 'exportDataKeys', 'dataKeys', 'currentDataKey', 'masterKey'];

function prototypeNames(o: object): Set<string> {
  return new Set(Object.getOwnPropertyNames(Object.getPrototypeOf(o) as object));
}

describe('KeyAdmin (issue 11 item 2)', () => {
  let fx: OpsFixture;
  before(async () => {
    fx = await openOpsFixture('tdekv-key-admin-');
    await writeSomeData(fx.engine, 50);
  });
  after(() => fx.close());

  test('key rotation, retirement, export and key status are KeyAdmin methods; EncryptedEnv keeps file encryption only', () => {
    const env = prototypeNames(fx.managed.env);
    for (const name of KEY_ADMINISTRATION) assert.ok(!env.has(name), `EncryptedEnv still has ${name}`);
    for (const name of ['create', 'openRead', 'rename', 'remove', 'needsRewrite', 'reencrypt']) assert.ok(env.has(name), name);
    const admin = prototypeNames(fx.managed.keyAdmin);
    for (const name of KEY_ADMINISTRATION) assert.ok(admin.has(name), `KeyAdmin lacks ${name}`);
  });

  test('rotates and retires through the env it administers, and shares its lifetime', async (t) => {
    const root = await tempDir('tdekv-key-admin-life-');
    t.after(() => cleanup(root));
    const masterKey = await newFileMasterKey(root);
    const env = await EncryptedEnv.open({ dataDir: root + '/data', method: 'aes256-ctr', rotationPeriodMs: 3600_000, masterKey, fileDictionaryLog: true, fileDictionaryRewriteThreshold: 1000 });
    const admin = new KeyAdmin(env);
    const first = admin.currentDataKey()!.id;
    await env.writeFile('a', Buffer.from('a'));
    const second = (await admin.rotateDataKey()).id;
    assert.notEqual(second, first);
    assert.equal(admin.currentDataKey()!.id, second);
    // Two admins of one env see one key store.
    assert.equal(new KeyAdmin(env).currentDataKey()!.id, second);
    await env.remove('a');
    assert.deepEqual(await admin.retireUnusedKeys(), [first]);
    // The env's files follow the new key at once: a new file is on it.
    await env.writeFile('b', Buffer.from('b'));
    assert.equal(env.fileInfo('b')?.keyId, second);
    assert.equal(env.needsRewrite('b'), true, 'opaque files lack tags, so they count as needing a rewrite');
    await env.close();
    await assert.rejects(admin.rotateDataKey(), expectCode('CLOSED'));
    await assert.rejects(admin.retireUnusedKeys(), expectCode('CLOSED'));
    masterKey.close();
  });

  test('one projection: /status `encryption` is the document `ctl encryption-meta status --json` prints, and INFO and the metrics read the same facts', async () => {
    const env = fx.managed.env;
    const now = Date.now();
    const status = await encryptionStatus(env, now);
    const report = await statusReport(env, fx.engine, undefined, now);
    assert.deepEqual(report.encryption, status);
    const { metaFileSizes, ...facts } = status;
    assert.deepEqual(encryptionFacts(env, now), facts);
    assert.ok(Object.keys(metaFileSizes).length > 0);

    const info = new Map(encryptionInfo(env, fx.config, now));
    assert.equal(info.get('current_data_key_id'), status.currentDataKey!.id);
    assert.equal(info.get('current_data_key_age_seconds'), Math.floor(status.currentDataKey!.ageSeconds));
    assert.equal(info.get('data_keys'), status.dataKeyCount);
    assert.equal(info.get('files'), status.files.total);
    assert.equal(info.get('master_key_type'), status.masterKey.type);

    const samples = parseSamples(await createMetricsRegistry({ env }).metrics());
    assert.equal(sampleOf(samples, 'tdekv_encryption_data_key_storage_total'), status.dataKeyCount);
    assert.equal(sampleOf(samples, 'tdekv_encryption_file_num'), status.files.total);
    assert.equal(sampleOf(samples, 'tdekv_encryption_is_initialized'), status.initialized ? 1 : 0);
    for (const [id, n] of Object.entries(status.files.byKeyId)) {
      assert.equal(sampleOf(samples, 'tdekv_encryption_files', { method: 'aes256-ctr', key_id: id }), n);
    }
    for (const [name, bytes] of Object.entries(metaFileSizes)) assert.equal(sampleOf(samples, 'tdekv_encryption_meta_file_size_bytes', { name }), bytes);
    assert.equal(sampleOf(samples, 'tdekv_encryption_key_dictionary_generation'), status.integrity.keyDictGeneration);
  });
});

describe('MasterKey.publicInfo (issue 11 item 2)', () => {
  test('file: the path; plaintext: the type only', async (t) => {
    const root = await tempDir('tdekv-public-info-');
    t.after(() => cleanup(root));
    const file = await newFileMasterKey(root);
    try {
      assert.deepEqual(file.publicInfo(), { type: 'file', path: `${root}/master.key` });
    } finally {
      file.close();
    }
    assert.deepEqual(new PlaintextMasterKey().publicInfo(), { type: 'plaintext' });
  });

  test('kms: key id, region and the endpoint without credentials, query or fragment, in publicInfo and in the description', () => {
    const kms = new KmsMasterKey({ type: 'kms', keyId: 'arn:aws:kms:eu-west-1:111:key/abc', region: 'eu-west-1', endpoint: 'https://user:pw@kms.example.com/proxy?token=tok#frag', timeoutMs: 1000, maxAttempts: 1 });
    try {
      assert.deepEqual(kms.publicInfo(), { type: 'kms', keyId: 'arn:aws:kms:eu-west-1:111:key/abc', region: 'eu-west-1', endpoint: 'https://kms.example.com/proxy' });
      assert.equal(kms.description, 'kms key-id=arn:aws:kms:eu-west-1:111:key/abc region=eu-west-1 endpoint=https://kms.example.com/proxy');
      assert.doesNotMatch(kms.description, /pw|tok|frag/);
    } finally {
      kms.close();
    }
    const regional = new KmsMasterKey({ type: 'kms', keyId: 'k', region: 'us-west-2', timeoutMs: 1000, maxAttempts: 1 });
    try {
      assert.deepEqual(regional.publicInfo(), { type: 'kms', keyId: 'k', region: 'us-west-2' });
    } finally {
      regional.close();
    }
  });
});
