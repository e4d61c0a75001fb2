import { join } from 'node:path';
import {
  AbstractChainedBatch as AbstractChainedBatchBase,
  AbstractIterator,
  AbstractKeyIterator,
  AbstractLevel,
  AbstractSnapshot,
  AbstractValueIterator,
  type AbstractBatchOperation,
  type AbstractBatchOptions,
  type AbstractChainedBatch,
  type AbstractDatabaseOptions,
  type AbstractDeferOptions,
  type AbstractDelOptions,
  type AbstractOpenOptions,
  type AbstractPutOptions,
} from 'abstract-level';
import { configFromOptions, configOptionNames, type OptionsConfig } from '../config/config.js';
import type { EncryptionMethod } from '../crypto/method.js';
import { Engine } from '../engine/engine.js';
import type { EngineSettings } from '../engine/options.js';
import type { BatchOp, EngineIterator, IteratorOptions, Snapshot } from '../engine/types.js';
import type { WalRecoveryMode } from '../engine/options.js';
import { NOT_CACHED } from '../engine/table-reader.js';
import { WriteBatchBuilder } from '../engine/write-batch.js';
import { openEnv, type ManagedEnv } from '../env/open-env.js';
import { META_DIR } from '../env/paths.js';
import { pathExists } from '../keys/atomic-file.js';
import { TdekvError } from '../errors.js';
import { silentLogger, type Logger } from '../log/logger.js';
import { EncryptionLifecycle } from '../lifecycle/encryption-lifecycle.js';
import { LevelEncryption } from './level-encryption.js';

/*
 * The embedded API: abstract-level v3 on top of the engine, over the encrypted env.
 *
 * Formats: the private API speaks 'buffer', 'view' and 'utf8' natively; abstract-level
 * transcodes every other encoding (json, hex, ...) to one of them. utf8 is native so a
 * string key or value goes to and from the engine's bytes in one step. The engine returns
 * fresh copies of keys and values (never views of its memtable or block cache), so they
 * are handed to the caller as they are.
 */

/** A master key as an option; the same settings as TOML's [security.encryption.master-key], in camelCase. */
export type MasterKeyOption =
  | { type: 'file'; /** 64 hex characters and a newline; relative to the current directory. */ path: string }
  | {
      type: 'kms';
      keyId: string;
      region: string;
      endpoint?: string;
      /** Per attempt: a duration ("10s") or milliseconds. */
      timeout?: string | number;
      maxAttempts?: number;
    }
  | {
      type: 'pkcs11';
      /** Path of the PKCS#11 library. */
      module: string;
      /** Exactly one of tokenLabel and slot. */
      tokenLabel?: string;
      slot?: number;
      keyLabel: string;
      /** File holding the user PIN; absent: the TDEKV_PKCS11_PIN environment variable. */
      pinFile?: string;
      timeout?: string | number;
    }
  | { type: 'plaintext' };

/**
 * Options of `new TdekvLevel(location, options)`. The encryption settings have the TOML
 * config's names in camelCase and are validated by the same code (bad values throw
 * TdekvError CONFIG_INVALID naming the option); the tuning options are the engine's.
 */
export interface TdekvLevelOptions<K = string, V = string>
  extends AbstractDatabaseOptions<K, V>, EngineSettings {
  /** Method for new files. Default 'plaintext'; any other needs `masterKey`. */
  dataEncryptionMethod?: EncryptionMethod;
  /** A duration such as "168h" or "7d", or milliseconds. Default "7d". */
  dataKeyRotationPeriod?: string | number;
  /** Default true. */
  enableFileDictionaryLog?: boolean;
  /** Default 1000000. */
  fileDictionaryRewriteThreshold?: number;
  masterKey?: MasterKeyOption;
  /** Only while rotating the master key: the old one. */
  previousMasterKey?: MasterKeyOption;
  /** A pino logger; default: silent. */
  logger?: Logger;
  /** On the first open of a directory that already holds files, track them as plaintext. */
  adoptPlaintextFiles?: boolean;
  /**
   * What opening does with a complete write-ahead log record that fails its tag or checksum:
   * 'absolute-consistency' (default) refuses naming the file and offset; 'point-in-time' opens
   * with the writes before it and drops the rest. See [storage] wal-recovery-mode.
   */
  walRecoveryMode?: WalRecoveryMode;
  /**
   * The application's own options for open hooks (abstract-level passes open options to
   * `db.hooks.postopen` functions): each entry reaches the hooks as a top-level option. Any
   * other unknown option is refused, so a misplaced setting cannot be silently ignored.
   */
  hookOptions?: Record<string, unknown>;
}

/** This class's options beyond the config schema's. */
const OWN_OPTIONS = ['logger', 'adoptPlaintextFiles'];
const HOOK_OPTIONS = 'hookOptions';
/** abstract-level 3's constructor options (it forwards createIfMissing and errorIfExists to open()). */
const LEVEL_OPTIONS = ['keyEncoding', 'valueEncoding', 'createIfMissing', 'errorIfExists', 'passive'];
/** abstract-level 3's open() options. */
const LEVEL_OPEN_OPTIONS = ['createIfMissing', 'errorIfExists', 'passive'];
/** Every tdekv option: read by the constructor and kept from abstract-level (which forwards the rest to open() and its hooks). */
const TDEKV_OPTIONS = new Set([...configOptionNames(), ...OWN_OPTIONS, HOOK_OPTIONS]);

/**
 * What the class needs of the engine (src/engine/engine.ts). Keys and values it returns
 * must be the caller's to keep and change.
 */
export interface LevelEngine {
  getSync(key: Uint8Array, options?: { snapshot?: Snapshot }): Buffer | undefined;
  get(key: Uint8Array, options?: { snapshot?: Snapshot }): Promise<Buffer | undefined>;
  getCached(key: Uint8Array, options?: { snapshot?: Snapshot }): Buffer | undefined | typeof NOT_CACHED;
  /** Opens, on the thread pool, the tables an iterator made next would open synchronously (undefined: none). */
  prepareIterator?(): Promise<void> | undefined;
  write(ops: readonly BatchOp[], options?: { sync?: boolean }): Promise<void>;
  writeBatch(batch: WriteBatchBuilder, options?: { sync?: boolean }): Promise<void>;
  snapshot(): Snapshot;
  iterator(options?: IteratorOptions): EngineIterator;
  compactRange(start?: Uint8Array, end?: Uint8Array): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * What the private API implements. `getSync` is not in level-supports' manifest type but
 * abstract-level's suite and users read it from `db.supports`.
 */
const MANIFEST = {
  encodings: { buffer: true, view: true, utf8: true },
  permanence: true,
  seek: true,
  implicitSnapshots: true,
  explicitSnapshots: true,
  has: true,
  getSync: true,
  createIfMissing: true,
  errorIfExists: true,
  deferredOpen: true,
  streams: false,
  signals: { iterators: false },
} as const;

/** Keys deleted per atomic engine write by clear(). */
const CLEAR_CHUNK = 1000;

type Format = 'buffer' | 'view' | 'utf8';
type Data = Buffer | Uint8Array | string;

interface EncodingOptions {
  keyEncoding?: Format;
  valueEncoding?: Format;
  snapshot?: unknown;
  sync?: boolean;
}

interface RangeReadOptions extends EncodingOptions {
  gt?: Data;
  gte?: Data;
  lt?: Data;
  lte?: Data;
  reverse: boolean;
  limit: number;
  keys?: boolean;
  values?: boolean;
}

type PrivateOp =
  | { type: 'put'; key: Data; value: Data; keyEncoding: Format; valueEncoding: Format }
  | { type: 'del'; key: Data; keyEncoding: Format };

/** Write options beyond abstract-level's. */
export interface TdekvWriteOptions {
  /** Acknowledge only once the write-ahead log is fsynced (default false: survives a process crash, not a power loss). */
  sync?: boolean;
}

/** Declares `sync` on the write methods (abstract-level passes options through to the private API). */
export interface TdekvLevel<KDefault, VDefault> {
  put(key: KDefault, value: VDefault): Promise<void>;
  put<K = KDefault, V = VDefault>(key: K, value: V, options: AbstractPutOptions<K, V> & TdekvWriteOptions): Promise<void>;
  del(key: KDefault): Promise<void>;
  del<K = KDefault>(key: K, options: AbstractDelOptions<K> & TdekvWriteOptions): Promise<void>;
  batch(operations: Array<AbstractBatchOperation<this, KDefault, VDefault>>): Promise<void>;
  batch<K = KDefault, V = VDefault>(
    operations: Array<AbstractBatchOperation<this, K, V>>,
    options: AbstractBatchOptions<K, V> & TdekvWriteOptions,
  ): Promise<void>;
  batch(): AbstractChainedBatch<this, KDefault, VDefault>;
}

export class TdekvLevel<KDefault = string, VDefault = string> extends AbstractLevel<Data, KDefault, VDefault> {
  readonly #location: string;
  readonly #where: string;
  readonly #settings: Settings;
  /** hookOptions names given to the constructor: abstract-level merges them into every open()'s options. */
  readonly #hookNames: ReadonlySet<string>;
  #env: ManagedEnv | undefined;
  #engine: LevelEngine | undefined;
  #lifecycle: EncryptionLifecycle | undefined;
  /**
   * The online encryption lifecycle (docs/encryption.md): `status()`, `setMethod(m)`,
   * `regenerate()`, `suspend()`, `resume()`, `retire()`, `reload(options)`, and `progress`
   * events while the encryption scan runs.
   */
  readonly encryption: LevelEncryption;
  /** clear() calls in progress: close() stops them between chunks and waits for them. */
  readonly #clears = new Set<Promise<void>>();
  /**
   * Why the last open failed, until one succeeds. abstract-level rejects the operations that
   * waited for that open with a bare "Database is not open"; this is what they were missing.
   */
  #openFailure: unknown;

  constructor(location: string, options: TdekvLevelOptions<KDefault, VDefault> = {}) {
    if (typeof location !== 'string' || location === '') {
      throw new TdekvError('CONFIG_INVALID', 'TdekvLevel: the first argument, location, must be a non-empty string (the data directory)');
    }
    const where = `TdekvLevel options (${location})`;
    // Validated before abstract-level starts opening, so a bad option throws right here.
    const settings = readSettings(options as Readonly<Record<string, unknown>>, where);
    // Only abstract-level's own options and the application's hookOptions go on to
    // abstract-level (which hands them to open() and its hooks); readSettings refused the rest.
    const forward = Object.fromEntries(Object.entries(options).filter(([k]) => LEVEL_OPTIONS.includes(k)));
    super(MANIFEST, { ...forward, ...settings.hookOptions });
    this.#location = location;
    this.#where = where;
    this.encryption = new LevelEncryption(location, (opts) => readSettings({ ...options, ...opts } as Readonly<Record<string, unknown>>, where).config.encryption);
    this.#settings = settings;
    this.#hookNames = new Set(Object.keys(settings.hookOptions));
  }

  /** The data directory. */
  get location(): string {
    return this.#location;
  }

  /**
   * Opens the engine. Tests replace it to run the class over another engine; the default
   * is the real one on the env that `_open` opened.
   */
  protected async openEngine(env: ManagedEnv, logger: Logger | undefined, tuning: EngineSettings & { walRecoveryMode?: WalRecoveryMode }): Promise<LevelEngine> {
    return Engine.open({ env: env.env, ...(logger ? { logger } : {}), ...tuning });
  }

  /**
   * Opens the database (abstract-level opens it implicitly too). A failure rejects with
   * abstract-level's LEVEL_DATABASE_NOT_OPEN, whose message names the cause and whose `cause`
   * is the TdekvError (e.g. MASTER_KEY_UNAVAILABLE).
   */
  override open(options?: AbstractOpenOptions): Promise<void> {
    return this.#explainingNotOpen(options === undefined ? super.open() : super.open(options));
  }

  /**
   * abstract-level defers the operations called while opening; when the open fails they reject
   * with a "not open" error that has no cause, which is all the README's first `await db.put()`
   * would show. They get the open's cause here.
   */
  override deferAsync<T>(fn: () => Promise<T>, options?: AbstractDeferOptions): Promise<T> {
    const explained = (): Promise<T> => this.#explainingNotOpen(fn());
    return options === undefined ? super.deferAsync(explained) : super.deferAsync(explained, options);
  }

  /**
   * Hands back the same promise, its error completed in place first: a wrapping promise would
   * settle a tick later, and abstract-level's callers rely on when open() settles (its suite
   * closes the database in the same tick and checks the status in the callback).
   */
  #explainingNotOpen<T>(promise: Promise<T>): Promise<T> {
    promise.catch((err: unknown) => explainNotOpen(err, this.#openFailure));
    return promise;
  }

  /** @internal abstract-level: open options are the constructor's, overlaid with open()'s. */
  async _open(options: Record<string, unknown> & { createIfMissing: boolean; errorIfExists: boolean }): Promise<void> {
    try {
      await this.#openOnce(options);
      this.#openFailure = undefined;
    } catch (err) {
      this.#openFailure = err;
      // The embedder's logger (if any) gets it even when nobody awaits the implicit open.
      this.#settings.logger?.error({ err, location: this.#location }, 'opening the database failed');
      throw err;
    }
  }

  async #openOnce(options: Record<string, unknown> & { createIfMissing: boolean; errorIfExists: boolean }): Promise<void> {
    const allowedInOpen = `Allowed in open(): ${[...LEVEL_OPEN_OPTIONS, HOOK_OPTIONS].join(', ')}`;
    const misplaced = Object.keys(options).filter((k) => TDEKV_OPTIONS.has(k) && k !== HOOK_OPTIONS && options[k] !== undefined);
    if (misplaced.length > 0) {
      throw new TdekvError('CONFIG_INVALID', `${this.#where}: ${misplaced.join(', ')} can only be given to the constructor, not to open(). ${allowedInOpen}.`);
    }
    const unknown = Object.keys(options).filter(
      (k) => options[k] !== undefined && !TDEKV_OPTIONS.has(k) && !LEVEL_OPTIONS.includes(k) && !this.#hookNames.has(k),
    );
    if (unknown.length > 0) {
      throw new TdekvError(
        'CONFIG_INVALID',
        `${this.#where}: unknown open() option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}. ${allowedInOpen} ` +
          `(the application's own options for open hooks go inside hookOptions).`,
      );
    }
    if (options[HOOK_OPTIONS] !== undefined) {
      const hookOptions = readHookOptions(options[HOOK_OPTIONS], `${this.#where}: open() option ${HOOK_OPTIONS}`);
      // abstract-level hands this same object to the postopen hooks: they see the entries as options.
      delete options[HOOK_OPTIONS];
      Object.assign(options, hookOptions);
    }
    const { config, logger, adoptPlaintextFiles } = this.#settings;
    const meta = join(this.#location, META_DIR);
    const exists = await pathExists(meta);
    if (!exists && !options.createIfMissing) {
      throw new TdekvError(
        'FILE_NOT_FOUND',
        `${meta} does not exist: ${this.#location} is not a tdekv database, and createIfMissing is false. Check the location, or open with createIfMissing: true to create one.`,
      );
    }
    if (exists && options.errorIfExists) {
      throw new TdekvError('FILE_EXISTS', `${this.#location} already exists as a tdekv database (it has ${META_DIR}/), and errorIfExists is true.`);
    }
    const env = await openEnv(this.#location, config.encryption, {
      // The engine checks its manifest and logs before anything is written (invariant 11).
      deferOpenWrites: true,
      ...(logger ? { logger } : {}),
      ...(adoptPlaintextFiles !== undefined ? { adoptPlaintextFiles } : {}),
    });
    try {
      this.#engine = await this.openEngine(env, logger, { ...config.engine, walRecoveryMode: config.walRecoveryMode });
    } catch (err) {
      await env.close().catch((closeErr: unknown) => logger?.warn({ err: closeErr }, 'closing the env after a failed engine open failed'));
      throw err;
    }
    if (this.#engine instanceof Engine) {
      try {
        this.#lifecycle = await EncryptionLifecycle.open({ engine: this.#engine, managed: env, config: config.encryption, logger: logger ?? silentLogger() });
      } catch (err) {
        await this.#engine.close().catch(() => undefined);
        this.#engine = undefined;
        await env.close().catch(() => undefined);
        throw err;
      }
      this.encryption.attach(this.#lifecycle);
    }
    this.#env = env;
  }

  /** @internal */
  async _close(): Promise<void> {
    await Promise.allSettled(this.#clears);
    const engine = this.#engine;
    const env = this.#env;
    const lifecycle = this.#lifecycle;
    this.#engine = undefined;
    this.#env = undefined;
    this.#lifecycle = undefined;
    this.encryption.attach(undefined);
    try {
      await lifecycle?.close();
      await engine?.close();
    } finally {
      await env?.close();
    }
  }

  /**
   * Rewrites the tables holding keys in [start, end] (inclusive; omitted = unbounded),
   * dropping overwritten and deleted data, under the current data key and method: after a
   * data key rotation, `compactRange()` moves everything to the new key so the old one can
   * be retired. Strings are taken as UTF-8 bytes.
   */
  async compactRange(start?: string | Uint8Array, end?: string | Uint8Array): Promise<void> {
    await this.#open().compactRange(start === undefined ? undefined : toBytes(start), end === undefined ? undefined : toBytes(end));
  }

  /** Writes the memtable to a table now (it is also flushed at close). */
  async flush(): Promise<void> {
    await this.#open().flush();
  }

  #open(): LevelEngine {
    if (this.#engine === undefined) throw new TdekvError('CLOSED', `TdekvLevel ${this.#location} is not open`);
    return this.#engine;
  }

  #read(key: Data, options: EncodingOptions): Buffer | undefined {
    const snapshot = engineSnapshotOf(options.snapshot, this);
    return this.#open().getSync(toBytes(key), snapshot ? { snapshot } : undefined);
  }

  /**
   * The values of `keys`, all at one point in time: the snapshot asked for, or the moment of
   * the call. A block not in the block cache is read on the thread pool (Engine.get).
   */
  async #readMany(keys: Data[], options: EncodingOptions): Promise<Array<Buffer | undefined>> {
    const engine = this.#open();
    const snapshot = engineSnapshotOf(options.snapshot, this);
    const readOptions = snapshot ? { snapshot } : undefined;
    // Each key from memory if it is there, else Engine.get, which reads at the moment it is
    // called (memtables then, that version's tables pinned): all made in one synchronous
    // pass, they are one point in time however the reads finish.
    let reads: Array<Promise<Buffer | undefined>> | undefined;
    const values = keys.map((key) => {
      const k = toBytes(key);
      const value = engine.getCached(k, readOptions);
      if (value !== NOT_CACHED) return value;
      (reads ??= []).push(engine.get(k, readOptions));
      return NOT_CACHED;
    });
    if (reads === undefined) return values as Array<Buffer | undefined>;
    const read = await Promise.all(reads);
    let next = 0;
    return values.map((v) => (v === NOT_CACHED ? read[next++] : v));
  }

  /** @internal */
  async _get(key: Data, options: EncodingOptions): Promise<Data | undefined> {
    const engine = this.#open();
    const snapshot = engineSnapshotOf(options.snapshot, this);
    const k = toBytes(key);
    // From memory with no promise of its own (the common case); a read waits on the thread pool.
    const cached = engine.getCached(k, snapshot ? { snapshot } : undefined);
    const value = cached !== NOT_CACHED ? cached : await engine.get(k, snapshot ? { snapshot } : undefined);
    return value === undefined ? undefined : fromBytes(value, options.valueEncoding);
  }

  /** @internal getSync reads synchronously (a block not in the block cache with a pread on this thread). */
  _getSync(key: Data, options: EncodingOptions): Data | undefined {
    const value = this.#read(key, options);
    return value === undefined ? undefined : fromBytes(value, options.valueEncoding);
  }

  /** @internal */
  async _getMany(keys: Data[], options: EncodingOptions): Promise<(Data | undefined)[]> {
    return (await this.#readMany(keys, options)).map((value) => (value === undefined ? undefined : fromBytes(value, options.valueEncoding)));
  }

  /** @internal */
  async _has(key: Data, options: EncodingOptions): Promise<boolean> {
    return (await this.#readMany([key], options))[0] !== undefined;
  }

  /** @internal */
  async _hasMany(keys: Data[], options: EncodingOptions): Promise<boolean[]> {
    return (await this.#readMany(keys, options)).map((value) => value !== undefined);
  }

  /** @internal */
  async _put(key: Data, value: Data, options: EncodingOptions): Promise<void> {
    await this.#open().write([{ type: 'put', key: toBytes(key), value: toBytes(value) }], writeOptions(options));
  }

  /** @internal */
  async _del(key: Data, options: EncodingOptions): Promise<void> {
    await this.#open().write([{ type: 'del', key: toBytes(key) }], writeOptions(options));
  }

  /**
   * @internal `db.batch()`: ops go into an encoded write batch as they are added, where the
   * default chained batch kept an op object per put and encoded the array on write() (a
   * twentieth of a bulk load's main thread).
   */
  _chainedBatch(): TdekvChainedBatch {
    return new TdekvChainedBatch(this, () => this.#open());
  }

  /** @internal One atomic engine write. */
  async _batch(operations: PrivateOp[], options: EncodingOptions): Promise<void> {
    const ops: BatchOp[] = operations.map((op) =>
      op.type === 'put' ? { type: 'put', key: toBytes(op.key), value: toBytes(op.value) } : { type: 'del', key: toBytes(op.key) },
    );
    await this.#open().write(ops, writeOptions(options));
  }

  /**
   * @internal Deletes the range as read from a snapshot (the explicit one, or one taken now),
   * so writes made after clear() was called are kept. Each chunk of keys is one atomic
   * write; the clear as a whole is not atomic: a crash in the middle leaves a prefix of
   * the range deleted.
   */
  async _clear(options: RangeReadOptions): Promise<void> {
    const clearing = this.#clearRange(this.#open(), options);
    this.#clears.add(clearing);
    try {
      await clearing;
    } finally {
      this.#clears.delete(clearing);
    }
  }

  async #clearRange(engine: LevelEngine, options: RangeReadOptions): Promise<void> {
    const cursor = new Cursor(this, engine, options);
    try {
      let remaining = options.limit < 0 ? Infinity : options.limit;
      while (remaining > 0) {
        const entries = await cursor.nextBatch(Math.min(CLEAR_CHUNK, remaining));
        const ops: BatchOp[] = entries.map(([key]) => ({ type: 'del', key }));
        remaining -= ops.length;
        if (ops.length === 0) break;
        await engine.write(ops, writeOptions(options));
        if (ops.length < CLEAR_CHUNK) break;
        if (this.status !== 'open') {
          throw new TdekvError('CLOSED', `TdekvLevel ${this.#location} was closed during clear(): part of the range was deleted, the rest was not`);
        }
      }
    } finally {
      cursor.close();
    }
  }

  /** @internal */
  _iterator(options: RangeReadOptions): TdekvIterator {
    return new TdekvIterator(this, options, new Cursor(this, this.#open(), options));
  }

  /** @internal */
  _keys(options: RangeReadOptions): TdekvKeyIterator {
    return new TdekvKeyIterator(this, options, new Cursor(this, this.#open(), options));
  }

  /** @internal */
  _values(options: RangeReadOptions): TdekvValueIterator {
    return new TdekvValueIterator(this, options, new Cursor(this, this.#open(), options));
  }

  /** @internal */
  _snapshot(options: { owner: unknown }): TdekvSnapshot {
    return new TdekvSnapshot(this.#open().snapshot(), this, options);
  }
}

/** Errors already given their cause's text, so a rethrown one is not extended twice. */
const explainedErrors = new WeakSet<Error>();

/**
 * abstract-level's LEVEL_DATABASE_NOT_OPEN says "Database failed to open" or "Database is not
 * open" and nothing else; a user who prints `err.message` should not have to know about
 * `err.cause` to learn that the key file is missing. Adds the cause's code and message to the
 * message (and the stack's first line) and sets `cause` when abstract-level did not.
 */
function explainNotOpen(err: unknown, openFailure: unknown): unknown {
  if (!(err instanceof Error) || (err as { code?: unknown }).code !== 'LEVEL_DATABASE_NOT_OPEN' || explainedErrors.has(err)) return err;
  const cause = err.cause ?? openFailure;
  if (cause === undefined) return err;
  explainedErrors.add(err);
  if (err.cause === undefined) Object.defineProperty(err, 'cause', { value: cause, writable: true, configurable: true, enumerable: false });
  const before = err.message;
  err.message = `${before}: ${describeCause(cause)}`;
  const header = `${err.name}: ${before}`;
  if (err.stack?.startsWith(header) === true) err.stack = `${err.name}: ${err.message}${err.stack.slice(header.length)}`;
  return err;
}

function describeCause(cause: unknown): string {
  if (!(cause instanceof Error)) return String(cause);
  const code = (cause as { code?: unknown }).code;
  return typeof code === 'string' ? `[${code}] ${cause.message}` : cause.message;
}

interface Settings {
  config: OptionsConfig;
  logger: Logger | undefined;
  adoptPlaintextFiles: boolean | undefined;
  hookOptions: Record<string, unknown>;
}

function readSettings(options: Readonly<Record<string, unknown>>, where: string): Settings {
  const config = configFromOptions(options, where, { passthrough: [...OWN_OPTIONS, HOOK_OPTIONS, ...LEVEL_OPTIONS], unknown: 'reject' });
  const hookOptions = options[HOOK_OPTIONS] === undefined ? {} : readHookOptions(options[HOOK_OPTIONS], `${where}: ${HOOK_OPTIONS}`);
  const logger = options['logger'];
  if (logger !== undefined && !isLogger(logger)) {
    throw new TdekvError('CONFIG_INVALID', `${where}: logger must be a pino Logger (an object with trace, debug, info, warn and error methods). Allowed: a pino Logger, or leave it out for no logs.`);
  }
  const adopt = options['adoptPlaintextFiles'];
  if (adopt !== undefined && typeof adopt !== 'boolean') {
    throw new TdekvError('CONFIG_INVALID', `${where}: adoptPlaintextFiles must be a boolean (true or false), but is ${typeof adopt}. Allowed: true | false.`);
  }
  return { config, logger, adoptPlaintextFiles: adopt, hookOptions };
}

/** hookOptions must not smuggle in a setting that tdekv or abstract-level reads: it would be ignored there. */
function readHookOptions(value: unknown, what: string): Record<string, unknown> {
  const proto: unknown = typeof value === 'object' && value !== null ? Object.getPrototypeOf(value) : undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || (proto !== Object.prototype && proto !== null)) {
    throw new TdekvError('CONFIG_INVALID', `${what} must be a plain object of the application's own open-hook options.`);
  }
  const record = value as Record<string, unknown>;
  const taken = Object.keys(record).filter((k) => TDEKV_OPTIONS.has(k) || LEVEL_OPTIONS.includes(k));
  if (taken.length > 0) {
    throw new TdekvError(
      'CONFIG_INVALID',
      `${what} holds ${taken.join(', ')}, which ${taken.length > 1 ? 'are' : 'is'} not an application option: give ${taken.length > 1 ? 'them' : 'it'} as a top-level option of the constructor, where tdekv reads ${taken.length > 1 ? 'them' : 'it'}.`,
    );
  }
  return { ...record };
}

function isLogger(value: unknown): value is Logger {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return ['trace', 'debug', 'info', 'warn', 'error'].every((m) => typeof v[m] === 'function');
}

function writeOptions(options: EncodingOptions): { sync?: boolean } {
  return options.sync === true ? { sync: true } : {};
}

function toBytes(data: Data): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

/** Engine bytes → the requested format. The engine returns fresh copies, so no copy here. */
function fromBytes(bytes: Buffer, format: Format | undefined): Data {
  if (format === 'utf8') return bytes.toString('utf8');
  if (format === 'view') return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return bytes;
}

// ---- chained batches ---------------------------------------------------------------------

/** abstract-level's d.ts types neither the private methods nor the base's constructor as used here. */
const ChainedBatchBase = AbstractChainedBatchBase as unknown as new (db: object) => object & { readonly db: object };

/**
 * A chained batch that encodes each op as it is added (abstract-level has already encoded
 * keys and values to a native format and run the prewrite hooks). write() hands the bytes to
 * the engine as one atomic write.
 */
class TdekvChainedBatch extends ChainedBatchBase {
  readonly #engine: () => LevelEngine;
  readonly #batch = new WriteBatchBuilder();

  constructor(db: object, engine: () => LevelEngine) {
    super(db);
    this.#engine = engine;
  }

  /** @internal */
  _put(key: Data, value: Data): void {
    this.#batch.put(toBytes(key), toBytes(value));
  }

  /** @internal */
  _del(key: Data): void {
    this.#batch.del(toBytes(key));
  }

  /** @internal */
  _clear(): void {
    this.#batch.clear();
  }

  /** @internal */
  async _write(options: EncodingOptions): Promise<void> {
    await this.#engine().writeBatch(this.#batch, writeOptions(options));
  }
}

// ---- snapshots --------------------------------------------------------------------------

/** abstract-level's d.ts omits the constructor's `{ owner }` options argument. */
const SnapshotBase = AbstractSnapshot as unknown as new (options: { owner: unknown }) => AbstractSnapshot;

/**
 * An explicit snapshot: an engine snapshot, released when it is closed. abstract-level
 * holds a reference during each read that uses it and refuses reads once it is closed, so
 * no read can reach a released engine snapshot.
 */
export class TdekvSnapshot extends SnapshotBase {
  readonly #inner: Snapshot;
  readonly #db: object;
  #released = false;

  constructor(inner: Snapshot, db: object, options: { owner: unknown }) {
    try {
      super(options);
    } catch (err) {
      inner.release();
      throw err;
    }
    this.#inner = inner;
    this.#db = db;
  }

  /** The engine snapshot, or undefined once released. */
  engineSnapshot(db: object): Snapshot | undefined {
    if (db !== this.#db) throw new TdekvError('INVALID_ARGUMENT', 'snapshot belongs to another TdekvLevel database');
    return this.#released ? undefined : this.#inner;
  }

  /** @internal */
  async _close(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    this.#inner.release();
  }
}

/** The engine snapshot of an explicit snapshot option (abstract-level has checked that it is open). */
function engineSnapshotOf(snapshot: unknown, db: object): Snapshot | undefined {
  if (snapshot === undefined || snapshot === null) return undefined;
  if (!(snapshot instanceof TdekvSnapshot)) throw new TdekvError('INVALID_ARGUMENT', 'snapshot is not a TdekvLevel snapshot');
  const inner = snapshot.engineSnapshot(db);
  if (inner === undefined) throw new TdekvError('CLOSED', 'snapshot is closed');
  return inner;
}

// ---- iterators --------------------------------------------------------------------------

/**
 * An engine iterator over the range at one snapshot: the explicit one, or one taken when
 * the iterator is created (abstract-level's implicit snapshot). Engine calls are
 * synchronous, so a batch of entries is read in one go.
 */
class Cursor {
  #it: EngineIterator | undefined;
  /**
   * Until the first read: what makes the engine iterator. It is made then, not here, so that
   * level-0 tables not open yet are first opened on the thread pool (an iterator's creation
   * opens them synchronously). The snapshot is taken here, so it reads the same either way.
   */
  #start: { engine: LevelEngine; range: IteratorOptions; seek?: Uint8Array } | undefined;
  #release: (() => void) | undefined;

  constructor(db: object, engine: LevelEngine, options: RangeReadOptions) {
    let snapshot: Snapshot | undefined;
    if (options.snapshot != null) {
      if (!(options.snapshot instanceof TdekvSnapshot)) throw new TdekvError('INVALID_ARGUMENT', 'snapshot is not a TdekvLevel snapshot');
      snapshot = options.snapshot.engineSnapshot(db);
      // Closed: abstract-level refuses every read with LEVEL_SNAPSHOT_NOT_OPEN, so no cursor is needed.
      if (snapshot === undefined) return;
    } else {
      const implicit = engine.snapshot();
      snapshot = implicit;
      this.#release = () => implicit.release();
    }
    const range: IteratorOptions = { reverse: options.reverse, snapshot };
    // abstract-level: gte wins over gt, lte over lt.
    if (options.gte !== undefined) range.gte = toBytes(options.gte);
    else if (options.gt !== undefined) range.gt = toBytes(options.gt);
    if (options.lte !== undefined) range.lte = toBytes(options.lte);
    else if (options.lt !== undefined) range.lt = toBytes(options.lt);
    this.#start = { engine, range };
  }

  async #iterator(): Promise<EngineIterator | undefined> {
    const start = this.#start;
    if (start === undefined) return this.#it;
    const opening = start.engine.prepareIterator?.();
    if (opening !== undefined) await opening;
    // Closed meanwhile: nothing to make.
    if (this.#start !== start) return this.#it;
    this.#start = undefined;
    this.#it = start.engine.iterator(start.range);
    if (start.seek !== undefined) this.#it.seek(start.seek);
    return this.#it;
  }

  /** The next entry; a table block not in the block cache is read on the thread pool. */
  async next(): Promise<[Buffer, Buffer] | undefined> {
    const batch = await this.nextBatch(1);
    return batch[0];
  }

  /** Up to `size` entries (fewer only at the end), read as next() reads. */
  async nextBatch(size: number): Promise<Array<[Buffer, Buffer]>> {
    const it = this.#it ?? (await this.#iterator());
    return it === undefined ? [] : it.nextBatch(size);
  }

  seek(target: Data): void {
    if (this.#start !== undefined) this.#start.seek = toBytes(target);
    else this.#it?.seek(toBytes(target));
  }

  close(): void {
    this.#start = undefined;
    try {
      this.#it?.close();
    } finally {
      const release = this.#release;
      this.#release = undefined;
      release?.();
    }
  }
}

/** Up to `size` cursor entries, each mapped: the body of every iterator kind's _nextv. */
async function take<T>(cursor: Cursor, size: number, map: (e: [Buffer, Buffer]) => T): Promise<T[]> {
  // Mapped in place: the batch is this call's own array.
  const entries = (await cursor.nextBatch(size)) as unknown as T[];
  for (let i = 0; i < entries.length; i++) entries[i] = map(entries[i] as unknown as [Buffer, Buffer]);
  return entries;
}

/** Entries left before the iterator's limit. */
function remaining(it: { count: number; limit: number }): number {
  return it.limit - it.count;
}

class TdekvIterator extends AbstractIterator<object, Data, Data> {
  readonly #cursor: Cursor;
  readonly #keys: boolean;
  readonly #values: boolean;
  readonly #keyFormat: Format | undefined;
  readonly #valueFormat: Format | undefined;

  constructor(db: object, options: RangeReadOptions, cursor: Cursor) {
    super(db, options as never);
    this.#cursor = cursor;
    this.#keys = options.keys !== false;
    this.#values = options.values !== false;
    this.#keyFormat = options.keyEncoding;
    this.#valueFormat = options.valueEncoding;
  }

  #entry(e: [Buffer, Buffer]): [Data, Data] {
    return [this.#keys ? fromBytes(e[0], this.#keyFormat) : (undefined as never), this.#values ? fromBytes(e[1], this.#valueFormat) : (undefined as never)];
  }

  async _next(): Promise<[Data, Data] | undefined> {
    const e = await this.#cursor.next();
    return e === undefined ? undefined : this.#entry(e);
  }

  async _nextv(size: number): Promise<[Data, Data][]> {
    return take(this.#cursor, size, (e) => this.#entry(e));
  }

  async _all(): Promise<[Data, Data][]> {
    return this._nextv(remaining(this));
  }

  _seek(target: Data): void {
    this.#cursor.seek(target);
  }

  async _close(): Promise<void> {
    this.#cursor.close();
  }
}

class TdekvKeyIterator extends AbstractKeyIterator<object, Data> {
  readonly #cursor: Cursor;
  readonly #format: Format | undefined;

  constructor(db: object, options: RangeReadOptions, cursor: Cursor) {
    super(db, options as never);
    this.#cursor = cursor;
    this.#format = options.keyEncoding;
  }

  async _next(): Promise<Data | undefined> {
    const e = await this.#cursor.next();
    return e === undefined ? undefined : fromBytes(e[0], this.#format);
  }

  async _nextv(size: number): Promise<Data[]> {
    return take(this.#cursor, size, (e) => fromBytes(e[0], this.#format));
  }

  async _all(): Promise<Data[]> {
    return this._nextv(remaining(this));
  }

  _seek(target: Data): void {
    this.#cursor.seek(target);
  }

  async _close(): Promise<void> {
    this.#cursor.close();
  }
}

class TdekvValueIterator extends AbstractValueIterator<object, Data, Data> {
  readonly #cursor: Cursor;
  readonly #format: Format | undefined;

  constructor(db: object, options: RangeReadOptions, cursor: Cursor) {
    super(db, options as never);
    this.#cursor = cursor;
    this.#format = options.valueEncoding;
  }

  async _next(): Promise<Data | undefined> {
    const e = await this.#cursor.next();
    return e === undefined ? undefined : fromBytes(e[1], this.#format);
  }

  async _nextv(size: number): Promise<Data[]> {
    return take(this.#cursor, size, (e) => fromBytes(e[1], this.#format));
  }

  async _all(): Promise<Data[]> {
    return this._nextv(remaining(this));
  }

  _seek(target: Data): void {
    this.#cursor.seek(target);
  }

  async _close(): Promise<void> {
    this.#cursor.close();
  }
}
