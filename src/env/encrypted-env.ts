import { fileIo, writeFully } from '../util/file-io.js';
import { dirname, join } from 'node:path';
import { TdekvError, errnoCode, isTdekvError } from '../errors.js';
import type { EncryptionMethod } from '../crypto/method.js';
import { freshIv, zeroize } from '../crypto/random.js';
import type { MasterKey } from '../masterkey/master-key.js';
import { silentLogger, type Logger } from '../log/logger.js';
import { InFlight } from '../util/in-flight.js';
import { mkdirDurable, pathExists as exists, syncDir } from '../keys/atomic-file.js';
import { COPY_SUFFIX, DataKeyStore } from '../keys/data-key-store.js';
import type { DataKeyInfo } from '../keys/data-key.js';
import { FileDictionary, LOG_NAME, SNAPSHOT_NAME } from '../keys/file-dictionary.js';
import type { FileEntry, FileInfo } from '../keys/file-dictionary-format.js';
import { DirLock, LOCK_NAME } from './dir-lock.js';
import { META_DIR, normalizeDir, normalizeRelative } from './paths.js';
import { infoOf, reconcile, untrackedFiles, untrackedFilesError } from './reconcile.js';
import { createGranted, openGrantedRead, type FileGrant } from './file-grant.js';
import type { EncryptedReadableFile } from './readable-file.js';
import type { EncryptedWritableFile } from './writable-file.js';

export const KEY_DICT_NAME = 'key.dict';
/** Reserved suffix of reencrypt()'s copies; leftovers of a crash are removed at open. */
export const REENCRYPT_SUFFIX = '.tdekv-reencrypt';
const REENCRYPT_CHUNK = 1 << 20;

export interface EnvOptions {
  dataDir: string;
  /** `data-encryption-method` for new files. */
  method: EncryptionMethod;
  /** `data-key-rotation-period`, milliseconds. */
  rotationPeriodMs: number;
  masterKey: MasterKey;
  previousMasterKey?: MasterKey;
  /** `enable-file-dictionary-log`. */
  fileDictionaryLog: boolean;
  /** `file-dictionary-rewrite-threshold`. */
  fileDictionaryRewriteThreshold: number;
  logger?: Logger;
  /** Inspect only: nothing on disk is created, re-sealed or compacted. */
  readOnly?: boolean;
  /**
   * Take the data dir lock (default true). Turn off only where something else guarantees
   * a single writer, e.g. a test that simulates a crash by abandoning an env in-process.
   */
  exclusive?: boolean;
  /**
   * On the first open of a data dir that already holds files, track them as plaintext.
   * Without it such an open is refused: the files may be ciphertext whose encryption-meta/
   * was lost, and reading them as plaintext would be exactly the silent plaintext that
   * invariant 5 forbids.
   */
  adoptPlaintextFiles?: boolean;
  /**
   * Defer the writes of opening (dictionary rewrite, key.dict re-seal or repair, crash
   * recovery) until the first change or beginWrites(). The engine's callers set it: the
   * engine then checks its manifest and logs first, so an open it refuses changes nothing
   * on disk (invariant 11). Default false: open() returns with them done.
   */
  deferOpenWrites?: boolean;
  /**
   * Test hook: called at each durability step; throwing simulates a crash there. create()
   * also awaits what it returns at 'key-chosen' (before its entry is written) and
   * 'entry-durable', so a test can run other operations inside those windows.
   */
  faults?: (operation: string, step: string) => void | Promise<void>;
}

export interface DictionaryState {
  /** key.dict or the file dictionary is still in the legacy (version 1, unauthenticated) format. */
  legacy: boolean;
  keyDictGeneration: number;
  fileDictGeneration: number;
  /** A torn last append of file.dict.log, dropped at the next writable open. */
  tornTail?: { file: string; offset: number; reason: string; droppedBytes: number };
  staleLog: boolean;
  /** A damaged, missing or out-of-date copy of key.dict (the other one was used). */
  keyDictCopyProblems: string[];
  plaintextEntries: string[];
  /** Encrypted files written before tags existed. */
  unauthenticatedFiles: string[];
}

export interface CreateOptions {
  /**
   * Whether the writer puts authentication tags in the file (default true): the engine's
   * tables and logs do, and readers then verify them (see FileInfo.authenticated). Opaque
   * content without tags is created with false.
   */
  authenticated?: boolean;
}

export interface EncryptionStats {
  files: number;
  /** Files per method. */
  byMethod: Partial<Record<EncryptionMethod, number>>;
  /** Files per data key id (0 = plaintext). */
  byKeyId: Record<number, number>;
}

/** What key administration (src/env/key-admin.ts) works through; see keyAdminAccess(). */
export interface KeyAdminAccess {
  readonly keys: DataKeyStore;
  /** `data-encryption-method` for new files. */
  readonly method: EncryptionMethod;
  /** Changes the method for new files (the online lifecycle); the caller rotates to a key of it. */
  setMethod(method: EncryptionMethod): void;
  setRotationPeriodMs(ms: number): void;
  usedKeyIds(): ReadonlySet<number>;
  currentDataKey(): DataKeyInfo | undefined;
  /** Runs a key change as the env's own changes run: refused once closed or read-only, awaited by close(). */
  change<T>(fn: () => Promise<T>): Promise<T>;
}

let accessOf: (env: EncryptedEnv) => KeyAdminAccess;

/**
 * The env's key store, for KeyAdmin only: the env itself offers file encryption and no key
 * rotation, retirement or export. The engine never gets here, as it never holds the env
 * (it holds an EngineFs facade, see src/engine/engine-fs.ts).
 */
export function keyAdminAccess(env: EncryptedEnv): KeyAdminAccess {
  return accessOf(env);
}

/**
 * The only door to the disk for user data. Each file is a CTR stream under one data key
 * and a fresh IV recorded in the file dictionary before the first byte is written.
 */
export class EncryptedEnv {
  static {
    accessOf = (env) => env.#keyAdminAccess();
  }

  readonly dataDir: string;
  readonly metaDir: string;
  readonly #options: EnvOptions;
  readonly #dict: FileDictionary;
  readonly #keys: DataKeyStore;
  readonly #logger: Logger;
  readonly #lock: DirLock | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Operations that close() waits for: creates and key changes. */
  readonly #inFlight = new InFlight();
  /** Names being created: a second create() of one name must fail before it writes an entry. */
  readonly #creating = new Set<string>();
  /** The writes of opening, deferred to the first change (see #openLocked); undefined once done. */
  #openWrites: (() => Promise<void>) | undefined;
  #openWriting: Promise<void> | undefined;

  private constructor(options: EnvOptions, dict: FileDictionary, keys: DataKeyStore, logger: Logger, lock: DirLock | undefined) {
    this.dataDir = options.dataDir;
    this.metaDir = join(options.dataDir, META_DIR);
    // A copy: the method and rotation period change online (KeyAdmin), never the caller's object.
    this.#options = { ...options };
    this.#dict = dict;
    this.#keys = keys;
    this.#logger = logger;
    this.#lock = lock;
  }

  static async open(options: EnvOptions): Promise<EncryptedEnv> {
    const readOnly = options.readOnly ?? false;
    const metaDir = join(options.dataDir, META_DIR);
    if (readOnly) {
      await fileIo.access(metaDir).catch(() => {
        throw new TdekvError('FILE_NOT_FOUND', `${metaDir} does not exist: ${options.dataDir} is not a tdekv data dir (check --data-dir / [storage] data-dir)`);
      });
      return EncryptedEnv.#openLocked(options, undefined);
    }
    const createdMetaDir = await mkdirDurable(metaDir);
    const lock = options.exclusive === false ? undefined : await DirLock.acquire(join(metaDir, LOCK_NAME));
    try {
      return await EncryptedEnv.#openLocked(options, lock);
    } catch (err) {
      // Opening failed: leave a new data dir as it was (invariant 7).
      await lock?.release({ remove: createdMetaDir !== undefined });
      if (createdMetaDir) await fileIo.rmdir(metaDir).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Everything is read and checked before anything is written (invariants 7 and 11): a
   * refused open leaves every byte under the data dir as it was.
   */
  static async #openLocked(options: EnvOptions, lock: DirLock | undefined): Promise<EncryptedEnv> {
    const logger = options.logger ?? silentLogger();
    const readOnly = options.readOnly ?? false;
    const metaDir = join(options.dataDir, META_DIR);
    const keyDictPath = join(metaDir, KEY_DICT_NAME);
    const keyDictExisted = (await exists(keyDictPath)) || (await exists(keyDictPath + COPY_SUFFIX));
    if (readOnly && !keyDictExisted && (await exists(join(metaDir, SNAPSHOT_NAME)))) {
      throw new TdekvError('KEY_DICTIONARY_DAMAGED', `key dictionary ${keyDictPath} (and its copy) is missing, but the file dictionary exists: restore ${KEY_DICT_NAME} from the same backup as the file dictionary.`);
    }
    // key.dict first: it holds the MAC key the file dictionary is verified with.
    const keys = await DataKeyStore.load({
      path: keyDictPath,
      masterKey: options.masterKey,
      ...(options.previousMasterKey ? { previousMasterKey: options.previousMasterKey } : {}),
      logger,
      readOnly,
    });
    let dict: FileDictionary | undefined;
    try {
      dict = await loadFileDictionary(options, logger, keys, keyDictExisted, keyDictPath);
      checkBinding(keys, dict, keyDictPath, join(metaDir, SNAPSHOT_NAME));
      // What the dictionary will hold once the crash recovery below has run: entries of
      // files that never got created are dropped before their keys are looked for.
      const recovered = new Map(dict.entries());
      for (const r of await reconcile(dict.entries(), (rel) => exists(join(options.dataDir, rel)))) {
        if (r.op === 'set') recovered.set(r.path, r.entry);
        else recovered.delete(r.path);
      }
      for (const [path, entry] of recovered) {
        if (entry.keyId !== 0 && !keys.has(entry.keyId)) {
          throw new TdekvError(
            'DATA_KEY_MISSING',
            `file ${path} is encrypted with data key ${entry.keyId}, which ${keyDictPath} does not hold: the key dictionary and the file dictionary come from different backups. Restore both from the same one.`,
          );
        }
      }
      // Files present before tdekv tracked anything: checked before key.dict can be created.
      const untracked = !readOnly && dict.size === 0 ? await untrackedFiles(options.dataDir, (rel) => dict!.has(rel)) : [];
      if (untracked.length > 0 && !keyDictExisted && !options.adoptPlaintextFiles) throw untrackedFilesError(options.dataDir, untracked);
      // New while no file is tracked and no data key was ever made: judged by content, not by
      // whether the dictionaries exist, so a first open that crashed after writing key.dict
      // or file.dict is still a first open.
      const adopt = keys.list().length === 0 ? untracked : [];
      if (adopt.length > 0 && !options.adoptPlaintextFiles) throw untrackedFilesError(options.dataDir, adopt);
      const env = new EncryptedEnv(options, dict, keys, logger, lock);
      if (!readOnly) {
        // Every check has passed, but nothing is written yet: the writes of opening wait for the
        // first change, so a caller that checks more (the engine reads its manifest and logs)
        // can still refuse with every byte on disk as it was (invariant 11). Reads see the
        // recovered state at once: what a crash interrupted is resolved in memory now.
        const leftovers = await env.#stageRecovery(adopt);
        env.#openWrites = async () => {
          // Half-made copies of an interrupted reencrypt() (the original is intact) go first,
          // while the dictionary still lists them.
          for (const path of leftovers) {
            await fileIo.unlink(env.#abs(path)).catch((err: unknown) => {
              if (errnoCode(err) !== 'ENOENT') throw err;
            });
          }
          // key.dict is made durable before the file dictionary uses its MAC key, and (while it
          // says "not bound yet") still accepts a legacy file dictionary if a crash interrupts
          // the migration. The file dictionary's rewrite persists the recovered state.
          if (keys.legacy || keys.pendingWrites.includes('created')) await keys.writePending();
          await dict!.beginWrites(keys.generation);
          const d = dict!;
          keys.bindFileDictionary({ generation: () => d.generation, recordKeyDictGeneration: (g) => d.recordKeyDictGeneration(g) });
          // Binds key.dict to the file dictionary's new generation, and repairs, re-seals or
          // records exposure if that was pending.
          await keys.writePending(true);
          zeroize((await keys.current(env.#policy()))?.key);
        };
        if (!options.deferOpenWrites) await env.#ensureOpenWritten();
      }
      return env;
    } catch (err) {
      keys.close();
      await dict?.close();
      throw err;
    }
  }

  /** Creates a new, empty file. Fails if the path exists: files are written once (invariant 1). */
  async create(path: string, options: CreateOptions = {}): Promise<EncryptedWritableFile> {
    return createGranted(await this.grantCreate(path, options));
  }

  /**
   * Records a new file in the dictionary, durably, creates it empty, and returns the grant to
   * write it (src/env/file-grant.ts): what a background thread gets instead of the env. Fails
   * if the path exists or is being created. The file exists before the grant is handed out, so
   * a second create of the name fails however late the holder opens it.
   */
  async grantCreate(path: string, options: CreateOptions = {}): Promise<FileGrant> {
    this.#checkWritable();
    const rel = normalizeRelative(path);
    // Reserved before the first await: two creates of one name would both pass the exists
    // check, and the loser's entry (its IV) would replace the winner's.
    if (this.#creating.has(rel)) throw fileExists(rel, this.dataDir);
    this.#creating.add(rel);
    try {
      return await this.#inFlight.run(() => this.#grantCreate(rel, options.authenticated ?? true));
    } finally {
      this.#creating.delete(rel);
    }
  }

  async #grantCreate(rel: string, authenticated: boolean): Promise<FileGrant> {
    await this.#ensureOpenWritten();
    const abs = this.#abs(rel);
    if (await exists(abs)) throw fileExists(rel, this.dataDir);
    // Leased until the entry is in the dictionary, where retireUnusedKeys() can see it.
    const lease = await this.#keys.lease(this.#policy());
    try {
      const key = lease?.key;
      const info: FileInfo = key ? { method: key.method, keyId: key.id, iv: freshIv(), authenticated } : { method: 'plaintext', keyId: 0, iv: freshIv(), authenticated: false };
      await this.#options.faults?.('create', 'key-chosen');
      // The entry is durable before the first byte (invariant 4).
      await this.#dict.set(rel, info);
      await this.#options.faults?.('create', 'entry-durable');
      try {
        await (await fileIo.open(abs, 'wx', 0o600)).close();
      } catch (err) {
        if (errnoCode(err) === 'EEXIST') throw new TdekvError('FILE_EXISTS', `file ${rel} was created concurrently by someone else`);
        if (errnoCode(err) === 'ENOENT') throw new TdekvError('FILE_NOT_FOUND', `cannot create ${rel}: its directory does not exist (create it with mkdir first)`);
        throw err;
      }
      return { path: rel, absolutePath: abs, access: 'create', method: info.method, keyId: info.keyId, key: Buffer.from(key?.key ?? Buffer.alloc(0)), iv: info.iv, authenticated: info.authenticated };
    } finally {
      lease?.release();
    }
  }

  /**
   * Puts a file that was encrypted elsewhere (a backup's, under a key imported with
   * KeyAdmin.importDataKey) in place unchanged: its bytes already are the CTR stream under
   * `info`'s key and IV, with tags bound to them. The entry is durable before the first byte
   * (invariant 4); on any failure the file and its entry are removed. Returns the bytes written.
   */
  async importFile(path: string, info: FileInfo, data: AsyncIterable<Uint8Array>): Promise<number> {
    this.#checkWritable();
    const rel = normalizeRelative(path);
    if (info.method === 'plaintext' || !this.#keys.has(info.keyId) || this.#keys.get(info.keyId).method !== info.method) {
      throw new TdekvError('DATA_KEY_MISSING', `cannot import ${rel}: data key ${info.keyId} (${info.method}) is not in the key dictionary of ${this.dataDir}; import the key first`);
    }
    if (this.#creating.has(rel)) throw fileExists(rel, this.dataDir);
    this.#creating.add(rel);
    try {
      return await this.#inFlight.run(async () => {
        await this.#ensureOpenWritten();
        const abs = this.#abs(rel);
        if ((await exists(abs)) || this.#dict.has(rel)) throw fileExists(rel, this.dataDir);
        await this.#dict.set(rel, { method: info.method, keyId: info.keyId, iv: Buffer.from(info.iv), authenticated: info.authenticated });
        let written = 0;
        try {
          const fh = await fileIo.open(abs, 'wx', 0o600);
          try {
            for await (const chunk of data) {
              await writeFully(fh, [Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)], written, abs);
              written += chunk.length;
            }
            await fh.sync();
          } finally {
            await fh.close();
          }
          await this.#syncDirsOf(rel);
        } catch (err) {
          await fileIo.unlink(abs).catch(() => undefined);
          await this.#dict.remove(rel).catch(() => undefined);
          throw err;
        }
        return written;
      });
    } finally {
      this.#creating.delete(rel);
    }
  }

  /** Opens an existing file for random-access reads. */
  async openRead(path: string): Promise<EncryptedReadableFile> {
    return this.openReadSync(path);
  }

  /**
   * The same, synchronously: the engine opens tables on its synchronous read path (a
   * getSync that misses the table cache), where an await is not possible.
   */
  openReadSync(path: string): EncryptedReadableFile {
    const grant = this.grantRead(path);
    try {
      return openGrantedRead(grant);
    } catch (err) {
      if (isTdekvError(err, 'FILE_NOT_FOUND')) throw new TdekvError('FILE_NOT_FOUND', `file ${grant.path} is in the file dictionary but not on disk in ${this.dataDir}`);
      throw err;
    }
  }

  /** The grant to read an existing file (src/env/file-grant.ts): what a background thread gets instead of the env. */
  grantRead(path: string): FileGrant {
    this.#checkOpen();
    const rel = normalizeRelative(path);
    const entry = this.#entry(rel);
    // Legacy files (written before tags) are read with checksums only: see FileInfo.authenticated.
    const key = entry.keyId === 0 ? Buffer.alloc(0) : this.#keys.get(entry.keyId).key;
    return { path: rel, absolutePath: this.#abs(rel), access: 'read', method: entry.method, keyId: entry.keyId, key, iv: entry.iv, authenticated: entry.authenticated };
  }

  /** Whole-file convenience: create, append, sync, close. */
  /**
   * Whole-file convenience for opaque content: create, append, sync, close. The bytes carry
   * no tags, so the file is recorded as unauthenticated (CTR only: confidential, but not
   * tamper-evident); engine files are written with create() and carry tags.
   */
  async writeFile(path: string, data: Uint8Array): Promise<void> {
    const f = await this.create(path, { authenticated: false });
    try {
      await f.append(data);
      await f.sync();
    } finally {
      await f.close();
    }
  }

  async readFile(path: string): Promise<Buffer> {
    const f = await this.openRead(path);
    try {
      return await f.read(0, f.size);
    } finally {
      f.close();
    }
  }

  /**
   * Rewrites a file under the current method and data key (SQL Server's encryption scan,
   * one file at a time): a copy is written under a reserved temporary name, synced, and
   * renamed over the original, so a crash leaves either the old file or the new one.
   * Returns false when the file already uses the current key and method.
   */
  async reencrypt(path: string, onProgress?: (bytes: number) => void): Promise<boolean> {
    await this.#writable();
    const rel = normalizeRelative(path);
    const entry = this.#entry(rel);
    const current = await this.#keys.current(this.#policy());
    zeroize(current?.key);
    const target = current ? { method: current.method, keyId: current.id } : { method: 'plaintext' as const, keyId: 0 };
    if (entry.method === target.method && entry.keyId === target.keyId) return false;
    if (entry.authenticated) {
      // Its tags are bound to this file's key and IV: a byte copy would fail every one of them.
      throw new TdekvError('INVALID_ARGUMENT', `file ${rel} carries authentication tags bound to its own key, so it cannot be copied under another key; tables and logs are rewritten by the engine (compaction), which \`tdekv data-key reencrypt\` runs`);
    }
    const tmp = rel + REENCRYPT_SUFFIX;
    if (await exists(this.#abs(tmp))) await this.remove(tmp);
    const src = await this.openRead(rel);
    try {
      const out = await this.create(tmp, { authenticated: false });
      try {
        for (let off = 0; off < src.size; off += REENCRYPT_CHUNK) {
          const chunk = await src.read(off, REENCRYPT_CHUNK);
          await out.append(chunk);
          onProgress?.(chunk.length);
        }
        await out.sync();
      } finally {
        await out.close();
      }
    } finally {
      src.close();
    }
    this.#fault('reencrypt', 'copied');
    await this.rename(tmp, rel);
    return true;
  }

  /**
   * Whether a file should be rewritten: it is not under the current method and data key, or
   * it is an encrypted file without authentication tags (written before tags existed). The
   * engine asks this before a trivial move and before appending to a manifest.
   */
  needsRewrite(path: string): boolean {
    const info = this.#dict.get(normalizeRelative(path));
    if (!info) return true;
    const current = this.#currentDataKey();
    if (!current) return info.method !== 'plaintext';
    return info.method !== current.method || info.keyId !== current.id || !info.authenticated;
  }

  /** Files whose method or data key is not the current one: what reencrypt() would rewrite. */
  filesNotOnCurrentKey(): string[] {
    const current = this.#currentDataKey();
    return this.files()
      .filter(([, i]) => (current ? i.method !== current.method || i.keyId !== current.id : i.method !== 'plaintext'))
      .map(([p]) => p);
  }

  /**
   * Renames a file, replacing `to` if it exists. The entry for `to` is written first with a
   * note of the rename in flight; at open, whether `from` still exists tells if the rename
   * happened, so a crash at any step leaves both names readable (invariant 4).
   */
  async rename(from: string, to: string): Promise<void> {
    await this.#writable();
    const src = normalizeRelative(from);
    const dst = normalizeRelative(to);
    if (src === dst) return;
    const entry = this.#entry(src);
    const info = infoOf(entry);
    if (await sameFile(this.#abs(src), this.#abs(dst))) {
      // POSIX rename between two hard links of one file does nothing; the caller expects
      // `from` to be gone afterwards, and `to` already has this file's entry.
      await this.remove(src);
      return;
    }
    const previous = this.#dict.get(dst);
    const replaced = previous && (await exists(this.#abs(dst))) ? infoOf(previous) : undefined;
    await this.#dict.set(dst, { ...info, pending: replaced ? { from: src, previous: replaced } : { from: src } });
    this.#fault('rename', 'entry-linked');
    await fileIo.rename(this.#abs(src), this.#abs(dst));
    await this.#syncDirsOf(src, dst);
    this.#fault('rename', 'renamed');
    await this.#dict.apply([
      { op: 'remove', path: src },
      { op: 'set', path: dst, entry: info },
    ]);
  }

  /** A hard link: both names share one inode, so one (key, IV) stream, as they should. */
  async link(from: string, to: string): Promise<void> {
    await this.#writable();
    const src = normalizeRelative(from);
    const dst = normalizeRelative(to);
    const info = infoOf(this.#entry(src));
    if (await exists(this.#abs(dst))) throw new TdekvError('FILE_EXISTS', `cannot link ${src} to ${dst}: ${dst} exists`);
    await this.#dict.set(dst, info);
    this.#fault('link', 'entry-linked');
    await fileIo.link(this.#abs(src), this.#abs(dst));
    await this.#syncDirsOf(dst);
  }

  /** Removes the file first and the entry second: a crash between leaves only a stale entry. */
  async remove(path: string): Promise<void> {
    await this.#writable();
    const rel = normalizeRelative(path);
    let removed = true;
    try {
      if (this.#options.method !== 'plaintext' && this.#dict.get(rel)?.method === 'plaintext') await this.#zeroFill(rel);
      await fileIo.unlink(this.#abs(rel));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      removed = false;
    }
    if (removed) await this.#syncDirsOf(rel);
    this.#fault('remove', 'unlinked');
    if (this.#dict.has(rel)) await this.#dict.remove(rel);
    else if (!removed) throw new TdekvError('FILE_NOT_FOUND', `cannot remove ${rel}: no such file in ${this.dataDir}`);
  }

  /**
   * Overwrites a plaintext file with zeros before it is unlinked, once encryption is on, so its
   * old form does not linger in free blocks. Best effort: SSDs remap writes and copy-on-write
   * file systems (btrfs, ZFS) write the zeros elsewhere (docs/encryption.md says so).
   */
  async #zeroFill(rel: string): Promise<void> {
    const fh = await fileIo.open(this.#abs(rel), 'r+').catch(() => undefined);
    if (!fh) return;
    try {
      const { size } = await fh.stat();
      const zeros = Buffer.alloc(Math.min(size, 1 << 20));
      for (let off = 0; off < size; off += zeros.length) await fh.write(zeros, 0, Math.min(zeros.length, size - off), off);
      await fh.datasync();
    } catch (err) {
      this.#logger.warn({ file: rel, err: String(err) }, 'could not overwrite a plaintext file with zeros before removing it');
    } finally {
      await fh.close();
    }
  }

  async exists(path: string): Promise<boolean> {
    return exists(this.#abs(normalizeRelative(path)));
  }

  /** Names in a directory of the data dir (not recursive); the dictionaries are hidden. */
  async list(dir = ''): Promise<string[]> {
    const rel = normalizeDir(dir);
    const names = await fileIo.readdir(rel === '' ? this.dataDir : this.#abs(rel));
    return (rel === '' ? names.filter((n) => n !== META_DIR) : names).sort();
  }

  /**
   * Bytes an unprivileged writer can still use on the data dir's file system (statfs's
   * bavail) and its size; the engine checks it before starting a flush or compaction.
   */
  async freeSpace(): Promise<{ free: number; total: number }> {
    const s = await fileIo.statfs(this.dataDir);
    return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
  }

  async mkdir(dir: string): Promise<void> {
    await this.#writable();
    await mkdirDurable(this.#abs(normalizeDir(dir)), 0o755);
  }

  /** Method, key id and IV of a tracked file; never key material. */
  fileInfo(path: string): FileInfo | undefined {
    const e = this.#dict.get(normalizeRelative(path));
    return e && infoOf(e);
  }

  /** All tracked files, sorted by path. */
  files(): Array<[string, FileInfo]> {
    return [...this.#dict.entries()].map(([p, e]): [string, FileInfo] => [p, infoOf(e)]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  }

  stats(): EncryptionStats {
    const stats: EncryptionStats = { files: 0, byMethod: {}, byKeyId: {} };
    for (const [, e] of this.#dict.entries()) {
      stats.files += 1;
      stats.byMethod[e.method] = (stats.byMethod[e.method] ?? 0) + 1;
      stats.byKeyId[e.keyId] = (stats.byKeyId[e.keyId] ?? 0) + 1;
    }
    return stats;
  }

  get method(): EncryptionMethod {
    return this.#options.method;
  }

  /** The current data key's metadata, if the method encrypts: what needsRewrite() compares with. */
  #currentDataKey(): DataKeyInfo | undefined {
    const id = this.#keys.currentKeyId;
    return this.#options.method === 'plaintext' || id === 0 ? undefined : this.#keys.list().find((k) => k.id === id);
  }

  /**
   * What the open found about the dictionaries themselves, for `ctl verify` and status: the
   * key.dict generation (an outside anchor can record it to detect a rollback of the whole
   * data dir), legacy (unauthenticated) state, and problems the next writable open repairs.
   */
  dictionaryState(): DictionaryState {
    const notes = this.#dict.notes;
    const plaintextEntries: string[] = [];
    const unauthenticatedFiles: string[] = [];
    for (const [path, e] of this.#dict.entries()) {
      if (e.method === 'plaintext') plaintextEntries.push(path);
      else if (!e.authenticated) unauthenticatedFiles.push(path);
    }
    return {
      legacy: notes.legacy || this.#keys.legacy,
      keyDictGeneration: this.#keys.generation,
      fileDictGeneration: this.#dict.generation,
      ...(notes.tornTail ? { tornTail: { ...notes.tornTail } } : {}),
      staleLog: notes.staleLog,
      keyDictCopyProblems: [...this.#keys.copyProblems],
      plaintextEntries: plaintextEntries.sort(),
      unauthenticatedFiles: unauthenticatedFiles.sort(),
    };
  }

  async metaFileSizes(): Promise<Record<string, number>> {
    const sizes = await this.#dict.metaFileSizes();
    const s = await fileIo.stat(join(this.metaDir, KEY_DICT_NAME)).catch(() => undefined);
    if (s) sizes[KEY_DICT_NAME] = s.size;
    return sizes;
  }

  /**
   * Refuses new operations at once, waits for creates and key changes in flight (their
   * entries and keys must be on disk, and their ciphers built, before the keys are wiped),
   * then closes. Files already created or opened keep working: each holds its own cipher.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      await this.#inFlight.drained();
      // Each step runs even if an earlier one fails (a close reporting EIO): the keys must be
      // wiped and the lock given back, or the data dir cannot be reopened by this process.
      try {
        await this.#dict.close();
      } finally {
        try {
          this.#keys.close();
        } finally {
          await this.#lock?.release();
        }
      }
    })();
    return this.#closing;
  }

  /** See keyAdminAccess(). */
  #keyAdminAccess(): KeyAdminAccess {
    const options = this.#options;
    return {
      keys: this.#keys,
      get method() {
        return options.method;
      },
      setMethod: (method) => {
        options.method = method;
      },
      setRotationPeriodMs: (ms) => {
        options.rotationPeriodMs = ms;
      },
      usedKeyIds: () => this.#dict.usedKeyIds(),
      currentDataKey: () => this.#currentDataKey(),
      change: async <T>(fn: () => Promise<T>): Promise<T> => {
        await this.#writable();
        return this.#inFlight.run(fn);
      },
    };
  }

  #policy() {
    return { method: this.#options.method, periodMs: this.#options.rotationPeriodMs, masterKeyProtects: this.#keys.masterKey.protectsKeys };
  }

  #entry(rel: string): FileEntry {
    const entry = this.#dict.get(rel);
    if (!entry) {
      throw new TdekvError(
        'FILE_NOT_TRACKED',
        `file ${rel} is not in the file dictionary of ${this.dataDir}, so its encryption is unknown; tdekv never reads such a file as plaintext. It was not written by tdekv, or the dictionary was restored from an older backup.`,
      );
    }
    return entry;
  }

  #abs(rel: string): string {
    return rel === '' ? this.dataDir : join(this.dataDir, rel);
  }

  async #syncDirsOf(...rels: string[]): Promise<void> {
    for (const dir of new Set(rels.map((r) => dirname(this.#abs(r))))) await syncDir(dir);
  }

  #fault(operation: string, step: string): void {
    this.#options.faults?.(operation, step);
  }

  #checkOpen(): void {
    if (this.#closed) throw new TdekvError('CLOSED', `encrypted env for ${this.dataDir} is closed`);
  }

  /** Read-only envs must refuse before touching the disk: remove() unlinks before it updates the dictionary. */
  #checkWritable(): void {
    this.#checkOpen();
    if (this.#options.readOnly) throw new TdekvError('INVALID_ARGUMENT', `encrypted env for ${this.dataDir} is open read-only`);
  }

  /** #checkWritable, then the writes opening deferred. */
  async #writable(): Promise<void> {
    this.#checkWritable();
    await this.#ensureOpenWritten();
  }

  /**
   * Resolves in memory what a crash interrupted (renames in flight finished or undone,
   * entries of files that never got created dropped, half-made reencrypt copies dropped) and
   * adopts `adopt` as plaintext; the first write persists it. Returns the leftover copies to
   * delete then.
   */
  async #stageRecovery(adopt: readonly string[]): Promise<string[]> {
    const records = await reconcile(this.#dict.entries(), (rel) => exists(this.#abs(rel)));
    const leftovers: string[] = [];
    for (const [path] of this.#dict.entries()) {
      if (path.endsWith(REENCRYPT_SUFFIX) && !this.#dict.get(path)?.pending) {
        leftovers.push(path);
        records.push({ op: 'remove', path });
      }
    }
    for (const path of adopt) records.push({ op: 'set', path, entry: { method: 'plaintext', keyId: 0, iv: freshIv(), authenticated: false } });
    if (adopt.length > 0) this.#logger.info({ files: adopt.length }, 'adopted existing files as plaintext; new files use the configured method');
    if (records.length > 0) {
      this.#dict.stage(records);
      this.#logger.info({ records: records.length }, 'file dictionary reconciled with the data dir');
    }
    return leftovers;
  }

  /**
   * The writes opening deferred (see #openLocked), run once before the first change. A
   * failure (a full disk, say) is reported to that change and tried again by the next.
   */
  #ensureOpenWritten(): Promise<void> {
    if (!this.#openWrites) return Promise.resolve();
    this.#openWriting ??= this.#openWrites().then(
      () => {
        this.#openWrites = undefined;
      },
      (err: unknown) => {
        this.#openWriting = undefined;
        throw err;
      },
    );
    return this.#openWriting;
  }

  /** Makes the writes opening deferred now (they otherwise happen at the first change). */
  async beginWrites(): Promise<void> {
    this.#checkWritable();
    await this.#ensureOpenWritten();
  }
}

function fileExists(rel: string, dataDir: string): TdekvError {
  return new TdekvError('FILE_EXISTS', `file ${rel} already exists in ${dataDir}: files are append-only and written once; write a new name and rename it over the old one`);
}

async function loadFileDictionary(options: EnvOptions, logger: Logger, keys: DataKeyStore, keyDictExisted: boolean, keyDictPath: string): Promise<FileDictionary> {
  const macKey = keys.dictMacKey() ?? keys.pendingDictMacKey();
  try {
    const dict = await FileDictionary.load({
      dir: join(options.dataDir, META_DIR),
      useLog: options.fileDictionaryLog,
      rewriteThreshold: options.fileDictionaryRewriteThreshold,
      logger,
      macKey,
      keyDictLegacy: keys.legacy || !keyDictExisted,
    });
    if (!keyDictExisted && dict.usedKeyIds().size > 0) {
      await dict.close();
      throw new TdekvError(
        'KEY_DICTIONARY_DAMAGED',
        `key dictionary ${keyDictPath} is missing, but the file dictionary lists encrypted files: restore ${KEY_DICT_NAME} from a backup. A new one would not decrypt them.`,
      );
    }
    return dict;
  } catch (err) {
    if (!keyDictExisted && isTdekvError(err, 'KEY_DICTIONARY_DAMAGED') && !err.message.includes('lists encrypted files')) {
      throw new TdekvError(
        'KEY_DICTIONARY_DAMAGED',
        `key dictionary ${keyDictPath} (and its copy) is missing, but the file dictionary exists and is authenticated with a key that only key.dict holds: restore ${KEY_DICT_NAME} from the same backup as the file dictionary.`,
      );
    }
    throw err;
  } finally {
    macKey.fill(0);
  }
}

/**
 * key.dict and the file dictionary each record the other's generation, so restoring one of
 * them from an older copy (a partial rollback) is refused. Rolling back both to one older
 * consistent pair cannot be told apart without an outside anchor (see docs/encryption.md).
 */
function checkBinding(keys: DataKeyStore, dict: FileDictionary, keyDictPath: string, fileDictPath: string): void {
  if (keys.legacy) return;
  const both = `Restore both ${keyDictPath} and ${fileDictPath} (with ${LOG_NAME}) from the same backup.`;
  if (dict.notes.legacy && keys.fileDictGeneration > 0) {
    throw new TdekvError(
      'FILE_DICTIONARY_DAMAGED',
      `file dictionary ${fileDictPath} is in the legacy unauthenticated format, but ${keyDictPath} records that it was migrated to the authenticated format (generation ${keys.fileDictGeneration}): it was replaced (a downgrade) or restored from an old backup. ${both}`,
    );
  }
  if (keys.generation < dict.keyDictGeneration) {
    throw new TdekvError(
      'KEY_DICTIONARY_DAMAGED',
      `key dictionary ${keyDictPath} is at generation ${keys.generation}, but the file dictionary ${fileDictPath} records generation ${dict.keyDictGeneration}: key.dict was rolled back to an older copy, or the two come from different backups. ${both}`,
    );
  }
  if (dict.generation < keys.fileDictGeneration) {
    throw new TdekvError(
      'FILE_DICTIONARY_DAMAGED',
      `file dictionary ${fileDictPath} is at generation ${dict.generation}, but the key dictionary ${keyDictPath} records generation ${keys.fileDictGeneration}: the file dictionary was rolled back to an older copy, or the two come from different backups. ${both}`,
    );
  }
}

async function sameFile(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([fileIo.stat(a).catch(() => undefined), fileIo.stat(b).catch(() => undefined)]);
  return sa !== undefined && sb !== undefined && sa.dev === sb.dev && sa.ino === sb.ino;
}

