import { posix } from 'node:path';
import { TdekvError } from '../errors.js';

/** Where the key and file dictionaries live, inside the data dir. */
export const META_DIR = 'encryption-meta';

/**
 * Normalizes a path relative to the data dir. Dictionary keys are these relative paths, so
 * the data dir can be moved or restored elsewhere (TiKV stores absolute paths).
 */
export function normalizeRelative(path: string): string {
  if (typeof path !== 'string' || path.length === 0) throw new TdekvError('INVALID_PATH', 'file path must be a non-empty string relative to the data dir');
  const unified = path.replaceAll('\\', '/');
  if (posix.isAbsolute(unified)) throw new TdekvError('INVALID_PATH', `file path ${path} must be relative to the data dir, not absolute`);
  const norm = posix.normalize(unified).replace(/\/+$/, '');
  if (norm === '.' || norm === '..' || norm.startsWith('../')) throw new TdekvError('INVALID_PATH', `file path ${path} leaves the data dir`);
  if (norm === META_DIR || norm.startsWith(META_DIR + '/')) throw new TdekvError('INVALID_PATH', `file path ${path} is inside ${META_DIR}/, which tdekv reserves for its dictionaries`);
  if (Buffer.byteLength(norm) > 4096) throw new TdekvError('INVALID_PATH', `file path ${path.slice(0, 64)}… is longer than 4096 bytes`);
  return norm;
}

/** A directory argument: '' or '.' is the data dir itself. */
export function normalizeDir(dir: string): string {
  return dir === '' || dir === '.' ? '' : normalizeRelative(dir);
}
