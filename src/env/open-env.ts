import type { Logger } from '../log/logger.js';
import { createMasterKey } from '../masterkey/create.js';
import type { MasterKey } from '../masterkey/master-key.js';
import { EncryptedEnv } from './encrypted-env.js';
import type { EncryptionConfig } from './encryption-config.js';
import { KeyAdmin } from './key-admin.js';

export interface OpenEnvOptions {
  logger?: Logger;
  readOnly?: boolean;
  /** See EnvOptions.adoptPlaintextFiles. */
  adoptPlaintextFiles?: boolean;
  /** See EnvOptions.deferOpenWrites: set by callers that open the engine next. */
  deferOpenWrites?: boolean;
}

/** The sections of the configuration (a TdekvConfig is one) that say where the env is and how it encrypts. */
export interface EnvConfig {
  storage: { dataDir: string };
  security: { encryption: EncryptionConfig };
}

/** Opens the env a configuration describes; the master keys are released with the env. */
export async function openEnvFromConfig(config: EnvConfig, options: OpenEnvOptions = {}): Promise<ManagedEnv> {
  return openEnv(config.storage.dataDir, config.security.encryption, options);
}

export async function openEnv(dataDir: string, enc: EncryptionConfig, options: OpenEnvOptions = {}): Promise<ManagedEnv> {
  const masterKey = await createMasterKey(enc.masterKey, { dataDir });
  let previous: MasterKey | undefined;
  try {
    previous = enc.previousMasterKey ? await createMasterKey(enc.previousMasterKey, { dataDir, previous: true }) : undefined;
    if (enc.masterKey.type === 'plaintext' && enc.dataEncryptionMethod !== 'plaintext') {
      options.logger?.warn('master-key type = "plaintext": data keys are stored unprotected and marked exposed; use a file or kms master key outside tests');
    }
    const env = await EncryptedEnv.open({
      dataDir,
      method: enc.dataEncryptionMethod,
      rotationPeriodMs: enc.dataKeyRotationPeriodMs,
      masterKey,
      ...(previous ? { previousMasterKey: previous } : {}),
      fileDictionaryLog: enc.enableFileDictionaryLog,
      fileDictionaryRewriteThreshold: enc.fileDictionaryRewriteThreshold,
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.readOnly !== undefined ? { readOnly: options.readOnly } : {}),
      ...(options.adoptPlaintextFiles !== undefined ? { adoptPlaintextFiles: options.adoptPlaintextFiles } : {}),
      ...(options.deferOpenWrites !== undefined ? { deferOpenWrites: options.deferOpenWrites } : {}),
    });
    // The previous key is only needed to open; once re-sealed it can go.
    previous?.close();
    return new ManagedEnv(env, masterKey);
  } catch (err) {
    masterKey.close();
    previous?.close();
    throw err;
  }
}

/**
 * An env, its key administration, and the master key backends it owns (KMS clients need
 * closing). Give the engine `env` (it keeps only the EngineFs part); keep `keyAdmin` to
 * the CLI and the server's operator views.
 */
export class ManagedEnv {
  readonly #owned = new Set<MasterKey>();
  readonly keyAdmin: KeyAdmin;

  constructor(
    readonly env: EncryptedEnv,
    masterKey: MasterKey,
  ) {
    this.#owned.add(masterKey);
    this.keyAdmin = new KeyAdmin(env);
  }

  /** Online master-key rotation; the env takes ownership of `next`. */
  async rotateMasterKey(next: MasterKey): Promise<void> {
    await this.keyAdmin.rotateMasterKey(next);
    this.#owned.add(next);
  }

  async close(): Promise<void> {
    await this.env.close();
    for (const k of this.#owned) k.close();
  }
}
