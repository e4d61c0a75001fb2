import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_SERVER, configFromOptions, loadConfig, parseConfig } from '../src/config/config.js';
import { resolveTuning } from '../src/engine/options.js';
import { formatDuration, parseDuration } from '../src/config/duration.js';
import { formatHostPort, parseHostPort } from '../src/util/host-port.js';
import { formatSize, parseSize } from '../src/config/size.js';
import type { TdekvConfig } from '../src/config/types.js';
import { isTdekvError } from '../src/errors.js';
import { expectCode } from './support/fs-helpers.js';

const OPTS = { source: '/etc/tdekv/tdekv.toml', baseDir: '/etc/tdekv' };

const parse = (text: string): TdekvConfig => parseConfig(text, OPTS);

/** Asserts a CONFIG_INVALID error naming the source file and containing every fragment. */
function rejects(text: string, ...fragments: (string | RegExp)[]): string {
  let message = '';
  assert.throws(
    () => parse(text),
    (err: unknown) => {
      assert.ok(isTdekvError(err, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${String(err)}`);
      message = err.message;
      return true;
    },
  );
  assert.ok(message.includes(OPTS.source), `message should name the source file: ${message}`);
  for (const f of fragments) {
    if (typeof f === 'string') assert.ok(message.includes(f), `message should contain ${JSON.stringify(f)}: ${message}`);
    else assert.match(message, f);
  }
  return message;
}

const SERVER_DEFAULTS = {
  addr: { host: '127.0.0.1', port: 6380 },
  statusAddr: { host: '127.0.0.1', port: 20180 },
  maxClients: 10_000,
  maxRequestSize: 512 * 1024 * 1024,
  clientQueryBufferLimit: 1024 * 1024 * 1024,
  maxmemoryClients: { percent: 10 },
  clientOutputBufferLimit: { hard: 0, soft: 0, softSeconds: 0 },
  readAhead: 'auto' as const,
};

const DESIGN_EXAMPLE = `
[storage]
data-dir = "./data"

[security.encryption]
data-encryption-method = "aes256-ctr"      # plaintext | aes128-ctr | aes192-ctr | aes256-ctr | sm4-ctr
data-key-rotation-period = "168h"          # 7 days
enable-file-dictionary-log = true
file-dictionary-rewrite-threshold = 1000000

[security.encryption.master-key]
type = "file"                               # file | kms | plaintext
path = "/run/tdekv/master.key"

[security.encryption.previous-master-key]  # only while rotating the master key
type = "kms"
key-id = "0987dcba-09fe-87dc-65ba-ab0987654321"
region = "us-west-2"
endpoint = "https://kms.us-west-2.amazonaws.com"
`;

describe('parseDuration / formatDuration', () => {
  it('accepts the TiKV forms', () => {
    assert.equal(parseDuration('168h'), 168 * 3_600_000);
    assert.equal(parseDuration('7d'), 7 * 86_400_000);
    assert.equal(parseDuration('30m'), 30 * 60_000);
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('1.5h'), 5_400_000);
    assert.equal(parseDuration('1.1h'), 3_960_000);
    assert.equal(parseDuration('1d2h3m4s5ms'), 86_400_000 + 2 * 3_600_000 + 3 * 60_000 + 4_000 + 5);
    assert.equal(parseDuration(' 7d '), 7 * 86_400_000);
  });

  it('rejects malformed durations, listing the accepted forms', () => {
    for (const bad of ['', '   ', '10', '1.5', '-5m', '5x', '1 h', '1h 30m', 'h', '1.h', '.5h', '30m1h', '1m30m', '5mm', '7days']) {
      assert.throws(() => parseDuration(bad), /expected a number followed by a unit .*"168h"/, `should reject ${JSON.stringify(bad)}`);
    }
  });

  it('formats compactly', () => {
    assert.equal(formatDuration(7 * 86_400_000), '7d');
    assert.equal(formatDuration(5_400_000), '1h30m');
    assert.equal(formatDuration(500), '500ms');
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(61_001), '1m1s1ms');
    assert.throws(() => formatDuration(-1));
  });

  it('round-trips every whole number of milliseconds', () => {
    fc.assert(fc.property(fc.nat({ max: 1e15 }), (ms) => parseDuration(formatDuration(ms)) === ms));
  });
});

describe('parseConfig', () => {
  it('parses the full example from DESIGN.md', () => {
    assert.deepEqual(parse(DESIGN_EXAMPLE), {
      storage: { dataDir: '/etc/tdekv/data', syncWrites: 'everysec', rowCacheSize: 64 * 1024 * 1024, walRecoveryMode: 'absolute-consistency' },
      security: {
        redactInfoLog: true,
        encryption: {
          dataEncryptionMethod: 'aes256-ctr',
          dataKeyRotationPeriodMs: 7 * 24 * 3_600_000,
          enableFileDictionaryLog: true,
          fileDictionaryRewriteThreshold: 1_000_000,
          scanRateLimit: 32 * 1024 * 1024,
          scanAuto: true,
          scanRetireKeys: true,
          masterKey: { type: 'file', path: '/run/tdekv/master.key' },
          previousMasterKey: {
            type: 'kms',
            keyId: '0987dcba-09fe-87dc-65ba-ab0987654321',
            region: 'us-west-2',
            endpoint: 'https://kms.us-west-2.amazonaws.com',
            timeoutMs: 10_000,
            maxAttempts: 3,
          },
        },
      },
      engine: {},
      server: SERVER_DEFAULTS,
      log: { level: 'info', format: 'auto' },
    } satisfies TdekvConfig);
  });

  it('fills every default for an empty file', () => {
    assert.deepEqual(parse(''), {
      storage: { dataDir: '/etc/tdekv/data', syncWrites: 'everysec', rowCacheSize: 64 * 1024 * 1024, walRecoveryMode: 'absolute-consistency' },
      security: {
        redactInfoLog: false,
        encryption: {
          dataEncryptionMethod: 'plaintext',
          dataKeyRotationPeriodMs: 604_800_000,
          enableFileDictionaryLog: true,
          fileDictionaryRewriteThreshold: 1_000_000,
          scanRateLimit: 32 * 1024 * 1024,
          scanAuto: true,
          scanRetireKeys: true,
          masterKey: { type: 'plaintext' },
        },
      },
      engine: {},
      server: SERVER_DEFAULTS,
      log: { level: 'info', format: 'auto' },
    } satisfies TdekvConfig);
  });

  it('reads the client memory limits in Redis\'s forms, and names what is wrong', () => {
    const server = parse('[server]\nclient-query-buffer-limit = "64mb"\nmaxmemory-clients = "2.5%"\nclient-output-buffer-limit = "normal 256mb 64MiB 60"').server;
    assert.equal(server.clientQueryBufferLimit, 64 * 2 ** 20);
    assert.deepEqual(server.maxmemoryClients, { percent: 2.5 });
    assert.deepEqual(server.clientOutputBufferLimit, { hard: 256 * 2 ** 20, soft: 64 * 2 ** 20, softSeconds: 60 });
    assert.deepEqual(parse('[server]\nmaxmemory-clients = 0\nclient-output-buffer-limit = "1GiB 0 0"').server.maxmemoryClients, { bytes: 0 });
    assert.deepEqual(parse('[server]\nmaxmemory-clients = "1GiB"').server.maxmemoryClients, { bytes: 2 ** 30 });
    assert.throws(() => parse('[server]\nmaxmemory-clients = "150%"'), expectCode('CONFIG_INVALID', 'server.maxmemory-clients', 'percentage'));
    assert.throws(() => parse('[server]\nclient-output-buffer-limit = "pubsub 32mb 8mb 60"'), expectCode('CONFIG_INVALID', 'server.client-output-buffer-limit', 'only "normal"'));
    assert.throws(() => parse('[server]\nclient-output-buffer-limit = "normal 1mb"'), expectCode('CONFIG_INVALID', 'server.client-output-buffer-limit', 'three values'));
    assert.throws(() => parse('[server]\nclient-output-buffer-limit = "normal 1mb 1mb x"'), expectCode('CONFIG_INVALID', 'server.client-output-buffer-limit', 'seconds'));
    assert.throws(() => parse('[server]\nclient-query-buffer-limit = "1KiB"'), expectCode('CONFIG_INVALID', 'server.client-query-buffer-limit', 'out of range'));
  });

  it('reads the [engine] section with TiKV-style names and checks each value', () => {
    const config = parse('[engine]\nwrite-buffer-size = 67108864\nblock-cache-size = 268435456\nbloom-filter-bits-per-key = 12\nmax-bytes-for-level-multiplier = 8');
    assert.deepEqual(config.engine, { writeBufferSize: 67108864, blockCacheSize: 268435456, bloomFilterBitsPerKey: 12, maxBytesForLevelMultiplier: 8 });
    assert.throws(() => parse('[engine]\nwrite-buffer-size = 10'), expectCode('CONFIG_INVALID', 'engine.write-buffer-size', '4096'));
    assert.throws(() => parse('[engine]\nblock-cache = 10'), expectCode('CONFIG_INVALID', 'block-cache'));
  });

  it('reads [engine] sizes as size strings too, as every other section does', () => {
    const config = parse('[engine]\nwrite-buffer-size = "16MiB"\nblock-size = "16KiB"\nblock-cache-size = "1GiB"\nmax-bytes-for-level-base = "256MB"\ntarget-file-size-base = 8388608');
    assert.deepEqual(config.engine, {
      writeBufferSize: 16 * 2 ** 20,
      blockSize: 16 * 2 ** 10,
      blockCacheSize: 2 ** 30,
      maxBytesForLevelBase: 256 * 2 ** 20,
      targetFileSizeBase: 8 * 2 ** 20,
    });
    rejects('[engine]\nwrite-buffer-size = "2KiB"', 'engine.write-buffer-size', '2KiB is out of range', 'at least 4KiB (4096 bytes)');
    rejects('[engine]\nblock-cache-size = "lots"', 'engine.block-cache-size', 'cannot read "lots" as a size', '"64MiB"');
    rejects('[engine]\nblock-size = -1', 'engine.block-size', 'negative sizes are not allowed');
    // Counts stay integers: a unit there would be a mistake.
    rejects('[engine]\nmax-open-files = "1KiB"', 'engine.max-open-files', 'an integer');
    assert.throws(() => parse('[engine]\nlevel0-slowdown-writes-trigger = 40\nlevel0-stop-writes-trigger = 30'), expectCode('CONFIG_INVALID', 'level0-slowdown-writes-trigger'));
  });

  it('reads the full-disk retry intervals of [engine] as durations', () => {
    const config = parse('[engine]\nno-space-retry-interval = "500ms"\nno-space-retry-max-interval = "1m"');
    assert.deepEqual(config.engine, { noSpaceRetryIntervalMs: 500, noSpaceRetryMaxIntervalMs: 60_000 });
    assert.throws(() => parse('[engine]\nno-space-retry-interval = "1m"\nno-space-retry-max-interval = "10s"'), expectCode('CONFIG_INVALID', 'no-space-retry-interval', 'no-space-retry-max-interval'));
    assert.throws(() => parse('[engine]\nno-space-retry-interval = "soon"'), expectCode('CONFIG_INVALID', 'engine.no-space-retry-interval'));
  });

  it('reads every duration form for data-key-rotation-period', () => {
    const cases: Record<string, number> = { '168h': 604_800_000, '7d': 604_800_000, '30m': 1_800_000, '90s': 90_000, '1h30m': 5_400_000 };
    for (const [text, ms] of Object.entries(cases)) {
      const config = parse(`[security.encryption]\ndata-key-rotation-period = "${text}"`);
      assert.equal(config.security.encryption.dataKeyRotationPeriodMs, ms, text);
    }
  });

  it('rejects bad rotation periods, naming the key, the value and the forms', () => {
    rejects('[security.encryption]\ndata-key-rotation-period = "7 days"', 'security.encryption.data-key-rotation-period', '"7 days"', '"168h"');
    rejects('[security.encryption]\ndata-key-rotation-period = "10"', 'security.encryption.data-key-rotation-period', '"10"', 'no unit');
    rejects('[security.encryption]\ndata-key-rotation-period = "500ms"', '"500ms"', 'at least 1s');
    rejects('[security.encryption]\ndata-key-rotation-period = 168', 'must be a string', 'the integer 168');
  });

  it('reads kms options with their defaults and limits', () => {
    const base = '[security.encryption.master-key]\ntype = "kms"\nkey-id = "k"\nregion = "eu-west-1"\n';
    assert.deepEqual(parse(base + 'timeout = "2s"\nmax-attempts = 5').security.encryption.masterKey, {
      type: 'kms',
      keyId: 'k',
      region: 'eu-west-1',
      timeoutMs: 2000,
      maxAttempts: 5,
    });
    rejects(base + 'max-attempts = 11', 'security.encryption.master-key.max-attempts', '11', 'from 1 to 10');
    rejects(base + 'max-attempts = 0', 'security.encryption.master-key.max-attempts', 'from 1 to 10');
    rejects(base + 'endpoint = "kms.example.com"', 'security.encryption.master-key.endpoint', 'http://');
    rejects(base + 'endpoint = "ftp://kms.example.com"', 'security.encryption.master-key.endpoint', 'https://');
    rejects(base + 'timeout = "soon"', 'security.encryption.master-key.timeout', '"soon"');
  });

  it('refuses a KMS endpoint without TLS unless it is loopback or allow-insecure-endpoint is set (issue 9 item 19)', () => {
    const base = '[security.encryption.master-key]\ntype = "kms"\nkey-id = "k"\nregion = "eu-west-1"\n';
    for (const endpoint of ['http://kms.example.com', 'http://10.0.0.5:4566', 'http://[fe80::1]:8080', 'http://128.0.0.1', 'http://localhost.example.com']) {
      rejects(base + `endpoint = "${endpoint}"`, `security.encryption.master-key.endpoint = "${endpoint}" is refused`, 'not TLS', 'plaintext wrapping key', 'allow-insecure-endpoint = true');
    }
    rejects(
      '[security.encryption.master-key]\ntype = "file"\npath = "k"\n' +
        '[security.encryption.previous-master-key]\ntype = "kms"\nkey-id = "k"\nregion = "r"\nendpoint = "http://kms.internal"',
      'security.encryption.previous-master-key.endpoint = "http://kms.internal" is refused',
    );
    for (const endpoint of ['https://kms.example.com', 'http://127.0.0.1:4566', 'http://127.8.9.10', 'http://localhost:4566', 'http://[::1]:4566', 'HTTP://LOCALHOST']) {
      assert.equal((parse(base + `endpoint = "${endpoint}"`).security.encryption.masterKey as { endpoint?: string }).endpoint, endpoint);
    }
    assert.deepEqual(parse(base + 'endpoint = "http://kms.internal"\nallow-insecure-endpoint = true').security.encryption.masterKey, {
      type: 'kms',
      keyId: 'k',
      region: 'eu-west-1',
      endpoint: 'http://kms.internal',
      allowInsecureEndpoint: true,
      timeoutMs: 10_000,
      maxAttempts: 3,
    });
    rejects(base + 'endpoint = "http://kms.internal"\nallow-insecure-endpoint = false', 'is refused');
    rejects('[security.encryption.master-key]\ntype = "file"\npath = "k"\nallow-insecure-endpoint = true', 'unknown key security.encryption.master-key.allow-insecure-endpoint', 'belongs to type = "kms"');
  });

  it('reads allow-insecure-permissions for a file master key', () => {
    assert.deepEqual(parse('[security.encryption.master-key]\ntype = "file"\npath = "k"\nallow-insecure-permissions = true').security.encryption.masterKey, {
      type: 'file',
      path: '/etc/tdekv/k',
      allowInsecurePermissions: true,
    });
    rejects('[security.encryption.master-key]\ntype = "file"\npath = "k"\nallow-insecure-permissions = "yes"', 'allow-insecure-permissions must be a boolean');
  });

  it('rejects an unknown top-level section, listing the sections', () => {
    rejects('[serve]\naddr = "127.0.0.1:6379"', 'unknown section [serve]', '[storage]', '[security]', '[server]', '[log]', 'Did you mean server?');
    rejects('port = 6379', 'unknown key port', '[storage]', '[security]');
    rejects('[security.tls]\nca = "x"', 'unknown section [security.tls]', '[security.encryption]');
  });

  it('rejects an unknown key in [security.encryption], listing its keys', () => {
    const msg = rejects(
      '[security.encryption]\ndata-encryption-methd = "aes256-ctr"',
      'security.encryption.data-encryption-methd',
      'data-encryption-method',
      'data-key-rotation-period',
      'enable-file-dictionary-log',
      'file-dictionary-rewrite-threshold',
      '[security.encryption.master-key]',
    );
    assert.match(msg, /Did you mean data-encryption-method\?/);
    rejects('[storage]\ndata_dir = "x"', 'storage.data_dir', 'Did you mean data-dir?');
  });

  it('rejects keys that do not belong to the master key type', () => {
    rejects(
      '[security.encryption.master-key]\ntype = "file"\npath = "k"\nregion = "us-west-2"',
      'security.encryption.master-key.region',
      'type = "file"',
      'type, path',
    );
    rejects('[security.encryption.master-key]\ntype = "plaintext"\npath = "k"', 'security.encryption.master-key.path', 'type = "plaintext"');
    rejects('[security.encryption.master-key]\ntype = "hsm"', 'security.encryption.master-key.type', '"hsm"', 'file | kms | pkcs11 | plaintext');
    rejects('[security.encryption.master-key]\npath = "k"', 'security.encryption.master-key.type', '"file" | "kms" | "pkcs11" | "plaintext"');
  });

  it('rejects an unknown method, listing all five', () => {
    rejects(
      '[security.encryption]\ndata-encryption-method = "aes512-ctr"',
      'security.encryption.data-encryption-method',
      '"aes512-ctr"',
      'plaintext | aes128-ctr | aes192-ctr | aes256-ctr | sm4-ctr',
    );
  });

  it('rejects wrong TOML types, naming the expected type', () => {
    rejects('[security.encryption]\nenable-file-dictionary-log = "yes"', 'security.encryption.enable-file-dictionary-log', 'must be a boolean', '"yes"');
    rejects('[storage]\ndata-dir = 5', 'storage.data-dir', 'must be a string');
    rejects('[security.encryption]\nfile-dictionary-rewrite-threshold = 1.5', 'file-dictionary-rewrite-threshold', 'must be an integer', 'the float 1.5');
    rejects('[security.encryption]\nfile-dictionary-rewrite-threshold = 0', 'file-dictionary-rewrite-threshold', 'an integer >= 1');
    rejects('storage = "./data"', 'storage must be a section');
  });

  it('requires a master key when encryption is on', () => {
    rejects('[security.encryption]\ndata-encryption-method = "aes256-ctr"', 'aes256-ctr', '[security.encryption.master-key]', 'type = "file"', 'path = ');
    rejects('[security.encryption.previous-master-key]\ntype = "plaintext"', '[security.encryption.master-key]');
  });

  it('requires key-id and region for kms', () => {
    rejects('[security.encryption.master-key]\ntype = "kms"\nregion = "us-west-2"', 'security.encryption.master-key.key-id', 'required', 'type = "kms"');
    rejects('[security.encryption.master-key]\ntype = "kms"\nkey-id = "k"', 'security.encryption.master-key.region', 'required');
    rejects('[security.encryption.master-key]\ntype = "file"', 'security.encryption.master-key.path', 'required');
  });

  it("resolves relative paths against the config file's directory", () => {
    const config = parseConfig(
      '[storage]\ndata-dir = "../var/db"\n[security.encryption.master-key]\ntype = "file"\npath = "keys/master.key"',
      { source: '/opt/app/conf/tdekv.toml', baseDir: '/opt/app/conf' },
    );
    assert.equal(config.storage.dataDir, '/opt/app/var/db');
    assert.deepEqual(config.security.encryption.masterKey, { type: 'file', path: '/opt/app/conf/keys/master.key' });
  });

  it('reports TOML syntax errors with line and column, without echoing the text', () => {
    const msg = rejects('[storage]\ndata-dir = "./data"\n[security.encryption\nx = "hunter2"', 'line 3', /:3:\d+:/);
    assert.ok(!msg.includes('hunter2'), msg);
  });

  it('never echoes a value put where a section belongs', () => {
    const msg = rejects('[security.encryption]\nmaster-key = "00112233445566778899aabbccddeeff"', 'security.encryption.master-key must be a section');
    assert.ok(!msg.includes('00112233'), msg);
  });
});

describe('parseSize / parseHostPort', () => {
  it('reads sizes as bytes, KB and KiB alike meaning 1024', () => {
    const cases: Record<string, number> = {
      '0': 0,
      '1048576': 1_048_576,
      '100B': 100,
      '64MiB': 64 * 2 ** 20,
      '512MB': 512 * 2 ** 20,
      '512mb': 512 * 2 ** 20,
      '1GiB': 2 ** 30,
      '1G': 2 ** 30,
      '1.5GiB': 1.5 * 2 ** 30,
      '4k': 4096,
      ' 2 MiB ': 2 * 2 ** 20,
    };
    for (const [text, bytes] of Object.entries(cases)) assert.equal(parseSize(text), bytes, text);
    for (const bad of ['', 'MiB', '-1MiB', '5 parsecs', '1.MiB', '1e3', '0x10']) {
      assert.throws(() => parseSize(bad), /expected an integer number of bytes, or a number and a unit .*"64MiB"/, `should reject ${JSON.stringify(bad)}`);
    }
  });

  it('formats sizes in the largest exact binary unit', () => {
    assert.equal(formatSize(512 * 2 ** 20), '512MiB');
    assert.equal(formatSize(1024), '1KiB');
    assert.equal(formatSize(1000), '1000B');
    fc.assert(fc.property(fc.nat({ max: 2 ** 50 }), (n) => parseSize(formatSize(n)) === n));
  });

  it('reads IPv4, hostname and bracketed IPv6 addresses with ports 0 to 65535', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:6380'), { host: '127.0.0.1', port: 6380 });
    assert.deepEqual(parseHostPort('0.0.0.0:0'), { host: '0.0.0.0', port: 0 });
    assert.deepEqual(parseHostPort('[::1]:65535'), { host: '::1', port: 65535 });
    assert.deepEqual(parseHostPort('[fe80::1]:6380'), { host: 'fe80::1', port: 6380 });
    assert.deepEqual(parseHostPort('localhost:6380'), { host: 'localhost', port: 6380 });
    assert.deepEqual(parseHostPort('db-1.example.internal:6380'), { host: 'db-1.example.internal', port: 6380 });
    assert.equal(formatHostPort({ host: '::1', port: 1 }), '[::1]:1');
    assert.equal(formatHostPort({ host: 'localhost', port: 1 }), 'localhost:1');
    const bad: Record<string, RegExp> = {
      '127.0.0.1': /no ":port"/,
      '127.0.0.1:': /no port/,
      ':6380': /no host/,
      '127.0.0.1:65536': /above 65535/,
      '127.0.0.1:-1': /not a number/,
      '127.0.0.1:http': /not a number/,
      '::1:6380': /IPv6 address must be in brackets/,
      '[::1]6380': /no ":port"/,
      '[::1:6380': /closing/,
      '[localhost]:6380': /not an IPv6 address/,
      '256.0.0.1:6380': /not an IPv4 address or a hostname/,
      'bad_host:6380': /not an IPv4 address or a hostname/,
      '-dash.example:6380': /not an IPv4 address or a hostname/,
    };
    for (const [text, why] of Object.entries(bad)) {
      assert.throws(() => parseHostPort(text), (err: Error) => why.test(err.message) && err.message.includes('"[::1]:6380"'), text);
    }
  });
});

describe('parseConfig: server, storage, security and log settings', () => {
  it('reads a full [server], [storage], [security] and [log] example', () => {
    const config = parseConfig(
      `[server]
addr = "0.0.0.0:6379"
status-addr = "[::1]:0"
max-clients = 500
max-request-size = "64MiB"
read-ahead = "always"

[storage]
sync-writes = "always"

[security]
requirepass = "correct horse battery staple"
redact-info-log = false
cert-path = "tls/server.crt"
key-path = "tls/server.key"
ca-path = "/etc/ssl/clients-ca.pem"

[log]
level = "debug"
format = "json"
`,
      OPTS,
    );
    assert.deepEqual(config.server, { addr: { host: '0.0.0.0', port: 6379 }, statusAddr: { host: '::1', port: 0 }, maxClients: 500, maxRequestSize: 64 * 2 ** 20, clientQueryBufferLimit: 2 ** 30, maxmemoryClients: { percent: 10 }, clientOutputBufferLimit: { hard: 0, soft: 0, softSeconds: 0 }, readAhead: 'always' });
    assert.equal(config.storage.syncWrites, 'always');
    assert.deepEqual(config.security, {
      requirepass: 'correct horse battery staple',
      redactInfoLog: false,
      tls: { certPath: '/etc/tdekv/tls/server.crt', keyPath: '/etc/tdekv/tls/server.key', caPath: '/etc/ssl/clients-ca.pem' },
      encryption: parse('').security.encryption,
    });
    assert.deepEqual(config.log, { level: 'debug', format: 'json' });
  });

  it('fills the [server] defaults', () => {
    assert.deepEqual(parse('[server]').server, DEFAULT_SERVER);
    assert.deepEqual(parse('[server]\nmax-clients = 1').server, { ...DEFAULT_SERVER, maxClients: 1 });
  });

  it('checks server.addr and server.status-addr, naming the key and the accepted forms', () => {
    rejects('[server]\naddr = "127.0.0.1"', 'server.addr = "127.0.0.1" is invalid', 'no ":port"', '"[::1]:6380"');
    rejects('[server]\naddr = "127.0.0.1:70000"', 'server.addr', 'above 65535');
    rejects('[server]\nstatus-addr = "::1:20180"', 'server.status-addr', 'brackets');
    rejects('[server]\naddr = 6380', 'server.addr must be a string', 'the integer 6380', '"host:port"');
    rejects('[server]\naddr = "127.0.0.1:7000"\nstatus-addr = "127.0.0.1:7000"', 'server.addr and server.status-addr are both 127.0.0.1:7000');
    // Port 0 twice is two different free ports.
    assert.equal(parse('[server]\naddr = "127.0.0.1:0"\nstatus-addr = "127.0.0.1:0"').server.addr.port, 0);
  });

  it('checks server.max-clients', () => {
    rejects('[server]\nmax-clients = 0', 'server.max-clients = 0 is invalid', 'an integer >= 1');
    rejects('[server]\nmax-clients = "many"', 'server.max-clients must be an integer');
  });

  it('reads server.max-request-size as bytes or a size string, and says which forms are accepted', () => {
    assert.equal(parse('[server]\nmax-request-size = 1048576').server.maxRequestSize, 1_048_576);
    assert.equal(parse('[server]\nmax-request-size = "512MB"').server.maxRequestSize, 512 * 2 ** 20);
    assert.equal(parse('[server]\nmax-request-size = "1GiB"').server.maxRequestSize, 2 ** 30);
    rejects('[server]\nmax-request-size = "lots"', 'server.max-request-size = "lots" is invalid', 'an integer number of bytes', '"64MiB"', '"512MB"', '"1GiB"');
    rejects('[server]\nmax-request-size = 100', 'server.max-request-size', 'out of range', 'from 1KiB to');
    rejects('[server]\nmax-request-size = "64TiB"', 'server.max-request-size', 'out of range');
    rejects('[server]\nmax-request-size = -5', 'server.max-request-size', 'negative');
    rejects('[server]\nmax-request-size = 1.5', 'server.max-request-size must be a string or an integer', 'the float 1.5');
  });

  it('reads storage.row-cache-size (0 turns the cache off)', () => {
    assert.equal(parse('').storage.rowCacheSize, 64 * 2 ** 20);
    assert.equal(parse('[storage]\nrow-cache-size = "1GiB"').storage.rowCacheSize, 2 ** 30);
    assert.equal(parse('[storage]\nrow-cache-size = 0').storage.rowCacheSize, 0);
    rejects('[storage]\nrow-cache-size = "lots"', 'storage.row-cache-size');
  });

  it('reads storage.sync-writes', () => {
    assert.equal(parse('[storage]\nsync-writes = "no"').storage.syncWrites, 'no');
    assert.equal(parse('[storage]\nsync-writes = "everysec"').storage.syncWrites, 'everysec');
    rejects('[storage]\nsync-writes = "sometimes"', 'storage.sync-writes = "sometimes"', 'always | everysec | no');
    rejects('[storage]\nsync-writes = true', 'storage.sync-writes must be a string', 'always | everysec | no');
  });

  it('reads log.level', () => {
    for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const) assert.equal(parse(`[log]\nlevel = "${level}"`).log.level, level);
    rejects('[log]\nlevel = "verbose"', 'log.level = "verbose"', 'fatal | error | warn | info | debug | trace | silent');
    rejects('[log]\nlevl = "info"', 'log.levl', 'Did you mean level?');
  });

  it('reads log.format', () => {
    assert.equal(parse('').log.format, 'auto');
    for (const format of ['auto', 'json', 'pretty'] as const) assert.equal(parse(`[log]\nformat = "${format}"`).log.format, format);
    rejects('[log]\nformat = "text"', 'log.format = "text"', 'auto | json | pretty');
    rejects('[log]\nformat = 1', 'log.format must be a string', 'auto | json | pretty');
    rejects('[log]\nformats = "json"', 'log.formats', 'Did you mean format?');
  });

  it('defaults redact-info-log to on exactly when data is encrypted', () => {
    const encrypted = '[security.encryption]\ndata-encryption-method = "aes128-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = "k"\n';
    assert.equal(parse(encrypted).security.redactInfoLog, true);
    assert.equal(parse('').security.redactInfoLog, false);
    assert.equal(parse('[security]\nredact-info-log = true').security.redactInfoLog, true);
    assert.equal(parse('[security]\nredact-info-log = false\n' + encrypted).security.redactInfoLog, false);
    rejects('[security]\nredact-info-log = "yes"', 'security.redact-info-log must be a boolean');
  });

  it('takes TLS paths together, resolving them against the config directory', () => {
    assert.deepEqual(parse('[security]\ncert-path = "a.crt"\nkey-path = "/k/a.key"').security.tls, { certPath: '/etc/tdekv/a.crt', keyPath: '/k/a.key' });
    assert.equal(parse('').security.tls, undefined);
    assert.ok(!('tlsCertPath' in parse('[security]\ncert-path = "a"\nkey-path = "b"').security));
    rejects('[security]\ncert-path = "a.crt"', 'security.cert-path is set without security.key-path');
    rejects('[security]\nkey-path = "a.key"', 'security.key-path is set without security.cert-path');
    rejects('[security]\nca-path = "ca.pem"', 'security.ca-path is set without security.cert-path and security.key-path');
    rejects('[security]\ncert-path = ""\nkey-path = "b"', 'security.cert-path', 'must not be empty');
  });

  it('keeps [security] strict: unknown keys and sections are errors with a suggestion', () => {
    rejects('[security]\nrequire-pass = "x"', 'unknown key security.require-pass', 'Did you mean requirepass?', 'redact-info-log', '[security.encryption]');
    rejects('[security]\ncert_path = "x"', 'security.cert_path', 'Did you mean cert-path?');
    rejects('[security.tls]\nca = "x"', 'unknown section [security.tls]', 'cert-path', '[security.encryption]');
  });

  it('never puts requirepass in an error message', () => {
    const secret = 'Tr0ub4dor&3-do-not-print';
    const cases = [
      `[security]\nrequirepass = ""`,
      `[security]\nrequirepass = 1234567890123`,
      `[security]\nrequirepass = ["${secret}"]`,
      `[security]\nrequirepas = "${secret}"`,
      `[security]\nrequirepass = "${secret}"\ncert-path = "a"`,
      `[security]\nrequirepass = "${secret}"\nredact-info-log = "no"`,
      `[security]\nrequirepass = "${secret}"\nrequirepass = "${secret}"`,
      `[security]\nrequirepass = "${secret}\n`,
      `[security]\nrequirepass = "${secret}"\n[security.encryption]\ndata-encryption-method = "aes256-ctr"`,
      `[server]\nrequirepass = "${secret}"`,
      `requirepass = "${secret}"`,
    ];
    for (const text of cases) {
      const message = rejects(text);
      assert.ok(!message.includes(secret) && !message.includes('1234567890123'), `${JSON.stringify(text)} leaked: ${message}`);
    }
    assert.equal(parse(`[security]\nrequirepass = "${secret}"`).security.requirepass, secret);
    const empty = rejects('[security]\nrequirepass = ""', 'security.requirepass (value not shown) is invalid', 'must not be empty');
    assert.ok(!empty.includes('""'), empty);
  });
});

describe('loadConfig', () => {
  it('reads a file and resolves paths against its directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tdekv-config-'));
    try {
      const file = join(dir, 'tdekv.toml');
      await writeFile(file, '[storage]\ndata-dir = "db"\n[security.encryption]\ndata-key-rotation-period = "1h30m"\n');
      const config = await loadConfig(file);
      assert.equal(config.storage.dataDir, join(dir, 'db'));
      assert.equal(config.security.encryption.dataKeyRotationPeriodMs, 5_400_000);

      await writeFile(file, '[storage]\ndata-dir = 1\n');
      await assert.rejects(loadConfig(file), (err: unknown) => isTdekvError(err, 'CONFIG_INVALID') && err.message.includes(file));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the path of a missing file', async () => {
    const missing = join(tmpdir(), 'tdekv-no-such-dir', 'tdekv.toml');
    await assert.rejects(
      loadConfig(missing),
      (err: unknown) => isTdekvError(err, 'CONFIG_INVALID') && err.message.includes(missing) && err.message.includes('no such file'),
    );
  });
});

describe('the level-0 trigger rule', () => {
  // One rule (engine/options.ts tuningProblem) behind every door that takes tuning;
  // slowdown alone past the default stop (36) is refused too, since the defaults fill in.
  const messageOf = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      assert.ok(isTdekvError(err, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${String(err)}`);
      return err.message;
    }
    assert.fail('expected the tuning to be refused');
  };

  it('refuses the same tuning in the TOML file, the embedded options and the engine, naming the settings each way', () => {
    const toml = messageOf(() => parse('[engine]\nlevel0-slowdown-writes-trigger = 40'));
    assert.match(toml, /engine\.level0-slowdown-writes-trigger \(40\) must not exceed engine\.level0-stop-writes-trigger \(36\); defaults 20 and 36\./);
    const embedded = messageOf(() => configFromOptions({ level0SlowdownWritesTrigger: 40 }, 'TdekvLevel options (/data/db)'));
    assert.match(embedded, /level0SlowdownWritesTrigger \(40\) must not exceed level0StopWritesTrigger \(36\); defaults 20 and 36\./);
    const engine = messageOf(() => resolveTuning({ level0SlowdownWritesTrigger: 40 }));
    assert.match(engine, /engine option level0SlowdownWritesTrigger \(40\) must not exceed level0StopWritesTrigger \(36\)/);
  });

  it('names the no-space retry settings in the options as they are passed, not by their internal millisecond names', () => {
    const embedded = messageOf(() => configFromOptions({ noSpaceRetryInterval: '1m', noSpaceRetryMaxInterval: '10s' }, 'options'));
    assert.match(embedded, /^options: noSpaceRetryInterval \(60000 ms\) must not exceed noSpaceRetryMaxInterval \(10000 ms\); defaults 1000 and 30000 ms\.$/);
    // The name in the message is one the options accept.
    assert.equal(configFromOptions({ noSpaceRetryInterval: '1m', noSpaceRetryMaxInterval: '2m' }, 'options').engine.noSpaceRetryIntervalMs, 60_000);
  });

  it('accepts equal triggers everywhere', () => {
    assert.equal(parse('[engine]\nlevel0-slowdown-writes-trigger = 36').engine.level0SlowdownWritesTrigger, 36);
    assert.equal(configFromOptions({ level0SlowdownWritesTrigger: 36 }, 'options').engine.level0SlowdownWritesTrigger, 36);
    assert.equal(resolveTuning({ level0SlowdownWritesTrigger: 36 }).level0SlowdownWritesTrigger, 36);
  });
});

describe('cross-setting rules: one list for the file and the embedded options', () => {
  const messageOf = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      assert.ok(isTdekvError(err, 'CONFIG_INVALID'), `expected CONFIG_INVALID, got ${String(err)}`);
      return err.message;
    }
    assert.fail('expected the configuration to be refused');
  };
  const insecureKms = { type: 'kms', keyId: 'k', region: 'r', endpoint: 'http://kms.example.com' };

  it('a previous master key without a master key is refused first by both, even when its KMS endpoint is refused too', () => {
    const toml = messageOf(() =>
      parse('[security.encryption]\ndata-encryption-method = "plaintext"\n[security.encryption.previous-master-key]\ntype = "kms"\nkey-id = "k"\nregion = "r"\nendpoint = "http://kms.example.com"'),
    );
    assert.match(toml, /\[security\.encryption\.previous-master-key\] is set without \[security\.encryption\.master-key\]/);
    const embedded = messageOf(() => configFromOptions({ dataEncryptionMethod: 'plaintext', previousMasterKey: insecureKms }, 'options'));
    assert.match(embedded, /^options: previousMasterKey is set without masterKey; while rotating, previousMasterKey is the old key and masterKey the new one\. Add masterKey, for example masterKey: \{/);
  });

  it('with a master key given, both refuse the insecure previous KMS endpoint, naming it each way', () => {
    const toml = messageOf(() =>
      parse('[security.encryption.master-key]\ntype = "plaintext"\n[security.encryption.previous-master-key]\ntype = "kms"\nkey-id = "k"\nregion = "r"\nendpoint = "http://kms.example.com"'),
    );
    assert.match(toml, /security\.encryption\.previous-master-key\.endpoint = "http:\/\/kms\.example\.com" is refused/);
    const embedded = messageOf(() => configFromOptions({ masterKey: { type: 'plaintext' }, previousMasterKey: insecureKms }, 'options'));
    assert.match(embedded, /^options: previousMasterKey\.endpoint = "http:\/\/kms\.example\.com" is refused/);
  });
});
