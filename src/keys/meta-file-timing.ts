import { basename } from 'node:path';
import { errnoCode } from '../errors.js';
import { fileIo } from '../util/file-io.js';

/**
 * How long reads and writes of the encryption metadata files (key.dict, file.dict,
 * file.dict.log) take: a slow fsync here delays every file creation. Metrics subscribe;
 * the keys layer knows nothing of them. Process-wide, since the metadata code has no
 * handle the metrics could reach; a process normally opens one data dir.
 */
export type MetaFileOperation = 'read' | 'write';
export type MetaFileObserver = (operation: MetaFileOperation, file: string, seconds: number) => void;

const observers = new Set<MetaFileObserver>();

/** Calls `observer` after each successful metadata read or write; returns the unsubscribe. */
export function observeMetaFiles(observer: MetaFileObserver): () => void {
  observers.add(observer);
  return () => observers.delete(observer);
}

/** Runs `io` on `path` and reports its duration (failures are not timed: they are errors). */
export async function timeMetaFile<T>(operation: MetaFileOperation, path: string, io: () => Promise<T>): Promise<T> {
  if (observers.size === 0) return io();
  const start = process.hrtime.bigint();
  const result = await io();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const file = basename(path);
  for (const observer of observers) {
    try {
      observer(operation, file, seconds);
    } catch {
      // A broken observer must not fail a durable write that has already happened.
    }
  }
  return result;
}

/** A metadata file's bytes (timed), or undefined when it does not exist; other failures are raised. */
export async function readMetaFileIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await timeMetaFile('read', path, () => fileIo.readFile(path));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}
