import { setFileFaults, type FileOp } from '../../src/util/file-io.js';

/**
 * The file operations of src/env and src/keys during `fn`, in order, recorded through the
 * fault seam with no fault injected: which reads a path made (readSync on this thread, pread
 * on the thread pool), which opens, which syncs.
 */
export async function fileOpsDuring(fn: () => Promise<void>): Promise<FileOp[]> {
  const ops: FileOp[] = [];
  setFileFaults((op) => {
    ops.push(op);
    return undefined;
  });
  try {
    await fn();
  } finally {
    setFileFaults(undefined);
  }
  return ops;
}
