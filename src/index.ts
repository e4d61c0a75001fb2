/** Public API. The engine and `abstract-level` class will join these. */
export { TdekvError, isTdekvError, type TdekvErrorCode } from './errors.js';
export { ENCRYPTION_METHODS, type EncryptionMethod } from './crypto/method.js';
export { loadConfig, parseConfig } from './config/config.js';
export type { TdekvConfig, EncryptionConfig, MasterKeyConfig } from './config/types.js';
export type { MasterKey, MasterKeyType } from './masterkey/master-key.js';
export { createMasterKey } from './masterkey/create.js';
export { FileMasterKey } from './masterkey/file.js';
export { KmsMasterKey } from './masterkey/kms.js';
export { PlaintextMasterKey } from './masterkey/plaintext.js';
export { EncryptedEnv, type EnvOptions, type EncryptionStats } from './env/encrypted-env.js';
export { EncryptedWritableFile } from './env/writable-file.js';
export { EncryptedReadableFile } from './env/readable-file.js';
export { openEnv, openEnvFromConfig, ManagedEnv } from './env/open-env.js';
export type { DataKeyInfo } from './keys/data-key.js';
export type { FileInfo } from './keys/file-dictionary-format.js';
export { createLogger, type Logger, type LoggerOptions, type LogFormat } from './log/logger.js';
export { TdekvLevel, type TdekvLevelOptions, type MasterKeyOption, type TdekvWriteOptions } from './level/tdekv-level.js';
