import { TdekvError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { walName } from './file-names.js';
import { readLog, type LogRecord } from './log-reader.js';
import { LogWriter } from './log-writer.js';
import type { WalRecoveryMode } from './options.js';
import { decodeBatch } from './write-batch.js';

/** A file the WAL is appended to, as LogWriter takes it. */
type WalFile = ConstructorParameters<typeof LogWriter>[0];
/** A file a WAL is read back from, as readLog takes it. */
type WalReadFile = Parameters<typeof readLog>[0];

/**
 * Each log's size is set this far ahead of its appends (EncryptedWritableFile.reserveAhead),
 * so a sync write's fdatasync rarely has a new file size to make durable: 1 MiB is ~7,000
 * single-put records between growths, and a hole costs no disk space.
 */
const WAL_RESERVE_BYTES = 1 << 20;

/**
 * The write-ahead logs: one current log that write groups are appended to, switched for a
 * new file with each memtable (logs are never reused: that would reuse an IV), read back at
 * open. Which logs are live is the manifest's log number; everything below it is obsolete.
 */
export class WalManager {
  readonly #create: (name: string) => Promise<WalFile>;
  readonly #newFileNumber: () => number;
  #current: { number: number; writer: LogWriter } | undefined;

  /** `create` makes a new, empty file under the current data key; `newFileNumber` draws from the manifest's counter. */
  constructor(create: (name: string) => Promise<WalFile>, newFileNumber: () => number) {
    this.#create = create;
    this.#newFileNumber = newFileNumber;
  }

  /** Number of the current log. */
  get number(): number {
    return this.#current!.number;
  }

  get path(): string {
    return this.#current!.writer.path;
  }

  /**
   * Opens a new log and makes it current. Returns the previous one, which the caller closes
   * once the memtable it holds is handed over (the previous log is never appended to again).
   */
  async switch(): Promise<LogWriter | undefined> {
    const previous = this.#current?.writer;
    const number = this.#newFileNumber();
    const file = await this.#create(walName(number));
    file.reserveAhead(WAL_RESERVE_BYTES);
    this.#current = { number, writer: new LogWriter(file) };
    return previous;
  }

  /** Appends one write group as one record, handed to the OS before this returns. */
  appendSync(batch: Buffer): void {
    this.#current!.writer.addRecordSync(batch);
  }

  sync(options?: { inline?: boolean }): Promise<void> {
    return this.#current!.writer.sync(options);
  }

  /** A log below the manifest's log number holds only data already in tables. */
  isObsolete(number: number, logNumber: number): boolean {
    return number < logNumber && number !== this.#current?.number;
  }

  /** Closes the current log, if one was opened; errors are dropped (used when closing or on a failed open). */
  async close(): Promise<void> {
    await this.#current?.writer.close().catch(() => undefined);
  }
}

/**
 * Reads and checks every log in `names` (oldest first) before anything is written (invariant
 * 11): a refused open must leave the data dir as it was, so restoring a damaged byte recovers
 * it. In 'point-in-time' mode the replay stops at the first damaged record.
 */
export function replayLogs(
  openReadSync: (name: string) => WalReadFile,
  names: readonly string[],
  mode: WalRecoveryMode,
  dataDir: string,
  logger: Logger,
): Array<{ name: string; records: LogRecord[] }> {
  const logs: Array<{ name: string; records: LogRecord[] }> = [];
  for (const [i, name] of names.entries()) {
    const file = openReadSync(name);
    let contents;
    try {
      contents = readLog(file, logger, { onDamage: mode === 'point-in-time' ? 'stop' : 'throw' });
    } finally {
      file.close();
    }
    for (const r of contents.records) {
      try {
        decodeBatch(r.payload, () => undefined);
      } catch (err) {
        throw new TdekvError('DATA_CORRUPTED', `${name} in ${dataDir}: the record at offset ${r.offset} passes its checksum but is not a valid write batch; the write-ahead log is damaged: restore the data dir from a backup`, { cause: err });
      }
    }
    logs.push({ name, records: contents.records });
    if (contents.damagedAt !== undefined) {
      logger.error({ wal: name, offset: contents.damagedAt, skippedLogs: names.slice(i + 1) }, 'wal-recovery-mode = "point-in-time": replaying up to the damaged record; it and every later write are dropped');
      break;
    }
  }
  return logs;
}
