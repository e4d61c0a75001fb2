import { TdekvError } from '../errors.js';
import type { EngineFs } from './engine-fs.js';
import type { EncryptedWritableFile } from '../env/writable-file.js';
import type { Logger } from '../log/logger.js';
import { Mutex } from '../util/mutex.js';
import { CURRENT, manifestName } from './file-names.js';
import { readCurrentFile, writeCurrentFile } from './current-file.js';
import { compareInternalKeys } from './internal-key.js';
import { readLog, type LogRecord } from './log-reader.js';
import { LogWriter } from './log-writer.js';
import { Version } from './version.js';
import { decodeEdit, encodeEdit, type FileMeta, type VersionEdit } from './version-edit.js';

/** A manifest past this size is replaced by a fresh one holding a single snapshot edit. */
const MANIFEST_ROLLOVER_BYTES = 4 * 1024 * 1024;

/**
 * The durable history of the tree: a manifest of version edits and a CURRENT file naming
 * the manifest. An edit is installed only after it is synced, and a new manifest becomes
 * current by an atomic rename of CURRENT, so a crash leaves the last installed version.
 */
export class VersionSet {
  readonly #env: EngineFs;
  readonly #logger: Logger;
  readonly numLevels: number;
  #current: Version;
  readonly #live = new Set<Version>();
  readonly #mutex = new Mutex();
  nextFileNumber: number;
  logNumber: number;
  lastSequence: number;
  manifestNumber = 0;
  #manifest: { writer: LogWriter; file: EncryptedWritableFile } | undefined;

  private constructor(env: EngineFs, logger: Logger, numLevels: number, state: { version: Version; nextFileNumber: number; logNumber: number; lastSequence: number }) {
    this.#env = env;
    this.#logger = logger;
    this.numLevels = numLevels;
    this.#current = state.version;
    this.#current.ref();
    this.#live.add(this.#current);
    this.nextFileNumber = state.nextFileNumber;
    this.logNumber = state.logNumber;
    this.lastSequence = state.lastSequence;
  }

  /** Reads CURRENT and its manifest; a data dir without CURRENT starts empty. Writes nothing. */
  static async recover(env: EngineFs, numLevels: number, logger: Logger): Promise<{ versions: VersionSet; existed: boolean }> {
    const empty = { version: new Version(Array.from({ length: numLevels }, () => [])), nextFileNumber: 1, logNumber: 0, lastSequence: 0 };
    if (!(await env.exists(CURRENT))) return { versions: new VersionSet(env, logger, numLevels, empty), existed: false };
    const name = readCurrentFile(env);
    const manifestNumber = /^MANIFEST-(\d+)$/.exec(name)![1]!;
    if (!(await env.exists(name))) {
      throw new TdekvError('DATA_CORRUPTED', `${CURRENT} in ${env.dataDir} names ${name}, which does not exist: restore the data dir from a backup`);
    }
    const file = env.openReadSync(name);
    let replayed: ManifestReplay;
    try {
      replayed = replayManifest(readLog(file, logger).records, name, numLevels);
    } finally {
      file.close();
    }
    const { levels, ...state } = replayed;
    const versions = new VersionSet(env, logger, numLevels, { version: new Version(levels), ...state });
    versions.manifestNumber = Number(manifestNumber);
    versions.markFileNumberUsed(Number(manifestNumber));
    return { versions, existed: true };
  }

  get current(): Version {
    return this.#current;
  }

  newFileNumber(): number {
    return this.nextFileNumber++;
  }

  markFileNumberUsed(n: number): void {
    if (n >= this.nextFileNumber) this.nextFileNumber = n + 1;
  }

  /** Pins the current version for a reader; give it back with release(). */
  acquire(): Version {
    const v = this.#current;
    v.ref();
    return v;
  }

  release(v: Version): void {
    v.refs--;
    if (v.refs <= 0 && v !== this.#current) this.#live.delete(v);
  }

  /** Numbers of every table some live version (current or pinned by a reader) uses. */
  liveTableNumbers(): Set<number> {
    const live = new Set<number>();
    for (const v of this.#live) for (const f of v.allFiles()) live.add(f.number);
    return live;
  }

  /** Makes the edit durable in the manifest, then installs the version it produces. */
  async logAndApply(edit: VersionEdit): Promise<void> {
    await this.#mutex.run(async () => {
      edit.nextFileNumber = this.nextFileNumber;
      edit.lastSequence ??= this.lastSequence;
      edit.logNumber ??= this.logNumber;
      const levels = applyEdit(this.#current.levels, edit, this.numLevels, 'a new version edit');
      if (!this.#manifest || this.#manifest.file.size > MANIFEST_ROLLOVER_BYTES || !this.#onCurrentKey(manifestName(this.manifestNumber))) {
        await this.#startManifest(levels, edit);
      } else {
        try {
          await this.#manifest.writer.addRecord(encodeEdit(edit));
          await this.#manifest.writer.sync();
        } catch (err) {
          // The edit may be on disk or not: never append after it. The next edit starts a
          // new manifest from the versions in memory, which do not include this one.
          const broken = this.#manifest;
          this.#manifest = undefined;
          await broken.writer.close().catch(() => undefined);
          throw err;
        }
      }
      this.logNumber = edit.logNumber;
      if (edit.lastSequence > this.lastSequence) this.lastSequence = edit.lastSequence;
      this.#install(new Version(levels));
    });
  }

  async close(): Promise<void> {
    await this.#mutex.run(async () => {
      await this.#manifest?.writer.close();
      this.#manifest = undefined;
    });
  }

  /** A new manifest with one snapshot edit of the whole tree, then CURRENT swung to it. */
  async #startManifest(levels: ReadonlyArray<readonly FileMeta[]>, edit: VersionEdit): Promise<void> {
    const previous = this.#manifest;
    const previousNumber = this.manifestNumber;
    const number = this.newFileNumber();
    edit.nextFileNumber = this.nextFileNumber;
    const snapshot: VersionEdit = {
      logNumber: edit.logNumber!,
      nextFileNumber: this.nextFileNumber,
      lastSequence: edit.lastSequence!,
      deletedFiles: [],
      newFiles: levels.flatMap((files, level) => files.map((file) => ({ level, file }))),
    };
    const name = manifestName(number);
    const file = await this.#env.create(name);
    const writer = new LogWriter(file);
    try {
      await writer.addRecord(encodeEdit(snapshot));
      await writer.sync();
      await writeCurrentFile(this.#env, name);
    } catch (err) {
      await writer.close().catch(() => undefined);
      // CURRENT may or may not name the new manifest now: the next edit must not go to the
      // previous one, but start yet another manifest and swing CURRENT to it.
      if (previous) {
        this.#manifest = undefined;
        await previous.writer.close().catch(() => undefined);
      }
      throw err;
    }
    this.#manifest = { writer, file };
    this.manifestNumber = number;
    await previous?.writer.close();
    if (previousNumber > 0 && previousNumber !== number) {
      await this.#env.remove(manifestName(previousNumber)).catch((err: unknown) => this.#logger.warn({ err }, 'could not remove an old manifest'));
    }
  }

  /** A manifest under an old data key is replaced, so that key can be retired after a rotation. */
  #onCurrentKey(name: string): boolean {
    return !this.#env.needsRewrite(name);
  }

  #install(v: Version): void {
    const old = this.#current;
    this.#current = v;
    v.ref();
    this.#live.add(v);
    this.release(old);
  }
}

/** The tree and counters a manifest's edits add up to. */
export interface ManifestReplay {
  levels: FileMeta[][];
  nextFileNumber: number;
  logNumber: number;
  lastSequence: number;
}

/**
 * Applies a manifest's records in order: how open recovers the version, and what `ctl verify`
 * (engine/verify.ts) checks every manifest with, so that the two cannot disagree about one.
 */
export function replayManifest(records: readonly LogRecord[], name: string, numLevels: number): ManifestReplay {
  let levels: FileMeta[][] = Array.from({ length: numLevels }, () => []);
  let state = { nextFileNumber: 1, logNumber: 0, lastSequence: 0 };
  for (const r of records) {
    const where = `${name} at offset ${r.offset}`;
    const edit = decodeEdit(r.payload, where);
    levels = applyEdit(levels, edit, numLevels, where);
    state = {
      nextFileNumber: edit.nextFileNumber ?? state.nextFileNumber,
      logNumber: edit.logNumber ?? state.logNumber,
      lastSequence: edit.lastSequence ?? state.lastSequence,
    };
  }
  return { levels, ...state };
}

/** Applies an edit to per-level file lists, keeping level 0 newest first and deeper levels sorted. */
export function applyEdit(levels: ReadonlyArray<readonly FileMeta[]>, edit: VersionEdit, numLevels: number, where: string): FileMeta[][] {
  const out = levels.map((files) => [...files]);
  while (out.length < numLevels) out.push([]);
  for (const d of edit.deletedFiles) {
    const files = out[d.level];
    const i = files?.findIndex((f) => f.number === d.number) ?? -1;
    if (i < 0) throw new TdekvError('DATA_CORRUPTED', `${where} deletes table ${d.number} from level ${d.level}, which does not hold it: the manifest is damaged; restore the data dir from a backup`);
    files!.splice(i, 1);
  }
  for (const { level, file } of edit.newFiles) {
    if (level >= numLevels) throw new TdekvError('DATA_CORRUPTED', `${where} adds table ${file.number} at level ${level}, but the engine has ${numLevels} levels`);
    out[level]!.push(file);
  }
  out[0]!.sort((a, b) => b.number - a.number);
  for (let l = 1; l < out.length; l++) out[l]!.sort((a, b) => compareInternalKeys(a.smallest, b.smallest));
  return out;
}
