/** Which master key to use: the masterkey layer's own settings, read by config/ from `[security.encryption.master-key]`. */
export type MasterKeyConfig = PlaintextMasterKeyConfig | FileMasterKeyConfig | KmsMasterKeyConfig | Pkcs11MasterKeyConfig | CertificateMasterKeyConfig;

/** The backends that can be a service master key: the machine-bound ones. */
export type ServiceMasterKeyConfig = FileMasterKeyConfig | KmsMasterKeyConfig | Pkcs11MasterKeyConfig;

/**
 * SQL Server's hierarchy: the DEK is wrapped by a certificate in a key store outside the data
 * dir; the certificate's private key by the key store's DMK; the DMK by a password and by the
 * machine's service master key (`[security.encryption.service-master-key]`).
 */
export interface CertificateMasterKeyConfig {
  type: 'certificate';
  /** `key-store`: absolute path of the key store directory. */
  keyStore: string;
  /** `certificate`: the name of the certificate that wraps new DEKs. */
  certificate: string;
  /** From `[security.encryption.service-master-key]`, put here by a config rule. */
  serviceMasterKey: ServiceMasterKeyConfig;
}

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

/**
 * A key on a PKCS#11 token (an HSM, a smart card, SoftHSM2). The PIN comes from `pin-file` or
 * the TDEKV_PKCS11_PIN environment variable, never from the config itself, which is often
 * world-readable, versioned and pasted into tickets.
 */
export interface Pkcs11MasterKeyConfig {
  type: 'pkcs11';
  /** Absolute path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  module: string;
  /** `token-label`: the token's label. Exactly one of tokenLabel and slot. */
  tokenLabel?: string;
  /** `slot`: the slot id, for tokens whose label is not unique. */
  slot?: number;
  /** `key-label`: CKA_LABEL of the AES-256 secret key on the token. */
  keyLabel: string;
  /** `pin-file`: absolute path of a file holding the user PIN (one line); absent: TDEKV_PKCS11_PIN. */
  pinFile?: string;
  /** Per token call, milliseconds (TOML `timeout`, a duration; default 10s). */
  timeoutMs: number;
  /** `allow-insecure-permissions`: accept a PIN file group or others may access (absent = false). */
  allowInsecurePermissions?: boolean;
}

export const DEFAULT_PKCS11_TIMEOUT_MS = 10_000;
/** The environment variable read for the PIN when there is no pin-file. */
export const PKCS11_PIN_ENV = 'TDEKV_PKCS11_PIN';
