import { fileIo } from '../util/file-io.js';
import { join } from 'node:path';
import { TdekvError, errnoCode } from '../errors.js';
import type { FileEntry, FileInfo, FileRecord } from '../keys/file-dictionary-format.js';
import { META_DIR } from './paths.js';

/**
 * What the dictionary must change to match the disk after a crash: a rename in flight is
 * finished or undone depending on whether its source still exists (fs.rename is atomic),
 * and entries of files that never got created, or were removed, are dropped.
 */
export async function reconcile(entries: Iterable<[string, FileEntry]>, exists: (path: string) => Promise<boolean>): Promise<FileRecord[]> {
  // One final change per path, however many entries point at it.
  const changes = new Map<string, FileRecord>();
  for (const [path, entry] of entries) {
    const here = await exists(path);
    if (entry.pending) {
      const { from, previous } = entry.pending;
      if (await exists(from)) {
        // The rename never happened: `path` is still the old file, or nothing.
        changes.set(path, previous && here ? { op: 'set', path, entry: previous } : { op: 'remove', path });
      } else {
        changes.set(from, { op: 'remove', path: from });
        changes.set(path, { op: 'set', path, entry: infoOf(entry) });
      }
    } else if (!here) {
      changes.set(path, { op: 'remove', path });
    }
  }
  return [...changes.values()];
}

export function infoOf(e: FileEntry): FileInfo {
  return { method: e.method, keyId: e.keyId, iv: e.iv, authenticated: e.authenticated };
}

/** Regular files under the data dir (outside encryption-meta/) that are not tracked. */
export async function untrackedFiles(dataDir: string, isTracked: (path: string) => boolean, dir = ''): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await fileIo.readdir(dir === '' ? dataDir : join(dataDir, dir), { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return out;
    throw err;
  }
  for (const d of entries) {
    const rel = dir === '' ? d.name : `${dir}/${d.name}`;
    if (rel === META_DIR) continue;
    if (d.isDirectory()) out.push(...(await untrackedFiles(dataDir, isTracked, rel)));
    else if (d.isFile() && !isTracked(rel)) out.push(rel);
  }
  return out;
}

export function untrackedFilesError(dataDir: string, files: readonly string[]): TdekvError {
  const sample = files.slice(0, 3).join(', ') + (files.length > 3 ? ', …' : '');
  return new TdekvError(
    'FILE_NOT_TRACKED',
    `data dir ${dataDir} holds ${files.length} file(s) (${sample}) but no tdekv encryption metadata for them. If ${META_DIR}/ was lost, restore it from a backup: these may be encrypted files. If they are plaintext files that tdekv should take over, open once with \`tdekv init --adopt-plaintext-files\` (embedded: adoptPlaintextFiles: true). Nothing was changed.`,
  );
}
