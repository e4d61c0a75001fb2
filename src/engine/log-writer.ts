import type { EncryptedWritableFile } from '../env/writable-file.js';
import { DEFAULT_RECORD_TYPE, encodeRecord, logLayout, type LogLayout } from './log-format.js';

/**
 * Appends records (see log-format.ts) to a fresh file. Never append to a log that was read
 * back after a crash: its torn tail would then sit before intact records and read as damage.
 * Write a new file instead (files are written once anyway, invariant 1).
 */
export class LogWriter {
  readonly file: EncryptedWritableFile;
  readonly #layout: LogLayout;

  constructor(file: EncryptedWritableFile) {
    this.file = file;
    this.#layout = logLayout(file.auth);
  }

  get path(): string {
    return this.file.path;
  }

  /** Bytes written so far, headers included. */
  get size(): number {
    return this.file.size;
  }

  /**
   * Appends one record. The record's place in the file is fixed when this is called, so
   * callers may issue several before awaiting any; the promise settles like the file's
   * append (the bytes are with the file, not yet durable: see sync()).
   */
  addRecord(payload: Uint8Array, type: number = DEFAULT_RECORD_TYPE): Promise<void> {
    let record: Buffer;
    try {
      record = encodeRecord(payload, type, this.#layout, this.file.size);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.file.append(record);
  }

  /** Appends one record and hands it to the OS before returning (see EncryptedWritableFile.appendSync). */
  addRecordSync(payload: Uint8Array, type: number = DEFAULT_RECORD_TYPE): void {
    this.file.appendSync(encodeRecord(payload, type, this.#layout, this.file.size));
  }

  /** Waits until every record has reached the OS (survives a process crash). */
  flush(): Promise<void> {
    return this.file.flush();
  }

  /** Makes every record durable (survives a power loss); `inline`: see EncryptedWritableFile.sync. */
  sync(options?: { inline?: boolean }): Promise<void> {
    return this.file.sync(options);
  }

  close(): Promise<void> {
    return this.file.close();
  }
}
