import type { MasterKey, MasterKeyPublicInfo, WrappingKey } from './master-key.js';

/**
 * For tests and first steps only: the dictionary is sealed under an all-zero key, so it
 * keeps its integrity check but protects nothing. Data keys saved under it are exposed.
 */
export class PlaintextMasterKey implements MasterKey {
  readonly type = 'plaintext' as const;
  readonly description = 'plaintext (no master key: data keys are exposed)';
  readonly protectsKeys = false;

  publicInfo(): MasterKeyPublicInfo {
    return { type: 'plaintext' };
  }

  async newWrappingKey(): Promise<WrappingKey> {
    return { key: Buffer.alloc(32), envelope: Buffer.alloc(0) };
  }

  async recoverWrappingKey(): Promise<Buffer> {
    return Buffer.alloc(32);
  }

  close(): void {}
}
