import type { AppendSink } from '../env/writable-file.js';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { TdekvError } from '../errors.js';
import { SLICE_MS, WorkSlice } from './background-job.js';
import type { EngineFs } from './engine-fs.js';
import { exportEngineFile, writeCurrentRecord, writeManifestSnapshot } from './file-export.js';
import { CURRENT, manifestName, parseFileName, tableName } from './file-names.js';
import { EncryptedBufferSink, type FileFrame } from '../env/encrypted-buffer-sink.js';
import type { ExportPool } from './export/export-pool.js';
import type { Version } from './version.js';
import type { VersionEdit } from './version-edit.js';

export interface CheckpointFile {
  name: string;
  kind: 'table' | 'manifest' | 'current';
  /** Bytes in the data dir (tables); 0 for the manifest and CURRENT, written only on export. */
  size: number;
}

/**
 * One version of the database held for a backup (RocksDB's checkpoint, without hard links):
 * its tables stay on disk while it is held, whatever compaction does meanwhile, and its
 * manifest is a single snapshot edit made when it was taken. Everything acknowledged before
 * it was taken is in those tables (the memtable was flushed first), so it needs no WAL.
 */
export class EngineCheckpoint {
  readonly #fs: EngineFs;
  readonly #tables: ReadonlyMap<string, number>;
  readonly #snapshot: VersionEdit;
  readonly #manifest: string;
  readonly #release: () => void;
  /** The engine's worker pool, for tables (started at the first export). */
  readonly #pool: () => ExportPool;
  #released = false;

  constructor(fs: EngineFs, version: Version, counters: { nextFileNumber: number; lastSequence: number }, pool: () => ExportPool, release: () => void) {
    this.#fs = fs;
    this.#release = release;
    this.#pool = pool;
    const manifestNumber = counters.nextFileNumber;
    this.#manifest = manifestName(manifestNumber);
    this.#snapshot = {
      // No WAL: everything is in the tables. 0 is what a new database's first manifest says.
      logNumber: 0,
      // Past the manifest's own number, so a restored database never reuses it.
      nextFileNumber: manifestNumber + 1,
      lastSequence: counters.lastSequence,
      deletedFiles: [],
      newFiles: version.levels.flatMap((files, level) => files.map((file) => ({ level, file }))),
    };
    this.#tables = new Map(this.#snapshot.newFiles.map(({ file }) => [tableName(file.number), file.size]));
  }

  /** The sequence number every write in this checkpoint is at or below. */
  get lastSequence(): number {
    return this.#snapshot.lastSequence!;
  }

  files(): CheckpointFile[] {
    return [
      ...[...this.#tables].map(([name, size]) => ({ name, kind: 'table' as const, size })),
      { name: this.#manifest, kind: 'manifest', size: 0 },
      { name: CURRENT, kind: 'current', size: 0 },
    ];
  }

  /** Writes one of files() into `sink`, tagged and encrypted under the sink's key. */
  async export(name: string, sink: AppendSink): Promise<void> {
    if (this.#released) throw new TdekvError('CLOSED', 'the checkpoint was released (the backup ended); begin a new one');
    if (name === this.#manifest) return writeManifestSnapshot(sink, this.#snapshot);
    if (name === CURRENT) return writeCurrentRecord(sink, this.#manifest);
    if (!this.#tables.has(name)) throw new TdekvError('INVALID_ARGUMENT', `${name} is not a file of this checkpoint (its files: the tables it lists, ${this.#manifest} and CURRENT)`);
    // In slices, as compaction runs in-process: the server goes on answering while a table is exported.
    const slice = new WorkSlice(() => SLICE_MS);
    return exportEngineFile(this.#fs, name, sink, {
      yieldDue: () => slice.due(),
      yieldSlice: async () => {
        await yieldToEventLoop();
        slice.restart();
      },
    });
  }

  /**
   * The same under `frame`, returning the ciphertext: a table on one of the engine's worker
   * threads (the server's event loop stays free, and two tables export at once on two cores),
   * the manifest and CURRENT (small) here. The frame's key is the caller's to wipe.
   */
  async exportFramed(name: string, frame: FileFrame): Promise<Buffer[]> {
    if (this.#released) throw new TdekvError('CLOSED', 'the checkpoint was released (the backup ended); begin a new one');
    if (this.#tables.has(name)) {
      const parsed = parseFileName(name)!;
      // The pool wipes what it posts: it gets its own copy of the key.
      return this.#pool().export(this.#fs.grantRead(name), { ...frame, key: Buffer.from(frame.key) }, parsed);
    }
    const chunks: Buffer[] = [];
    await this.export(name, new EncryptedBufferSink(name, frame, (c) => chunks.push(c)));
    return chunks;
  }

  /** Lets compaction remove the version's tables again; idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#release();
  }
}
