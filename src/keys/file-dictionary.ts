import type { FileHandle } from 'node:fs/promises';
import { fileIo } from '../util/file-io.js';
import { join } from 'node:path';
import { TdekvError, errnoCode } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { mkdirDurable, removeStrayTmpFiles, writeFileAtomic } from './atomic-file.js';
import { readMetaFileIfExists as readIfExists, timeMetaFile } from './meta-file-timing.js';
import {
  DictionaryFormatError,
  HeaderTooNew,
  LEGACY_VERSION,
  LOG_MAGIC,
  LOG_PREAMBLE_LENGTH,
  LOG_VERSION,
  SNAPSHOT_MAGIC,
  SNAPSHOT_VERSION,
  decodeHeader,
  decodeLegacyRecords,
  decodeLog,
  decodeSnapshot,
  encodeLogBatch,
  encodeLogPreamble,
  encodeSnapshot,
  type DictRecord,
  type FileEntry,
  type FileRecord,
  type Header,
} from './file-dictionary-format.js';

export const SNAPSHOT_NAME = 'file.dict';
export const LOG_NAME = 'file.dict.log';

export interface FileDictionaryOptions {
  dir: string;
  /** `enable-file-dictionary-log`: append a record per change instead of rewriting. */
  useLog: boolean;
  /** `file-dictionary-rewrite-threshold`: removes in the log before it is compacted. */
  rewriteThreshold: number;
  logger: Logger;
  /**
   * The MAC key from key.dict. While key.dict is still in the legacy format, pass the key its
   * migration will store and `keyDictLegacy: true`: then only a legacy dictionary is accepted.
   */
  macKey: Buffer;
  keyDictLegacy?: boolean;
  /** Test hook: how one append reaches the log (a short or failed write can be injected). */
  writeLog?: (fh: FileHandle, data: Buffer, position: number) => Promise<{ bytesWritten: number }>;
}

interface Waiter {
  records: DictRecord[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** What load() found that the first writable open must fold away (for `ctl verify` and the logs). */
export interface DictionaryNotes {
  /** Loaded from the legacy (version 1, unauthenticated) format. */
  legacy: boolean;
  /** A torn last append that the next writable open drops. */
  tornTail?: { file: string; offset: number; reason: string; droppedBytes: number };
  /** A log of an older generation than the snapshot (a crash during compaction): ignored. */
  staleLog: boolean;
}

/**
 * In-memory map of every tracked file, made durable before each change takes effect.
 * Concurrent changes are group-committed: one write and one fsync for all that queued.
 */
export class FileDictionary {
  readonly #options: FileDictionaryOptions;
  readonly #entries: Map<string, FileEntry>;
  #generation: number;
  #keyDictGeneration: number;
  #macKey: Buffer;
  #log: FileHandle | undefined;
  #logSize = 0;
  /** The MAC the next batch chains to. */
  #chain: Buffer = Buffer.alloc(0);
  #removesInLog = 0;
  #queue: Waiter[] = [];
  #flushing = false;
  #writable = false;
  #failure: unknown;
  readonly notes: DictionaryNotes;

  private constructor(options: FileDictionaryOptions, entries: Map<string, FileEntry>, generation: number, keyDictGeneration: number, notes: DictionaryNotes) {
    this.#options = options;
    this.#entries = entries;
    this.#generation = generation;
    this.#keyDictGeneration = keyDictGeneration;
    this.#macKey = Buffer.from(options.macKey);
    this.notes = notes;
  }

  /**
   * Reads and verifies both files without changing anything on disk: the one check that
   * startup and `ctl verify` share.
   */
  static async load(options: FileDictionaryOptions): Promise<FileDictionary> {
    const snapshotPath = join(options.dir, SNAPSHOT_NAME);
    const logPath = join(options.dir, LOG_NAME);
    const snapshot = await readIfExists(snapshotPath);
    const log = await readIfExists(logPath);
    const entries = new Map<string, FileEntry>();
    let generation = 0;
    let keyDictGeneration = 0;
    let version: number | undefined;
    const notes: DictionaryNotes = { legacy: false, staleLog: false };

    if (snapshot) {
      const header = parseHeader(snapshot, SNAPSHOT_MAGIC, snapshotPath, options);
      version = header.version;
      generation = header.generation;
      keyDictGeneration = header.keyDictGeneration;
      const records = header.version === LEGACY_VERSION ? decodeOrThrow(() => decodeLegacyRecords(snapshot, header.length, false).records, snapshotPath) : decodeOrThrow(() => decodeSnapshot(snapshot, options.macKey), snapshotPath);
      keyDictGeneration = Math.max(keyDictGeneration, applyAll(entries, records));
    } else if (log) {
      throw new TdekvError(
        'FILE_DICTIONARY_DAMAGED',
        `file dictionary ${snapshotPath} is missing but ${logPath} exists: the snapshot was deleted or not restored. Restore ${SNAPSHOT_NAME} from the same backup as ${LOG_NAME}.`,
      );
    }

    if (log) {
      const header = parseHeader(log, LOG_MAGIC, logPath, options);
      if (header.version !== version) {
        throw damaged(logPath, `its format version ${header.version} differs from ${SNAPSHOT_NAME}'s (${version}): the files come from different tdekv versions or backups`);
      }
      if (header.generation > generation) {
        throw new TdekvError(
          'FILE_DICTIONARY_DAMAGED',
          `file dictionary log ${logPath} (generation ${header.generation}) is newer than ${snapshotPath} (generation ${generation}): the two files come from different backups. Restore both from the same one.`,
        );
      }
      if (header.generation === generation) {
        const decoded = header.version === LEGACY_VERSION ? decodeOrThrow(() => decodeLegacyRecords(log, header.length, true), logPath) : decodeOrThrow(() => decodeLog(log, options.macKey), logPath);
        if (decoded.tornTail) {
          notes.tornTail = { file: logPath, offset: decoded.end, reason: decoded.tornTail, droppedBytes: log.length - decoded.end };
          options.logger.warn(notes.tornTail, 'file dictionary log ends with an incomplete append (a crash during an append); it is dropped at the next writable open');
        }
        keyDictGeneration = Math.max(keyDictGeneration, header.keyDictGeneration, applyAll(entries, decoded.records));
      } else {
        // An older generation was folded into the snapshot before a crash: nothing to replay.
        // It must still be this data dir's own log: a foreign one is tampering, not a crash.
        if (header.version !== LEGACY_VERSION) decodeOrThrow(() => decodeLog(log, options.macKey), logPath);
        notes.staleLog = true;
      }
    }
    notes.legacy = version === LEGACY_VERSION;
    return new FileDictionary(options, entries, generation, keyDictGeneration, notes);
  }

  /**
   * Starts accepting changes: removes stray tmp files and rewrites the dictionary in its
   * compact, current form (which also drops any torn tail and migrates a legacy one). Call
   * only once opening has been fully checked, after key.dict holds `macKey`.
   */
  async beginWrites(keyDictGeneration = this.#keyDictGeneration): Promise<void> {
    await mkdirDurable(this.#options.dir);
    await removeStrayTmpFiles(this.#options.dir);
    this.#keyDictGeneration = Math.max(this.#keyDictGeneration, keyDictGeneration);
    await this.#rewrite();
    this.notes.legacy = false;
    delete this.notes.tornTail;
    this.notes.staleLog = false;
    this.#writable = true;
  }

  /**
   * Applies `records` in memory only, before beginWrites(): opening resolves what a crash
   * interrupted this way, so reads see the recovered state while nothing on disk changes
   * until the first write, whose rewrite of the dictionary then persists it.
   */
  stage(records: readonly FileRecord[]): void {
    if (this.#writable) throw new TdekvError('INVALID_ARGUMENT', 'file dictionary: stage() is only for changes made before beginWrites()');
    applyAll(this.#entries, records);
  }

  /** The generation of the snapshot on disk (+1 on every rewrite). */
  get generation(): number {
    return this.#generation;
  }

  /** The newest key.dict generation recorded here. */
  get keyDictGeneration(): number {
    return this.#keyDictGeneration;
  }

  /** Records a key.dict write, so restoring an older key.dict is detected (issue 9 item 3). */
  recordKeyDictGeneration(generation: number): Promise<void> {
    if (generation <= this.#keyDictGeneration) return Promise.resolve();
    return this.#enqueue([{ op: 'key-dict', generation }]);
  }

  get(path: string): FileEntry | undefined {
    return this.#entries.get(path);
  }

  has(path: string): boolean {
    return this.#entries.has(path);
  }

  entries(): IterableIterator<[string, FileEntry]> {
    return this.#entries.entries();
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Every key id a file still needs, including the old entry of a rename in flight. */
  usedKeyIds(): Set<number> {
    const used = new Set<number>();
    for (const e of this.#entries.values()) {
      if (e.keyId !== 0) used.add(e.keyId);
      if (e.pending?.previous && e.pending.previous.keyId !== 0) used.add(e.pending.previous.keyId);
    }
    return used;
  }

  set(path: string, entry: FileEntry): Promise<void> {
    return this.apply([{ op: 'set', path, entry }]);
  }

  remove(path: string): Promise<void> {
    return this.apply([{ op: 'remove', path }]);
  }

  /** Makes `records` durable as one unit, then applies them in memory. */
  apply(records: FileRecord[]): Promise<void> {
    return this.#enqueue(records);
  }

  #enqueue(records: DictRecord[]): Promise<void> {
    if (!this.#writable) return Promise.reject(new TdekvError('CLOSED', 'file dictionary is not open for writing'));
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#queue.push({ records, resolve, reject });
      if (!this.#flushing) void this.#flushLoop();
    });
  }

  /** Sizes of the files on disk, for metrics. */
  async metaFileSizes(): Promise<Record<string, number>> {
    const sizes: Record<string, number> = {};
    for (const name of [SNAPSHOT_NAME, LOG_NAME]) {
      try {
        sizes[name] = (await fileIo.stat(join(this.#options.dir, name))).size;
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
    return sizes;
  }

  async close(): Promise<void> {
    while (this.#flushing) await new Promise((r) => setImmediate(r));
    this.#writable = false;
    const log = this.#log;
    this.#log = undefined;
    try {
      await log?.close();
    } finally {
      // A failed close (EIO) must not leave the MAC key in memory.
      this.#macKey.fill(0);
    }
  }

  async #flushLoop(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue;
        this.#queue = [];
        const records = batch.flatMap((w) => w.records);
        try {
          // Batches queued before a failure (a log that could not be recreated after a
          // compaction) must not reach the stale log either: its records would be ignored at load.
          if (this.#failure) throw this.#failure;
          await this.#persist(records);
          this.#keyDictGeneration = Math.max(this.#keyDictGeneration, applyAll(this.#entries, records));
          for (const w of batch) w.resolve();
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  async #persist(records: DictRecord[]): Promise<void> {
    if (!this.#options.useLog || !this.#log) {
      const next = new Map(this.#entries);
      const k = Math.max(this.#keyDictGeneration, applyAll(next, records));
      await this.#writeSnapshot(next, this.#generation + 1, k);
      this.#generation += 1;
      return;
    }
    const batch = encodeLogBatch(this.#macKey, this.#chain, records);
    await this.#append(batch.bytes);
    this.#chain = batch.mac;
    this.#removesInLog += records.filter((r) => r.op === 'remove').length;
    if (this.#removesInLog > this.#options.rewriteThreshold) {
      const next = new Map(this.#entries);
      const k = Math.max(this.#keyDictGeneration, applyAll(next, records));
      // The records are durable already: a failed compaction must not fail their caller.
      await this.#compact(next, k).catch((err: unknown) => {
        this.#options.logger.error({ err: String(err), dir: this.#options.dir }, 'file dictionary compaction failed; it is retried on the next change');
      });
    }
  }

  /**
   * Writes all of `bytes` at the end of the log, or nothing: a short write is continued, and
   * after a failure the log is cut back to its last good size. The size is checked first, so
   * a truncate never extends the file with a hole; if the log cannot be put back, further
   * changes are refused (reopening drops the partial append as a torn tail).
   */
  async #append(bytes: Buffer): Promise<void> {
    const log = this.#log!;
    const write = this.#options.writeLog ?? ((fh, data, position) => fh.write(data, 0, data.length, position));
    try {
      await timeMetaFile('write', LOG_NAME, async () => {
        let done = 0;
        while (done < bytes.length) {
          const { bytesWritten } = await write(log, bytes.subarray(done), this.#logSize + done);
          if (bytesWritten <= 0) throw new TdekvError('IO_FAILED', `file dictionary log ${join(this.#options.dir, LOG_NAME)}: a write stored no bytes`);
          done += bytesWritten;
        }
        await log.datasync();
      });
    } catch (err) {
      try {
        const { size } = await log.stat();
        if (size < this.#logSize) throw new Error(`the log shrank to ${size} bytes, below its last good size ${this.#logSize}`);
        if (size > this.#logSize) {
          await log.truncate(this.#logSize);
          await log.datasync();
        }
      } catch (repair) {
        this.#failure = new TdekvError(
          'FILE_DICTIONARY_DAMAGED',
          `file dictionary log ${join(this.#options.dir, LOG_NAME)} could not be written (${String(err)}) or cut back to its last good size (${String(repair)}); changes are refused until the database is reopened`,
        );
      }
      throw err;
    }
    this.#logSize += bytes.length;
  }

  async #rewrite(): Promise<void> {
    if (this.#options.useLog) {
      await this.#compact(this.#entries, this.#keyDictGeneration);
    } else {
      await this.#writeSnapshot(this.#entries, this.#generation + 1, this.#keyDictGeneration);
      this.#generation += 1;
      await fileIo.rm(join(this.#options.dir, LOG_NAME), { force: true });
    }
  }

  /**
   * Snapshot first, then an empty log of the same generation: a crash between leaves a
   * stale log, which load ignores. Once the new snapshot is in place the old log is stale
   * too, so if the new log cannot be made, further changes are refused (appending to the
   * stale log would lose them); reopening recovers.
   */
  async #compact(state: Map<string, FileEntry>, keyDictGeneration: number): Promise<void> {
    const generation = this.#generation + 1;
    await this.#writeSnapshot(state, generation, keyDictGeneration);
    this.#generation = generation;
    const logPath = join(this.#options.dir, LOG_NAME);
    const preamble = encodeLogPreamble(this.#macKey, generation, keyDictGeneration);
    try {
      await timeMetaFile('write', logPath, () => writeFileAtomic(logPath, preamble.bytes));
      const next = await fileIo.open(logPath, 'r+');
      await this.#log?.close().catch(() => undefined);
      this.#log = next;
    } catch (err) {
      this.#failure = new TdekvError('FILE_DICTIONARY_DAMAGED', `file dictionary log ${logPath} could not be recreated after compaction (${String(err)}); changes are refused until the database is reopened`);
      throw err;
    }
    this.#chain = preamble.mac;
    this.#logSize = LOG_PREAMBLE_LENGTH;
    this.#removesInLog = 0;
  }

  async #writeSnapshot(state: Map<string, FileEntry>, generation: number, keyDictGeneration: number): Promise<void> {
    const path = join(this.#options.dir, SNAPSHOT_NAME);
    const bytes = encodeSnapshot(this.#macKey, generation, keyDictGeneration, state);
    await timeMetaFile('write', path, () => writeFileAtomic(path, bytes));
  }
}

/** Applies file records; returns the newest key.dict generation among them (0 if none). */
function applyAll(entries: Map<string, FileEntry>, records: readonly DictRecord[]): number {
  let keyDictGeneration = 0;
  for (const r of records) {
    if (r.op === 'set') entries.set(r.path, r.entry);
    else if (r.op === 'remove') entries.delete(r.path);
    else keyDictGeneration = Math.max(keyDictGeneration, r.generation);
  }
  return keyDictGeneration;
}


function parseHeader(buf: Buffer, magic: Buffer, path: string, options: FileDictionaryOptions): Header {
  let header: Header;
  try {
    header = decodeHeader(buf, magic);
  } catch (err) {
    if (err instanceof HeaderTooNew && magic === LOG_MAGIC) {
      throw new TdekvError(
        'FORMAT_TOO_NEW',
        `file dictionary log ${path} was written by a newer tdekv (log ${err.message}; this build reads up to ${LOG_VERSION}). To downgrade, open the data dir once with the newer tdekv and \`enable-file-dictionary-log = false\`, which folds the log into ${SNAPSHOT_NAME} and removes it.`,
      );
    }
    if (err instanceof HeaderTooNew) {
      throw new TdekvError(
        'FORMAT_TOO_NEW',
        `file dictionary ${path} was written by a newer tdekv (${err.message}; this build reads up to ${SNAPSHOT_VERSION}). No setting makes this build read it: use the newer tdekv.`,
      );
    }
    throw damagedAt(path, err);
  }
  if (header.version !== LEGACY_VERSION && options.keyDictLegacy) {
    throw new TdekvError(
      'KEY_DICTIONARY_DAMAGED',
      `file dictionary ${path} is authenticated (format version ${header.version}), but key dictionary ${join(options.dir, 'key.dict')} is in the legacy format, which predates it: key.dict was rolled back to an older copy, or the two files come from different backups. Restore both from the same backup.`,
    );
  }
  return header;
}

function decodeOrThrow<T>(decode: () => T, path: string): T {
  try {
    return decode();
  } catch (err) {
    throw damagedAt(path, err);
  }
}

function damagedAt(path: string, err: unknown): TdekvError {
  return damaged(path, err instanceof DictionaryFormatError ? `${err.reason} at offset ${err.offset}` : String(err));
}

function damaged(path: string, where: string): TdekvError {
  return new TdekvError(
    'FILE_DICTIONARY_DAMAGED',
    `file dictionary ${path} is damaged: ${where}. Restore encryption-meta/ from a backup taken with the data files; nothing was changed on disk.`,
  );
}
