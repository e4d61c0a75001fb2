import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isTdekvError } from '../src/errors.js';
import { openStorage } from '../src/backup/storage/open-storage.js';
import { S3Storage, S3_MIN_PART_SIZE } from '../src/backup/storage/s3-storage.js';
import { parseStorageUrl, type S3StorageSpec, type StorageFlagValues } from '../src/backup/storage/storage-url.js';
import { cleanup, tempDir } from './support/fs-helpers.js';
import { chunkedBody, storageContract } from './support/storage-contract.js';
import { startRecordingProxy, startS3rver, type Emulator, type RecordedRequest, type RecordingProxy } from './support/storage-emulators.js';

// s3rver's fixed credentials, for the SDK's default chain (this process only).
process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER';
process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER';
process.env['AWS_REGION'] = 'us-east-1';

let dir: string;
let s3: Emulator;
let proxy: RecordingProxy;
let prefixes = 0;

before(async () => {
  dir = await tempDir('backup-s3-');
  s3 = await startS3rver(dir, ['backups']);
  proxy = await startRecordingProxy({ port: s3.port });
});

after(async () => {
  await proxy?.stop();
  await s3?.stop();
  await cleanup(dir);
});

function spec(flags: StorageFlagValues = {}, bucket = 'backups'): S3StorageSpec {
  const parsed = parseStorageUrl(`s3://${bucket}/p${++prefixes}/tdekv`, { flags: { 's3.endpoint': proxy.origin, ...flags }, env: {} });
  assert.equal(parsed.kind, 's3');
  return parsed as S3StorageSpec;
}

storageContract('s3', { open: () => openStorage(spec()) });

/** Requests the proxy saw for keys under this spec's prefix, from index `from` on. */
function seen(s: S3StorageSpec, from: number): RecordedRequest[] {
  return proxy.requests.slice(from).filter((r) => r.url.startsWith(`/${s.bucket}/${s.prefix}/`));
}

const isPart = (r: RecordedRequest): boolean => r.method === 'PUT' && /[?&]partNumber=/.test(r.url);
const isInitiate = (r: RecordedRequest): boolean => r.method === 'POST' && /\?uploads(=|&|$)/.test(r.url);

test('s3: --s3.sse aws:kms --s3.sse-kms-key-id X sends both headers on every PutObject and on the multipart initiate; a 16 MiB object goes up in ≥ 3 parts; it reads back without the flags', async () => {
  const s = spec({ 's3.sse': 'aws:kms', 's3.sse-kms-key-id': 'X', 's3.storage-class': 'STANDARD_IA' });
  const storage = new S3Storage(s, { partSize: S3_MIN_PART_SIZE, queueSize: 2 });
  const from = proxy.requests.length;
  const small = randomBytes(4096);
  const big = randomBytes(16 * 1024 * 1024 + 12345);
  try {
    await storage.put('backups/1/manifest', small, small.length);
    await storage.put('objects/big', chunkedBody(big, 64), big.length);
    await storage.put('objects/big-buffer', big, big.length);
  } finally {
    await storage.close();
  }
  const reqs = seen(s, from);
  const puts = reqs.filter((r) => r.method === 'PUT' && !isPart(r));
  const initiates = reqs.filter(isInitiate);
  const parts = reqs.filter(isPart);
  assert.equal(puts.length, 1, 'one single-request PutObject (the manifest)');
  assert.equal(initiates.length, 2, 'two multipart uploads');
  for (const r of [...puts, ...initiates]) {
    assert.equal(r.headers['x-amz-server-side-encryption'], 'aws:kms', `${r.method} ${r.url}`);
    assert.equal(r.headers['x-amz-server-side-encryption-aws-kms-key-id'], 'X', `${r.method} ${r.url}`);
    assert.equal(r.headers['x-amz-storage-class'], 'STANDARD_IA', `${r.method} ${r.url}`);
  }
  // S3 refuses SSE headers on UploadPart: the parts take the initiate's encryption.
  for (const r of parts) assert.equal(r.headers['x-amz-server-side-encryption'], undefined);
  for (const key of ['objects/big', 'objects/big-buffer']) {
    const n = parts.filter((r) => r.url.startsWith(`/${s.bucket}/${s.prefix}/${key}?`)).length;
    assert.ok(n >= 3, `${key}: ${n} parts`);
  }

  // Reading needs no SSE flags: S3 decrypts by itself (BR: "do not pass them on restore").
  const plain = await openStorage(parseStorageUrl(`s3://${s.bucket}/${s.prefix}`, { flags: { 's3.endpoint': proxy.origin }, env: {} }));
  try {
    assert.ok((await plain.getBuffer('objects/big')).equals(big));
    assert.ok((await plain.getBuffer('objects/big-buffer')).equals(big));
    assert.ok((await plain.getBuffer('backups/1/manifest')).equals(small));
  } finally {
    await plain.close();
  }
});

test('s3: --s3.sse AES256 sends x-amz-server-side-encryption: AES256 and no KMS key id, on PutObject and on the multipart initiate', async () => {
  const s = spec({ 's3.sse': 'AES256' });
  const storage = new S3Storage(s, { partSize: S3_MIN_PART_SIZE });
  const from = proxy.requests.length;
  const big = randomBytes(S3_MIN_PART_SIZE * 2 + 1);
  try {
    await storage.put('a', Buffer.from('small'), 5);
    await storage.put('b', chunkedBody(big, 10), big.length);
  } finally {
    await storage.close();
  }
  const reqs = seen(s, from).filter((r) => (r.method === 'PUT' && !isPart(r)) || isInitiate(r));
  assert.equal(reqs.length, 2);
  for (const r of reqs) {
    assert.equal(r.headers['x-amz-server-side-encryption'], 'AES256');
    assert.equal(r.headers['x-amz-server-side-encryption-aws-kms-key-id'], undefined);
  }
  assert.equal(seen(s, from).filter(isPart).length, 3);
});

test('s3: a multipart upload whose body fails after two parts is aborted and leaves no object', async () => {
  const s = spec({ 's3.sse': 'aws:kms' });
  const storage = new S3Storage(s, { partSize: S3_MIN_PART_SIZE, queueSize: 1 });
  const from = proxy.requests.length;
  const data = randomBytes(S3_MIN_PART_SIZE * 4);
  try {
    await assert.rejects(storage.put('objects/broken', chunkedBody(data, 40, 30), data.length));
    assert.equal(await storage.stat('objects/broken'), undefined);
  } finally {
    await storage.close();
  }
  const reqs = seen(s, from);
  assert.ok(reqs.filter(isPart).length >= 2, 'parts were sent before the failure');
  assert.ok(
    reqs.some((r) => r.method === 'DELETE' && /[?&]uploadId=/.test(r.url)),
    'the multipart upload was aborted',
  );
});

test('s3: a missing bucket and wrong credentials are TdekvErrors naming the bucket, the SDK error and what to do', async () => {
  const none = await openStorage(spec({}, 'no-such-bucket'));
  try {
    await assert.rejects(none.put('x', Buffer.from('x'), 1), (e) => {
      assert.ok(isTdekvError(e, 'BACKUP_STORAGE_FAILED'));
      assert.match(e.message, /s3:\/\/no-such-bucket\/.*NoSuchBucket.*create the bucket/);
      return true;
    });
    await assert.rejects(none.stat('x'), (e) => isTdekvError(e, 'BACKUP_STORAGE_FAILED') && /NoSuchBucket/.test(e.message));
  } finally {
    await none.close();
  }
  // s3rver checks the access key id (not the secret's signature).
  const saved = process.env['AWS_ACCESS_KEY_ID'];
  process.env['AWS_ACCESS_KEY_ID'] = 'WRONGKEYID';
  const wrong = await openStorage(spec());
  try {
    await assert.rejects(wrong.put('x', Buffer.from('x'), 1), (e) => {
      assert.ok(isTdekvError(e, 'BACKUP_STORAGE_FAILED'));
      assert.match(e.message, /SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId/);
      assert.match(e.message, /check the AWS credentials/);
      assert.ok(!e.message.includes('S3RVER'), 'the secret is not in the message');
      return true;
    });
  } finally {
    process.env['AWS_ACCESS_KEY_ID'] = saved;
    await wrong.close();
  }
});
