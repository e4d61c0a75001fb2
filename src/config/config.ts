import { constants as bufferConstants } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse, TomlDate, TomlError, type TomlTable, type TomlValue } from 'smol-toml';
import { ENCRYPTION_METHODS } from '../crypto/method.js';
import { insecureKmsEndpoint } from '../masterkey/kms-endpoint.js';
import { DEFAULT_ENGINE_TUNING, ENGINE_MINIMUMS, WAL_RECOVERY_MODES, tuningProblem, type EngineTuning, type WalRecoveryMode } from '../engine/options.js';
import { TdekvError, errnoCode } from '../errors.js';
import { LOG_FORMATS } from '../log/log-config.js';
import { formatDuration, parseDuration } from './duration.js';
import { HOST_PORT_FORMS, formatHostPort, parseHostPort } from '../util/host-port.js';
import { SIZE_FORMS, SizeError, formatSize, parseSize } from './size.js';
import {
  DEFAULT_ENCRYPTION,
  DEFAULT_KMS_MAX_ATTEMPTS,
  DEFAULT_KMS_TIMEOUT_MS,
  type EncryptionConfig,
  type LogConfig,
  type MasterKeyConfig,
  type ServerConfig,
  type SyncWrites,
  type TdekvConfig,
  type TlsConfig,
} from './types.js';

/** `[server]` defaults: Redis's port + 1 (so a local redis-server can run beside it) and TiKV's status port. */
export const DEFAULT_SERVER: Readonly<ServerConfig> = Object.freeze({
  addr: Object.freeze({ host: '127.0.0.1', port: 6380 }),
  statusAddr: Object.freeze({ host: '127.0.0.1', port: 20180 }),
  maxClients: 10_000,
  maxRequestSize: 512 * 2 ** 20,
  clientQueryBufferLimit: 2 ** 30,
  maxmemoryClients: Object.freeze({ percent: 10 }),
  clientOutputBufferLimit: Object.freeze({ hard: 0, soft: 0, softSeconds: 0 }),
});
export const DEFAULT_SYNC_WRITES: SyncWrites = 'everysec';
export const SYNC_WRITES: readonly SyncWrites[] = ['always', 'everysec', 'no'];
export const DEFAULT_LOG: Readonly<LogConfig> = Object.freeze({ level: 'info', format: 'auto' });
export const LOG_LEVELS: ReadonlyArray<LogConfig['level']> = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/*
 * The TOML configuration. Everything the file may contain is described by the SCHEMA table
 * below; the reader is generic, so a new setting is a new row, and every setting gets the
 * same errors (source file, full dotted key, value, what is allowed) for free.
 */

export interface ParseConfigOptions {
  /** Names the configuration in error messages, usually the file's path. */
  source: string;
  /**
   * Relative paths in the config (`data-dir`, master-key `path`) resolve against this, the
   * config file's directory, not the process's cwd: a config file then means the same
   * thing however and from wherever the server is started.
   */
  baseDir: string;
}

interface Context {
  readonly baseDir: string;
}

interface TomlKinds {
  string: string;
  boolean: boolean;
  integer: bigint;
}
type Kind = keyof TomlKinds;

const KIND_NAMES: Record<Kind, string> = {
  string: 'a string',
  boolean: 'a boolean (true or false)',
  integer: 'an integer',
};

interface Validator<K extends Kind = Kind> {
  readonly kind: K;
  /** What is accepted, quoted in every error about the key. */
  readonly allowed: string;
  /** Never echo the value (passwords, tokens); `convert`'s messages must not contain it either. */
  readonly secret?: boolean;
  /** A value of the right TOML type → the config value; throws a plain Error saying why not. */
  convert(value: TomlKinds[K], ctx: Context): unknown;
  /** JS options only: what is accepted there, when it differs from `allowed`. */
  readonly optionAllowed?: string;
  /** JS options only: a JS number is accepted too (durations: milliseconds); throws like `convert`. */
  fromNumber?(value: number): unknown;
  /** A string key that takes a TOML integer too (sizes: bytes); throws like `convert`. */
  fromInteger?(value: bigint): unknown;
}

interface Field extends Validator {
  /** Property name in TdekvConfig. */
  readonly prop: string;
  readonly required?: boolean;
  /** Config-form value used when the key is absent. */
  readonly default?: (ctx: Context) => unknown;
}

type Fields = Readonly<Record<string, Field>>;

interface Section {
  /** Where the section's object lands in TdekvConfig. */
  readonly into: readonly string[];
  readonly fields: Fields;
  /** An absent optional section yields nothing; an absent required one is all defaults. */
  readonly optional?: boolean;
  /** A field whose value selects further allowed fields (master-key `type` → its keys). */
  readonly variantBy?: string;
  readonly variants?: Readonly<Record<string, Fields>>;
}

// ---- validators -------------------------------------------------------------------------

function text(allowed = 'a non-empty string'): Validator<'string'> {
  return {
    kind: 'string',
    allowed,
    convert: (v) => {
      if (v === '') throw new Error('must not be empty');
      return v;
    },
  };
}

function oneOf(values: readonly string[]): Validator<'string'> {
  return {
    kind: 'string',
    allowed: values.join(' | '),
    convert: (v) => {
      if (!values.includes(v)) throw new Error('not one of the allowed values');
      return v;
    },
  };
}

function flag(): Validator<'boolean'> {
  return { kind: 'boolean', allowed: 'true | false', convert: (v) => v };
}

function integer(min: number, max = Number.MAX_SAFE_INTEGER): Validator<'integer'> {
  return {
    kind: 'integer',
    allowed: max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`,
    convert: (v) => {
      if (v < BigInt(min) || v > BigInt(max)) throw new Error('out of range');
      return Number(v);
    },
  };
}

function duration(minMs: number): Validator<'string'> {
  const allowed = `a duration of at least ${formatDuration(minMs)}, e.g. "168h", "7d", "30m", "90s", "1h30m"`;
  return {
    kind: 'string',
    allowed,
    optionAllowed: `${allowed}, or a number of milliseconds >= ${minMs}`,
    convert: (v) => {
      const ms = parseDuration(v);
      if (ms < minMs) throw new Error(`shorter than ${formatDuration(minMs)}`);
      return ms;
    },
    fromNumber: (n) => {
      if (!Number.isSafeInteger(n)) throw new Error('not a whole number of milliseconds');
      if (n < minMs) throw new Error(`shorter than ${formatDuration(minMs)}`);
      return n;
    },
  };
}

/**
 * A byte size: an integer of bytes or a string such as "512MiB" (src/config/size.ts). Without
 * `max` the range is open; the minimum is then also shown in bytes, the unit the code uses.
 */
function size(min: number, max?: number): Validator<'string'> {
  const range = max === undefined ? `at least ${formatSize(min)} (${min} bytes)` : `from ${formatSize(min)} to ${formatSize(max)}`;
  const top = max ?? Number.MAX_SAFE_INTEGER;
  const check = (bytes: number): number => {
    if (bytes < min || bytes > top) throw new Error(`${formatSize(bytes)} is out of range`);
    return bytes;
  };
  return {
    kind: 'string',
    allowed: `${SIZE_FORMS}; ${range}`,
    convert: (v) => {
      try {
        return check(parseSize(v));
      } catch (err) {
        // `allowed` already lists the forms; the message need not say them twice.
        throw err instanceof SizeError ? new Error(err.why) : err;
      }
    },
    fromInteger: (v) => {
      if (v < 0n) throw new Error('negative sizes are not allowed');
      return check(v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v));
    },
    // Embedded options pass bytes as a JS number, as they always have.
    fromNumber: (n) => {
      if (!Number.isSafeInteger(n)) throw new Error('not a whole number of bytes');
      if (n < 0) throw new Error('negative sizes are not allowed');
      return check(n);
    },
  };
}

/** Redis's maxmemory-clients form: a size, or a percentage ("10%", of the machine's memory here: tdekv has no maxmemory). */
function sizeOrPercent(): Validator<'string'> {
  const bytes = size(0);
  return {
    kind: 'string',
    allowed: `a percentage from 1% to 100% of the machine's memory, e.g. "10%", or ${SIZE_FORMS}; 0 means no limit`,
    convert: (v, ctx) => {
      const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(v);
      if (m === null) return { bytes: bytes.convert(v, ctx) as number };
      const percent = Number(m[1]);
      if (percent < 1 || percent > 100) throw new Error('out of range');
      return { percent };
    },
    fromInteger: (v) => ({ bytes: bytes.fromInteger!(v) as number }),
    fromNumber: (n) => ({ bytes: bytes.fromNumber!(n) as number }),
  };
}

/** Redis's `client-output-buffer-limit` line for its `normal` class: "[normal] <hard> <soft> <soft-seconds>". */
function outputBufferLimit(): Validator<'string'> {
  const bytes = size(0);
  return {
    kind: 'string',
    allowed: 'Redis\'s form for normal clients, "normal <hard> <soft> <soft-seconds>" (the word "normal" may be left out), e.g. "normal 256MiB 64MiB 60"; sizes as elsewhere, 0 turns a limit off',
    convert: (v, ctx) => {
      const words = v.trim().split(/\s+/);
      if (words[0]?.toLowerCase() === 'normal') words.shift();
      else if (words.length === 4) throw new Error(`the class "${words[0]}" does not exist in tdekv (it has no replicas and no pub/sub): only "normal"`);
      if (words.length !== 3) throw new Error('expected three values: hard limit, soft limit, soft seconds');
      const secs = /^\d+$/.test(words[2]!) ? Number(words[2]) : NaN;
      if (!Number.isSafeInteger(secs)) throw new Error(`soft seconds "${words[2]}" is not a whole number of seconds`);
      return { hard: bytes.convert(words[0]!, ctx) as number, soft: bytes.convert(words[1]!, ctx) as number, softSeconds: secs };
    },
  };
}

function hostPort(): Validator<'string'> {
  return { kind: 'string', allowed: HOST_PORT_FORMS, convert: (v) => parseHostPort(v) };
}

function localPath(): Validator<'string'> {
  return {
    kind: 'string',
    allowed: "a path; a relative path is relative to the config file's directory",
    optionAllowed: "a path; a relative path is relative to the process's current directory",
    convert: (v, ctx) => {
      if (v === '') throw new Error('must not be empty');
      if (v.includes('\0')) throw new Error('contains a NUL character');
      return resolve(ctx.baseDir, v);
    },
  };
}

function httpUrl(): Validator<'string'> {
  return {
    kind: 'string',
    allowed: 'an http:// or https:// URL, e.g. "https://kms.example.com"',
    convert: (v) => {
      let url: URL;
      try {
        url = new URL(v);
      } catch {
        throw new Error('not a URL');
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http or https');
      return v;
    },
  };
}

// ---- schema -----------------------------------------------------------------------------

const MASTER_KEY_VARIANTS: Record<MasterKeyConfig['type'], Fields> = {
  file: {
    path: { prop: 'path', required: true, ...localPath() },
    'allow-insecure-permissions': { prop: 'allowInsecurePermissions', ...flag() },
  },
  kms: {
    'key-id': { prop: 'keyId', required: true, ...text('a non-empty string (the KMS key id or ARN)') },
    region: { prop: 'region', required: true, ...text('a non-empty string, e.g. "us-west-2"') },
    endpoint: { prop: 'endpoint', ...httpUrl() },
    timeout: { prop: 'timeoutMs', default: () => DEFAULT_KMS_TIMEOUT_MS, ...duration(1) },
    'max-attempts': { prop: 'maxAttempts', default: () => DEFAULT_KMS_MAX_ATTEMPTS, ...integer(1, 10) },
    'allow-insecure-endpoint': { prop: 'allowInsecureEndpoint', ...flag() },
  },
  plaintext: {},
};

function masterKeySection(prop: string): Section {
  return {
    into: ['security', 'encryption', prop],
    optional: true,
    variantBy: 'type',
    fields: { type: { prop: 'type', required: true, ...oneOf(Object.keys(MASTER_KEY_VARIANTS)) } },
    variants: MASTER_KEY_VARIANTS,
  };
}

/**
 * Engine tuning (src/engine/options.ts): the TOML [engine] section, and the same names in
 * camelCase as embedded options. Names follow TiKV's RocksDB settings. Sizes are bytes, or a
 * size string ("16MiB") as in every other section.
 */
const ENGINE_FIELDS: Fields = {
  'write-buffer-size': { prop: 'writeBufferSize', ...size(ENGINE_MINIMUMS.writeBufferSize) },
  'block-size': { prop: 'blockSize', ...size(ENGINE_MINIMUMS.blockSize) },
  'block-restart-interval': { prop: 'blockRestartInterval', ...integer(ENGINE_MINIMUMS.blockRestartInterval) },
  'bloom-filter-bits-per-key': { prop: 'bloomFilterBitsPerKey', ...integer(ENGINE_MINIMUMS.bloomFilterBitsPerKey, 64) },
  'block-cache-size': { prop: 'blockCacheSize', ...size(ENGINE_MINIMUMS.blockCacheSize) },
  'max-open-files': { prop: 'maxOpenFiles', ...integer(ENGINE_MINIMUMS.maxOpenFiles) },
  'max-bytes-for-level-base': { prop: 'maxBytesForLevelBase', ...size(ENGINE_MINIMUMS.maxBytesForLevelBase) },
  'max-bytes-for-level-multiplier': { prop: 'maxBytesForLevelMultiplier', ...integer(ENGINE_MINIMUMS.maxBytesForLevelMultiplier) },
  'target-file-size-base': { prop: 'targetFileSizeBase', ...size(ENGINE_MINIMUMS.targetFileSizeBase) },
  'level0-file-num-compaction-trigger': { prop: 'level0FileNumCompactionTrigger', ...integer(ENGINE_MINIMUMS.level0FileNumCompactionTrigger) },
  'level0-slowdown-writes-trigger': { prop: 'level0SlowdownWritesTrigger', ...integer(ENGINE_MINIMUMS.level0SlowdownWritesTrigger) },
  'level0-stop-writes-trigger': { prop: 'level0StopWritesTrigger', ...integer(ENGINE_MINIMUMS.level0StopWritesTrigger) },
  'num-levels': { prop: 'numLevels', ...integer(ENGINE_MINIMUMS.numLevels, 20) },
  'no-space-retry-interval': { prop: 'noSpaceRetryIntervalMs', ...duration(ENGINE_MINIMUMS.noSpaceRetryIntervalMs) },
  'no-space-retry-max-interval': { prop: 'noSpaceRetryMaxIntervalMs', ...duration(ENGINE_MINIMUMS.noSpaceRetryMaxIntervalMs) },
};

/** Server row cache (RocksDB's row_cache): hot keys without a walk through the engine. */
const DEFAULT_ROW_CACHE_SIZE = 64 * 1024 * 1024;

const DEFAULT_DATA_DIR = './data';

/** A request must fit one Buffer; newer Node.js allows more than 4 GiB, but no sane request needs it. */
const MAX_REQUEST_SIZE_LIMIT = Math.min(bufferConstants.MAX_LENGTH, 2 ** 32);

// TLS paths are read flat from [security] and gathered into `security.tls` by a rule.
const TLS_PROPS = { 'cert-path': 'tlsCertPath', 'key-path': 'tlsKeyPath', 'ca-path': 'tlsCaPath' } as const;

/** Dotted TOML section name → its keys. Sections are read in this order. */
const SCHEMA: Readonly<Record<string, Section>> = {
  storage: {
    into: ['storage'],
    fields: {
      'data-dir': { prop: 'dataDir', default: (ctx) => resolve(ctx.baseDir, DEFAULT_DATA_DIR), ...localPath() },
      'sync-writes': { prop: 'syncWrites', default: () => DEFAULT_SYNC_WRITES, ...oneOf(SYNC_WRITES) },
      'row-cache-size': { prop: 'rowCacheSize', default: () => DEFAULT_ROW_CACHE_SIZE, ...size(0, 2 ** 40) },
      'wal-recovery-mode': { prop: 'walRecoveryMode', default: () => 'absolute-consistency', ...oneOf(WAL_RECOVERY_MODES) },
    },
  },
  server: {
    into: ['server'],
    fields: {
      addr: { prop: 'addr', default: () => ({ ...DEFAULT_SERVER.addr }), ...hostPort() },
      'status-addr': { prop: 'statusAddr', default: () => ({ ...DEFAULT_SERVER.statusAddr }), ...hostPort() },
      'max-clients': { prop: 'maxClients', default: () => DEFAULT_SERVER.maxClients, ...integer(1) },
      'max-request-size': { prop: 'maxRequestSize', default: () => DEFAULT_SERVER.maxRequestSize, ...size(1024, MAX_REQUEST_SIZE_LIMIT) },
      'client-query-buffer-limit': { prop: 'clientQueryBufferLimit', default: () => DEFAULT_SERVER.clientQueryBufferLimit, ...size(2 ** 20, 2 ** 40) },
      'maxmemory-clients': { prop: 'maxmemoryClients', default: () => DEFAULT_SERVER.maxmemoryClients, ...sizeOrPercent() },
      'client-output-buffer-limit': { prop: 'clientOutputBufferLimit', default: () => DEFAULT_SERVER.clientOutputBufferLimit, ...outputBufferLimit() },
    },
  },
  // Before [security.encryption]: each section's object is set at its `into` path, and this
  // one must not replace the encryption object read into it.
  security: {
    into: ['security'],
    fields: {
      requirepass: { prop: 'requirepass', secret: true, ...text('a non-empty string (clients send it with AUTH)') },
      // Its default depends on the encryption method: set by a rule once every section is read.
      'redact-info-log': { prop: 'redactInfoLog', ...flag() },
      'cert-path': { prop: TLS_PROPS['cert-path'], ...localPath() },
      'key-path': { prop: TLS_PROPS['key-path'], ...localPath() },
      'ca-path': { prop: TLS_PROPS['ca-path'], ...localPath() },
    },
  },
  'security.encryption': {
    into: ['security', 'encryption'],
    fields: {
      'data-encryption-method': {
        prop: 'dataEncryptionMethod',
        default: () => DEFAULT_ENCRYPTION.dataEncryptionMethod,
        ...oneOf(ENCRYPTION_METHODS),
      },
      'data-key-rotation-period': {
        prop: 'dataKeyRotationPeriodMs',
        default: () => DEFAULT_ENCRYPTION.dataKeyRotationPeriodMs,
        ...duration(1000),
      },
      'enable-file-dictionary-log': {
        prop: 'enableFileDictionaryLog',
        default: () => DEFAULT_ENCRYPTION.enableFileDictionaryLog,
        ...flag(),
      },
      'file-dictionary-rewrite-threshold': {
        prop: 'fileDictionaryRewriteThreshold',
        default: () => DEFAULT_ENCRYPTION.fileDictionaryRewriteThreshold,
        ...integer(1),
      },
    },
  },
  'security.encryption.master-key': masterKeySection('masterKey'),
  'security.encryption.previous-master-key': masterKeySection('previousMasterKey'),
  engine: { into: ['engine'], fields: ENGINE_FIELDS },
  log: {
    into: ['log'],
    fields: {
      level: { prop: 'level', default: () => DEFAULT_LOG.level, ...oneOf(LOG_LEVELS) },
      format: { prop: 'format', default: () => DEFAULT_LOG.format, ...oneOf(LOG_FORMATS) },
    },
  },
};

const MASTER_KEY_EXAMPLE =
  '\n\n  [security.encryption.master-key]\n  type = "file"\n  path = "/run/tdekv/master.key"   # 64 hex characters and a newline\n\n' +
  'or type = "kms" with key-id and region.';

/** Rules that span several keys, applied after every section has been read. */
const RULES: ReadonlyArray<(config: TdekvConfig, where: string) => void> = [
  (config, where) => {
    const enc = config.security.encryption;
    // The reader leaves absent optional sections out, so the type's promise is not yet kept here.
    if ((enc.masterKey as MasterKeyConfig | undefined) !== undefined) return;
    if (enc.dataEncryptionMethod !== 'plaintext') {
      throw invalid(
        `${where}: security.encryption.data-encryption-method = "${enc.dataEncryptionMethod}" needs a master key, ` +
          `but there is no [security.encryption.master-key]. Add one, for example:${MASTER_KEY_EXAMPLE}`,
      );
    }
    if (enc.previousMasterKey !== undefined) {
      throw invalid(
        `${where}: [security.encryption.previous-master-key] is set without [security.encryption.master-key]; ` +
          `while rotating, previous-master-key is the old key and master-key the new one. Add it, for example:${MASTER_KEY_EXAMPLE}`,
      );
    }
    enc.masterKey = { type: 'plaintext' };
  },
  (config, where) => {
    const enc = config.security.encryption;
    checkKmsEndpoint(enc.masterKey, 'security.encryption.master-key.endpoint', where);
    checkKmsEndpoint(enc.previousMasterKey, 'security.encryption.previous-master-key.endpoint', where);
  },
  (config) => {
    // TiKV's redact-info-log is opt-in; here whoever encrypts the data would not want its
    // keys and values written to logs in clear, so encryption turns redaction on by default.
    const security = config.security as Partial<typeof config.security>;
    security.redactInfoLog ??= config.security.encryption.dataEncryptionMethod !== 'plaintext';
  },
  (config, where) => {
    const flat = config.security as unknown as Record<string, string | undefined>;
    const paths: Partial<Record<keyof typeof TLS_PROPS, string>> = {};
    for (const [key, prop] of Object.entries(TLS_PROPS) as Array<[keyof typeof TLS_PROPS, string]>) {
      if (flat[prop] !== undefined) paths[key] = flat[prop];
      delete flat[prop];
    }
    const { 'cert-path': certPath, 'key-path': keyPath, 'ca-path': caPath } = paths;
    if (certPath !== undefined && keyPath !== undefined) {
      config.security.tls = { certPath, keyPath, ...(caPath !== undefined ? { caPath } : {}) } satisfies TlsConfig;
      return;
    }
    const given = Object.keys(paths).map((k) => `security.${k}`);
    if (given.length === 0) return;
    const missing = (['cert-path', 'key-path'] as const).filter((k) => paths[k] === undefined).map((k) => `security.${k}`);
    throw invalid(
      `${where}: ${given.join(' and ')} ${given.length === 1 ? 'is' : 'are'} set without ${missing.join(' and ')}. ` +
        'TLS needs cert-path (the server certificate, PEM) and key-path (its private key, PEM) together; ' +
        'ca-path (PEM) is optional and makes clients present a certificate signed by that CA.',
    );
  },
  (config, where) => {
    const { addr, statusAddr } = config.server;
    if (addr.port !== 0 && addr.port === statusAddr.port && addr.host === statusAddr.host) {
      throw invalid(`${where}: server.addr and server.status-addr are both ${formatHostPort(addr)}; give them different ports (or port 0 for a free one).`);
    }
  },
  (config, where) => checkEngineTuning(config.engine, where, (setting) => `engine.${tomlName(setting)}`),
];

/** The engine's cross-setting rules, for both readers. */
function checkEngineTuning(engine: Partial<EngineTuning>, where: string, name: (setting: keyof EngineTuning) => string): void {
  const problem = tuningProblem({ ...DEFAULT_ENGINE_TUNING, ...engine }, name);
  if (problem !== undefined) fail(`${where}: ${problem}.`);
}

/** An engine setting's TOML key, from the schema's [engine] rows. */
function tomlName(setting: keyof EngineTuning): string {
  const row = Object.entries(SCHEMA['engine']!.fields).find(([, field]) => field.prop === setting);
  return row?.[0] ?? setting;
}

function checkKmsEndpoint(mk: MasterKeyConfig | undefined, name: string, where: string): void {
  if (mk?.type !== 'kms') return;
  const why = insecureKmsEndpoint(mk.endpoint, mk.allowInsecureEndpoint);
  if (why !== undefined) fail(`${where}: ${name} = ${show(mk.endpoint ?? '')} is refused: ${why}.`);
}

// ---- reader -----------------------------------------------------------------------------

export function parseConfig(text: string, options: ParseConfigOptions): TdekvConfig {
  const where = options.source;
  const ctx: Context = { baseDir: options.baseDir };
  const root = parseToml(text, where);
  checkContainer(root, '', where);
  const out: Record<string, unknown> = {};
  for (const [name, section] of Object.entries(SCHEMA)) {
    const table = tableAt(root, name, where);
    if (table === undefined && section.optional === true) continue;
    setAt(out, section.into, readSection(name, section, table ?? {}, ctx, where));
  }
  // SCHEMA's `into`/`prop` names mirror TdekvConfig; the full-config test holds them together.
  const config = out as unknown as TdekvConfig;
  for (const rule of RULES) rule(config, where);
  return config;
}

export async function loadConfig(path: string): Promise<TdekvConfig> {
  const file = resolve(path);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = errnoCode(err) ?? 'unknown error';
    const why = own(READ_ERRORS, code) ?? code;
    const message = `${file}: cannot read the configuration file (${why}). Check the path and its permissions.`;
    throw new TdekvError('CONFIG_INVALID', message, { cause: err });
  }
  return parseConfig(text, { source: file, baseDir: dirname(file) });
}

const READ_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'it is a directory',
};

function parseToml(text: string, where: string): TomlTable {
  try {
    return parse(text.replace(/^\uFEFF/, ''), { integersAsBigInt: true, unsafeKeyBehaviour: 'throw' });
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    // smol-toml's message carries an excerpt of the surrounding lines, which may hold a secret;
    // keep only its first line and do not attach the original as `cause`.
    const reason = (err.message.split('\n')[0] ?? '').replace(/^Invalid TOML document:\s*/, '');
    return fail(`${where}:${err.line}:${err.column}: invalid TOML at line ${err.line}, column ${err.column}: ${reason}`);
  }
}

function readSection(name: string, section: Section, table: TomlTable, ctx: Context, where: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let fields = section.fields;
  let scope = `in [${name}]`;
  const tagKey = section.variantBy;
  if (tagKey !== undefined && section.variants !== undefined) {
    const tagField = own(fields, tagKey);
    const raw = own(table, tagKey);
    if (tagField === undefined) throw new Error(`schema: [${name}] variantBy names no field`);
    if (raw === undefined) {
      const tags = Object.keys(section.variants).map((v) => `"${v}"`);
      return fail(`${where}: ${name}.${tagKey} is required in [${name}]. Allowed: ${tags.join(' | ')}.`);
    }
    const tag = convertValue(`${name}.${tagKey}`, tagField, raw, ctx, where) as string;
    fields = { ...fields, ...own(section.variants, tag) };
    scope += ` with ${tagKey} = "${tag}"`;
  }

  for (const [key, value] of Object.entries(table)) {
    if (own(fields, key) !== undefined) continue;
    const full = `${name}.${key}`;
    if (isNode(full)) {
      const sub = asTable(value, full, where);
      if (own(SCHEMA, full) === undefined) checkContainer(sub, full, where);
      continue;
    }
    const owner = Object.entries(section.variants ?? {}).find(([, f]) => own(f, key) !== undefined);
    const note = owner === undefined ? '' : ` (${key} belongs to ${tagKey ?? 'type'} = "${owner[0]}")`;
    unknownKey(full, value, [...Object.keys(fields), ...childrenOf(name).map((c) => `[${c}]`)], scope, where, note);
  }

  for (const [key, field] of Object.entries(fields)) {
    const full = `${name}.${key}`;
    const raw = own(table, key);
    if (raw !== undefined) out[field.prop] = convertValue(full, field, raw, ctx, where);
    else if (field.required === true) fail(`${where}: ${full} is required ${scope}. Allowed: ${field.allowed}.`);
    else if (field.default !== undefined) out[field.prop] = field.default(ctx);
  }
  return out;
}

/** Tables that only hold sections (the top level): every key must be a known section. */
function checkContainer(table: TomlTable, name: string, where: string): void {
  for (const [key, value] of Object.entries(table)) {
    const full = name === '' ? key : `${name}.${key}`;
    if (!isNode(full)) {
      const scope = name === '' ? 'at the top level' : `in [${name}]`;
      unknownKey(full, value, childrenOf(name).map((c) => `[${c}]`), scope, where, '');
    }
    const sub = asTable(value, full, where);
    if (own(SCHEMA, full) === undefined) checkContainer(sub, full, where);
  }
}

function convertValue(full: string, field: Field, raw: TomlValue, ctx: Context, where: string): unknown {
  const viaInteger = field.fromInteger !== undefined && typeof raw === 'bigint';
  if (kindOf(raw) !== field.kind && !viaInteger) {
    const expected = KIND_NAMES[field.kind] + (field.fromInteger !== undefined ? ' or an integer' : '');
    fail(`${where}: ${full} must be ${expected}, but is ${describe(raw, field.secret)}. Allowed: ${field.allowed}.`);
  }
  try {
    if (viaInteger) return field.fromInteger!(raw);
    return field.convert(raw as never, ctx);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    const shown = field.secret === true ? `${full} (value not shown)` : `${full} = ${show(raw)}`;
    return fail(`${where}: ${shown} is invalid: ${reason}. Allowed: ${field.allowed}.`);
  }
}

function unknownKey(full: string, value: TomlValue, allowed: string[], scope: string, where: string, note: string): never {
  const what = isTable(value) ? `unknown section [${full}]` : `unknown key ${full}`;
  const key = full.slice(full.lastIndexOf('.') + 1);
  const guess = closest(key, allowed.map((a) => a.replace(/^\[(?:.*\.)?(.*)\]$/, '$1')));
  const hint = guess === undefined || note !== '' ? '' : ` Did you mean ${guess}?`;
  // The value is not echoed: an unknown key may well be someone's attempt at a secret.
  return fail(`${where}: ${what}${note}.${hint} Allowed ${scope}: ${allowed.join(', ') || '(nothing else)'}.`);
}

// ---- helpers ----------------------------------------------------------------------------

function fail(message: string): never {
  throw invalid(message);
}

function invalid(message: string): TdekvError {
  return new TdekvError('CONFIG_INVALID', message);
}

/** Own properties only: a key like "constructor" must not find Object.prototype's. */
function own<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/** Dotted names of the sections and containers directly below `name` ('' is the top level). */
function childrenOf(name: string): string[] {
  const prefix = name === '' ? '' : `${name}.`;
  const children = new Set<string>();
  for (const section of Object.keys(SCHEMA)) {
    if (!section.startsWith(prefix)) continue;
    const next = section.slice(prefix.length).split('.')[0];
    if (next !== undefined && next !== '') children.add(prefix + next);
  }
  return [...children];
}

function isNode(full: string): boolean {
  return own(SCHEMA, full) !== undefined || childrenOf(full).length > 0;
}

function tableAt(root: TomlTable, name: string, where: string): TomlTable | undefined {
  let table: TomlTable = root;
  let path = '';
  for (const part of name.split('.')) {
    path = path === '' ? part : `${path}.${part}`;
    const next = own(table, part);
    if (next === undefined) return undefined;
    table = asTable(next, path, where);
  }
  return table;
}

function asTable(value: TomlValue, full: string, where: string): TomlTable {
  if (isTable(value)) return value;
  // Not echoed: a value where a section belongs could be a key pasted in the wrong place.
  return fail(`${where}: ${full} must be a section ([${full}]), but is ${describe(value, true)}.`);
}

function setAt(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const part of path.slice(0, -1)) {
    const child = (node[part] ??= {}) as Record<string, unknown>;
    node = child;
  }
  node[path[path.length - 1]!] = value;
}

function isTable(value: TomlValue): value is TomlTable {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof TomlDate);
}

function kindOf(value: TomlValue): Kind | undefined {
  switch (typeof value) {
    case 'string':
      return 'string';
    case 'boolean':
      return 'boolean';
    case 'bigint':
      return 'integer';
    default:
      return undefined;
  }
}

function describe(value: TomlValue, secret: boolean | undefined): string {
  const hide = secret === true;
  if (typeof value === 'string') return hide ? 'a string' : `the string ${show(value)}`;
  if (typeof value === 'bigint') return hide ? 'an integer' : `the integer ${value}`;
  if (typeof value === 'number') return hide ? 'a float' : `the float ${Number.isInteger(value) ? value.toFixed(1) : value}`;
  if (typeof value === 'boolean') return hide ? 'a boolean' : `the boolean ${value}`;
  if (Array.isArray(value)) return 'an array';
  if (value instanceof TomlDate) return 'a date/time';
  return 'a table';
}

function show(value: TomlValue): string {
  if (typeof value !== 'string') return String(value);
  const quoted = JSON.stringify(value);
  return quoted.length > 80 ? `${quoted.slice(0, 77)}..."` : quoted;
}

/** A near miss (typo, or snake_case for kebab-case) worth suggesting, if any. */
function closest(key: string, candidates: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replaceAll('_', '-');
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const d = editDistance(norm(key), norm(candidate));
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
    }
    prev = row;
  }
  return prev[b.length]!;
}

// ---- JS options (embedded use) ----------------------------------------------------------

/** What `configFromOptions` returns: the env's settings and the tuning options that were given. */
export interface OptionsConfig {
  encryption: EncryptionConfig;
  /** Only the options given; the engine fills in the rest from DEFAULT_ENGINE_TUNING. */
  engine: Partial<EngineTuning>;
  /** `walRecoveryMode` ([storage] wal-recovery-mode). */
  walRecoveryMode: WalRecoveryMode;
}

/** [storage] settings that the embedded API takes too (the rest are the server's). */
const EMBEDDED_STORAGE_FIELDS = ['wal-recovery-mode'] as const;

const ENCRYPTION_SECTION = 'security.encryption';
const MASTER_KEY_OPTIONS: Readonly<Record<string, string>> = {
  masterKey: 'security.encryption.master-key',
  previousMasterKey: 'security.encryption.previous-master-key',
};

const MASTER_KEY_OPTION_EXAMPLE =
  "masterKey: { type: 'file', path: '/run/tdekv/master.key' } (64 hex characters and a newline), " +
  "or { type: 'kms', keyId, region }";

const OPTION_KIND_NAMES: Record<Kind, string> = {
  string: 'a string',
  boolean: 'a boolean (true or false)',
  integer: 'an integer',
};

/** TOML kebab-case key → JS option camelCase name ("key-id" → "keyId"). */
export function optionName(tomlKey: string): string {
  return tomlKey.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** How configFromOptions treats option names that are not its own. */
export interface OptionNamesPolicy {
  /** Names the caller handles itself (e.g. abstract-level's `keyEncoding`): ignored. */
  passthrough?: readonly string[];
  /**
   * 'reject' (default): any other name is an error. 'near-misses': only a name within a
   * typo of one of ours is (for callers that forward unknown options elsewhere by design,
   * as abstract-level forwards them to open hooks).
   */
  unknown?: 'reject' | 'near-misses';
}

/** Every option name configFromOptions reads. */
export function configOptionNames(): string[] {
  const names = (fields: Fields) => Object.keys(fields).map(optionName);
  return [...names(SCHEMA[ENCRYPTION_SECTION]!.fields), ...Object.keys(MASTER_KEY_OPTIONS), ...names(ENGINE_FIELDS), ...names(embeddedStorageFields())];
}

/**
 * The embedded API's options (camelCase, as `new TdekvLevel(dir, options)` takes them),
 * validated by the same schema and validators as the TOML file: the same settings, the same
 * defaults, the same rules, and CONFIG_INVALID errors that name the option (in camelCase) and
 * what is allowed. `dataKeyRotationPeriod` and a KMS `timeout` also take a number of
 * milliseconds; relative paths resolve against the process's current directory. Options
 * whose value is `undefined` count as absent.
 */
export function configFromOptions(options: Readonly<Record<string, unknown>>, where: string, policy: OptionNamesPolicy = {}): OptionsConfig {
  const ctx: Context = { baseDir: process.cwd() };
  const encFields = SCHEMA[ENCRYPTION_SECTION]!.fields;
  const known = configOptionNames();
  const passthrough = policy.passthrough ?? [];
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined || known.includes(key) || passthrough.includes(key)) continue;
    if (policy.unknown === 'near-misses' && closest(key, [...known, ...passthrough]) === undefined) continue;
    unknownOption(key, '', [...known, ...passthrough], 'in the options', where, sectionNote(key));
  }

  const enc = readOptionFields(encFields, options, '', 'in the options', ctx, where, true);
  for (const [option, section] of Object.entries(MASTER_KEY_OPTIONS)) {
    const raw = own(options, option);
    if (raw !== undefined) enc[SCHEMA[section]!.into.at(-1)!] = readMasterKeyOption(option, SCHEMA[section]!, raw, ctx, where);
  }
  const engine = readOptionFields(ENGINE_FIELDS, options, '', 'in the options', ctx, where, false) as Partial<EngineTuning>;
  const storage = readOptionFields(embeddedStorageFields(), options, '', 'in the options', ctx, where, true) as { walRecoveryMode: WalRecoveryMode };

  const encryption = enc as unknown as EncryptionConfig;
  for (const option of Object.keys(MASTER_KEY_OPTIONS)) {
    checkKmsEndpoint(option === 'masterKey' ? encryption.masterKey : encryption.previousMasterKey, `${option}.endpoint`, where);
  }
  if ((encryption.masterKey as MasterKeyConfig | undefined) === undefined) {
    if (encryption.dataEncryptionMethod !== 'plaintext') {
      fail(
        `${where}: dataEncryptionMethod = "${encryption.dataEncryptionMethod}" needs a master key, but there is no masterKey option. ` +
          `Add one, for example ${MASTER_KEY_OPTION_EXAMPLE}.`,
      );
    }
    if (encryption.previousMasterKey !== undefined) {
      fail(
        `${where}: previousMasterKey is set without masterKey; while rotating, previousMasterKey is the old key and masterKey the new one. ` +
          `Add masterKey, for example ${MASTER_KEY_OPTION_EXAMPLE}.`,
      );
    }
    encryption.masterKey = { type: 'plaintext' };
  }

  checkEngineTuning(engine, where, (setting) => setting);
  return { encryption, engine, walRecoveryMode: storage.walRecoveryMode };
}

function embeddedStorageFields(): Fields {
  const all = SCHEMA['storage']!.fields;
  return Object.fromEntries(EMBEDDED_STORAGE_FIELDS.map((name) => [name, all[name]!]));
}

/** A TOML section's name used as an option: say that the options are flat. */
function sectionNote(key: string): string {
  const sections = new Set(Object.keys(SCHEMA).flatMap((name) => name.split('.')).map(optionName));
  if (!sections.has(key) || MASTER_KEY_OPTIONS[key] !== undefined) return '';
  return (
    ` (options are flat: there is no ${key} object; the TOML file's [security.encryption] and [engine] settings are ` +
    `top-level options in camelCase, e.g. { dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path }, writeBufferSize })`
  );
}

function readMasterKeyOption(option: string, section: Section, raw: unknown, ctx: Context, where: string): Record<string, unknown> {
  if (!isPlainObject(raw)) {
    return fail(`${where}: ${option} must be an object, but is ${describeOption(raw, true)}. For example ${MASTER_KEY_OPTION_EXAMPLE}.`);
  }
  const variants = section.variants ?? {};
  const tags = Object.keys(variants);
  const typeField = section.fields['type']!;
  const rawType = own(raw, 'type');
  if (rawType === undefined) return fail(`${where}: ${option}.type is required. Allowed: ${tags.map((t) => `'${t}'`).join(' | ')}.`);
  const tag = convertOption(`${option}.type`, typeField, rawType, ctx, where) as string;
  const fields = { ...section.fields, ...own(variants, tag) };
  const scope = `in ${option} with type '${tag}'`;
  const allowed = Object.keys(fields).map(optionName);
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined || allowed.includes(key)) continue;
    const owner = Object.entries(variants).find(([, f]) => Object.keys(f).map(optionName).includes(key));
    const note = owner === undefined ? '' : ` (${key} belongs to type '${owner[0]}')`;
    unknownOption(key, option, allowed, scope, where, note);
  }
  return readOptionFields(fields, raw, `${option}.`, scope, ctx, where, true);
}

function readOptionFields(
  fields: Fields,
  options: Readonly<Record<string, unknown>>,
  prefix: string,
  scope: string,
  ctx: Context,
  where: string,
  defaults: boolean,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [tomlKey, field] of Object.entries(fields)) {
    const name = prefix + optionName(tomlKey);
    const raw = own(options, optionName(tomlKey));
    if (raw !== undefined) out[field.prop] = convertOption(name, field, raw, ctx, where);
    else if (field.required === true) fail(`${where}: ${name} is required ${scope}. Allowed: ${field.optionAllowed ?? field.allowed}.`);
    else if (defaults && field.default !== undefined) out[field.prop] = field.default(ctx);
  }
  return out;
}

function convertOption(name: string, field: Field, raw: unknown, ctx: Context, where: string): unknown {
  const allowed = field.optionAllowed ?? field.allowed;
  const shown = field.secret === true ? `${name} (value not shown)` : `${name} = ${showOption(raw)}`;
  let value: unknown = raw;
  if (field.kind === 'integer' && typeof raw === 'number' && Number.isInteger(raw)) value = BigInt(raw);
  else if (typeof raw === 'number' && field.fromNumber !== undefined) {
    try {
      return field.fromNumber(raw);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      return fail(`${where}: ${shown} is invalid: ${reason}. Allowed: ${allowed}.`);
    }
  }
  const kind = typeof value === 'bigint' ? 'integer' : typeof value;
  if (kind !== field.kind) {
    const expected = OPTION_KIND_NAMES[field.kind] + (field.fromNumber !== undefined ? ' or a number' : '');
    fail(`${where}: ${name} must be ${expected}, but is ${describeOption(raw, field.secret)}. Allowed: ${allowed}.`);
  }
  try {
    return field.convert(value as never, ctx);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return fail(`${where}: ${shown} is invalid: ${reason}. Allowed: ${allowed}.`);
  }
}

function unknownOption(key: string, parent: string, allowed: readonly string[], scope: string, where: string, note = ''): never {
  const full = parent === '' ? key : `${parent}.${key}`;
  const guess = closest(key, allowed);
  const hint = guess === undefined || note !== '' ? '' : ` Did you mean ${guess}?`;
  // As in the TOML reader, the value is not echoed.
  return fail(`${where}: unknown option ${full}${note}.${hint} Allowed ${scope}: ${allowed.join(', ') || '(nothing else)'}.`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function describeOption(value: unknown, secret: boolean | undefined): string {
  const hide = secret === true;
  switch (typeof value) {
    case 'string':
      return hide ? 'a string' : `the string ${showOption(value)}`;
    case 'number':
      return hide ? 'a number' : `the number ${value}`;
    case 'bigint':
      return hide ? 'a bigint' : `the bigint ${value}`;
    case 'boolean':
      return hide ? 'a boolean' : `the boolean ${value}`;
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    default:
      if (value === null) return 'null';
      if (Array.isArray(value)) return 'an array';
      return 'an object';
  }
}

function showOption(value: unknown): string {
  if (typeof value === 'string') return show(value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return describeOption(value, true);
}
