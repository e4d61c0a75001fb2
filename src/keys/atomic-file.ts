import { open, rename, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export const TMP_SUFFIX = '.tmp';

/** fsync a directory so a rename or create in it is durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Replaces `path` with `data` so that a crash at any moment leaves either the old or the
 * new content: write NAME.tmp, fsync, rename over NAME, fsync the directory.
 */
export async function writeFileAtomic(path: string, data: Uint8Array, mode = 0o600): Promise<void> {
  const tmp = path + TMP_SUFFIX;
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await syncDir(dirname(path));
}

/** Leftovers of a crash during writeFileAtomic are incomplete by definition. */
export async function removeStrayTmpFiles(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir)) {
    if (name.endsWith(TMP_SUFFIX)) {
      await rm(join(dir, name), { force: true });
      removed.push(name);
    }
  }
  return removed;
}
