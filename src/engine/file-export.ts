import type { EncryptedReadableFile } from '../env/readable-file.js';
import type { AppendSink } from '../env/writable-file.js';
import { TdekvError } from '../errors.js';
import { BlockCache } from './block-cache.js';
import { readCurrentFile } from './current-file.js';
import type { EngineFs } from './engine-fs.js';
import { CURRENT, parseFileName, type EngineFileKind } from './file-names.js';
import { encodeRecord, logLayout } from './log-format.js';
import { readLog } from './log-reader.js';
import { copyTableBlocks, type TableCopyOptions } from './table-copy.js';
import { TableReader } from './table-reader.js';
import { encodeEdit, type VersionEdit } from './version-edit.js';

/*
 * A backup's view of the engine's files: each one re-written into a sink under another key
 * (the backup's), block by block and record by record. A byte copy would not do: every block
 * and record carries a tag bound to its own file's key and IV (crypto/file-auth.ts), so the
 * copy checks each one under the live key and tags it anew under the sink's. Entries are
 * never decoded, so the file's contents are exactly what the engine wrote.
 */

/**
 * Re-writes the live file `name` (a table, a WAL, a manifest, or CURRENT) into `sink`. With
 * `slices`, a table's copy gives the event loop a turn every slice (a server exporting for an
 * online backup keeps answering its clients).
 */
export async function exportEngineFile(fs: EngineFs, name: string, sink: AppendSink, slices?: TableCopySlices): Promise<void> {
  if (name === CURRENT) return writeCurrentRecord(sink, readCurrentFile(fs));
  const parsed = parseFileName(name);
  if (parsed === undefined) throw new TdekvError('INVALID_ARGUMENT', `${name} in ${fs.dataDir} is not an engine file (a table, log, manifest or CURRENT)`);
  return exportOpenedFile(await fs.openRead(name), parsed, sink, slices);
}

export type TableCopySlices = Pick<TableCopyOptions, 'yieldDue' | 'yieldSlice'>;

/**
 * The same for a file already opened (from a grant, on an export worker): a table block by
 * block, a log record by record. Takes ownership of `file` (closed here).
 */
export async function exportOpenedFile(file: EncryptedReadableFile, parsed: { kind: EngineFileKind; number: number }, sink: AppendSink, slices?: TableCopySlices): Promise<void> {
  if (parsed.kind === 'table') {
    // The reader owns the file from here (it closes it, also when the open fails).
    const reader = TableReader.open(file, parsed.number, new BlockCache(0));
    try {
      await copyTableBlocks(reader, sink, slices);
    } finally {
      reader.close();
    }
    return;
  }
  try {
    // A torn last record (a crash mid-append) is dropped, as recovery drops it; damage throws, naming the file.
    const layout = logLayout(sink.auth);
    for (const r of readLog(file).records) await sink.append(encodeRecord(r.payload, r.type, layout, sink.size));
  } finally {
    file.close();
  }
}

/** A manifest holding one snapshot edit: the whole tree of a pinned version. */
export async function writeManifestSnapshot(sink: AppendSink, edit: VersionEdit): Promise<void> {
  await sink.append(encodeRecord(encodeEdit(edit), undefined, logLayout(sink.auth), sink.size));
}

/** CURRENT as an encrypted data dir holds it: one authenticated record naming the manifest. */
export async function writeCurrentRecord(sink: AppendSink, manifest: string): Promise<void> {
  await sink.append(encodeRecord(Buffer.from(manifest, 'utf8'), undefined, logLayout(sink.auth), sink.size));
}
