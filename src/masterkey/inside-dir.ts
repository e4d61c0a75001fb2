import { realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { errnoCode } from '../errors.js';

/** True when `child` is `dir` itself or below it (both already resolved the same way). */
export function isInsideDir(child: string, dir: string): boolean {
  const rel = relative(dir, child);
  return rel === '' || (!isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${sep}`));
}

/**
 * The canonical path (symlinks resolved) of a path that may not exist yet: the realpath of
 * its nearest existing ancestor with the rest appended, so a symlinked data dir or a
 * `../` detour cannot hide that two paths are one place.
 */
export async function canonicalPath(path: string): Promise<string> {
  const absolute = resolve(path);
  try {
    return await realpath(absolute);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT' && errnoCode(err) !== 'ENOTDIR') throw err;
    const parent = resolve(absolute, '..');
    if (parent === absolute) return absolute;
    return resolve(await canonicalPath(parent), relative(parent, absolute));
  }
}
