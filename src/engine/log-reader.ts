import type { EncryptedReadableFile } from '../env/readable-file.js';
import { TdekvError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { findIntactRecordAfter, RECORD_HEADER_BYTES, recordProblem } from './log-format.js';
import { crc32c } from './crc32c.js';

export interface LogRecord {
  type: number;
  payload: Buffer;
  /** Where the record's header starts in the file: for error messages. */
  offset: number;
}

export interface LogContents {
  records: LogRecord[];
  /** Set when the file ended with a torn record (a crash during its append), which was dropped. */
  tornTailAt?: number;
}

/** Reads are this big, so a 1 GiB log does not need 1 GiB at once (and the file's scratch buffer fits). */
const CHUNK_BYTES = 1 << 20;
const EMPTY = Buffer.alloc(0);

/**
 * Every intact record of a log file, in order. A torn last record is dropped with a
 * warning; damage before the end throws DATA_CORRUPTED naming the file and offset
 * (invariant 3). An empty file holds no records.
 */
export function readLog(file: EncryptedReadableFile, logger?: Logger): LogContents {
  const reader = new LogReader(file, logger);
  const records: LogRecord[] = [];
  for (let r = reader.read(); r !== undefined; r = reader.read()) records.push(r);
  return reader.tornTailAt === undefined ? { records } : { records, tornTailAt: reader.tornTailAt };
}

/**
 * The same, one record at a time, holding about one chunk in memory (plus what the caller
 * keeps: payloads are views of the chunk they came in, never overwritten).
 */
export class LogReader {
  readonly #file: EncryptedReadableFile;
  readonly #logger: Logger | undefined;
  readonly #chunkBytes: number;
  /** The file's size when opened, lowered if reads find less (a file cut while open). */
  #size: number;
  #buf: Buffer = EMPTY;
  /** File offset of #buf[0]. */
  #bufAt = 0;
  #pos = 0;
  #done = false;
  #tornTailAt: number | undefined;

  constructor(file: EncryptedReadableFile, logger?: Logger, chunkBytes = CHUNK_BYTES) {
    this.#file = file;
    this.#logger = logger;
    this.#chunkBytes = Math.max(RECORD_HEADER_BYTES, chunkBytes);
    this.#size = file.size;
  }

  /** Set once reading has reached a torn tail (which was dropped). */
  get tornTailAt(): number | undefined {
    return this.#tornTailAt;
  }

  /** The next intact record, or undefined at the end (or at a dropped torn tail). */
  read(): LogRecord | undefined {
    if (this.#done) return undefined;
    const offset = this.#bufAt + this.#pos;
    if (offset >= this.#size) {
      this.#done = true;
      return undefined;
    }
    if (!this.#ensure(RECORD_HEADER_BYTES)) return this.#bad(offset);
    const len = this.#buf.readUInt32LE(this.#pos + 4);
    if (!this.#ensure(RECORD_HEADER_BYTES + len)) return this.#bad(offset);
    const buf = this.#buf;
    const at = this.#pos;
    const end = at + RECORD_HEADER_BYTES + len;
    if (crc32c(buf.subarray(at + 4, end)) !== buf.readUInt32LE(at)) return this.#bad(offset);
    this.#pos = end;
    return { type: buf[at + 8]!, payload: buf.subarray(at + RECORD_HEADER_BYTES, end), offset };
  }

  *[Symbol.iterator](): Iterator<LogRecord> {
    for (let r = this.read(); r !== undefined; r = this.read()) yield r;
  }

  /** Makes `n` bytes from the current position available; false if the file ends first. */
  #ensure(n: number): boolean {
    if (this.#buf.length - this.#pos >= n) return true;
    const at = this.#bufAt + this.#pos;
    if (at + n > this.#size) return false;
    // Reading again from the record's start costs a little decryption but no copy of the chunk.
    const want = Math.min(Math.max(n, this.#chunkBytes), this.#size - at);
    this.#buf = this.#file.readSync(at, want);
    this.#bufAt = at;
    this.#pos = 0;
    if (this.#buf.length < want) this.#size = at + this.#buf.length;
    return this.#buf.length >= n;
  }

  /** The record at `offset` is not intact: a torn tail to drop, or damage to refuse. */
  #bad(offset: number): undefined {
    this.#done = true;
    const rest = this.#file.readSync(offset, this.#size - offset);
    const problem = recordProblem(rest, 0) ?? 'it could not be read';
    const later = findIntactRecordAfter(rest, 0);
    if (later >= 0) {
      throw new TdekvError(
        'DATA_CORRUPTED',
        `${this.#file.path} is damaged at offset ${offset}: the record there ${problem}, but later records (from offset ${offset + later}) are intact, so this is damage to the file (a disk or media error, or an edit), not a write cut short by a crash. The records before offset ${offset} are intact; restore the data dir from a backup and keep the damaged copy for inspection.`,
      );
    }
    this.#tornTailAt = offset;
    this.#logger?.warn(
      { file: this.#file.path, offset, droppedBytes: rest.length, reason: problem },
      'log ends with an incomplete record (a crash during its append); dropping it',
    );
    return undefined;
  }
}
