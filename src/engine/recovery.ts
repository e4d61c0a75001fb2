import { TdekvError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { JobContext } from './background-job.js';
import { manifestName, parseFileName, tableName, walName } from './file-names.js';
import { writeMemtable } from './flush.js';
import { MAX_SEQUENCE } from './internal-key.js';
import { Memtable } from './memtable.js';
import type { EngineTuning, WalRecoveryMode } from './options.js';
import { emptyEdit } from './version-edit.js';
import type { VersionSet } from './version-set.js';
import { replayLogs, type WalManager } from './wal.js';
import { decodeBatchAt } from './write-batch.js';

export interface RecoveryContext {
  /** The data dir's file names, and a synchronous open for reading. */
  list(dir: string): Promise<string[]>;
  openReadSync: Parameters<typeof replayLogs>[0];
  /** For messages. */
  dataDir: string;
  versions: VersionSet;
  wal: WalManager;
  /** Where the replayed memtables are flushed. */
  job: JobContext;
  tuning: EngineTuning;
  logger: Logger;
}

/**
 * Opens the tree the manifest describes: checks its files are there, replays the WALs it
 * does not cover into level-0 tables, and installs them with a new, empty WAL in one edit.
 * `existed`: the data dir had a CURRENT. Returns the last sequence number in use.
 */
export async function recover(ctx: RecoveryContext, existed: boolean, walRecoveryMode: WalRecoveryMode): Promise<number> {
  const { versions, logger } = ctx;
  const names = await ctx.list('');
  const engineFiles = names.map((n) => ({ name: n, parsed: parseFileName(n) })).filter((f) => f.parsed !== undefined);
  if (!existed) {
    // A first open that crashed before CURRENT was written leaves only a manifest; data files without CURRENT are a damaged dir.
    const data = engineFiles.filter((f) => f.parsed!.kind !== 'manifest');
    if (data.length > 0) {
      throw new TdekvError(
        'DATA_CORRUPTED',
        `${ctx.dataDir} holds database files (${data.slice(0, 3).map((f) => f.name).join(', ')}${data.length > 3 ? ', …' : ''}) but no CURRENT file naming its manifest: the data dir is damaged; restore it from a backup`,
      );
    }
  }
  for (const f of engineFiles) versions.markFileNumberUsed(f.parsed!.number);
  if (existed) checkRecoveredFilesExist(versions, engineFiles.map((f) => f.name), ctx.dataDir);
  const wals = engineFiles
    .filter((f) => f.parsed!.kind === 'wal' && f.parsed!.number >= versions.logNumber)
    .sort((a, b) => a.parsed!.number - b.parsed!.number)
    .map((f) => f.name);
  const logs = replayLogs(ctx.openReadSync, wals, walRecoveryMode, ctx.dataDir, logger);
  const edit = emptyEdit();
  let lastSeq = versions.lastSequence;
  for (const { name, records } of logs) {
    let mem = new Memtable();
    for (const r of records) {
      const payload = r.payload;
      const info = decodeBatchAt(payload, (seq, kind, keyOff, keyLen, valueOff, valueLen) => mem.addAt(seq, kind, payload, keyOff, keyLen, payload, valueOff, valueLen));
      if (info.count > 0) lastSeq = Math.max(lastSeq, info.firstSeq + info.count - 1);
      if (mem.approximateBytes >= ctx.tuning.writeBufferSize) {
        edit.newFiles.push(...(await writeMemtable(ctx.job, mem, MAX_SEQUENCE)).map((file) => ({ level: 0, file })));
        mem = new Memtable();
      }
    }
    if (mem.entries > 0) edit.newFiles.push(...(await writeMemtable(ctx.job, mem, MAX_SEQUENCE)).map((file) => ({ level: 0, file })));
    if (records.length > 0) logger.info({ wal: name, records: records.length }, 'replayed write-ahead log');
  }
  await ctx.wal.switch();
  edit.logNumber = ctx.wal.number;
  edit.lastSequence = lastSeq;
  await versions.logAndApply(edit);
  return lastSeq;
}

/**
 * The WAL the manifest names as current always exists in a consistent data dir (it is
 * removed only after a later edit names a newer one), and so does every table of the
 * version. Either missing means edits or files were lost — for example a damaged last
 * manifest record read as a torn tail — and opening would silently drop data.
 */
function checkRecoveredFilesExist(versions: VersionSet, names: readonly string[], dataDir: string): void {
  const present = new Set(names);
  const manifest = `${manifestName(versions.manifestNumber)} (the manifest CURRENT names in ${dataDir})`;
  const logNumber = versions.logNumber;
  if (logNumber > 0 && !present.has(walName(logNumber))) {
    throw new TdekvError('DATA_CORRUPTED', `${manifest} names write-ahead log ${walName(logNumber)}, which is gone: the manifest lost edits or the log was removed; restore the data dir from a backup`);
  }
  const missing = versions.current.allFiles().filter((f) => !present.has(tableName(f.number)));
  if (missing.length > 0) {
    throw new TdekvError('DATA_CORRUPTED', `${manifest} lists table ${tableName(missing[0]!.number)}${missing.length > 1 ? ` and ${missing.length - 1} more` : ''}, which is not in the data dir: restore the data dir from a backup`);
  }
}
