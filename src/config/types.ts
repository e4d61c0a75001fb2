import type { EngineSettings, WalRecoveryMode } from '../engine/options.js';
import type { EncryptionConfig } from '../env/encryption-config.js';
import type { LogConfig } from '../log/log-config.js';
import type { ServerConfig, SyncWrites, TlsConfig } from '../server/server-options.js';

// Each layer owns its settings' type; this file composes them into the file's sections.
// Re-exported so that callers of the configuration need one import.
export type { EngineTuning, WalRecoveryMode } from '../engine/options.js';
export { DEFAULT_ENCRYPTION, type EncryptionConfig } from '../env/encryption-config.js';
export type { LogConfig, LogFormat, LogLevel } from '../log/log-config.js';
export {
  DEFAULT_KMS_MAX_ATTEMPTS,
  DEFAULT_KMS_TIMEOUT_MS,
  DEFAULT_PKCS11_TIMEOUT_MS,
  type CertificateMasterKeyConfig,
  type FileMasterKeyConfig,
  type KmsMasterKeyConfig,
  type MasterKeyConfig,
  type Pkcs11MasterKeyConfig,
  type PlaintextMasterKeyConfig,
  type ServiceMasterKeyConfig,
} from '../masterkey/master-key-config.js';
export type { ClientMemoryLimit, OutputBufferLimit, ReadAheadMode, ServerConfig, ServerOptions, SyncWrites, TlsConfig } from '../server/server-options.js';
export type { HostPort } from '../util/host-port.js';

/** Parsed, validated configuration. TOML names are kebab-case; these are camelCase. */
export interface TdekvConfig {
  storage: StorageConfig;
  security: SecurityConfig;
  /** `[engine]`: only the settings given; the engine's defaults fill in the rest. */
  engine: EngineSettings;
  /** `[server]`: the Redis-protocol server and its HTTP status endpoint. */
  server: ServerConfig;
  /** `[log]` */
  log: LogConfig;
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
  /**
   * `admin-password`: when set, ENCRYPTION, FLUSHALL, FLUSHDB, SHUTDOWN, CONFIG and DEBUG need a
   * connection that sent `AUTH admin <password>`. Never logged.
   */
  adminPassword?: string;
  /** `redact-info-log`: keys and values never appear in logs (default: on when encryption is on). */
  redactInfoLog: boolean;
  /** TLS for the Redis port: set when `cert-path` and `key-path` are given (`ca-path` optional). */
  tls?: TlsConfig;
}
