import { createHmac, hkdfSync } from 'node:crypto';
import type { EncryptionMethod } from '../crypto/method.js';
import { zeroize } from '../crypto/random.js';
import type { DataKey, DataKeyInfo } from '../keys/data-key.js';
import type { MasterKey } from '../masterkey/master-key.js';
import { keyAdminAccess, type EncryptedEnv, type KeyAdminAccess } from './encrypted-env.js';

/**
 * Key administration of one data dir: data key rotation and retirement, master key
 * rotation, key export, and the keys' metadata for status. Kept apart from EncryptedEnv,
 * which only encrypts files, so whatever holds file access (the engine, through an
 * EngineFs) holds no door to the keys. Operations share the env's lifetime: they are
 * refused once it is closed, and its close() waits for those in flight.
 */
export class KeyAdmin {
  readonly #access: KeyAdminAccess;

  constructor(env: EncryptedEnv) {
    this.#access = keyAdminAccess(env);
  }

  get masterKey(): MasterKey {
    return this.#access.keys.masterKey;
  }

  /** The current data key's metadata, if the method encrypts. */
  currentDataKey(): DataKeyInfo | undefined {
    return this.#access.currentDataKey();
  }

  dataKeys(): DataKeyInfo[] {
    return this.#access.keys.list();
  }

  /** Secrets: for `tdekv ctl encryption-meta dump-key` only. */
  exportDataKeys(ids?: readonly number[]): DataKey[] {
    return this.#access.keys.exportKeys(ids);
  }

  /** A new data key for new files; existing files keep theirs until rewritten (compaction). */
  async rotateDataKey(): Promise<DataKeyInfo> {
    const k = await this.#access.change(() => this.#access.keys.rotate(this.#access.method));
    zeroize(k.key);
    return { id: k.id, method: k.method, createdAtMs: k.createdAtMs, exposed: k.exposed };
  }

  /**
   * Drops data keys that no file uses any more. The used ids are read under the key store's
   * lock (and keys leased to creates in flight are kept), so a file created meanwhile keeps
   * its key.
   */
  retireUnusedKeys(): Promise<number[]> {
    // With plaintext for new files the current key encrypts nothing new: it goes too once no file uses it.
    return this.#access.change(() => this.#access.keys.retireUnused(() => this.#access.usedKeyIds(), { includeCurrent: this.#access.method === 'plaintext' }));
  }

  /** A backup's data key, so the files a restore puts in place under it can be read (EncryptedEnv.importFile). */
  importDataKey(key: DataKey): Promise<void> {
    return this.#access.change(() => this.#access.keys.importKey(key));
  }

  /** `data-encryption-method` for new files. */
  get method(): EncryptionMethod {
    return this.#access.method;
  }

  /**
   * Changes the method for new files on a running database (the lifecycle's ALTER DATABASE …
   * SET ENCRYPTION): from now on every new file uses it, under a new data key made at once
   * (none for plaintext). Existing files keep theirs until rewritten (the encryption scan).
   */
  async setMethod(method: EncryptionMethod): Promise<DataKeyInfo | undefined> {
    return this.#access.change(async () => {
      this.#access.setMethod(method);
      if (method === 'plaintext') return undefined;
      const k = await this.#access.keys.rotate(method);
      zeroize(k.key);
      return { id: k.id, method: k.method, createdAtMs: k.createdAtMs, exposed: k.exposed };
    });
  }

  /** `data-key-rotation-period`, applied online. */
  setRotationPeriodMs(ms: number): void {
    this.#access.setRotationPeriodMs(ms);
  }

  /**
   * An HMAC-SHA256 of `parts` under a key derived (HKDF, its own label) from key.dict's
   * dictionary MAC key: only a holder of the master key can make one, so metadata kept beside
   * the dictionaries (the lifecycle's state) can be told from a forgery. Undefined while
   * key.dict is in the legacy format without that key.
   */
  metadataMac(label: string, ...parts: Uint8Array[]): Buffer | undefined {
    const root = this.#access.keys.dictMacKey();
    if (!root) return undefined;
    const key = Buffer.from(hkdfSync('sha256', root, Buffer.alloc(0), `tdekv metadata mac: ${label}`, 32));
    zeroize(root);
    try {
      const h = createHmac('sha256', key);
      for (const p of parts) h.update(p);
      return h.digest();
    } finally {
      zeroize(key);
    }
  }

  /** Online master-key rotation: re-seals the key dictionary under `next`. */
  async rotateMasterKey(next: MasterKey): Promise<void> {
    await this.#access.change(() => this.#access.keys.rotateMasterKey(next));
  }
}
