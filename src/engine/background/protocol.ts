import { TdekvError, type TdekvErrorCode } from '../../errors.js';
import type { FileGrant } from '../../env/file-grant.js';
import type { CompactionJob } from '../compaction/compaction.js';
import type { EngineTuning } from '../options.js';
import type { FileMeta } from '../version-edit.js';
import type { SharedMemtable } from '../skip-list.js';
import type { WarmUpResult } from './flush-warm-up.js';

/**
 * The messages between the engine (main thread) and its background worker. The worker gets
 * jobs with read grants for exactly their input tables, asks for each output table (the main
 * thread numbers it, registers it as a pending output and answers with a create grant), and
 * answers with the output tables' metadata; the main thread installs it.
 */
export type ToWorker =
  | { type: 'flush'; jobId: number; tuning: EngineTuning; memtable: SharedMemtable; smallestSnapshot: number }
  | { type: 'compact'; jobId: number; tuning: EngineTuning; job: CompactionJob; grants: FileGrant[] }
  | { type: 'table'; requestId: number; number: number; grant: FileGrant }
  | { type: 'reply'; requestId: number; error?: SerializedError }
  /** Abandon the job at its next slice (its outputs are removed): close() during a compaction. */
  | { type: 'cancel'; jobId: number }
  /** Whether the main thread has file faults installed (tests): the worker then asks for each file call. */
  | { type: 'faults'; installed: boolean }
  /**
   * Tests only: end the worker as a crash would ('throw': an uncaught error; 'exit': process.exit),
   * now or, with `atTable`, when a job asks for its atTable-th output table from now on (mid-job).
   */
  | { type: 'crash'; how: CrashHow; atTable?: number };

export type CrashHow = 'throw' | 'exit';

export type FromWorker =
  /** Its modules are loaded: it takes jobs from now on. */
  | { type: 'ready' }
  /** The flush warm-up after 'ready' ended (flush-warm-up.ts). */
  | { type: 'warmedUp'; result: WarmUpResult }
  | { type: 'done'; jobId: number; files: FileMeta[]; threadId: number }
  | { type: 'failed'; jobId: number; error: SerializedError }
  | { type: 'newTable'; jobId: number; requestId: number }
  | { type: 'remove'; jobId: number; requestId: number; number: number }
  | { type: 'fault'; op: string; path: string };

/** An error as it crosses threads: node's structured clone keeps neither `code` nor `cause`. */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  tdekvCode?: TdekvErrorCode;
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
  cause?: SerializedError;
}

export function serializeError(err: unknown, depth = 0): SerializedError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const e = err as NodeJS.ErrnoException & { cause?: unknown };
  const out: SerializedError = { name: e.name, message: e.message };
  if (e.stack !== undefined) out.stack = e.stack;
  if (err instanceof TdekvError) out.tdekvCode = err.code;
  else if (typeof e.code === 'string') out.code = e.code;
  if (typeof e.errno === 'number') out.errno = e.errno;
  if (typeof e.syscall === 'string') out.syscall = e.syscall;
  if (typeof e.path === 'string') out.path = e.path;
  if (e.cause !== undefined && depth < 8) out.cause = serializeError(e.cause, depth + 1);
  return out;
}

export function deserializeError(s: SerializedError): Error {
  const cause = s.cause ? deserializeError(s.cause) : undefined;
  let err: Error;
  if (s.tdekvCode !== undefined) {
    err = new TdekvError(s.tdekvCode, s.message, cause ? { cause } : undefined);
  } else {
    err = new Error(s.message, cause ? { cause } : undefined);
    err.name = s.name;
    const e = err as NodeJS.ErrnoException;
    if (s.code !== undefined) e.code = s.code;
    if (s.errno !== undefined) e.errno = s.errno;
    if (s.syscall !== undefined) e.syscall = s.syscall;
    if (s.path !== undefined) e.path = s.path;
  }
  if (s.stack !== undefined) err.stack = s.stack;
  return err;
}

/** Structured clone turns Buffers into Uint8Arrays: the runners compare keys with Buffer methods. */
export function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

export function revivedFileMeta(f: FileMeta): FileMeta {
  return { ...f, smallest: asBuffer(f.smallest), largest: asBuffer(f.largest) };
}

/**
 * The fault channel (tests): a worker blocked in Atomics.wait while the main thread answers
 * with what its injector says. Layout: Int32 [state, length], then the answer's JSON bytes.
 */
export const FAULT_CHANNEL_BYTES = 64 * 1024;
export const FAULT_HEADER_BYTES = 8;
