import { fileIo, fsConstants } from './file-io.js';
import { dirname } from 'node:path';
import { errnoCode, isTdekvError, TdekvError } from '../errors.js';

/**
 * A file-system failure while starting (a data dir the user cannot write, a read-only mount, a
 * disk still full) is the operator's to fix, not a bug: it gets a coded one-line message that
 * names the path and the fix, like every other startup error, instead of a stack trace.
 * `dataDir` names the setting to change; without it (a command with no data dir, such as
 * keygen) the hint is about the path alone. Anything else is returned unchanged.
 */
export async function startupIoError(err: unknown, dataDir?: string): Promise<unknown> {
  if (isTdekvError(err)) return err;
  let code = errnoCode(err);
  let path = failedPath(err);
  if (code === 'ENOENT' && path !== undefined && syscallOf(err) === 'mkdir') {
    // A recursive mkdir on a read-only mount (or under a directory the user cannot write)
    // reports ENOENT for the missing leaf; the nearest existing ancestor says why.
    const cause = await ancestorWriteFailure(path);
    if (cause !== undefined) [code, path] = cause;
  }
  if (code === undefined) return err;
  const fix = FIXES[code];
  if (fix === undefined) return err;
  path ??= dataDir ?? 'a file';
  const where = dataDir === undefined ? '' : ` (data dir ${dataDir})`;
  const elsewhere = (dir: string): string => (dataDir === undefined ? 'or use another path' : `or set [storage] data-dir to ${dir}`);
  return new TdekvError('IO_FAILED', `cannot write ${path}${where}: ${fix.what} [${code}]; ${fix.todo(elsewhere)}`, { cause: err });
}

interface Fix {
  what: string;
  /** `elsewhere(dir)`: the alternative, "or set [storage] data-dir to <dir>" when there is one. */
  todo(elsewhere: (dir: string) => string): string;
}

const uid = (): string => (typeof process.getuid === 'function' ? ` (uid ${process.getuid()})` : '');

const PERMISSION: Fix = {
  what: 'permission denied',
  todo: (elsewhere) => `let the user running tdekv${uid()} write there (chown or chmod the directory), ${elsewhere('a directory it can write')}`,
};

const NO_SPACE: Fix = {
  what: 'no space left on the device (or the disk quota is used up)',
  todo: (elsewhere) => `free space on that file system (df -h shows it) and start again, ${elsewhere('a directory on a disk with room')}`,
};

const FIXES: Readonly<Record<string, Fix>> = {
  EACCES: PERMISSION,
  EPERM: PERMISSION,
  EROFS: {
    what: 'the file system is mounted read-only',
    todo: (elsewhere) => `remount it read-write (or fix the disk errors that made the kernel remount it read-only), ${elsewhere('a directory on a writable file system')}`,
  },
  ENOSPC: NO_SPACE,
  EDQUOT: NO_SPACE,
  ENOTDIR: {
    what: 'a part of the path is a regular file, not a directory',
    todo: (elsewhere) => `move that file away, ${elsewhere('a path made of directories')}`,
  },
};

function failedPath(err: unknown): string | undefined {
  const path = typeof err === 'object' && err !== null && 'path' in err ? (err as { path: unknown }).path : undefined;
  return typeof path === 'string' ? path : undefined;
}

function syscallOf(err: unknown): string | undefined {
  const syscall = typeof err === 'object' && err !== null && 'syscall' in err ? (err as { syscall: unknown }).syscall : undefined;
  return typeof syscall === 'string' ? syscall : undefined;
}

/** The errno and path of the nearest existing ancestor of `path` that cannot be written. */
async function ancestorWriteFailure(path: string): Promise<[string, string] | undefined> {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    try {
      await fileIo.access(dir, fsConstants.W_OK);
      return undefined;
    } catch (err) {
      const code = errnoCode(err);
      if (code !== 'ENOENT') return code === undefined ? undefined : [code, dir];
    }
    if (dirname(dir) === dir) return undefined;
  }
}
