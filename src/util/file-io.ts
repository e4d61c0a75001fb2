import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import nativeFs from 'fs-native-extensions';

/**
 * The one door through which src/keys and src/env (and the startup write check in
 * src/util/startup-io-error.ts, which only tests access) reach the file system. It moves the
 * bytes its callers give it: the env hands it ciphertext. Outside these layers only the
 * operations code touches files itself (the config, master key files, `ctl decrypt-file`'s
 * chosen output), never a data file. A test can make any call fail the way a full, failing
 * or lying disk does (LevelDB's fault-injection env, Pebble's errorfs). Callers write `fileIo.open(...)`, `fileIo.writeSync(...)`: without an
 * injector every property is node's own function, so the hot paths (WAL appends, table
 * reads) pay one property lookup and nothing else.
 */
const native = {
  access: fsp.access,
  link: fsp.link,
  mkdir: fsp.mkdir,
  open: fsp.open,
  readdir: fsp.readdir,
  readFile: fsp.readFile,
  rename: fsp.rename,
  rm: fsp.rm,
  rmdir: fsp.rmdir,
  stat: fsp.stat,
  /** Free space of the data dir's file system, checked before a flush or compaction starts. */
  statfs: fsp.statfs,
  unlink: fsp.unlink,
  openSync: fs.openSync,
  readSync: fs.readSync,
  writeSync: fs.writeSync,
  /** fdatasync on the calling thread: the WAL's inline sync (no thread-pool round trip). */
  fdatasyncSync: fs.fdatasyncSync,
  fstatSync: fs.fstatSync,
  /** Sets a file's size: the WAL reserves space ahead of its appends with it (writable-file.ts). */
  ftruncateSync: fs.ftruncateSync,
  closeSync: fs.closeSync,
  /** pread on the thread pool (callback form: no promise wrapper per table read). */
  read: fs.read,
  /** A non-blocking advisory lock on an open file (see src/env/dir-lock.ts). */
  tryLock: (fd: number): boolean => nativeFs.tryLock(fd),
};

export type FileIo = typeof native;

/** node:fs's constants (open flags, access modes), so callers need not import node:fs. */
export const fsConstants = fs.constants;

export const fileIo: FileIo = { ...native };

/** Operations an injector is asked about: the seam's functions plus the FileHandle methods. */
export type FileOp =
  | Exclude<keyof FileIo, 'read'>
  | 'pread'
  | 'fh.write'
  | 'fh.writev'
  | 'fh.writeFile'
  | 'fh.read'
  | 'fh.datasync'
  | 'fh.sync'
  | 'fh.truncate'
  | 'fh.stat'
  | 'fh.close';

/** Operations that store bytes: the only ones a 'short' fault applies to. */
export const WRITE_OPS: ReadonlySet<FileOp> = new Set<FileOp>(['writeSync', 'fh.write', 'fh.writev', 'fh.writeFile']);
/** Operations that make data durable: where a failed fsync is injected. */
export const SYNC_OPS: ReadonlySet<FileOp> = new Set<FileOp>(['fh.datasync', 'fh.sync', 'fdatasyncSync']);

/**
 * What an injector asks for: an errno code ('ENOSPC', 'EIO', ...) makes the call fail with
 * an error shaped like node's (code, errno, syscall, path) without doing anything; 'short'
 * makes a write store only the first half of its bytes and report that count, as the OS
 * may (a writeFile, which has no count to report, stores half and then fails with ENOSPC).
 * undefined lets the call through. An injector may also throw its own error.
 */
export type FileFault = 'short' | string | FreeSpaceFault | undefined;
/** For 'statfs' only: report this many bytes free (and available), and optionally this size, whatever the disk has. */
export interface FreeSpaceFault {
  freeBytes: number;
  totalBytes?: number;
}
export type FileFaults = (op: FileOp, path: string) => FileFault;

let injector: FileFaults | undefined;
/** Paths of descriptors opened while an injector is installed, to name them in errors. */
const fdPaths = new Map<number, string>();

/**
 * Installs `faults` (called before every file-system call of src/keys and src/env), or with
 * undefined restores node's functions. Tests only. Handles opened while it is installed
 * keep asking the current injector, so clearing it lets them work again.
 */
export function setFileFaults(faults: FileFaults | undefined): void {
  injector = faults;
  Object.assign(fileIo, faults ? faulting : native);
  if (!faults) fdPaths.clear();
  for (const w of faultWatchers) w(faults !== undefined);
}

/** The injector installed in this thread, if any (tests): the engine's worker thread asks it through its host. */
export function currentFileFaults(): FileFaults | undefined {
  return injector;
}

const faultWatchers = new Set<(installed: boolean) => void>();

/**
 * Calls `watcher` whenever an injector is installed or removed in this thread; returns the
 * unsubscribe. A worker thread has its own fileIo: its host forwards the faults with this.
 */
export function watchFileFaults(watcher: (installed: boolean) => void): () => void {
  faultWatchers.add(watcher);
  return () => faultWatchers.delete(watcher);
}

const MESSAGES: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EIO: 'i/o error',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  ENOENT: 'no such file or directory',
  EEXIST: 'file already exists',
};

/** An error as node's fs raises it, for `code` from `syscall` on `path`. */
export function errnoError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: ${MESSAGES[code] ?? 'injected fault'}, ${syscall} '${path}'`);
  const errno = (osConstants.errno as Record<string, number | undefined>)[code];
  if (errno !== undefined) err.errno = -errno;
  err.code = code;
  err.syscall = syscall;
  err.path = path;
  return err;
}

function syscallOf(op: FileOp): string {
  return op.startsWith('fh.') ? op.slice(3) : op.replace(/Sync$/, '');
}

/** Asks the injector about one call: throws for an errno fault, returns true for a short write. */
function ask(op: FileOp, path: string): boolean {
  const fault = injector?.(op, path);
  if (fault === undefined || typeof fault === 'object') return false;
  if (fault === 'short') return WRITE_OPS.has(op);
  throw errnoError(fault, syscallOf(op), path);
}

function pathOf(p: fs.PathLike | fsp.FileHandle): string {
  return typeof p === 'string' ? p : p instanceof URL ? p.pathname : Buffer.isBuffer(p) ? p.toString() : `fd ${(p as fsp.FileHandle).fd}`;
}

function fdPath(fd: number): string {
  return fdPaths.get(fd) ?? `fd ${fd}`;
}

/** The first `bytes` bytes of a list of buffers. */
function prefixOf(bufs: readonly NodeJS.ArrayBufferView[], bytes: number): Buffer[] {
  const out: Buffer[] = [];
  let left = bytes;
  for (const b of bufs) {
    if (left <= 0) break;
    const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    out.push(buf.subarray(0, Math.min(left, buf.length)));
    left -= buf.length;
  }
  return out;
}

function bytesOf(data: unknown): Buffer {
  if (typeof data === 'string') return Buffer.from(data);
  const v = data as NodeJS.ArrayBufferView;
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * A FileHandle whose methods ask the injector first. A Proxy, because FileHandle keeps its
 * state in private fields: methods must run on the real handle, never on a copy.
 */
function faultingHandle(fh: fsp.FileHandle, path: string): fsp.FileHandle {
  fdPaths.set(fh.fd, path);
  const wrapped: Record<string, (...args: never[]) => Promise<unknown>> = {
    async write(data: unknown, ...rest: unknown[]) {
      if (!ask('fh.write', path)) return (fh.write as (...a: unknown[]) => Promise<unknown>)(data, ...rest);
      if (typeof data === 'string') {
        const bytes = Buffer.from(data, rest[1] as BufferEncoding | undefined);
        const position = typeof rest[0] === 'number' ? rest[0] : undefined;
        const { bytesWritten } = await fh.write(bytes, 0, bytes.length >> 1, position);
        return { bytesWritten, buffer: data };
      }
      const [offset = 0, length = bytesOf(data).length - (offset as number), position = null] = rest as [number?, number?, (number | null)?];
      const { bytesWritten } = await fh.write(bytesOf(data), offset, length >> 1, position ?? undefined);
      return { bytesWritten, buffer: data };
    },
    async writev(bufs: NodeJS.ArrayBufferView[], position?: number) {
      if (!ask('fh.writev', path)) return fh.writev(bufs, position);
      const total = bufs.reduce((n, b) => n + b.byteLength, 0);
      const { bytesWritten } = await fh.writev(prefixOf(bufs, total >> 1), position);
      return { bytesWritten, buffers: bufs };
    },
    async writeFile(data: unknown, options?: unknown) {
      if (!ask('fh.writeFile', path)) return fh.writeFile(data as string, options as fs.WriteFileOptions);
      const bytes = bytesOf(data);
      await fh.writeFile(bytes.subarray(0, bytes.length >> 1));
      throw errnoError('ENOSPC', 'write', path);
    },
    async read(...args: unknown[]) {
      ask('fh.read', path);
      return (fh.read as (...a: unknown[]) => Promise<unknown>)(...args);
    },
    async datasync() {
      ask('fh.datasync', path);
      return fh.datasync();
    },
    async sync() {
      ask('fh.sync', path);
      return fh.sync();
    },
    async truncate(len?: number) {
      ask('fh.truncate', path);
      return fh.truncate(len);
    },
    async stat(...args: unknown[]) {
      ask('fh.stat', path);
      return (fh.stat as (...a: unknown[]) => Promise<unknown>)(...args);
    },
    async close() {
      // The descriptor is released even when close reports an error, as the OS does.
      fdPaths.delete(fh.fd);
      try {
        ask('fh.close', path);
      } finally {
        await fh.close();
      }
    },
  };
  return new Proxy(fh, {
    get(target, prop) {
      if (typeof prop === 'string' && Object.hasOwn(wrapped, prop)) return wrapped[prop];
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** Each seam function with the injector asked first; installed by setFileFaults. */
const faulting: FileIo = {
  access: (async (path: fs.PathLike, mode?: number) => {
    ask('access', pathOf(path));
    return native.access(path, mode);
  }) as FileIo['access'],
  link: (async (from: fs.PathLike, to: fs.PathLike) => {
    ask('link', pathOf(to));
    return native.link(from, to);
  }) as FileIo['link'],
  mkdir: (async (path: fs.PathLike, options?: fs.MakeDirectoryOptions) => {
    ask('mkdir', pathOf(path));
    return native.mkdir(path, options);
  }) as FileIo['mkdir'],
  open: (async (path: fs.PathLike, flags?: string | number, mode?: fs.Mode) => {
    ask('open', pathOf(path));
    return faultingHandle(await native.open(path, flags, mode), pathOf(path));
  }) as FileIo['open'],
  readdir: (async (path: fs.PathLike, options?: unknown) => {
    ask('readdir', pathOf(path));
    return (native.readdir as (...a: unknown[]) => Promise<unknown>)(path, options);
  }) as FileIo['readdir'],
  readFile: (async (path: fs.PathLike | fsp.FileHandle, options?: unknown) => {
    ask('readFile', pathOf(path));
    return (native.readFile as (...a: unknown[]) => Promise<unknown>)(path, options);
  }) as FileIo['readFile'],
  rename: (async (from: fs.PathLike, to: fs.PathLike) => {
    ask('rename', pathOf(from));
    return native.rename(from, to);
  }) as FileIo['rename'],
  rm: (async (path: fs.PathLike, options?: fs.RmOptions) => {
    ask('rm', pathOf(path));
    return native.rm(path, options);
  }) as FileIo['rm'],
  rmdir: (async (path: fs.PathLike, options?: fs.RmDirOptions) => {
    ask('rmdir', pathOf(path));
    return native.rmdir(path, options);
  }) as FileIo['rmdir'],
  stat: (async (path: fs.PathLike, options?: fs.StatOptions) => {
    ask('stat', pathOf(path));
    return native.stat(path, options);
  }) as FileIo['stat'],
  statfs: (async (path: fs.PathLike, options?: fs.StatFsOptions) => {
    const fault = injector?.('statfs', pathOf(path));
    if (typeof fault === 'string' && fault !== 'short') throw errnoError(fault, 'statfs', pathOf(path));
    const s = await native.statfs(path, options);
    if (typeof fault !== 'object' || options?.bigint === true) return s;
    const bsize = (s as fs.StatsFs).bsize;
    const blocks = Math.floor(fault.freeBytes / bsize);
    return { ...s, bfree: blocks, bavail: blocks, ...(fault.totalBytes !== undefined ? { blocks: Math.floor(fault.totalBytes / bsize) } : {}) };
  }) as FileIo['statfs'],
  unlink: (async (path: fs.PathLike) => {
    ask('unlink', pathOf(path));
    return native.unlink(path);
  }) as FileIo['unlink'],
  openSync: ((path: fs.PathLike, flags: fs.OpenMode, mode?: fs.Mode | null) => {
    ask('openSync', pathOf(path));
    const fd = native.openSync(path, flags, mode);
    fdPaths.set(fd, pathOf(path));
    return fd;
  }) as FileIo['openSync'],
  readSync: ((fd: number, ...rest: unknown[]) => {
    ask('readSync', fdPath(fd));
    return (native.readSync as (...a: unknown[]) => number)(fd, ...rest);
  }) as FileIo['readSync'],
  writeSync: ((fd: number, data: unknown, ...rest: unknown[]) => {
    if (!ask('writeSync', fdPath(fd)) || typeof data === 'string') return (native.writeSync as (...a: unknown[]) => number)(fd, data, ...rest);
    const bytes = bytesOf(data);
    const [offset = 0, length = bytes.length - (offset as number), position = null] = rest as [number?, number?, (number | null)?];
    return native.writeSync(fd, bytes, offset, length >> 1, position);
  }) as FileIo['writeSync'],
  fdatasyncSync: (fd: number) => {
    ask('fdatasyncSync', fdPath(fd));
    native.fdatasyncSync(fd);
  },
  fstatSync: ((fd: number, options?: fs.StatSyncOptions) => {
    ask('fstatSync', fdPath(fd));
    return native.fstatSync(fd, options);
  }) as FileIo['fstatSync'],
  ftruncateSync: (fd: number, len?: number) => {
    ask('ftruncateSync', fdPath(fd));
    native.ftruncateSync(fd, len);
  },
  closeSync: (fd: number) => {
    const path = fdPath(fd);
    fdPaths.delete(fd);
    try {
      ask('closeSync', path);
    } finally {
      native.closeSync(fd);
    }
  },
  read: ((fd: number, buffer: NodeJS.ArrayBufferView, offset: number, length: number, position: number | null, callback: (err: NodeJS.ErrnoException | null, bytesRead: number, buffer: NodeJS.ArrayBufferView) => void) => {
    try {
      ask('pread', fdPath(fd));
    } catch (err) {
      process.nextTick(callback, err as NodeJS.ErrnoException, 0, buffer);
      return;
    }
    native.read(fd, buffer, offset, length, position, callback);
  }) as FileIo['read'],
  tryLock: (fd: number) => {
    ask('tryLock', fdPath(fd));
    return native.tryLock(fd);
  },
};

/**
 * Writes all of `bufs` at `position` in one writev, and the rest after it when the write
 * stores fewer bytes than given (the OS may, near a full disk): never a short file or a hole.
 * A write that stores nothing fails, naming the file.
 */
export async function writeFully(fh: Pick<fsp.FileHandle, 'writev'>, bufs: readonly Buffer[], position: number, path: string): Promise<void> {
  let rest = bufs;
  let at = position;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest as Buffer[], at);
    if (bytesWritten <= 0 && rest.some((b) => b.length > 0)) throw errnoError('EIO', 'writev', path);
    at += bytesWritten;
    let skip = bytesWritten;
    while (rest.length > 0 && skip >= rest[0]!.length) {
      skip -= rest[0]!.length;
      rest = rest.slice(1);
    }
    if (skip > 0) rest = [rest[0]!.subarray(skip), ...rest.slice(1)];
  }
}
