import type { CreateOptions, EncryptedEnv } from '../env/encrypted-env.js';
import type { FileGrant } from '../env/file-grant.js';
import type { EncryptedReadableFile } from '../env/readable-file.js';
import type { EncryptedWritableFile } from '../env/writable-file.js';

/**
 * The file system the engine sees (Pebble's vfs.FS, with the encrypted env as CockroachDB's
 * encryptedFS): files by name relative to the data dir, each encrypted or not as the env
 * decides. Nothing here reaches a key: rotation, retirement, export and the master key are
 * the key administration's (src/env/key-admin.ts), which the engine never holds.
 */
export interface EngineFs {
  /** For messages only. */
  readonly dataDir: string;
  /** A new, empty file; fails if the name exists (files are written once). Syncs its directory on sync(). */
  create(path: string, options?: CreateOptions): Promise<EncryptedWritableFile>;
  openRead(path: string): Promise<EncryptedReadableFile>;
  /** The engine opens tables on getSync's path, where it cannot await. */
  openReadSync(path: string): EncryptedReadableFile;
  /** Replaces `to` if it exists; both directories are synced before it returns. */
  rename(from: string, to: string): Promise<void>;
  /** Removes the file and syncs its directory. */
  remove(path: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** Names in a directory of the data dir, sorted; the encryption metadata is hidden. */
  list(dir?: string): Promise<string[]>;
  mkdir(dir: string): Promise<void>;
  /** Space left on the data dir's file system, checked before a flush or compaction. */
  freeSpace(): Promise<{ free: number; total: number }>;
  /** Whether the file is not under the current method and data key (or lacks tags): compaction rewrites it rather than moving it. */
  needsRewrite(path: string): boolean;
  /**
   * The grant to read one existing file on another thread (src/env/file-grant.ts): the only way
   * key material reaches the background worker. The holder wipes its key once it is posted.
   */
  grantRead(path: string): FileGrant;
  /** Records, creates (empty) and grants one new file for a writer on another thread; fails if the name exists. */
  grantCreate(path: string, options?: CreateOptions): Promise<FileGrant>;
}

/**
 * A facade holding only the EngineFs methods of `fs`, bound to it: the engine keeps this,
 * never the env itself, so not even a cast gets it to the env's other methods or fields.
 * Engine.open narrows whatever it is given with it.
 */
export function engineFsOf(fs: EngineFs): EngineFs {
  const facade: EngineFs = {
    dataDir: fs.dataDir,
    create: (path, options) => fs.create(path, options),
    openRead: (path) => fs.openRead(path),
    openReadSync: (path) => fs.openReadSync(path),
    rename: (from, to) => fs.rename(from, to),
    remove: (path) => fs.remove(path),
    exists: (path) => fs.exists(path),
    list: (dir) => fs.list(dir),
    mkdir: (dir) => fs.mkdir(dir),
    freeSpace: () => fs.freeSpace(),
    needsRewrite: (path) => fs.needsRewrite(path),
    grantRead: (path) => fs.grantRead(path),
    grantCreate: (path, options) => fs.grantCreate(path, options),
  };
  return Object.freeze(facade);
}

/**
 * The encrypted env implements EngineFs structurally (env is below engine and must not
 * import it); this line breaks the build the day the two drift apart.
 */
export type EncryptedEnvIsEngineFs = EncryptedEnv extends EngineFs ? true : never;
const encryptedEnvIsEngineFs: EncryptedEnvIsEngineFs = true;
void encryptedEnvIsEngineFs;
