import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { KmsMasterKeyConfig } from '../src/config/types.js';
import { EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { randomBytes } from 'node:crypto';
import { KMS_ENCRYPTION_CONTEXT, KmsMasterKey, kmsCallDeadlineMs } from '../src/masterkey/kms.js';
import { isLoopbackHost } from '../src/masterkey/kms-endpoint.js';
import { FakeKms, closedPort } from './support/fake-kms.js';
import { expectCode } from './support/fs-helpers.js';

const KEY_A = 'arn:aws:kms:eu-west-1:111122223333:key/aaaaaaaa-0000-0000-0000-000000000001';
const KEY_B = 'arn:aws:kms:eu-west-1:111122223333:key/bbbbbbbb-0000-0000-0000-000000000002';

function config(endpoint: string, overrides: Partial<KmsMasterKeyConfig> = {}): KmsMasterKeyConfig {
  return { type: 'kms', keyId: KEY_A, region: 'eu-west-1', endpoint, timeoutMs: 2000, maxAttempts: 3, ...overrides };
}

/** Runs `fn` with a master key that is always closed, so no client keeps the process alive. */
async function withKey<T>(cfg: KmsMasterKeyConfig, fn: (mk: KmsMasterKey) => Promise<T>): Promise<T> {
  const mk = new KmsMasterKey(cfg);
  try {
    return await fn(mk);
  } finally {
    mk.close();
  }
}

describe('KmsMasterKey against a fake KMS', () => {
  let kms: FakeKms;

  before(async () => {
    kms = await new FakeKms([KEY_A, KEY_B]).start();
  });

  after(async () => {
    await kms.close();
  });

  function reset(): void {
    kms.deny = false;
    kms.hang = false;
    kms.failNext(0);
    for (const op of Object.keys(kms.calls) as Array<keyof FakeKms['calls']>) kms.calls[op] = 0;
  }

  test('describes itself without secrets', () => {
    const mk = new KmsMasterKey(config(kms.url));
    try {
      assert.equal(mk.type, 'kms');
      assert.equal(mk.protectsKeys, true);
      assert.equal(mk.description, `kms key-id=${KEY_A} region=eu-west-1 endpoint=${kms.url}`);
      assert.ok(!mk.description.includes(process.env.AWS_SECRET_ACCESS_KEY!));
    } finally {
      mk.close();
    }
  });

  test('round trip: one GenerateDataKey, one Decrypt, same 32 bytes', async () => {
    reset();
    await withKey(config(kms.url), async (mk) => {
      const { key, envelope } = await mk.newWrappingKey();
      assert.equal(key.length, 32);
      assert.ok(envelope.length > 32);
      assert.equal(envelope.indexOf(key), -1, 'the envelope must not contain the key');
      const recovered = await mk.recoverWrappingKey(envelope);
      assert.deepEqual(recovered, key);
      // Copied out of the SDK into memory of their own, never a slice of Node's shared pool.
      assert.equal(key.buffer.byteLength, 32);
      assert.equal(recovered.buffer.byteLength, 32);
      assert.deepEqual(kms.calls, { GenerateDataKey: 1, Decrypt: 1, Encrypt: 0 });
    });
  });

  test('the envelope is bound to tdekv\'s encryption context: a blob made for anything else is refused', async () => {
    reset();
    // Under the same KMS key, but without tdekv's context (e.g. another application's data key).
    const client = new KMSClient({ region: 'eu-west-1', endpoint: kms.url });
    try {
      const foreign = await client.send(new EncryptCommand({ KeyId: KEY_A, Plaintext: randomBytes(32) }));
      await withKey(config(kms.url), async (mk) => {
        await assert.rejects(mk.recoverWrappingKey(Buffer.from(foreign.CiphertextBlob!)), expectCode('MASTER_KEY_WRONG', KEY_A));
        // And tdekv's own envelope still opens, so the context is what made the difference.
        const { key, envelope } = await mk.newWrappingKey();
        assert.deepEqual(await mk.recoverWrappingKey(envelope), key);
      });
    } finally {
      client.destroy();
    }
    assert.deepEqual(KMS_ENCRYPTION_CONTEXT, { purpose: 'tdekv-key-dictionary' });
  });

  test('a fresh client (a later open) recovers the key from the envelope alone', async () => {
    reset();
    const { key, envelope } = await withKey(config(kms.url), (mk) => mk.newWrappingKey());
    const recovered = await withKey(config(kms.url), (mk) => mk.recoverWrappingKey(envelope));
    assert.deepEqual(recovered, key);
  });

  test('a 500 is retried and the call succeeds within max-attempts', async () => {
    reset();
    kms.failNext(1, 500);
    await withKey(config(kms.url, { maxAttempts: 2 }), async (mk) => {
      const { key } = await mk.newWrappingKey();
      assert.equal(key.length, 32);
    });
    assert.equal(kms.calls.GenerateDataKey, 2);
  });

  test('5xx on every attempt is MASTER_KEY_UNAVAILABLE after max-attempts', async () => {
    reset();
    kms.failNext(10, 503);
    await withKey(config(kms.url, { maxAttempts: 2 }), async (mk) => {
      await assert.rejects(mk.newWrappingKey(), expectCode('MASTER_KEY_UNAVAILABLE', KEY_A, 'HTTP 503', 'nothing on disk was changed'));
    });
    assert.equal(kms.calls.GenerateDataKey, 2);
  });

  test('access denied is MASTER_KEY_UNAVAILABLE naming the key and the KMS error', async () => {
    reset();
    kms.deny = true;
    await withKey(config(kms.url), async (mk) => {
      await assert.rejects(
        mk.newWrappingKey(),
        expectCode('MASTER_KEY_UNAVAILABLE', KEY_A, 'AccessDeniedException', 'eu-west-1', kms.url, 'kms:GenerateDataKey'),
      );
    });
  });

  test('an unknown key is MASTER_KEY_UNAVAILABLE with NotFoundException', async () => {
    reset();
    const missing = 'arn:aws:kms:eu-west-1:111122223333:key/ffffffff-0000-0000-0000-00000000dead';
    await withKey(config(kms.url, { keyId: missing }), async (mk) => {
      await assert.rejects(mk.newWrappingKey(), expectCode('MASTER_KEY_UNAVAILABLE', missing, 'NotFoundException', 'key-id'));
    });
  });

  test('an envelope sealed under key A, opened with key B, is MASTER_KEY_WRONG', async () => {
    reset();
    const { envelope } = await withKey(config(kms.url), (mk) => mk.newWrappingKey());
    await withKey(config(kms.url, { keyId: KEY_B }), async (mk) => {
      await assert.rejects(mk.recoverWrappingKey(envelope), expectCode('MASTER_KEY_WRONG', KEY_B, 'IncorrectKeyException', 'previous-master-key'));
    });
  });

  test('a tampered envelope is MASTER_KEY_WRONG (InvalidCiphertextException)', async () => {
    reset();
    const { envelope } = await withKey(config(kms.url), (mk) => mk.newWrappingKey());
    envelope[envelope.length - 1]! ^= 1;
    await withKey(config(kms.url), async (mk) => {
      await assert.rejects(mk.recoverWrappingKey(envelope), expectCode('MASTER_KEY_WRONG', 'InvalidCiphertextException'));
    });
  });

  test('an empty envelope is refused without asking KMS', async () => {
    reset();
    await withKey(config(kms.url), async (mk) => {
      await assert.rejects(mk.recoverWrappingKey(Buffer.alloc(0)), expectCode('KEY_DICTIONARY_DAMAGED'));
    });
    assert.equal(kms.calls.Decrypt, 0);
  });

  test('an unreachable endpoint is MASTER_KEY_UNAVAILABLE quickly', async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const started = Date.now();
    await withKey(config(endpoint, { timeoutMs: 500, maxAttempts: 2 }), async (mk) => {
      await assert.rejects(mk.newWrappingKey(), expectCode('MASTER_KEY_UNAVAILABLE', endpoint, KEY_A, 'endpoint/region'));
    });
    assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);
  });

  test('a server that never answers is MASTER_KEY_UNAVAILABLE well within the deadline', async () => {
    reset();
    kms.hang = true;
    const started = Date.now();
    try {
      await withKey(config(kms.url, { timeoutMs: 300, maxAttempts: 2 }), async (mk) => {
        await assert.rejects(mk.recoverWrappingKey(Buffer.from('x')), expectCode('MASTER_KEY_UNAVAILABLE', kms.url, 'did not answer'));
      });
    } finally {
      kms.hang = false;
    }
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 5000, `took ${elapsed} ms`);
    assert.equal(kms.calls.Decrypt, 2, 'the per-attempt timeout is retried once');
  });

  test('the overall deadline holds even if the SDK itself never settles', async () => {
    // Stands in for anything inside the SDK that ignores both its timeouts and the signal.
    const realSend = KMSClient.prototype.send;
    KMSClient.prototype.send = (() => new Promise(() => {})) as typeof realSend;
    const started = Date.now();
    try {
      await withKey(config(kms.url, { timeoutMs: 100, maxAttempts: 1 }), async (mk) => {
        await assert.rejects(mk.newWrappingKey(), expectCode('MASTER_KEY_UNAVAILABLE', 'did not answer', 'DeadlineExceeded'));
      });
    } finally {
      KMSClient.prototype.send = realSend;
    }
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= kmsCallDeadlineMs(100, 1) - 50 && elapsed < 3000, `took ${elapsed} ms`);
  });

  test('invalid timeout or attempts are CONFIG_INVALID', () => {
    assert.throws(() => new KmsMasterKey(config(kms.url, { timeoutMs: 0 })), expectCode('CONFIG_INVALID'));
    assert.throws(() => new KmsMasterKey(config(kms.url, { maxAttempts: 0 })), expectCode('CONFIG_INVALID'));
  });
});

describe('KMS endpoint transport (issue 9 item 19)', () => {
  test('the backend refuses a non-loopback http:// endpoint even when the config was built by hand', () => {
    assert.throws(() => new KmsMasterKey(config('http://kms.example.com')), expectCode('CONFIG_INVALID', 'endpoint = "http://kms.example.com" is refused', 'allow-insecure-endpoint'));
    new KmsMasterKey(config('http://kms.example.com', { allowInsecureEndpoint: true })).close();
    new KmsMasterKey(config('https://kms.example.com')).close();
    new KmsMasterKey(config('http://127.0.0.1:1')).close();
  });

  test('isLoopbackHost knows 127.0.0.0/8, ::1 and localhost, and nothing else', () => {
    for (const host of ['127.0.0.1', '127.255.0.9', 'localhost', 'LOCALHOST', 'a.localhost', '[::1]', '::1', '[::ffff:7f00:1]']) assert.ok(isLoopbackHost(host), host);
    for (const host of ['128.0.0.1', '10.0.0.1', '0.0.0.0', '[::]', '[fe80::1]', 'localhost.example.com', '127.0.0.1.nip.io', '[::ffff:a00:1]']) assert.ok(!isLoopbackHost(host), host);
  });
});
