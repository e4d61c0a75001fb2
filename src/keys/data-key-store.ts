import { fileIo } from '../util/file-io.js';
import { dirname, join } from 'node:path';
import { TdekvError, isTdekvError } from '../errors.js';
import type { EncryptionMethod } from '../crypto/method.js';
import { randomKey, zeroize } from '../crypto/random.js';
import { AuthenticationFailure, seal, unseal } from '../crypto/seal.js';
import type { MasterKey, WrappingKey } from '../masterkey/master-key.js';
import type { Logger } from '../log/logger.js';
import { Mutex } from '../util/mutex.js';
import { writeFileAtomic } from './atomic-file.js';
import { readMetaFileIfExists as readIfExists, timeMetaFile } from './meta-file-timing.js';
import { checksum32 } from './crc.js';
import { generateDataKey, infoOf, rotationReason, type DataKey, type DataKeyInfo, type RotationPolicy, type RotationReason } from './data-key.js';
import {
  DICT_MAC_KEY_LENGTH,
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

/** Suffix of the second, independently written copy of key.dict (issue 9 item 15). */
export const COPY_SUFFIX = '.copy';
/** Ids of data keys `ctl dump-key` printed; folded into key.dict at the next writable open. */
export const EXPOSED_NOTE_NAME = 'exposed-keys';

/** What the file dictionary tells key.dict, and how key.dict's writes are recorded in it. */
export interface FileDictionaryBinding {
  generation(): number;
  /** Called after every key.dict write with its new generation. */
  recordKeyDictGeneration(generation: number): Promise<void>;
}

/** One readable copy of key.dict. */
interface Opened {
  path: string;
  dict: KeyDictionary;
  masterKey: MasterKey;
  wrappingKey: Buffer;
  envelope: Buffer;
}

/**
 * The data keys, sealed in key.dict (and its copy) under the master key. Every change is
 * re-sealed with a fresh nonce and written atomically before the new state is used.
 */
export class DataKeyStore {
  readonly path: string;
  readonly copyPath: string;
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
  #binding: FileDictionaryBinding | undefined;
  /** Why the dictionary must be written once opening has succeeded (nothing is written before). */
  readonly #pending: string[] = [];
  /** Problems with one of the two copies, for `ctl verify` and the repair at the next writable open. */
  readonly copyProblems: string[] = [];
  /** Ids read from the exposure note; the note is removed once key.dict records them. */
  #noted: number[] = [];

  private constructor(path: string, dict: KeyDictionary, masterKey: MasterKey, wrapping: WrappingKey, logger: Logger, readOnly: boolean) {
    this.path = path;
    this.copyPath = path + COPY_SUFFIX;
    this.#dict = dict;
    this.#masterKey = masterKey;
    this.#wrapping = wrapping;
    this.#logger = logger;
    this.#readOnly = readOnly;
  }

  /** load() then, unless read-only, the writes it deferred. */
  static async open(options: DataKeyStoreOptions): Promise<DataKeyStore> {
    const store = await DataKeyStore.load(options);
    if (!store.#readOnly) {
      try {
        await store.writePending();
      } catch (err) {
        store.close();
        throw err;
      }
    }
    return store;
  }

  /**
   * Reads and checks key.dict and its copy, writing nothing: a new dictionary, a re-seal under
   * the current master key, a migration from the legacy format or the repair of a damaged
   * copy are only noted, for writePending() once everything else has been checked too.
   */
  static async load(options: DataKeyStoreOptions): Promise<DataKeyStore> {
    const { path, masterKey, logger } = options;
    const readOnly = options.readOnly ?? false;
    const copyPath = path + COPY_SUFFIX;
    const primaryRaw = await readIfExists(path);
    const copyRaw = await readIfExists(copyPath);
    const noted = await readExposureNote(join(dirname(path), EXPOSED_NOTE_NAME));
    if (!primaryRaw && !copyRaw) {
      if (readOnly) {
        throw new TdekvError('FILE_NOT_FOUND', `key dictionary ${path} does not exist: is --data-dir the right directory?`);
      }
      // The wrapping key is obtained (a KMS call) before anything is written, so a KMS
      // failure on first start leaves no half-made dictionary behind (TiKV #9488).
      const wrapping = await masterKey.newWrappingKey();
      const dict: KeyDictionary = { generation: 0, fileDictGeneration: 0, dictMacKey: randomKey(DICT_MAC_KEY_LENGTH), currentKeyId: 0, keys: new Map() };
      const store = new DataKeyStore(path, dict, masterKey, wrapping, logger, readOnly);
      store.#pending.push('created');
      return store;
    }

    const results: Array<{ path: string; opened?: Opened; error?: TdekvError }> = [];
    for (const [p, raw] of [[path, primaryRaw], [copyPath, copyRaw]] as const) {
      if (!raw) continue;
      // An identical copy needs no second unseal (with KMS: no second Decrypt call).
      if (p === copyPath && primaryRaw?.equals(raw) && results[0]?.opened) continue;
      try {
        results.push({ path: p, opened: await openOne(p, raw, options) });
      } catch (err) {
        if (!(err instanceof TdekvError)) throw err;
        results.push({ path: p, error: err });
      }
    }
    const good = results.filter((r) => r.opened).sort((a, b) => b.opened!.dict.generation - a.opened!.dict.generation);
    if (good.length === 0) {
      // Not damage: the master key (or, for type = "certificate", its certificate or DMK) is not available here.
      for (const code of ['MASTER_KEY_WRONG', 'MASTER_KEY_UNAVAILABLE', 'CERTIFICATE_MISSING', 'DMK_UNAVAILABLE', 'DMK_PASSWORD_WRONG', 'FORMAT_TOO_NEW'] as const) {
        const e = results.find((r) => r.error?.code === code);
        if (e) throw e.error!;
      }
      const why = results.map((r) => r.error!.message).join(' ');
      throw new TdekvError(
        'KEY_DICTIONARY_DAMAGED',
        `no readable copy of the key dictionary: ${why} Restore ${path} (and ${copyPath}) from a backup; without one the data keys, and so the data, cannot be recovered.`,
      );
    }
    const chosen = good[0]!.opened!;
    for (const r of good.slice(1)) {
      zeroizeOpened(r.opened!);
    }
    const store = new DataKeyStore(path, chosen.dict, chosen.masterKey, { key: chosen.wrappingKey, envelope: chosen.envelope }, logger, readOnly);
    const legacy = chosen.dict.dictMacKey === undefined;
    for (const r of results) {
      if (r.error) store.copyProblems.push(`${r.path}: ${r.error.message}`);
      else if (r.opened !== chosen && r.opened!.dict.generation !== chosen.dict.generation) {
        store.copyProblems.push(`${r.path} holds generation ${r.opened!.dict.generation}, ${chosen.path} generation ${chosen.dict.generation} (a crash between the two writes, or one was restored alone)`);
      }
    }
    if (!legacy) {
      if (!primaryRaw) store.copyProblems.push(`${path} is missing`);
      else if (!copyRaw) store.copyProblems.push(`${copyPath} is missing`);
    }
    if (store.copyProblems.length > 0) {
      logger.warn({ path, using: chosen.path, problems: store.copyProblems }, 'a copy of the key dictionary is damaged or out of date; using the good one, and repairing the other at the next writable open');
      store.#pending.push('repair copy');
    }
    if (!chosen.masterKey.protectsKeys) for (const k of chosen.dict.keys.values()) k.exposed = true;
    for (const id of noted) {
      const k = chosen.dict.keys.get(id);
      if (k && !k.exposed) k.exposed = true;
    }
    store.#noted = noted;
    if (noted.length > 0) store.#pending.push('exposure note');
    if (legacy) {
      chosen.dict.dictMacKey = randomKey(DICT_MAC_KEY_LENGTH);
      store.#legacy = true;
      store.#pending.push('migrate');
    }
    if (chosen.masterKey !== masterKey) {
      if (readOnly) return store;
      // Re-sealing waits for writePending(); the new wrapping key is not written before.
      zeroize(store.#wrapping.key);
      store.#resealFrom = chosen.masterKey;
      store.#wrapping = await masterKey.newWrappingKey();
      store.#masterKey = masterKey;
      store.#markExposedIfUnprotected();
      store.#pending.push('reseal');
    }
    return store;
  }

  #legacy = false;
  #resealFrom: MasterKey | undefined;

  /** True while key.dict on disk is in the legacy format (no generation, no MAC key). */
  get legacy(): boolean {
    return this.#legacy;
  }

  /** key.dict's generation (0 for a legacy or not yet written dictionary): exported for status and metrics. */
  get generation(): number {
    return this.#dict.generation;
  }

  /** The file dictionary generation key.dict last recorded; 0 = not bound yet. */
  get fileDictGeneration(): number {
    return this.#dict.fileDictGeneration;
  }

  /** A copy of the file dictionary's MAC key (the caller wipes it); undefined while key.dict is legacy. */
  dictMacKey(): Buffer | undefined {
    return this.#legacy || !this.#dict.dictMacKey ? undefined : Buffer.from(this.#dict.dictMacKey);
  }

  /**
   * The MAC key the migration will store (legacy dictionaries get one at load, in memory
   * only, until writePending() makes it durable).
   */
  pendingDictMacKey(): Buffer {
    return Buffer.from(this.#dict.dictMacKey!);
  }

  /** Why writePending() will write; empty when key.dict is up to date. */
  get pendingWrites(): readonly string[] {
    return this.#pending;
  }

  bindFileDictionary(binding: FileDictionaryBinding): void {
    this.#binding = binding;
  }

  /**
   * Writes what load() deferred (creation, re-seal, migration, repair of a copy, exposure
   * notes) plus the current file dictionary generation. Call only once opening has been
   * fully checked; with `always`, writes even when nothing was pending (to bind a new file
   * dictionary generation).
   */
  async writePending(always = false): Promise<void> {
    this.#checkWritable();
    if (this.#pending.length === 0 && !always) return;
    await this.#mutex.run(() => this.#commit({ ...this.#dict }));
    this.#legacy = false;
    if (this.#pending.includes('created')) this.#logger.info({ path: this.path, masterKeyType: this.#masterKey.type }, 'created key dictionary');
    if (this.#resealFrom) {
      this.#logger.info({ path: this.path, from: this.#resealFrom.description, to: this.#masterKey.description }, 'key dictionary re-sealed under the current master key; previous-master-key can now be removed from the configuration');
      this.#resealFrom = undefined;
    }
    if (this.#noted.length > 0) {
      await fileIo.rm(join(dirname(this.path), EXPOSED_NOTE_NAME), { force: true });
      this.#logger.info({ ids: this.#noted }, 'data keys dumped by `ctl encryption-meta dump-key` are now recorded as exposed');
      this.#noted = [];
    }
    this.#pending.length = 0;
    this.copyProblems.length = 0;
  }

  /**
   * Records that `ids` were dumped (read-only `ctl`, which must not rewrite key.dict): an
   * append-only note the next writable open folds into key.dict, rotating away from an
   * exposed current key.
   */
  static async noteExposure(path: string, ids: readonly number[], logger: Logger): Promise<void> {
    const note = join(dirname(path), EXPOSED_NOTE_NAME);
    // One checked line per id, after a newline: a line cut short by a full disk is ended by
    // the next write's newline and fails its check, instead of joining the next id ("1" +
    // "34" reading as key 134).
    const bytes = Buffer.from('\n' + ids.map((id) => `${id} ${checksumHex(String(id))}\n`).join(''), 'latin1');
    const fh = await fileIo.open(note, 'a', 0o600);
    try {
      for (let done = 0; done < bytes.length; ) done += (await fh.write(bytes, done, bytes.length - done)).bytesWritten;
      await fh.sync();
    } finally {
      await fh.close();
    }
    for (const id of ids) logger.warn({ audit: 'data-key-dumped', id, keyDictionary: path }, 'data key dumped in clear text; it is marked exposed and rotated away at the next writable open');
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
   * Adds a key made elsewhere (a backup's) so the files restored under it can be read. It
   * never becomes current: new files keep this dictionary's own key, and the key is retired
   * once no file uses it. Refuses an id already present (ids are random 53-bit numbers).
   */
  importKey(key: DataKey): Promise<void> {
    return this.#mutex.run(async () => {
      this.#checkOpen();
      this.#checkWritable();
      if (this.#dict.keys.has(key.id)) {
        throw new TdekvError('INVALID_ARGUMENT', `data key ${key.id} is already in ${this.path}: a key cannot be imported twice (restore into an empty data dir)`);
      }
      const copy: DataKey = { ...key, key: Buffer.from(key.key), exposed: key.exposed || !this.#masterKey.protectsKeys };
      await this.#commit({ ...this.#dict, keys: new Map(this.#dict.keys).set(copy.id, copy) });
      this.#logger.info({ id: copy.id, method: copy.method }, 'data key imported');
    });
  }

  /**
   * Drops keys that are neither current, leased, nor used by any file. Returns the retired
   * ids. `usedIds` is read under the store's lock, after every rotation queued before it, so
   * pass a function reading the file dictionary as it is then, not a set computed earlier:
   * a key that was current when the set was computed may be in use by now.
   */
  retireUnused(usedIds: ReadonlySet<number> | (() => ReadonlySet<number>), options: { includeCurrent?: boolean } = {}): Promise<number[]> {
    return this.#mutex.run(async () => {
      this.#checkOpen();
      const used = typeof usedIds === 'function' ? usedIds() : usedIds;
      // The current key goes too only when no new file takes it (the method is plaintext): a later change back makes a new one.
      const keep = (k: DataKey): boolean => (k.id === this.#dict.currentKeyId && options.includeCurrent !== true) || used.has(k.id) || this.#leased.has(k.id);
      const retired = [...this.#dict.keys.values()].filter((k) => !keep(k));
      if (retired.length === 0) return [];
      const keys = new Map(this.#dict.keys);
      for (const k of retired) keys.delete(k.id);
      const currentKeyId = keys.has(this.#dict.currentKeyId) ? this.#dict.currentKeyId : 0;
      await this.#commit({ ...this.#dict, keys, currentKeyId });
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
      const keys = new Map(this.#dict.keys);
      if (!next.protectsKeys) for (const [id, k] of keys) keys.set(id, { ...k, exposed: true });
      try {
        await this.#commit({ ...this.#dict, keys }, next, wrapping);
      } catch (err) {
        zeroize(wrapping.key);
        throw err;
      }
      this.#masterKey = next;
      this.#wrapping = wrapping;
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
    zeroize(this.#wrapping.key, this.#dict.dictMacKey);
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
    await this.#commit({ ...this.#dict, currentKeyId: key.id, keys });
    this.#logger.info({ id: key.id, method, reason }, 'data key rotated');
    return key;
  }

  /**
   * Installs `next` only once it is durable: a create running meanwhile keeps using the
   * state on disk, so no file is ever encrypted under a key that was never saved.
   */
  async #commit(next: KeyDictionary, masterKey = this.#masterKey, wrapping = this.#wrapping): Promise<void> {
    this.#checkWritable();
    const written = await this.#persist(next, masterKey, wrapping);
    this.#dict = written;
    if (this.#binding) {
      await this.#binding.recordKeyDictGeneration(written.generation).catch((err: unknown) => {
        // key.dict is durable already; the file dictionary only lags behind, which open accepts.
        this.#logger.error({ err: String(err), generation: written.generation }, 'could not record the key dictionary generation in the file dictionary');
      });
    }
  }

  #markExposedIfUnprotected(): void {
    if (!this.#masterKey.protectsKeys) for (const k of this.#dict.keys.values()) k.exposed = true;
  }

  #checkWritable(): void {
    if (this.#readOnly) throw new TdekvError('INVALID_ARGUMENT', `key dictionary ${this.path} is open read-only`);
  }

  /** key.dict first, then its copy: a crash between leaves one good, newer copy. */
  async #persist(next: KeyDictionary, masterKey: MasterKey, wrapping: WrappingKey): Promise<KeyDictionary> {
    const written: KeyDictionary = { ...next, generation: this.#dict.generation + 1, fileDictGeneration: this.#binding?.generation() ?? next.fileDictGeneration };
    const aad = sealedHeader(masterKey.type, wrapping.envelope);
    const content = encodeContent(written);
    try {
      const sealed = encodeSealedFile(aad, seal(wrapping.key, content, aad));
      await timeMetaFile('write', this.path, () => writeFileAtomic(this.path, sealed));
      await timeMetaFile('write', this.copyPath, () => writeFileAtomic(this.copyPath, sealed));
    } finally {
      zeroize(content);
    }
    return written;
  }
}

function zeroizeOpened(o: Opened): void {
  zeroize(o.wrappingKey, o.dict.dictMacKey);
  for (const k of o.dict.keys.values()) zeroize(k.key);
}


async function readExposureNote(path: string): Promise<number[]> {
  const raw = await readIfExists(path);
  if (!raw) return [];
  const ids: number[] = [];
  for (const line of raw.toString('latin1').split('\n')) {
    const m = /^(\d+) ([0-9a-f]{8})$/.exec(line);
    if (m && checksumHex(m[1]!) === m[2]) ids.push(Number(m[1]));
  }
  return [...new Set(ids)];
}

/** The check on an exposure-note line: CRC-32 of the id's digits, 8 hex digits. */
function checksumHex(text: string): string {
  return checksum32(Buffer.from(text, 'latin1')).toString(16).padStart(8, '0');
}

/** Parses and unseals one copy with the current, then the previous master key. */
async function openOne(path: string, raw: Buffer, options: DataKeyStoreOptions): Promise<Opened> {
  const parsed = parseSealed(raw, path);
  const attempts: Attempt[] = [];
  for (const candidate of [options.masterKey, options.previousMasterKey]) {
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
    try {
      const dict = decodeDictionary(content, path);
      if ((parsed.version === 1) !== (dict.dictMacKey === undefined)) {
        throw new TdekvError('KEY_DICTIONARY_DAMAGED', `key dictionary ${path}: its content version does not match its format version ${parsed.version}`);
      }
      return { path, dict, masterKey: candidate, wrappingKey, envelope: parsed.envelope };
    } catch (err) {
      zeroize(wrappingKey);
      throw err;
    } finally {
      zeroize(content);
    }
  }
  throw wrongMasterKeyError(path, attempts);
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
