import { open, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { TdekvError, errnoCode } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { mkdirDurable, removeStrayTmpFiles, writeFileAtomic } from './atomic-file.js';
import { timeMetaFile } from './meta-file-timing.js';
import {
  DictionaryFormatError,
  HEADER_LENGTH,
  LOG_MAGIC,
  LOG_VERSION,
  SNAPSHOT_MAGIC,
  SNAPSHOT_VERSION,
  decodeHeader,
  decodeRecords,
  encodeHeader,
  encodeBatch,
  encodeRecord,
  type FileEntry,
  type FileRecord,
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
}

interface Waiter {
  records: FileRecord[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * In-memory map of every tracked file, made durable before each change takes effect.
 * Concurrent changes are group-committed: one write and one fsync for all that queued.
 */
export class FileDictionary {
  readonly #options: FileDictionaryOptions;
  readonly #entries: Map<string, FileEntry>;
  #generation: number;
  #log: FileHandle | undefined;
  #logSize = 0;
  #removesInLog = 0;
  #queue: Waiter[] = [];
  #flushing = false;
  #writable = false;
  #failure: unknown;

  private constructor(options: FileDictionaryOptions, entries: Map<string, FileEntry>, generation: number) {
    this.#options = options;
    this.#entries = entries;
    this.#generation = generation;
  }

  /** Reads and validates both files without changing anything on disk. */
  static async load(options: FileDictionaryOptions): Promise<FileDictionary> {
    const snapshotPath = join(options.dir, SNAPSHOT_NAME);
    const logPath = join(options.dir, LOG_NAME);
    const snapshot = await readIfExists(snapshotPath);
    const log = await readIfExists(logPath);
    const entries = new Map<string, FileEntry>();
    let generation = 0;

    if (snapshot) {
      const header = parseHeader(snapshot, SNAPSHOT_MAGIC, snapshotPath);
      if (header.version > SNAPSHOT_VERSION) {
        throw new TdekvError(
          'FORMAT_TOO_NEW',
          `file dictionary ${snapshotPath} was written by a newer tdekv (format version ${header.version}; this build reads up to ${SNAPSHOT_VERSION}). No setting makes this build read it: use the newer tdekv.`,
        );
      }
      generation = header.generation;
      applyAll(entries, decodeOrThrow(snapshot, snapshotPath, false).records);
    } else if (log) {
      throw new TdekvError(
        'FILE_DICTIONARY_DAMAGED',
        `file dictionary ${snapshotPath} is missing but ${logPath} exists: the snapshot was deleted or not restored. Restore ${SNAPSHOT_NAME} from the same backup as ${LOG_NAME}.`,
      );
    }

    if (log) {
      const header = parseHeader(log, LOG_MAGIC, logPath);
      if (header.version > LOG_VERSION) {
        throw new TdekvError(
          'FORMAT_TOO_NEW',
          `file dictionary log ${logPath} was written by a newer tdekv (log format version ${header.version}; this build reads up to ${LOG_VERSION}). To downgrade, open the data dir once with the newer tdekv and \`enable-file-dictionary-log = false\`, which folds the log into ${SNAPSHOT_NAME} and removes it.`,
        );
      }
      if (header.generation > generation) {
        throw new TdekvError(
          'FILE_DICTIONARY_DAMAGED',
          `file dictionary log ${logPath} (generation ${header.generation}) is newer than ${snapshotPath} (generation ${generation}): the two files come from different backups. Restore both from the same one.`,
        );
      }
      if (header.generation === generation) {
        const decoded = decodeOrThrow(log, logPath, true);
        if (decoded.tornTail) {
          options.logger.warn(
            { file: logPath, offset: decoded.end, reason: decoded.tornTail, droppedBytes: log.length - decoded.end },
            'file dictionary log ends with an incomplete record (a crash during an append); dropping it',
          );
        }
        applyAll(entries, decoded.records);
      }
      // An older generation was folded into the snapshot before a crash: nothing to replay.
    }
    return new FileDictionary(options, entries, generation);
  }

  /**
   * Starts accepting changes: removes stray tmp files and rewrites the dictionary in its
   * compact form (which also drops any torn tail). Call only once opening has succeeded.
   */
  async beginWrites(): Promise<void> {
    await mkdirDurable(this.#options.dir);
    await removeStrayTmpFiles(this.#options.dir);
    await this.#rewrite();
    this.#writable = true;
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
        sizes[name] = (await stat(join(this.#options.dir, name))).size;
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
    return sizes;
  }

  async close(): Promise<void> {
    while (this.#flushing) await new Promise((r) => setImmediate(r));
    this.#writable = false;
    await this.#log?.close();
    this.#log = undefined;
  }

  async #flushLoop(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue;
        this.#queue = [];
        const records = batch.flatMap((w) => w.records);
        try {
          await this.#persist(records);
          applyAll(this.#entries, records);
          for (const w of batch) w.resolve();
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  async #persist(records: FileRecord[]): Promise<void> {
    if (!this.#options.useLog || !this.#log) {
      const next = new Map(this.#entries);
      applyAll(next, records);
      await this.#writeSnapshot(next, this.#generation + 1);
      this.#generation += 1;
      return;
    }
    const bytes = encodeBatch(records);
    const log = this.#log;
    try {
      await timeMetaFile('write', LOG_NAME, async () => {
        await log.write(bytes, 0, bytes.length, this.#logSize);
        await log.datasync();
      });
    } catch (err) {
      // A partial append must not stay in front of later records: cut it off, or refuse
      // all further changes if even that fails (reopening then drops it as a torn tail).
      try {
        await this.#log.truncate(this.#logSize);
      } catch {
        this.#failure = new TdekvError('FILE_DICTIONARY_DAMAGED', `file dictionary log could not be written or repaired (${String(err)}); reopen the database`);
      }
      throw err;
    }
    this.#logSize += bytes.length;
    this.#removesInLog += records.filter((r) => r.op === 'remove').length;
    if (this.#removesInLog > this.#options.rewriteThreshold) {
      const next = new Map(this.#entries);
      applyAll(next, records);
      // The records are durable already: a failed compaction must not fail their caller.
      await this.#compact(next).catch((err: unknown) => {
        this.#options.logger.error({ err: String(err), dir: this.#options.dir }, 'file dictionary compaction failed; it is retried on the next change');
      });
    }
  }

  async #rewrite(): Promise<void> {
    if (this.#options.useLog) {
      await this.#compact(this.#entries);
    } else {
      await this.#writeSnapshot(this.#entries, this.#generation + 1);
      this.#generation += 1;
      await rm(join(this.#options.dir, LOG_NAME), { force: true });
    }
  }

  /**
   * Snapshot first, then an empty log of the same generation: a crash between leaves a
   * stale log, which load ignores. Once the new snapshot is in place the old log is stale
   * too, so if the new log cannot be made, further changes are refused (appending to the
   * stale log would lose them); reopening recovers.
   */
  async #compact(state: Map<string, FileEntry>): Promise<void> {
    const generation = this.#generation + 1;
    await this.#writeSnapshot(state, generation);
    this.#generation = generation;
    const logPath = join(this.#options.dir, LOG_NAME);
    try {
      await timeMetaFile('write', logPath, () => writeFileAtomic(logPath, encodeHeader(LOG_MAGIC, LOG_VERSION, generation)));
      const next = await open(logPath, 'r+');
      await this.#log?.close().catch(() => undefined);
      this.#log = next;
    } catch (err) {
      this.#failure = new TdekvError('FILE_DICTIONARY_DAMAGED', `file dictionary log ${logPath} could not be recreated after compaction (${String(err)}); changes are refused until the database is reopened`);
      throw err;
    }
    this.#logSize = HEADER_LENGTH;
    this.#removesInLog = 0;
  }

  async #writeSnapshot(state: Map<string, FileEntry>, generation: number): Promise<void> {
    const parts = [encodeHeader(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, generation)];
    for (const [path, entry] of state) parts.push(encodeRecord({ op: 'set', path, entry }));
    const path = join(this.#options.dir, SNAPSHOT_NAME);
    await timeMetaFile('write', path, () => writeFileAtomic(path, Buffer.concat(parts)));
  }
}

function applyAll(entries: Map<string, FileEntry>, records: readonly FileRecord[]): void {
  for (const r of records) {
    if (r.op === 'set') entries.set(r.path, r.entry);
    else entries.delete(r.path);
  }
}

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await timeMetaFile('read', path, () => readFile(path));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

function parseHeader(buf: Buffer, magic: Buffer, path: string) {
  try {
    return decodeHeader(buf, magic);
  } catch (err) {
    throw damaged(path, err);
  }
}

function decodeOrThrow(buf: Buffer, path: string, allowTornTail: boolean) {
  try {
    return decodeRecords(buf, HEADER_LENGTH, allowTornTail);
  } catch (err) {
    throw damaged(path, err);
  }
}

function damaged(path: string, err: unknown): TdekvError {
  const where = err instanceof DictionaryFormatError ? `${err.reason} at offset ${err.offset}` : String(err);
  return new TdekvError(
    'FILE_DICTIONARY_DAMAGED',
    `file dictionary ${path} is damaged: ${where}. Records before that point are intact. Restore encryption-meta/ from a backup taken with the data files; nothing was changed on disk.`,
  );
}
