import { readFile } from 'node:fs/promises';
import { TdekvError, errnoCode, isTdekvError } from '../errors.js';
import type { EncryptionMethod } from '../crypto/method.js';
import { zeroize } from '../crypto/random.js';
import { AuthenticationFailure, seal, unseal } from '../crypto/seal.js';
import type { MasterKey, WrappingKey } from '../masterkey/master-key.js';
import type { Logger } from '../log/logger.js';
import { Mutex } from '../util/mutex.js';
import { writeFileAtomic } from './atomic-file.js';
import { timeMetaFile } from './meta-file-timing.js';
import { generateDataKey, infoOf, rotationReason, type DataKey, type DataKeyInfo, type RotationPolicy, type RotationReason } from './data-key.js';
import {
  KeyDictFormatError,
  decodeContent,
  decodeSealedFile,
  encodeContent,
  encodeSealedFile,
  sealedHeader,
  type KeyDictionary,
} from './key-dictionary-format.js';

export interface DataKeyStoreOptions {
  path: string;
  masterKey: MasterKey;
  previousMasterKey?: MasterKey;
  logger: Logger;
  /** Never write: no creation, no re-seal (for `tdekv ctl`). */
  readOnly?: boolean;
}

/**
 * The current key handed to a file being created, and held against retirement until that
 * file's dictionary entry exists. `release()` wipes the copy and lets the id go.
 */
export interface DataKeyLease {
  readonly key: DataKey;
  release(): void;
}

/** Why one master key could not open the dictionary. */
interface Attempt {
  masterKey: MasterKey;
  reason: string;
}

/**
 * The data keys, sealed in key.dict under the master key. Every change is re-sealed with a
 * fresh nonce and written atomically before the new state is used.
 */
export class DataKeyStore {
  readonly path: string;
  #dict: KeyDictionary;
  #masterKey: MasterKey;
  #wrapping: WrappingKey;
  readonly #logger: Logger;
  readonly #readOnly: boolean;
  readonly #mutex = new Mutex();
  /**
   * Ids leased to creates whose dictionary entry is not in the file dictionary yet, with a
   * count each: the file dictionary cannot see them, so retiring must.
   */
  readonly #leased = new Map<number, number>();
  #closed = false;

  private constructor(path: string, dict: KeyDictionary, masterKey: MasterKey, wrapping: WrappingKey, logger: Logger, readOnly: boolean) {
    this.path = path;
    this.#dict = dict;
    this.#masterKey = masterKey;
    this.#wrapping = wrapping;
    this.#logger = logger;
    this.#readOnly = readOnly;
  }

  static async open(options: DataKeyStoreOptions): Promise<DataKeyStore> {
    const { path, masterKey, logger } = options;
    const readOnly = options.readOnly ?? false;
    let raw: Buffer;
    try {
      raw = await timeMetaFile('read', path, () => readFile(path));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      if (readOnly) {
        throw new TdekvError('FILE_NOT_FOUND', `key dictionary ${path} does not exist: is --data-dir the right directory?`);
      }
      // The wrapping key is obtained (a KMS call) before anything is written, so a KMS
      // failure on first start leaves no half-made dictionary behind (TiKV #9488).
      const wrapping = await masterKey.newWrappingKey();
      const store = new DataKeyStore(path, { currentKeyId: 0, keys: new Map() }, masterKey, wrapping, logger, readOnly);
      await store.#persist();
      logger.info({ path, masterKeyType: masterKey.type }, 'created key dictionary');
      return store;
    }

    const parsed = parseSealed(raw, path);
    const attempts: Attempt[] = [];
    for (const candidate of [masterKey, options.previousMasterKey]) {
      if (!candidate) continue;
      if (candidate.type !== parsed.masterKeyType) {
        attempts.push({ masterKey: candidate, reason: `the dictionary was sealed by a '${parsed.masterKeyType}' master key, this one is '${candidate.type}'` });
        continue;
      }
      let wrappingKey: Buffer;
      try {
        wrappingKey = await candidate.recoverWrappingKey(parsed.envelope);
      } catch (err) {
        if (isTdekvError(err, 'MASTER_KEY_WRONG')) {
          attempts.push({ masterKey: candidate, reason: err.message });
          continue;
        }
        throw err;
      }
      let content: Buffer;
      try {
        content = unseal(wrappingKey, parsed.sealed, parsed.aad);
      } catch (err) {
        zeroize(wrappingKey);
        if (!(err instanceof AuthenticationFailure)) throw err;
        attempts.push({ masterKey: candidate, reason: 'authentication failed (AES-256-GCM tag mismatch): it is not the key this dictionary was sealed with' });
        continue;
      }
      const dict = decodeDictionary(content, path);
      zeroize(content);
      if (!candidate.protectsKeys) for (const k of dict.keys.values()) k.exposed = true;

      if (candidate === masterKey) {
        return new DataKeyStore(path, dict, masterKey, { key: wrappingKey, envelope: parsed.envelope }, logger, readOnly);
      }
      zeroize(wrappingKey);
      if (readOnly) {
        // ctl must not write: use the previous key's wrapping without re-sealing.
        return new DataKeyStore(path, dict, candidate, { key: Buffer.alloc(32), envelope: Buffer.alloc(0) }, logger, true);
      }
      const wrapping = await masterKey.newWrappingKey();
      const store = new DataKeyStore(path, dict, masterKey, wrapping, logger, readOnly);
      store.#markExposedIfUnprotected();
      await store.#persist();
      logger.info({ path, from: candidate.description, to: masterKey.description }, 'key dictionary re-sealed under the current master key; previous-master-key can now be removed from the configuration');
      return store;
    }
    throw wrongMasterKeyError(path, attempts);
  }

  get masterKey(): MasterKey {
    return this.#masterKey;
  }

  get currentKeyId(): number {
    return this.#dict.currentKeyId;
  }

  /**
   * A copy of the key for `id`, which the caller wipes once its cipher is built: the store
   * wipes its own buffers on retire and close, and a shared one would leave the caller
   * encrypting under an all-zero key. Throws naming the id if the dictionary does not have it.
   */
  get(id: number): DataKey {
    return copyOf(this.#get(id));
  }

  #get(id: number): DataKey {
    this.#checkOpen();
    const k = this.#dict.keys.get(id);
    if (!k) {
      throw new TdekvError('DATA_KEY_MISSING', `data key ${id} is not in the key dictionary ${this.path}: the dictionary does not belong to these files, or it was restored from an older backup`);
    }
    return k;
  }

  has(id: number): boolean {
    return this.#dict.keys.has(id);
  }

  list(): DataKeyInfo[] {
    return [...this.#dict.keys.values()].map(infoOf);
  }

  /** Secrets, for `tdekv ctl encryption-meta dump-key` only. */
  exportKeys(ids?: readonly number[]): DataKey[] {
    const wanted = ids ?? [...this.#dict.keys.keys()];
    return wanted.map((id) => {
      return this.get(id);
    });
  }

  /**
   * A copy of the key to encrypt a new file with (see get()), rotating first if the policy
   * requires it. A file about to be created takes a lease() instead.
   */
  async current(policy: RotationPolicy, nowMs = Date.now()): Promise<DataKey | undefined> {
    const k = await this.#current(policy, nowMs, false);
    return k && copyOf(k);
  }

  /**
   * The current key for a new file, held against retirement until `release()`: call it once
   * the file's dictionary entry is applied, which is when retireUnused() can see the id.
   */
  async lease(policy: RotationPolicy, nowMs = Date.now()): Promise<DataKeyLease | undefined> {
    const k = await this.#current(policy, nowMs, true);
    if (!k) return undefined;
    const key = copyOf(k);
    let held = true;
    return {
      key,
      release: () => {
        if (!held) return;
        held = false;
        zeroize(key.key);
        const n = (this.#leased.get(key.id) ?? 1) - 1;
        if (n === 0) this.#leased.delete(key.id);
        else this.#leased.set(key.id, n);
      },
    };
  }

  /**
   * The current key, leased (when `lease`) in the same synchronous step that chose it, so no
   * retirement can run between the choice and the lease.
   */
  async #current(policy: RotationPolicy, nowMs: number, lease: boolean): Promise<DataKey | undefined> {
    this.#checkOpen();
    if (policy.method === 'plaintext') return undefined;
    const take = (k: DataKey): DataKey => {
      if (lease) this.#leased.set(k.id, (this.#leased.get(k.id) ?? 0) + 1);
      return k;
    };
    const reason = rotationReason(this.#currentInfo(), { ...policy, masterKeyProtects: this.#masterKey.protectsKeys }, nowMs);
    if (reason === null) return take(this.#get(this.#dict.currentKeyId));
    return this.#mutex.run(async () => {
      this.#checkOpen();
      // Another caller may have rotated while this one waited.
      const again = rotationReason(this.#currentInfo(), { ...policy, masterKeyProtects: this.#masterKey.protectsKeys }, nowMs);
      return take(again === null ? this.#get(this.#dict.currentKeyId) : await this.#rotateLocked(policy.method, again, nowMs));
    });
  }

  /** On-demand rotation: a new current key; old keys stay for the files that use them. */
  rotate(method: EncryptionMethod, nowMs = Date.now()): Promise<DataKey> {
    if (method === 'plaintext') throw new TdekvError('INVALID_ARGUMENT', 'cannot rotate the data key while data-encryption-method = "plaintext"');
    return this.#mutex.run(async () => {
      this.#checkOpen();
      return copyOf(await this.#rotateLocked(method, 'requested', nowMs));
    });
  }

  /**
   * Drops keys that are neither current, leased, nor used by any file. Returns the retired
   * ids. `usedIds` is read under the store's lock, after every rotation queued before it, so
   * pass a function reading the file dictionary as it is then, not a set computed earlier:
   * a key that was current when the set was computed may be in use by now.
   */
  retireUnused(usedIds: ReadonlySet<number> | (() => ReadonlySet<number>)): Promise<number[]> {
    return this.#mutex.run(async () => {
      this.#checkOpen();
      const used = typeof usedIds === 'function' ? usedIds() : usedIds;
      const retired = [...this.#dict.keys.values()].filter((k) => k.id !== this.#dict.currentKeyId && !used.has(k.id) && !this.#leased.has(k.id));
      if (retired.length === 0) return [];
      const keys = new Map(this.#dict.keys);
      for (const k of retired) keys.delete(k.id);
      await this.#commit({ ...this.#dict, keys });
      for (const k of retired) zeroize(k.key);
      this.#logger.info({ ids: retired.map((k) => k.id) }, 'retired unused data keys');
      return retired.map((k) => k.id);
    });
  }

  /** Online master-key rotation: re-seal under `next`; the old master key is no longer needed. */
  rotateMasterKey(next: MasterKey): Promise<void> {
    return this.#mutex.run(async () => {
      this.#checkWritable();
      const wrapping = await next.newWrappingKey();
      const previous = { masterKey: this.#masterKey, wrapping: this.#wrapping };
      this.#masterKey = next;
      this.#wrapping = wrapping;
      this.#markExposedIfUnprotected();
      try {
        await this.#persist();
      } catch (err) {
        this.#masterKey = previous.masterKey;
        this.#wrapping = previous.wrapping;
        zeroize(wrapping.key);
        throw err;
      }
      zeroize(previous.wrapping.key);
      this.#logger.info({ from: previous.masterKey.description, to: next.description }, 'master key rotated');
    });
  }

  /**
   * Wipes the keys. Every key handed out is a copy, so files already set up keep working;
   * anything asked of the store afterwards is refused rather than served a wiped key.
   */
  close(): void {
    this.#closed = true;
    for (const k of this.#dict.keys.values()) zeroize(k.key);
    zeroize(this.#wrapping.key);
  }

  #checkOpen(): void {
    if (this.#closed) throw new TdekvError('CLOSED', `key dictionary ${this.path} is closed`);
  }

  #currentInfo(): DataKeyInfo | undefined {
    const k = this.#dict.keys.get(this.#dict.currentKeyId);
    return k && infoOf(k);
  }

  async #rotateLocked(method: EncryptionMethod, reason: RotationReason, nowMs: number): Promise<DataKey> {
    const key = generateDataKey(method, new Set(this.#dict.keys.keys()), nowMs, !this.#masterKey.protectsKeys);
    const keys = new Map(this.#dict.keys).set(key.id, key);
    await this.#commit({ currentKeyId: key.id, keys });
    this.#logger.info({ id: key.id, method, reason }, 'data key rotated');
    return key;
  }

  /** Installs `next` only once it is durable. */
  async #commit(next: KeyDictionary): Promise<void> {
    this.#checkWritable();
    const before = this.#dict;
    this.#dict = next;
    try {
      await this.#persist();
    } catch (err) {
      this.#dict = before;
      throw err;
    }
  }

  #markExposedIfUnprotected(): void {
    if (!this.#masterKey.protectsKeys) for (const k of this.#dict.keys.values()) k.exposed = true;
  }

  #checkWritable(): void {
    if (this.#readOnly) throw new TdekvError('INVALID_ARGUMENT', `key dictionary ${this.path} is open read-only`);
  }

  async #persist(): Promise<void> {
    const aad = sealedHeader(this.#masterKey.type, this.#wrapping.envelope);
    const content = encodeContent(this.#dict);
    try {
      const sealed = encodeSealedFile(aad, seal(this.#wrapping.key, content, aad));
      await timeMetaFile('write', this.path, () => writeFileAtomic(this.path, sealed));
    } finally {
      zeroize(content);
    }
  }
}

/** Buffer.alloc, not Buffer.from: small Buffer.from copies land in Node's shared pool. */
function copyOf(k: DataKey): DataKey {
  const key = Buffer.alloc(k.key.length);
  k.key.copy(key);
  return { ...k, key };
}

function parseSealed(raw: Buffer, path: string) {
  try {
    return decodeSealedFile(raw);
  } catch (err) {
    if (err instanceof KeyDictFormatError && err.tooNew) {
      throw new TdekvError('FORMAT_TOO_NEW', `key dictionary ${path} cannot be read: ${err.message}. Open it with the newer tdekv that wrote it.`);
    }
    throw new TdekvError(
      'KEY_DICTIONARY_DAMAGED',
      `key dictionary ${path} is damaged: ${(err as Error).message}. It is not a wrong master key. Restore ${path} from a backup; without it the data keys, and so the data, cannot be recovered.`,
    );
  }
}

function decodeDictionary(content: Buffer, path: string): KeyDictionary {
  try {
    return decodeContent(content);
  } catch (err) {
    const code = err instanceof KeyDictFormatError && err.tooNew ? 'FORMAT_TOO_NEW' : 'KEY_DICTIONARY_DAMAGED';
    throw new TdekvError(code, `key dictionary ${path} decrypted but its content is not readable: ${(err as Error).message}`);
  }
}

function wrongMasterKeyError(path: string, attempts: Attempt[]): TdekvError {
  const tried = attempts.map((a, i) => `${i === 0 ? 'master-key' : 'previous-master-key'} (${a.masterKey.description}): ${a.reason}`).join('; ');
  const hint =
    attempts.length < 2
      ? 'Configure the master key the dictionary was sealed with, or set it as [security.encryption.previous-master-key] to rotate to the new one.'
      : 'Neither key sealed this dictionary: find the master key it was sealed with.';
  return new TdekvError('MASTER_KEY_WRONG', `wrong master key for key dictionary ${path}: ${tried}. ${hint}`);
}
