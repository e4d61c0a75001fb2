import type { EncryptionMethod } from '../crypto/method.js';
import type { MasterKeyConfig } from '../masterkey/master-key-config.js';

/** `[security.encryption]`: how the env encrypts and keeps its keys; config/ reads it from TOML. */
export interface EncryptionConfig {
  dataEncryptionMethod: EncryptionMethod;
  /** Milliseconds. */
  dataKeyRotationPeriodMs: number;
  enableFileDictionaryLog: boolean;
  fileDictionaryRewriteThreshold: number;
  /** `scan-rate-limit`: bytes/s the encryption scan may rewrite; 0 = unlimited. */
  scanRateLimit?: number;
  /** `scan-auto`: the scan starts by itself after a method change or a data key regeneration. */
  scanAuto?: boolean;
  /** `scan-retire-keys`: once a scan completes, data keys no file uses are retired. */
  scanRetireKeys?: boolean;
  masterKey: MasterKeyConfig;
  previousMasterKey?: MasterKeyConfig;
}

export const DEFAULT_ENCRYPTION: Required<Omit<EncryptionConfig, 'masterKey' | 'previousMasterKey'>> = {
  dataEncryptionMethod: 'plaintext',
  dataKeyRotationPeriodMs: 7 * 24 * 3600 * 1000,
  enableFileDictionaryLog: true,
  fileDictionaryRewriteThreshold: 1_000_000,
  scanRateLimit: 32 * 1024 * 1024,
  scanAuto: true,
  scanRetireKeys: true,
};
