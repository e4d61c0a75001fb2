import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { isTdekvError } from '../src/errors.js';
import {
  parseStorageUrl,
  redactStorageUrl,
  STORAGE_FLAGS,
  storageFlagsFromOptions,
  type AzureStorageSpec,
  type ParseStorageOptions,
  type S3StorageSpec,
} from '../src/backup/storage/storage-url.js';

const KEY = randomBytes(32).toString('base64');
const AZ = { 'azblob.account-name': 'acct', 'azblob.account-key': 'c2VjcmV0LWFjY291bnQta2V5' } as const;

function az(url: string, opts: ParseStorageOptions = {}): AzureStorageSpec {
  const s = parseStorageUrl(url, { env: {}, ...opts, flags: { ...AZ, ...opts.flags } });
  assert.equal(s.kind, 'azure');
  return s as AzureStorageSpec;
}

function s3(url: string, opts: ParseStorageOptions = {}): S3StorageSpec {
  const s = parseStorageUrl(url, { env: {}, ...opts });
  assert.equal(s.kind, 's3');
  return s as S3StorageSpec;
}

function refused(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e) => {
    assert.ok(isTdekvError(e, 'INVALID_ARGUMENT'), String(e));
    assert.match(e.message, pattern);
    return true;
  });
}

test('url: local:///abs, plain absolute and relative paths (against cwd), file:///, percent-encoded paths', () => {
  assert.deepEqual(parseStorageUrl('local:///var/backups/tdekv'), { kind: 'local', root: '/var/backups/tdekv', displayUrl: 'local:///var/backups/tdekv' });
  assert.deepEqual(parseStorageUrl('/var/b/../backups'), { kind: 'local', root: '/var/backups', displayUrl: 'local:///var/backups' });
  assert.deepEqual(parseStorageUrl('bk/one', { cwd: '/srv' }), { kind: 'local', root: '/srv/bk/one', displayUrl: 'local:///srv/bk/one' });
  assert.equal(parseStorageUrl('file:///a%20b').kind, 'local');
  assert.equal((parseStorageUrl('local:///a%20b') as { root: string }).root, '/a b');
  refused(() => parseStorageUrl('local://relative/path'), /needs an absolute path, three slashes/);
  refused(() => parseStorageUrl('local:///x?a=b'), /takes no query parameters/);
  refused(() => parseStorageUrl('/x', { flags: { 's3.sse': 'AES256' } }), /--s3\.sse does not apply to local storage/);
});

test('url: s3://bucket/prefix with every flag; an endpoint turns on path style; URI parameters; flag beats URI', () => {
  const s = s3('s3://my-bucket/some/prefix/', {
    flags: { 's3.endpoint': 'http://127.0.0.1:9000/', 's3.region': 'eu-west-1', 's3.sse': 'aws:kms', 's3.sse-kms-key-id': 'arn:aws:kms:k', 's3.storage-class': 'STANDARD_IA' },
  });
  assert.deepEqual(
    { ...s, displayUrl: undefined },
    {
      kind: 's3', bucket: 'my-bucket', prefix: 'some/prefix', endpoint: 'http://127.0.0.1:9000', region: 'eu-west-1',
      sse: 'aws:kms', sseKmsKeyId: 'arn:aws:kms:k', storageClass: 'STANDARD_IA', forcePathStyle: true, displayUrl: undefined,
    },
  );
  assert.equal(s3('s3://bkt').forcePathStyle, false);
  assert.equal(s3('s3://bkt').prefix, '');
  assert.equal(s3('s3://bkt', { flags: { 's3.force-path-style': true } }).forcePathStyle, true);
  assert.equal(s3('s3://bkt?endpoint=http%3A%2F%2Fh%3A1&force-path-style=false').forcePathStyle, false);
  const viaUri = s3('s3://bkt/p?sse=aws%3Akms&sse-kms-key-id=K1&region=r1');
  assert.equal(viaUri.sse, 'aws:kms');
  assert.equal(viaUri.sseKmsKeyId, 'K1');
  assert.equal(viaUri.region, 'r1');
  assert.equal(s3('s3://bkt/p?region=r1', { flags: { 's3.region': 'r2' } }).region, 'r2', 'flag > URI');
  assert.equal(s3('s3://bkt/p', { flags: { 's3.sse': 'AES256' } }).sse, 'AES256');
});

test('url: S3 bad combinations name the flag and what to do', () => {
  refused(() => s3('s3://bkt', { flags: { 's3.sse-kms-key-id': 'K' } }), /--s3\.sse-kms-key-id needs --s3\.sse aws:kms/);
  refused(() => s3('s3://bkt', { flags: { 's3.sse': 'AES256', 's3.sse-kms-key-id': 'K' } }), /--s3\.sse-kms-key-id needs --s3\.sse aws:kms/);
  refused(() => s3('s3://bkt?sse-kms-key-id=K'), /URI parameter sse-kms-key-id needs --s3\.sse aws:kms/);
  refused(() => s3('s3://bkt', { flags: { 's3.sse': 'aes256' } }), /--s3\.sse must be aws:kms or AES256/);
  refused(() => s3('s3://bkt', { flags: { 's3.endpoint': 'ftp://x' } }), /--s3\.endpoint must be an http/);
  refused(() => s3('s3://bkt?bogus=1'), /unknown query parameter "bogus" for s3:\/\//);
  refused(() => s3('s3:///prefix'), /no bucket/);
  refused(() => s3('s3://Bad_Bucket/p'), /not a valid S3 bucket name/);
  refused(() => s3('s3://bkt', { flags: { 'azblob.encryption-scope': 's' } }), /--azblob\.encryption-scope does not apply to S3 storage/);
  refused(() => s3('s3://bkt?region=a&region=b'), /given twice/);
});

test('url: azure://container/prefix: account, endpoint, scope and key from flags, URI parameters (percent-encoded) and environment', () => {
  const s = az('azure://ctr/pre/fix', { flags: { 'azblob.endpoint': 'https://acct.blob.example/', 'azblob.encryption-scope': 'scope1' } });
  assert.equal(s.container, 'ctr');
  assert.equal(s.prefix, 'pre/fix');
  assert.equal(s.endpoint, 'https://acct.blob.example');
  assert.equal(s.encryptionScope, 'scope1');
  assert.equal(s.encryptionKey, undefined);
  assert.equal(az(`azure://ctr/p?encryption-key=${encodeURIComponent(KEY)}`).encryptionKey, KEY);
  assert.equal(az('azure://ctr/p', { flags: { 'azblob.encryption-key': KEY } }).encryptionKey, KEY);
  assert.equal(az('azure://ctr/p', { env: { AZURE_ENCRYPTION_KEY: KEY } }).encryptionKey, KEY);
  assert.equal(az('azure://ctr/p?encryption-scope=s2').encryptionScope, 's2');
  assert.equal(az('azblob://ctr/p').kind, 'azure', "BR's azblob:// spelling");
  // Account and its key from the environment, as BR reads them.
  const fromEnv = parseStorageUrl('azure://ctr/p', { env: { AZURE_STORAGE_ACCOUNT: 'envacct', AZURE_STORAGE_KEY: 'ZW52a2V5' } }) as AzureStorageSpec;
  assert.equal(fromEnv.accountName, 'envacct');
  assert.equal(fromEnv.accountKey, 'ZW52a2V5');
  const fromUri = parseStorageUrl('azure://ctr/p?account-name=uacct&endpoint=https%3A%2F%2Fe.example&sas-token=sv%3D1%26sig%3Dx', { env: {} }) as AzureStorageSpec;
  assert.equal(fromUri.accountName, 'uacct');
  assert.equal(fromUri.endpoint, 'https://e.example');
  assert.equal(fromUri.sasToken, 'sv=1&sig=x');
});

test('url: precedence is flag > URI parameter > environment variable', () => {
  const k1 = randomBytes(32).toString('base64');
  const k2 = randomBytes(32).toString('base64');
  const k3 = randomBytes(32).toString('base64');
  const url = `azure://ctr/p?encryption-key=${encodeURIComponent(k2)}&account-name=uri`;
  const env = { AZURE_ENCRYPTION_KEY: k3, AZURE_STORAGE_ACCOUNT: 'env' };
  const all = parseStorageUrl(url, { flags: { 'azblob.encryption-key': k1, 'azblob.account-name': 'flag' }, env }) as AzureStorageSpec;
  assert.equal(all.encryptionKey, k1);
  assert.equal(all.accountName, 'flag');
  const uriEnv = parseStorageUrl(url, { env }) as AzureStorageSpec;
  assert.equal(uriEnv.encryptionKey, k2);
  assert.equal(uriEnv.accountName, 'uri');
  const envOnly = parseStorageUrl('azure://ctr/p', { env }) as AzureStorageSpec;
  assert.equal(envOnly.encryptionKey, k3);
  assert.equal(envOnly.accountName, 'env');
});

test('url: Azure bad combinations name the flag and what to do, never the key', () => {
  refused(() => az('azure://ctr/p', { flags: { 'azblob.encryption-scope': 's', 'azblob.encryption-key': KEY } }), /encryption scope \(--azblob\.encryption-scope\) and a customer-provided key \(--azblob\.encryption-key\).*remove one/);
  refused(() => az('azure://ctr/p?encryption-scope=s', { env: { AZURE_ENCRYPTION_KEY: KEY } }), /\(URI parameter encryption-scope\).*\(AZURE_ENCRYPTION_KEY\).*unset AZURE_ENCRYPTION_KEY/);
  const short = randomBytes(16).toString('base64');
  refused(() => az('azure://ctr/p', { flags: { 'azblob.encryption-key': short } }), /from --azblob\.encryption-key is not the base64 of 32 bytes.*openssl rand -base64 32/);
  refused(() => az('azure://ctr/p', { flags: { 'azblob.encryption-key': 'not base64 at all!!!!!!!!!!!!!!!!!!!!!!!!!' } }), /not the base64 of 32 bytes/);
  // A `+` left raw in the URI decodes as itself here, but `%` must be encoded.
  refused(() => az('azure://ctr/p?encryption-key=abc%zz'), /not valid percent-encoding/);
  refused(() => az(`azure://ctr/p?encryption-key=${short}`), /URI parameter encryption-key is not the base64 of 32 bytes.*percent-encode/);
  refused(() => az('azure://ctr/p?encryption_key=x'), /unknown query parameter "encryption_key" for azure:\/\/.*known: account-name/);
  refused(() => parseStorageUrl('azure://ctr/p', { env: {} }), /no storage account: pass --azblob\.account-name/);
  refused(() => az('azure:///p'), /no container/);
  refused(() => az('azure://Bad--Name/p'), /not a valid Azure container name/);
  refused(() => az('azure://ctr/p', { flags: { 's3.region': 'r' } }), /--s3\.region does not apply to Azure Blob storage/);
  refused(() => parseStorageUrl('gcs://bucket/p'), /unknown scheme "gcs:\/\/".*local:\/\/\/path/);
  refused(() => parseStorageUrl(''), /empty/);
  refused(() => parseStorageUrl('s3://bkt/p#frag'), /no #fragment/);
});

test('url: redactStorageUrl hides every parameter value but the harmless ones, and a password in the authority', () => {
  assert.equal(
    redactStorageUrl(`azure://ctr/p?account-name=a&encryption-key=${encodeURIComponent(KEY)}&account-key=x&sas-token=y&endpoint=e&encryption-scope=s`),
    'azure://ctr/p?account-name=a&encryption-key=REDACTED&account-key=REDACTED&sas-token=REDACTED&endpoint=e&encryption-scope=s',
  );
  assert.equal(redactStorageUrl('azure://ctr/p?encryption_key=typo&flag'), 'azure://ctr/p?encryption_key=REDACTED&flag');
  assert.equal(redactStorageUrl('s3://user:secret@bkt/p'), 's3://user:REDACTED@bkt/p');
  assert.equal(redactStorageUrl('/plain/path?not=a&query'), '/plain/path?not=a&query');
  assert.equal(redactStorageUrl('s3://b/p?region=r#secret'), 's3://b/p?region=r#REDACTED');
  // displayUrl is the resolved form, wherever the key came from.
  assert.equal(
    az('azure://ctr/p', { flags: { 'azblob.encryption-key': KEY } }).displayUrl,
    'azure://ctr/p?account-name=acct&account-key=REDACTED&encryption-key=REDACTED',
  );
  assert.equal(
    s3('s3://bkt/p', { flags: { 's3.sse': 'aws:kms', 's3.sse-kms-key-id': 'K', 's3.endpoint': 'http://h:1' } }).displayUrl,
    's3://bkt/p?endpoint=http%3A%2F%2Fh%3A1&sse=aws%3Akms&sse-kms-key-id=K',
  );
});

test('url: a key or account key never appears in displayUrl or in any error message (property)', () => {
  // At least 12 bytes: a shorter secret could match ordinary text by chance.
  const secretBytes = fc.uint8Array({ minLength: 12, maxLength: 48 });
  const where = fc.constantFrom('flag', 'uri', 'env');
  // Each case may add something that makes the parse fail after the secret was read.
  const breakage = fc.constantFrom('none', 'scope', 'unknown-param', 'bad-endpoint', 'no-account', 'bad-kms', 'dup');
  fc.assert(
    fc.property(secretBytes, secretBytes, where, where, breakage, (keyBytes, acctBytes, keyWhere, acctWhere, broken) => {
      const key = Buffer.from(keyBytes).toString('base64');
      const acctKey = Buffer.from(acctBytes).toString('base64');
      const q: string[] = [];
      const flags: Record<string, string> = {};
      const env: Record<string, string> = {};
      const put = (w: string, param: string, flag: string, envName: string, v: string): void => {
        if (w === 'uri') q.push(`${param}=${encodeURIComponent(v)}`);
        else if (w === 'flag') flags[flag] = v;
        else env[envName] = v;
      };
      put(keyWhere, 'encryption-key', 'azblob.encryption-key', 'AZURE_ENCRYPTION_KEY', key);
      put(acctWhere, 'account-key', 'azblob.account-key', 'AZURE_STORAGE_KEY', acctKey);
      if (broken !== 'no-account') flags['azblob.account-name'] = 'acct';
      if (broken === 'scope') flags['azblob.encryption-scope'] = 's';
      if (broken === 'unknown-param') q.push(`mystery=${encodeURIComponent(key)}`);
      if (broken === 'bad-endpoint') flags['azblob.endpoint'] = 'notaurl';
      if (broken === 'bad-kms') flags['s3.sse-kms-key-id'] = 'k';
      if (broken === 'dup' && keyWhere === 'uri') q.push(`encryption-key=${encodeURIComponent(key)}`);
      const url = `azure://ctr/p${q.length > 0 ? '?' + q.join('&') : ''}`;
      let text: string;
      try {
        text = parseStorageUrl(url, { flags, env }).displayUrl;
      } catch (e) {
        assert.ok(isTdekvError(e, 'INVALID_ARGUMENT'), String(e));
        text = e.message;
      }
      for (const secret of [key, acctKey]) {
        assert.ok(!text.includes(secret), `${secret} in: ${text}`);
        assert.ok(!text.includes(encodeURIComponent(secret)), `${secret} (encoded) in: ${text}`);
      }
    }),
    { numRuns: 500, seed: 14 },
  );
});

test('url: STORAGE_FLAGS lists every flag once with commander attribute names; storageFlagsFromOptions reads them back', () => {
  const names = STORAGE_FLAGS.map((f) => f.name);
  assert.equal(new Set(names).size, names.length);
  const byName = new Map(STORAGE_FLAGS.map((f) => [f.name, f]));
  assert.equal(byName.get('s3.sse-kms-key-id')?.attribute, 's3.sseKmsKeyId');
  assert.equal(byName.get('s3.sse-kms-key-id')?.flags, '--s3.sse-kms-key-id <id>');
  assert.equal(byName.get('s3.force-path-style')?.flags, '--s3.force-path-style');
  assert.deepEqual(storageFlagsFromOptions({ 's3.sseKmsKeyId': 'K', 'azblob.encryptionKey': KEY, 's3.forcePathStyle': true, other: 1 }), {
    's3.sse-kms-key-id': 'K',
    's3.force-path-style': true,
    'azblob.encryption-key': KEY,
  });
});
