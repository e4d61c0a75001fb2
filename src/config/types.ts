import type { EngineTuning } from '../engine/options.js';
import type { EncryptionMethod } from '../crypto/method.js';

/** Parsed, validated configuration. TOML names are kebab-case; these are camelCase. */
export interface TdekvConfig {
  storage: StorageConfig;
  security: SecurityConfig;
  /** `[engine]`: only the settings given; the engine's defaults fill in the rest. */
  engine: Partial<EngineTuning>;
}

export interface StorageConfig {
  /** Absolute path (relative paths in a file resolve against the config file's directory). */
  dataDir: string;
}

export interface SecurityConfig {
  encryption: EncryptionConfig;
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
}

export const DEFAULT_ENCRYPTION: Omit<EncryptionConfig, 'masterKey'> = {
  dataEncryptionMethod: 'plaintext',
  dataKeyRotationPeriodMs: 7 * 24 * 3600 * 1000,
  enableFileDictionaryLog: true,
  fileDictionaryRewriteThreshold: 1_000_000,
};

export const DEFAULT_KMS_TIMEOUT_MS = 10_000;
export const DEFAULT_KMS_MAX_ATTEMPTS = 3;
