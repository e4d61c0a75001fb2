import { fileIo } from '../util/file-io.js';
import { errnoCode } from '../errors.js';
import { dirname, join, relative, sep } from 'node:path';

export const TMP_SUFFIX = '.tmp';

/** False only when the path does not exist; other failures (permissions, I/O) are raised. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await fileIo.access(path);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw err;
  }
}

/** fsync a directory so a rename or create in it is durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await fileIo.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * mkdir -p whose result survives a crash: the entry of every directory it creates is
 * synced into its parent. Returns the first directory created, if any.
 */
export async function mkdirDurable(path: string, mode = 0o700): Promise<string | undefined> {
  const first = await fileIo.mkdir(path, { recursive: true, mode });
  if (first === undefined) return undefined;
  await syncDir(dirname(first));
  let dir = first;
  for (const part of relative(first, path).split(sep).filter(Boolean)) {
    await syncDir(dir);
    dir = join(dir, part);
  }
  return first;
}

/**
 * Replaces `path` with `data` so that a crash at any moment leaves either the old or the
 * new content: write NAME.tmp, fsync, rename over NAME, fsync the directory.
 */
export async function writeFileAtomic(path: string, data: Uint8Array, mode = 0o600): Promise<void> {
  const tmp = path + TMP_SUFFIX;
  const fh = await fileIo.open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fileIo.rename(tmp, path);
  await syncDir(dirname(path));
}

/** Leftovers of a crash during writeFileAtomic are incomplete by definition. */
export async function removeStrayTmpFiles(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await fileIo.readdir(dir)) {
    if (name.endsWith(TMP_SUFFIX)) {
      await fileIo.rm(join(dir, name), { force: true, recursive: true });
      removed.push(name);
    }
  }
  return removed;
}
