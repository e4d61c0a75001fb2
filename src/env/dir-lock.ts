import type { FileHandle } from 'node:fs/promises';
import { fileIo, fsConstants as constants } from '../util/file-io.js';
import { hostname } from 'node:os';
import { TdekvError, errnoCode } from '../errors.js';

export const LOCK_NAME = 'LOCK';

/** Enough for a pid and a hostname (at most 255 bytes); anything longer is not ours. */
const OWNER_READ_LIMIT = 512;
/** Retries when the LOCK file was replaced between our open and our lock (see acquire). */
const ACQUIRE_ATTEMPTS = 8;

export interface Owner {
  pid: number;
  host: string;
}

/**
 * One writer per data dir: two processes appending to the same dictionaries would corrupt
 * them. Ownership is an OS advisory lock held on an open descriptor of the LOCK file, not
 * the file's existence or content: the kernel drops it when the holder exits or is killed,
 * whatever its pid (PID 1 in a container restarts as PID 1) or hostname (a new pod), so a
 * crash never needs a manual cleanup, and there is no stale-lock takeover to race on.
 * The file's content (pid and host) is only for the error message and for humans.
 *
 * The LOCK file is never deleted while others may open it: two processes could then lock
 * two different inodes under one name. The one exception, a failed first open removing what
 * it created, is made safe by acquire() checking, after locking, that the inode it locked is
 * still the one at the path.
 */
export class DirLock {
  readonly path: string;
  #fh: FileHandle | undefined;

  private constructor(path: string, fh: FileHandle) {
    this.path = path;
    this.#fh = fh;
  }

  static async acquire(path: string): Promise<DirLock> {
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
      // Not O_TRUNC: the holder's pid and host must survive our failed attempt.
      const fh = await fileIo.open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
      let kept = false;
      try {
        if (!tryLock(fh.fd, path)) throw heldError(path, await readOwner(fh));
        if (!(await isInodeAt(fh, path))) continue;
        const owner = Buffer.from(`${process.pid}\n${hostname()}\n`);
        await fh.truncate(0);
        await fh.write(owner, 0, owner.length, 0);
        kept = true;
        return new DirLock(path, fh);
      } finally {
        if (!kept) await fh.close();
      }
    }
    throw new TdekvError('DATA_DIR_LOCKED', `could not take ${path}: the file keeps being replaced while this process locks it. Check that no other program deletes or recreates it.`);
  }

  /**
   * Gives the lock back. `remove` deletes the LOCK file first (only for a failed first open
   * that leaves the data dir as it found it); the file is unlinked while still locked, so an
   * opener that raced us finds its inode gone and retries.
   */
  async release(options: { remove?: boolean } = {}): Promise<void> {
    const fh = this.#fh;
    if (!fh) return;
    this.#fh = undefined;
    try {
      if (options.remove) {
        await fileIo.unlink(this.path).catch((err: unknown) => {
          if (errnoCode(err) !== 'ENOENT') throw err;
        });
      } else {
        // An empty LOCK means "nobody": a stale pid must not make a reader think it is held.
        await fh.truncate(0);
      }
    } finally {
      // Closing the descriptor releases the kernel lock.
      await fh.close();
    }
  }
}

function tryLock(fd: number, path: string): boolean {
  try {
    return fileIo.tryLock(fd);
  } catch (err) {
    throw new TdekvError('IO_FAILED', `cannot lock ${path} (${errnoCode(err) ?? String(err)}): the file system does not support advisory locks; put the data dir on a local file system`, { cause: err });
  }
}

function heldError(path: string, owner: Owner | undefined): TdekvError {
  const self = owner && owner.pid === process.pid && owner.host === hostname();
  const holder = owner ? `process ${owner.pid} on host ${owner.host}${self ? ' (this process: close the other instance first)' : ''}` : 'another process (it has not written its pid yet)';
  return new TdekvError('DATA_DIR_LOCKED', `data dir is in use: ${path} is locked by ${holder}. Stop that process first, or use another data dir.`);
}

async function readOwner(fh: FileHandle): Promise<Owner | undefined> {
  const buf = Buffer.alloc(OWNER_READ_LIMIT);
  const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
  const [pid, host] = buf.subarray(0, bytesRead).toString('utf8').split('\n');
  const n = Number(pid);
  return Number.isSafeInteger(n) && n > 0 && host ? { pid: n, host } : undefined;
}

/** False if `fh`'s file was unlinked or replaced at `path` since we opened it. */
async function isInodeAt(fh: FileHandle, path: string): Promise<boolean> {
  const [held, named] = await Promise.all([fh.stat(), fileIo.stat(path).catch((err: unknown) => (errnoCode(err) === 'ENOENT' ? undefined : Promise.reject(err)))]);
  return named !== undefined && held.dev === named.dev && held.ino === named.ino;
}
