import type { WalRecoveryMode } from '../engine/options.js';
import type { EngineTuning } from '../engine/options.js';
import type { EncryptionMethod } from '../crypto/method.js';
import type { LogFormat, LogLevel } from '../log/logger.js';

/** Parsed, validated configuration. TOML names are kebab-case; these are camelCase. */
export interface TdekvConfig {
  storage: StorageConfig;
  security: SecurityConfig;
  /** `[engine]`: only the settings given; the engine's defaults fill in the rest. */
  engine: Partial<EngineTuning>;
  /** `[server]`: the Redis-protocol server and its HTTP status endpoint. */
  server: ServerConfig;
  /** `[log]` */
  log: LogConfig;
}

export interface HostPort {
  host: string;
  port: number;
}

export interface ServerConfig {
  /** `addr`, "host:port" (default 127.0.0.1:6380). Port 0 picks a free port. */
  addr: HostPort;
  /** `status-addr`: HTTP /metrics, /status, /healthz (default 127.0.0.1:20180). Port 0 picks a free port. */
  statusAddr: HostPort;
  /** `max-clients` (default 10000): connections beyond it get an error and are closed. */
  maxClients: number;
  /** `max-request-size` in bytes (default 512 MiB): the largest bulk string and the largest whole request. */
  maxRequestSize: number;
}

export type SyncWrites = 'always' | 'everysec' | 'no';

export interface LogConfig {
  /** `level`: pino level (default "info"). */
  level: LogLevel;
  /** `format` (default "auto": readable lines on a terminal, JSON lines otherwise). */
  format: LogFormat;
}

export interface TlsConfig {
  /** Absolute paths. With `caPath`, clients must present a certificate signed by that CA (mutual TLS). */
  caPath?: string;
  certPath: string;
  keyPath: string;
}

export interface StorageConfig {
  /** Absolute path (relative paths in a file resolve against the config file's directory). */
  dataDir: string;
  /** `sync-writes` (server only, default "everysec"): fsync the WAL before every reply, once a second, or never (the OS decides). */
  syncWrites: SyncWrites;
  /** `row-cache-size` in bytes (server only, default 64 MiB; 0 turns it off): recently used keys' records kept decrypted in memory. */
  rowCacheSize: number;
  /**
   * `wal-recovery-mode` (default "absolute-consistency"): what opening does with a complete
   * write-ahead log record that fails its checksum or tag: refuse, or ("point-in-time") open
   * with the writes before it and drop it and everything after.
   */
  walRecoveryMode: WalRecoveryMode;
}

export interface SecurityConfig {
  encryption: EncryptionConfig;
  /** `requirepass`: clients must AUTH with it before any other command. Never logged. */
  requirepass?: string;
  /** `redact-info-log`: keys and values never appear in logs (default: on when encryption is on). */
  redactInfoLog: boolean;
  /** TLS for the Redis port: set when `cert-path` and `key-path` are given (`ca-path` optional). */
  tls?: TlsConfig;
}

export interface EncryptionConfig {
  dataEncryptionMethod: EncryptionMethod;
  /** Milliseconds. */
  dataKeyRotationPeriodMs: number;
  enableFileDictionaryLog: boolean;
  fileDictionaryRewriteThreshold: number;
  masterKey: MasterKeyConfig;
  previousMasterKey?: MasterKeyConfig;
}

export type MasterKeyConfig = PlaintextMasterKeyConfig | FileMasterKeyConfig | KmsMasterKeyConfig;

export interface PlaintextMasterKeyConfig {
  type: 'plaintext';
}

export interface FileMasterKeyConfig {
  type: 'file';
  /** Absolute path. */
  path: string;
  /** `allow-insecure-permissions`: accept a key file group or others may access (absent = false). */
  allowInsecurePermissions?: boolean;
}

export interface KmsMasterKeyConfig {
  type: 'kms';
  keyId: string;
  region: string;
  endpoint?: string;
  /** Per-request timeout, milliseconds (TOML `timeout`, a duration; default 10s). */
  timeoutMs: number;
  /** Attempts per call including the first (TOML `max-attempts`; default 3). */
  maxAttempts: number;
  /** `allow-insecure-endpoint`: accept an http:// endpoint that is not loopback (absent = false). */
  allowInsecureEndpoint?: boolean;
}

export const DEFAULT_ENCRYPTION: Omit<EncryptionConfig, 'masterKey'> = {
  dataEncryptionMethod: 'plaintext',
  dataKeyRotationPeriodMs: 7 * 24 * 3600 * 1000,
  enableFileDictionaryLog: true,
  fileDictionaryRewriteThreshold: 1_000_000,
};

export const DEFAULT_KMS_TIMEOUT_MS = 10_000;
export const DEFAULT_KMS_MAX_ATTEMPTS = 3;
