import { constants as bufferConstants } from 'node:buffer';
import { resolve } from 'node:path';
import { ENCRYPTION_METHODS } from '../crypto/method.js';
import { ENGINE_MINIMUMS, WAL_RECOVERY_MODES, WAL_SYNC_MODES, type EngineTuning } from '../engine/options.js';
import { LOG_FORMATS } from '../log/log-config.js';
import { DEFAULT_ENCRYPTION, DEFAULT_KMS_MAX_ATTEMPTS, DEFAULT_KMS_TIMEOUT_MS, DEFAULT_PKCS11_TIMEOUT_MS, type LogConfig, type MasterKeyConfig, type ReadAheadMode, type ServerConfig, type SyncWrites } from './types.js';
import { duration, flag, hostPort, httpUrl, integer, localPath, oneOf, outputBufferLimit, size, sizeOrPercent, text, type Context, type Validator } from './validators.js';

/*
 * Everything the configuration may contain, as one table: the SCHEMA below. Both readers are
 * generic over it (toml-config.ts for the file, embedded-options.ts for `new TdekvLevel(dir,
 * options)`), so a new setting is a new row, and it gets the same validation, defaults and
 * errors (source, full name, value, what is allowed) in both for free. Rules across several
 * settings are in rules.ts.
 */

/** `[server]` defaults: Redis's port + 1 (so a local redis-server can run beside it) and TiKV's status port. */
export const DEFAULT_SERVER: Readonly<ServerConfig> = Object.freeze({
  addr: Object.freeze({ host: '127.0.0.1', port: 6380 }),
  statusAddr: Object.freeze({ host: '127.0.0.1', port: 20180 }),
  maxClients: 10_000,
  maxRequestSize: 512 * 2 ** 20,
  clientQueryBufferLimit: 2 ** 30,
  maxmemoryClients: Object.freeze({ percent: 10 }),
  clientOutputBufferLimit: Object.freeze({ hard: 0, soft: 0, softSeconds: 0 }),
  readAhead: 'auto',
});
export const READ_AHEAD_MODES: readonly ReadAheadMode[] = ['auto', 'always', 'never'];
export const DEFAULT_SYNC_WRITES: SyncWrites = 'everysec';
export const SYNC_WRITES: readonly SyncWrites[] = ['always', 'everysec', 'no'];
export const DEFAULT_LOG: Readonly<LogConfig> = Object.freeze({ level: 'info', format: 'auto' });
export const LOG_LEVELS: ReadonlyArray<LogConfig['level']> = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface Field extends Validator {
  /** Property name in TdekvConfig. */
  readonly prop: string;
  readonly required?: boolean;
  /** Config-form value used when the key is absent. */
  readonly default?: (ctx: Context) => unknown;
}

export type Fields = Readonly<Record<string, Field>>;

export interface Section {
  /** Where the section's object lands in TdekvConfig. */
  readonly into: readonly string[];
  readonly fields: Fields;
  /** An absent optional section yields nothing; an absent required one is all defaults. */
  readonly optional?: boolean;
  /** A field whose value selects further allowed fields (master-key `type` → its keys). */
  readonly variantBy?: string;
  readonly variants?: Readonly<Record<string, Fields>>;
}

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
  // No `pin` key on purpose: an unknown key is refused, so a PIN typed into the TOML fails loudly.
  pkcs11: {
    module: { prop: 'module', required: true, ...localPath() },
    'token-label': { prop: 'tokenLabel', ...text('a non-empty string (the token label, as softhsm2-util --show-slots prints it)') },
    slot: { prop: 'slot', ...integer(0, 2 ** 32 - 1) },
    'key-label': { prop: 'keyLabel', required: true, ...text('a non-empty string (CKA_LABEL of the AES key on the token)') },
    'pin-file': { prop: 'pinFile', ...localPath() },
    timeout: { prop: 'timeoutMs', default: () => DEFAULT_PKCS11_TIMEOUT_MS, ...duration(1) },
    'allow-insecure-permissions': { prop: 'allowInsecurePermissions', ...flag() },
  },
  plaintext: {},
  // The service master key comes from its own section, [security.encryption.service-master-key] (a rule attaches it).
  certificate: {
    'key-store': { prop: 'keyStore', required: true, ...localPath() },
    certificate: { prop: 'certificate', required: true, ...text('a certificate name in the key store, as `tdekv key list` shows it') },
  },
};

/** A service master key is machine-bound: one of the backends that hold a key themselves. */
const SERVICE_MASTER_KEY_TYPES = ['file', 'kms', 'pkcs11'] as const;

function masterKeySection(prop: string): Section {
  return {
    into: ['security', 'encryption', prop],
    optional: true,
    variantBy: 'type',
    fields: { type: { prop: 'type', required: true, ...oneOf(Object.keys(MASTER_KEY_VARIANTS)) } },
    variants: MASTER_KEY_VARIANTS,
  };
}

/** `[security.encryption.service-master-key]`: the SMK of `type = "certificate"`, SQL Server's service master key. */
const serviceMasterKeySection: Section = {
  into: ['security', 'encryption', 'serviceMasterKey'],
  optional: true,
  variantBy: 'type',
  fields: { type: { prop: 'type', required: true, ...oneOf(SERVICE_MASTER_KEY_TYPES) } },
  variants: Object.fromEntries(SERVICE_MASTER_KEY_TYPES.map((t) => [t, MASTER_KEY_VARIANTS[t]])),
};

/**
 * Engine tuning (src/engine/options.ts): the TOML [engine] section, and the same names in
 * camelCase as embedded options. Names follow TiKV's RocksDB settings. Sizes are bytes, or a
 * size string ("16MiB") as in every other section.
 */
export const ENGINE_FIELDS: Fields = {
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
  // Not tuning: where flushes and compactions run (src/engine/background/).
  'background-thread': { prop: 'backgroundThread', ...flag() },
  // Not tuning: which thread a sync write's fsync runs on (engine/options.ts, WAL_SYNC_MODES).
  'wal-sync': { prop: 'walSync', ...oneOf(WAL_SYNC_MODES) },
};

/** Server row cache (RocksDB's row_cache): hot keys without a walk through the engine. */
const DEFAULT_ROW_CACHE_SIZE = 64 * 1024 * 1024;

const DEFAULT_DATA_DIR = './data';

/** A request must fit one Buffer; newer Node.js allows more than 4 GiB, but no sane request needs it. */
const MAX_REQUEST_SIZE_LIMIT = Math.min(bufferConstants.MAX_LENGTH, 2 ** 32);

// TLS paths are read flat from [security] and gathered into `security.tls` by a rule.
export const TLS_PROPS = { 'cert-path': 'tlsCertPath', 'key-path': 'tlsKeyPath', 'ca-path': 'tlsCaPath' } as const;

/** Dotted TOML section name → its keys. Sections are read in this order. */
export const SCHEMA: Readonly<Record<string, Section>> = {
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
      'read-ahead': { prop: 'readAhead', default: () => DEFAULT_SERVER.readAhead, ...oneOf(READ_AHEAD_MODES) },
    },
  },
  // Before [security.encryption]: each section's object is set at its `into` path, and this
  // one must not replace the encryption object read into it.
  security: {
    into: ['security'],
    fields: {
      requirepass: { prop: 'requirepass', secret: true, ...text('a non-empty string (clients send it with AUTH)') },
      'admin-password': { prop: 'adminPassword', secret: true, ...text('a non-empty string (admin connections send it with AUTH admin <password>)') },
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
      'scan-rate-limit': {
        prop: 'scanRateLimit',
        default: () => DEFAULT_ENCRYPTION.scanRateLimit,
        ...size(0),
      },
      'scan-auto': {
        prop: 'scanAuto',
        default: () => DEFAULT_ENCRYPTION.scanAuto,
        ...flag(),
      },
      'scan-retire-keys': {
        prop: 'scanRetireKeys',
        default: () => DEFAULT_ENCRYPTION.scanRetireKeys,
        ...flag(),
      },
    },
  },
  'security.encryption.master-key': masterKeySection('masterKey'),
  'security.encryption.previous-master-key': masterKeySection('previousMasterKey'),
  'security.encryption.service-master-key': serviceMasterKeySection,
  engine: { into: ['engine'], fields: ENGINE_FIELDS },
  log: {
    into: ['log'],
    fields: {
      level: { prop: 'level', default: () => DEFAULT_LOG.level, ...oneOf(LOG_LEVELS) },
      format: { prop: 'format', default: () => DEFAULT_LOG.format, ...oneOf(LOG_FORMATS) },
    },
  },
};

/** TOML kebab-case key → JS option camelCase name ("key-id" → "keyId"). */
export function optionName(tomlKey: string): string {
  return tomlKey.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** An engine setting's TOML key, from the schema's [engine] rows. */
export function engineTomlKey(setting: keyof EngineTuning): string {
  const row = Object.entries(SCHEMA['engine']!.fields).find(([, field]) => field.prop === setting);
  return row?.[0] ?? setting;
}

/** Own properties only: a key like "constructor" must not find Object.prototype's. */
export function own<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/** Dotted names of the sections and containers directly below `name` ('' is the top level). */
export function childrenOf(name: string): string[] {
  const prefix = name === '' ? '' : `${name}.`;
  const children = new Set<string>();
  for (const section of Object.keys(SCHEMA)) {
    if (!section.startsWith(prefix)) continue;
    const next = section.slice(prefix.length).split('.')[0];
    if (next !== undefined && next !== '') children.add(prefix + next);
  }
  return [...children];
}

export function isNode(full: string): boolean {
  return own(SCHEMA, full) !== undefined || childrenOf(full).length > 0;
}
