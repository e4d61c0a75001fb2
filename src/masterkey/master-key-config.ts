/** Which master key to use: the masterkey layer's own settings, read by config/ from `[security.encryption.master-key]`. */
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

export const DEFAULT_KMS_TIMEOUT_MS = 10_000;
export const DEFAULT_KMS_MAX_ATTEMPTS = 3;
