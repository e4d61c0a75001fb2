import { errnoCode, isTdekvError } from '../errors.js';

/** What an operator can act on, for the errno codes a write to the data dir usually fails with. */
const ERRNO_TEXT: Readonly<Record<string, string>> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large',
  EIO: 'I/O error',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
};

/**
 * Why the engine cannot persist writes, in a few words: the errno at the bottom of the cause
 * chain (`no space left on device (ENOSPC)`) when there is one, as Redis's MISCONF replies
 * name the OS error. Engine messages name files but never keys or values; this text names
 * neither, so it can go to every client.
 */
export function failureReason(err: unknown): string {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = isTdekvError(e) ? undefined : errnoCode(e);
    if (code !== undefined && /^E[A-Z0-9]+$/.test(code)) return `${ERRNO_TEXT[code] ?? 'system error'} (${code})`;
  }
  if (isTdekvError(err)) return `${err.code === 'IO_FAILED' ? 'I/O failure' : err.code}`;
  return 'unexpected engine failure';
}

/**
 * The error reply for every write while the engine refuses writes, and for replies held on a
 * batch that failed. MISCONF as Redis replies when it cannot persist (AOF or RDB errors), so
 * clients and their retry logic recognise it. `recoverable`: a full disk, which the engine
 * retries by itself; otherwise only a restart clears it.
 */
export function refusalReply(err: unknown, dataDir: string, recoverable: boolean): string {
  const what = `MISCONF tdekv cannot persist writes: ${failureReason(err)} in ${dataDir}.`;
  return recoverable
    ? `${what} Writes resume by themselves once space is freed (tdekv retries in the background, no restart needed); acknowledged writes are kept`
    : `${what} Writes are refused until the server is restarted: fix the disk, then restart it; acknowledged writes are kept`;
}
