import type { EncryptionMethod } from '../crypto/method.js';
import type { MasterKeyConfig } from '../masterkey/master-key-config.js';

/** `[security.encryption]`: how the env encrypts and keeps its keys; config/ reads it from TOML. */
export interface EncryptionConfig {
  dataEncryptionMethod: EncryptionMethod;
  /** Milliseconds. */
  dataKeyRotationPeriodMs: number;
  enableFileDictionaryLog: boolean;
  fileDictionaryRewriteThreshold: number;
  masterKey: MasterKeyConfig;
  previousMasterKey?: MasterKeyConfig;
}

export const DEFAULT_ENCRYPTION: Omit<EncryptionConfig, 'masterKey'> = {
  dataEncryptionMethod: 'plaintext',
  dataKeyRotationPeriodMs: 7 * 24 * 3600 * 1000,
  enableFileDictionaryLog: true,
  fileDictionaryRewriteThreshold: 1_000_000,
};
