import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { configFromOptions, parseConfig, type OptionNamesPolicy } from '../src/config/config.js';
import { isTdekvError } from '../src/errors.js';
import { TdekvLevel } from '../src/level/tdekv-level.js';
import { silentLogger } from '../src/log/logger.js';
import { withTempDir, writeKeyFile } from './support/fs-helpers.js';
import { pathExists } from '../src/keys/atomic-file.js';

/*
 * The embedded API's options go through the TOML config's schema and validators
 * (configFromOptions in src/config/embedded-options.ts): same settings, defaults and rules, errors
 * that name the option in camelCase.
 */

const WHERE = 'TdekvLevel options (/data/db)';

const read = (options: Record<string, unknown>, policy?: OptionNamesPolicy) => configFromOptions(options, WHERE, policy);

/** Asserts CONFIG_INVALID naming WHERE and containing every fragment; returns the message. */
function rejects(options: Record<string, unknown>, ...fragments: (string | RegExp)[]): string {
  return rejectsWith(() => read(options), WHERE, ...fragments);
}

function rejectsWith(fn: () => unknown, where: string, ...fragments: (string | RegExp)[]): string {
  let message = '';
  assert.throws(fn, (err: unknown) => {
    assert.ok(isTdekvError(err, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${String(err)}`);
    message = err.message;
    return true;
  });
  assert.ok(message.includes(where), `message should name ${where}: ${message}`);
  for (const f of fragments) {
    if (typeof f === 'string') assert.ok(message.includes(f), `message should contain ${JSON.stringify(f)}: ${message}`);
    else assert.match(message, f);
  }
  return message;
}

describe('configFromOptions', () => {
  it('fills the same defaults as an empty TOML file', () => {
    const toml = parseConfig('', { source: 'x.toml', baseDir: '/etc/tdekv' });
    assert.deepEqual(read({}), { encryption: toml.security.encryption, engine: {}, walRecoveryMode: toml.storage.walRecoveryMode });
  });

  it('takes walRecoveryMode as [storage] wal-recovery-mode, and refuses other values naming the allowed ones', () => {
    assert.equal(read({ walRecoveryMode: 'point-in-time' }).walRecoveryMode, 'point-in-time');
    assert.throws(() => read({ walRecoveryMode: 'skip-any-corrupted-records' }), (err: unknown) => isTdekvError(err, 'CONFIG_INVALID') && err.message.includes('walRecoveryMode') && err.message.includes('point-in-time'));
  });

  it('gives the same config as the equivalent TOML', () => {
    const toml = parseConfig(
      `[security.encryption]
data-encryption-method = "sm4-ctr"
data-key-rotation-period = "1h30m"
enable-file-dictionary-log = false
file-dictionary-rewrite-threshold = 42

[security.encryption.master-key]
type = "file"
path = "/run/tdekv/master.key"

[security.encryption.previous-master-key]
type = "kms"
key-id = "0987dcba"
region = "us-west-2"
endpoint = "https://kms.example.internal"
timeout = "5s"
max-attempts = 4
`,
      { source: 'x.toml', baseDir: '/etc/tdekv' },
    );
    const options = read({
      dataEncryptionMethod: 'sm4-ctr',
      dataKeyRotationPeriod: '1h30m',
      enableFileDictionaryLog: false,
      fileDictionaryRewriteThreshold: 42,
      masterKey: { type: 'file', path: '/run/tdekv/master.key' },
      previousMasterKey: { type: 'kms', keyId: '0987dcba', region: 'us-west-2', endpoint: 'https://kms.example.internal', timeout: '5s', maxAttempts: 4 },
    });
    assert.deepEqual(options.encryption, toml.security.encryption);
  });

  it('takes durations as strings or milliseconds', () => {
    assert.equal(read({ dataKeyRotationPeriod: '168h' }).encryption.dataKeyRotationPeriodMs, 604_800_000);
    assert.equal(read({ dataKeyRotationPeriod: 90_000 }).encryption.dataKeyRotationPeriodMs, 90_000);
    const kms = read({ masterKey: { type: 'kms', keyId: 'k', region: 'r', timeout: 2500 } }).encryption.masterKey;
    assert.deepEqual(kms, { type: 'kms', keyId: 'k', region: 'r', timeoutMs: 2500, maxAttempts: 3 });
  });

  it('resolves a relative master key path against the current directory', () => {
    const { masterKey } = read({ dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path: 'keys/master.key' } }).encryption;
    assert.deepEqual(masterKey, { type: 'file', path: resolve('keys/master.key') });
  });

  it('reads engine tuning, leaving absent ones to the engine', () => {
    assert.deepEqual(read({ writeBufferSize: 65_536, blockCacheSize: 0, bloomFilterBitsPerKey: 0 }).engine, {
      writeBufferSize: 65_536,
      blockCacheSize: 0,
      bloomFilterBitsPerKey: 0,
    });
  });

  it('takes engine sizes as bytes or as size strings, like the [engine] section', () => {
    assert.deepEqual(read({ writeBufferSize: '16MiB', blockSize: '4KiB', blockCacheSize: '1.5GiB', targetFileSizeBase: 8_388_608 }).engine, {
      writeBufferSize: 16 * 2 ** 20,
      blockSize: 4096,
      blockCacheSize: 1.5 * 2 ** 30,
      targetFileSizeBase: 8 * 2 ** 20,
    });
    rejects({ writeBufferSize: '1KiB' }, 'writeBufferSize = "1KiB"', '1KiB is out of range', 'at least 4KiB (4096 bytes)');
  });

  it('treats undefined as absent', () => {
    assert.deepEqual(read({ dataEncryptionMethod: undefined, masterKey: undefined, writeBufferSize: undefined }), read({}));
  });

  it('rejects a bad method, naming the option in camelCase and the methods', () => {
    const message = rejects({ dataEncryptionMethod: 'aes999' }, 'dataEncryptionMethod = "aes999"', 'plaintext | aes128-ctr | aes192-ctr | aes256-ctr | sm4-ctr');
    assert.ok(!message.includes('data-encryption-method'), `kebab-case TOML names leaked into an options error: ${message}`);
    rejects({ dataEncryptionMethod: 256 }, 'dataEncryptionMethod must be a string', 'the number 256');
  });

  it('rejects bad rotation periods with the accepted forms', () => {
    rejects({ dataKeyRotationPeriod: '7 days' }, 'dataKeyRotationPeriod = "7 days"', '"168h"', 'or a number of milliseconds');
    rejects({ dataKeyRotationPeriod: 500 }, 'dataKeyRotationPeriod = 500', 'shorter than 1s');
    rejects({ dataKeyRotationPeriod: 1.5e3 + 0.5 }, 'dataKeyRotationPeriod', 'whole number of milliseconds');
    rejects({ dataKeyRotationPeriod: true }, 'dataKeyRotationPeriod must be a string or a number', 'the boolean true');
  });

  it('rejects bad integers and booleans', () => {
    rejects({ fileDictionaryRewriteThreshold: 0 }, 'fileDictionaryRewriteThreshold = 0', 'an integer >= 1');
    rejects({ fileDictionaryRewriteThreshold: 1.5 }, 'fileDictionaryRewriteThreshold must be an integer', 'the number 1.5');
    rejects({ fileDictionaryRewriteThreshold: '10' }, 'fileDictionaryRewriteThreshold must be an integer', 'the string "10"');
    rejects({ enableFileDictionaryLog: 'yes' }, 'enableFileDictionaryLog must be a boolean', 'true | false');
    rejects({ writeBufferSize: -1 }, 'writeBufferSize = -1', 'negative sizes are not allowed', 'at least 4KiB (4096 bytes)');
    rejects({ writeBufferSize: 65_536.5 }, 'writeBufferSize = 65536.5', 'not a whole number of bytes');
    rejects({ numLevels: 100 }, 'numLevels = 100', 'from 2 to 20');
    rejects({ level0SlowdownWritesTrigger: 50 }, 'level0SlowdownWritesTrigger (50) must not exceed level0StopWritesTrigger (36)');
  });

  it('needs a master key for an encrypting method, with an example', () => {
    rejects({ dataEncryptionMethod: 'aes256-ctr' }, 'dataEncryptionMethod = "aes256-ctr" needs a master key', 'no masterKey option', "type: 'file'");
    rejects({ previousMasterKey: { type: 'plaintext' } }, 'previousMasterKey is set without masterKey');
  });

  it('checks the master key object like the TOML section', () => {
    rejects({ masterKey: '/run/tdekv/master.key' }, 'masterKey must be an object', 'a string');
    rejects({ masterKey: {} }, 'masterKey.type is required', "'file' | 'kms' | 'plaintext'");
    rejects({ masterKey: { type: 'hsm' } }, 'masterKey.type = "hsm"', 'file | kms | plaintext');
    rejects({ masterKey: { type: 'file' } }, 'masterKey.path is required', "in masterKey with type 'file'");
    rejects({ masterKey: { type: 'file', path: '' } }, 'masterKey.path = ""', 'must not be empty');
    rejects({ masterKey: { type: 'kms', keyId: 'k' } }, 'masterKey.region is required');
    rejects({ masterKey: { type: 'kms', keyID: 'k', region: 'r' } }, 'unknown option masterKey.keyID', 'Did you mean keyId?');
    rejects({ masterKey: { type: 'file', path: '/k', region: 'r' } }, 'unknown option masterKey.region', "(region belongs to type 'kms')");
    rejects({ masterKey: { type: 'kms', keyId: 'k', region: 'r', maxAttempts: 11 } }, 'masterKey.maxAttempts = 11', 'from 1 to 10');
    rejects({ masterKey: { type: 'kms', keyId: 'k', region: 'r', endpoint: 'ftp://x' } }, 'masterKey.endpoint = "ftp://x"', 'http:// or https://');
    rejects({ previousMasterKey: { type: 'kms', keyId: 'k', region: 'r', timeout: '0s' }, masterKey: { type: 'plaintext' } }, 'previousMasterKey.timeout = "0s"');
  });

  it('rejects unknown options with a suggestion; near-misses only, when asked', () => {
    rejects({ dataEncrytionMethod: 'aes256-ctr' }, 'unknown option dataEncrytionMethod', 'Did you mean dataEncryptionMethod?');
    rejects({ 'data-encryption-method': 'aes256-ctr' }, 'unknown option data-encryption-method', 'Did you mean dataEncryptionMethod?');
    rejects({ userland: 1 }, 'unknown option userland', 'Allowed in the options: dataEncryptionMethod');
    const policy: OptionNamesPolicy = { passthrough: ['keyEncoding'], unknown: 'near-misses' };
    assert.deepEqual(read({ userland: 1, keyEncoding: 'json' }, policy), read({}));
    rejectsWith(() => read({ writeBuferSize: 1 << 20 }, policy), WHERE, 'unknown option writeBuferSize', 'Did you mean writeBufferSize?');
    rejectsWith(() => read({ keyEncodings: 'json' }, policy), WHERE, 'Did you mean keyEncoding?');
  });

  it('never echoes an unknown option value', () => {
    const message = rejects({ masterKeyHex: 'deadbeef'.repeat(8) }, 'unknown option masterKeyHex');
    assert.ok(!message.includes('deadbeef'), message);
  });
});

describe('TdekvLevel options', () => {
  const where = 'TdekvLevel options (/nonexistent/db)';

  it('throws CONFIG_INVALID from the constructor, naming the option', () => {
    rejectsWith(() => new TdekvLevel('/nonexistent/db', { dataEncryptionMethod: 'aes999' as never }), where, 'dataEncryptionMethod = "aes999"');
    rejectsWith(() => new TdekvLevel('/nonexistent/db', { dataEncryptionMethod: 'aes256-ctr' }), where, 'needs a master key');
    rejectsWith(() => new TdekvLevel('/nonexistent/db', { blockSize: 'big' as never }), where, 'blockSize = "big" is invalid', 'cannot read "big" as a size');
    rejectsWith(() => new TdekvLevel('/nonexistent/db', { adoptPlaintextFiles: 'yes' as never }), where, 'adoptPlaintextFiles must be a boolean');
    rejectsWith(() => new TdekvLevel('/nonexistent/db', { logger: { info() {} } as never }), where, 'logger must be a pino Logger');
    rejectsWith(() => new TdekvLevel('/nonexistent/db', { masterKy: { type: 'plaintext' } } as never), where, 'Did you mean masterKey?');
    rejectsWith(() => new TdekvLevel('/nonexistent/db', { encryption: {} } as never), where, 'unknown option encryption');
    rejectsWith(() => new TdekvLevel('', {}), 'location', 'non-empty string');
  });

  it('refuses the issue 9 item 22 example: encryption settings nested where they are not read', async () => {
    await withTempDir(async (dir) => {
      const { path } = await writeKeyFile(dir);
      const location = join(dir, 'db');
      const message = rejectsWith(
        () => new TdekvLevel(location, { encryption: { dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path } } } as never),
        `TdekvLevel options (${location})`,
        'unknown option encryption',
        'options are flat',
        'dataEncryptionMethod',
        'Allowed in the options: dataEncryptionMethod',
        'masterKey',
        'keyEncoding',
        'hookOptions',
      );
      assert.ok(!message.includes(path), 'the value is not echoed');
      // Nothing was created: the store did not open as plaintext.
      assert.equal(await pathExists(location), false);
    });
  });

  it('refuses any unknown top-level option, not only near-misses', () => {
    for (const name of ['userland', 'encrypt', 'security', 'engine', 'cacheSize', 'sync']) {
      rejectsWith(() => new TdekvLevel('/nonexistent/db', { [name]: 1 } as never), where, `unknown option ${name}`, 'Allowed in the options');
    }
  });

  it('refuses unknown and misplaced options in masterKey and hookOptions', () => {
    rejectsWith(() => new TdekvLevel('/nonexistent/db', { dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path: '/k', mode: 0o600 } } as never), where, 'unknown option masterKey.mode');
    rejectsWith(() => new TdekvLevel('/nonexistent/db', { hookOptions: { masterKey: { type: 'plaintext' } } }), where, 'hookOptions holds masterKey', 'top-level option');
    rejectsWith(() => new TdekvLevel('/nonexistent/db', { hookOptions: { keyEncoding: 'json' } }), where, 'hookOptions holds keyEncoding');
    rejectsWith(() => new TdekvLevel('/nonexistent/db', { hookOptions: 'x' as never }), where, 'hookOptions must be a plain object');
  });

  it('refuses a non-TLS KMS endpoint in the options too (issue 9 item 19)', () => {
    rejectsWith(
      () => new TdekvLevel('/nonexistent/db', { dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'kms', keyId: 'k', region: 'r', endpoint: 'http://kms.example.com' } }),
      where,
      'masterKey.endpoint = "http://kms.example.com" is refused',
      'allow-insecure-endpoint',
    );
  });

  it("passes abstract-level's options and the application's hookOptions on to the hooks, and nothing of tdekv's", async () => {
    await withTempDir(async (dir) => {
      const db = new TdekvLevel(join(dir, 'db'), { logger: silentLogger(), writeBufferSize: 65_536, valueEncoding: 'json', hookOptions: { userland: 123 } });
      let seen: unknown;
      db.hooks.postopen.add(async (options: unknown) => void (seen = options));
      await db.open();
      assert.deepEqual(seen, { createIfMissing: true, errorIfExists: false, userland: 123 });
      await db.put('k', { a: 1 } as never);
      assert.deepEqual(await db.get('k'), { a: 1 });
      await db.close();
      await db.open({ hookOptions: { other: 456 } } as never);
      assert.deepEqual(seen, { createIfMissing: true, errorIfExists: false, userland: 123, other: 456 });
      await db.close();
    });
  });

  it('refuses unknown open() options', async () => {
    await withTempDir(async (dir) => {
      const db = new TdekvLevel(join(dir, 'db'), { hookOptions: { userland: 1 } });
      await db.open();
      await db.close();
      await assert.rejects(db.open({ encryption: { dataEncryptionMethod: 'aes256-ctr' } } as never), (err: Error & { cause?: unknown }) => {
        assert.ok(isTdekvError(err.cause, 'CONFIG_INVALID'), String(err.cause));
        assert.match(err.cause.message, /unknown open\(\) option encryption\. Allowed in open\(\): createIfMissing, errorIfExists, passive, hookOptions/);
        return true;
      });
      await db.open({ userland: 2 } as never); // a hook option the constructor declared
      await db.close();
    });
  });

  it('refuses tdekv settings given to open() instead of the constructor', async () => {
    const db = new TdekvLevel('/nonexistent/db');
    // Called in the constructor's tick, so this is the open (no automatic one is made).
    await assert.rejects(
      db.open({ masterKey: { type: 'plaintext' } } as never),
      (err: Error & { code?: string; cause?: unknown }) => {
        assert.equal(err.code, 'LEVEL_DATABASE_NOT_OPEN');
        assert.ok(isTdekvError(err.cause, 'CONFIG_INVALID'), String(err.cause));
        assert.match(err.cause.message, /masterKey can only be given to the constructor/);
        return true;
      },
    );
    await db.close();
  });
});
