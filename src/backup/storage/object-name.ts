import { TdekvError } from '../../errors.js';

/**
 * Object names come from the backup format, but a damaged or hostile manifest could name
 * `../../etc/passwd`: every backend refuses a name that could leave its root or prefix, and
 * one that could not round-trip through `list` (empty segments, backslashes, control bytes).
 */
export function checkObjectName(name: string, where: string): void {
  const bad = (why: string): TdekvError =>
    new TdekvError('INVALID_PATH', `backup object name ${JSON.stringify(name.slice(0, 200))} in ${where} ${why}: this is a bug or a damaged backup manifest`);
  if (name === '') throw bad('is empty');
  if (name.startsWith('/')) throw bad('is absolute');
  // eslint-disable-next-line no-control-regex
  if (/[\\\u0000-\u001f\u007f]/.test(name)) throw bad('holds a backslash or a control character');
  for (const segment of name.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') throw bad('has an empty, "." or ".." segment');
    if (segment.startsWith(TEMP_MARK)) throw bad(`has a segment starting with ${TEMP_MARK} (reserved for uploads in progress)`);
  }
}

/** Prefix of a local upload's temporary file; `list` skips such files and no object name may start so. */
export const TEMP_MARK = '.tdekv-upload-';

/** `prefix/name`, or `name` under an empty prefix. */
export function underPrefix(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}/${name}`;
}
