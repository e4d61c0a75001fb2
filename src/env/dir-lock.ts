import { open, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { TdekvError, errnoCode } from '../errors.js';

export const LOCK_NAME = 'LOCK';

/**
 * One writer per data dir: two processes appending to the same dictionaries would corrupt
 * them. The lock file names its owner; a lock left by a dead process on this host is stale
 * and taken over (a SIGKILLed server must not need manual cleanup).
 */
export class DirLock {
  private constructor(readonly path: string) {}

  static async acquire(path: string): Promise<DirLock> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fh = await open(path, 'wx', 0o600);
        try {
          await fh.writeFile(`${process.pid}\n${hostname()}\n`);
          await fh.sync();
        } finally {
          await fh.close();
        }
        return new DirLock(path);
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      const owner = await readOwner(path);
      if (owner && owner.host !== hostname()) {
        throw new TdekvError(
          'DATA_DIR_LOCKED',
          `${path} was taken by process ${owner.pid} on host ${owner.host}; this host cannot tell whether it still runs. If it does not, remove ${path}.`,
        );
      }
      if (owner && isAlive(owner.pid)) {
        throw new TdekvError(
          'DATA_DIR_LOCKED',
          `data dir is in use: ${path} is held by process ${owner.pid}${owner.pid === process.pid ? ' (this process: close the other instance first)' : ''}. Stop that process first, or use another data dir.`,
        );
      }
      await rm(path, { force: true });
    }
    throw new TdekvError('DATA_DIR_LOCKED', `could not take ${path}: another process keeps taking it`);
  }

  async release(): Promise<void> {
    await rm(this.path, { force: true });
  }
}

interface Owner {
  pid: number;
  host: string;
}

async function readOwner(path: string): Promise<Owner | undefined> {
  try {
    const [pid, host] = (await readFile(path, 'utf8')).split('\n');
    const n = Number(pid);
    return Number.isSafeInteger(n) && n > 0 ? { pid: n, host: host ?? '' } : undefined;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}
