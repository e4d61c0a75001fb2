import type { EncryptedReadableFile } from '../env/readable-file.js';
import { TdekvError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { AuthDomain, TAG_BYTES } from '../crypto/file-auth.js';
import { SECTOR_BYTES, ZERO_TAIL_MIN_BYTES, findIntactRecordAfter, logLayout, RECORD_HEADER_BYTES, recordProblem, type LogLayout, type RecordProblem } from './log-format.js';
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
  /** With tornTailAt: everything from there on is zeros (a WAL's reserved space, or a crash's), no record bytes. */
  tornTailZeros?: boolean;
  /** With `onDamage: 'stop'`: where the first damaged record starts; nothing from there on was read. */
  damagedAt?: number;
}

export interface LogReadOptions {
  /**
   * What a damaged record (a complete record whose checksum or tag fails) does: 'throw'
   * (the default) refuses with DATA_CORRUPTED naming the file and offset; 'stop' ends the
   * read there and reports `damagedAt`, for recovery modes that explicitly accept losing
   * what follows (RocksDB's point-in-time recovery).
   */
  onDamage?: 'throw' | 'stop';
}

/** Reads are this big, so a 1 GiB log does not need 1 GiB at once (and the file's scratch buffer fits). */
const CHUNK_BYTES = 1 << 20;
const EMPTY = Buffer.alloc(0);

/**
 * Every intact record of a log file, in order. A torn last record is dropped with a
 * warning; damage before the end throws DATA_CORRUPTED naming the file and offset
 * (invariant 3). An empty file holds no records.
 */
export function readLog(file: EncryptedReadableFile, logger?: Logger, options: LogReadOptions = {}): LogContents {
  const reader = new LogReader(file, logger, CHUNK_BYTES, options);
  const records: LogRecord[] = [];
  for (let r = reader.read(); r !== undefined; r = reader.read()) records.push(r);
  const out: LogContents = { records };
  if (reader.tornTailAt !== undefined) {
    out.tornTailAt = reader.tornTailAt;
    out.tornTailZeros = reader.tornTailZeros;
  }
  if (reader.damagedAt !== undefined) out.damagedAt = reader.damagedAt;
  return out;
}

/**
 * The same, one record at a time, holding about one chunk in memory (plus what the caller
 * keeps: payloads are views of the chunk they came in, never overwritten).
 */
export class LogReader {
  readonly #file: EncryptedReadableFile;
  readonly #logger: Logger | undefined;
  readonly #layout: LogLayout;
  readonly #onDamage: 'throw' | 'stop';
  readonly #chunkBytes: number;
  /** The file's size when opened, lowered if reads find less (a file cut while open). */
  #size: number;
  #buf: Buffer = EMPTY;
  /** File offset of #buf[0]. */
  #bufAt = 0;
  #pos = 0;
  #done = false;
  #tornTailAt: number | undefined;
  #tornTailZeros = false;
  #damagedAt: number | undefined;

  constructor(file: EncryptedReadableFile, logger?: Logger, chunkBytes = CHUNK_BYTES, options: LogReadOptions = {}) {
    this.#file = file;
    this.#logger = logger;
    this.#layout = logLayout(file.auth);
    this.#onDamage = options.onDamage ?? 'throw';
    this.#chunkBytes = Math.max(RECORD_HEADER_BYTES, chunkBytes);
    this.#size = file.size;
  }

  /** Set once reading has reached a torn tail (which was dropped). */
  get tornTailAt(): number | undefined {
    return this.#tornTailAt;
  }

  /** With tornTailAt: the dropped rest of the file is all zeros (no bytes of a record are in it). */
  get tornTailZeros(): boolean {
    return this.#tornTailZeros;
  }

  /** Set once reading has stopped at a damaged record (only with `onDamage: 'stop'`). */
  get damagedAt(): number | undefined {
    return this.#damagedAt;
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
    const auth = this.#layout.auth;
    if (auth && crc32c(this.#buf.subarray(this.#pos + 4, this.#pos + RECORD_HEADER_BYTES)) !== this.#buf.readUInt32LE(this.#pos)) return this.#bad(offset);
    const len = this.#buf.readUInt32LE(this.#pos + 4);
    if (!this.#ensure(RECORD_HEADER_BYTES + len + this.#layout.trailerBytes)) return this.#bad(offset);
    const buf = this.#buf;
    const at = this.#pos;
    const end = at + RECORD_HEADER_BYTES + len;
    if (auth) {
      if (!auth.verify(AuthDomain.LogRecord, offset, buf.subarray(at, end), buf.subarray(end, end + TAG_BYTES))) return this.#bad(offset);
      this.#pos = end + TAG_BYTES;
    } else {
      if (crc32c(buf.subarray(at + 4, end)) !== buf.readUInt32LE(at)) return this.#bad(offset);
      this.#pos = end;
    }
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

  /**
   * The record at `offset` is not intact: a torn tail to drop, or damage to refuse. Torn
   * means cut short (a crash, or a write the disk filled part way): it runs past the end of
   * the file, or at least ZERO_TAIL_MIN_BYTES of it never landed (zeros on disk: its end, or
   * a sector's share, see SECTOR_BYTES), with nothing written after it; a header failing its
   * checksum only if the zeros start inside it. A complete record whose checksum or tag
   * fails is damage (an edit or a media error), even as the last record: with sync-writes it
   * may hold an acknowledged write, so dropping it would silently lose data. So is any bad
   * record with an intact one after it: a crash tears only the end.
   */
  #bad(offset: number): undefined {
    this.#done = true;
    const rest = this.#file.readSync(offset, this.#size - offset);
    const problem: RecordProblem = recordProblem(rest, 0, this.#layout, offset) ?? { kind: 'check', reason: 'it could not be read', end: rest.length };
    const path = this.#file.path;
    const raw = this.#file.readRawSync(offset, this.#size - offset);
    const zeros = trailingZeros(raw);
    // Bytes before the zero run that ends the file: what was written from this record on
    // (none: the log ends here, as a WAL's reserved space reads).
    const written = raw.length - zeros;
    const torn =
      written === 0 ||
      (problem.kind === 'header'
        ? // A damaged header hides the record's length: torn only if the header itself was cut short.
          written < RECORD_HEADER_BYTES
        : problem.kind === 'check'
          ? written <= problem.end && (problem.end - written >= ZERO_TAIL_MIN_BYTES || hasUnwrittenSector(raw, problem.end, offset))
          : true);
    if (!torn) {
      return this.#damaged(
        offset,
        `${path} is damaged at offset ${offset}: the record there is complete but ${problem.reason}, so it was changed after it was written (an edit, or a disk or media error), not cut short by a crash.`,
      );
    }
    if (!this.#layout.auth) {
      // Records start only where bytes were written: none in the zero run at the end.
      const later = findIntactRecordAfter(rest, 0, raw.length - zeros);
      if (later >= 0) {
        return this.#damaged(
          offset,
          `${path} is damaged at offset ${offset}: the record there is not intact (${problem.reason}), but later records (from offset ${offset + later}) are intact, so this is damage to the file (a disk or media error, or an edit), not a write cut short by a crash.`,
        );
      }
    }
    this.#tornTailAt = offset;
    this.#tornTailZeros = written === 0;
    if (this.#tornTailZeros) {
      this.#logger?.warn(
        {
          file: path,
          offset,
          droppedBytes: rest.length,
          reason: `the rest of the file (${raw.length} bytes) is zeros: space reserved ahead of appends, or a crash after the file grew and before its data landed`,
        },
        'log ends in zeros after its last record (the process stopped without closing it); reading stops there',
      );
      return undefined;
    }
    this.#logger?.warn(
      { file: path, offset, droppedBytes: rest.length, reason: problem.reason },
      'log ends with an incomplete record (a crash during its append); dropping it',
    );
    return undefined;
  }

  #damaged(offset: number, what: string): undefined {
    if (this.#onDamage === 'stop') {
      this.#damagedAt = offset;
      this.#logger?.error({ file: this.#file.path, offset }, 'log record damaged; recovery stops here as configured, and what follows it is not replayed');
      return undefined;
    }
    throw new TdekvError(
      'DATA_CORRUPTED',
      `${what} The records before offset ${offset} are intact; restore the data dir from a backup and keep the damaged copy for inspection (for a write-ahead log, [storage] wal-recovery-mode = "point-in-time" opens with the writes before the damage and drops the rest).`,
    );
  }
}

/**
 * True when some sector's share of raw[0, end), of at least ZERO_TAIL_MIN_BYTES, is all zeros:
 * part of the append never landed (see SECTOR_BYTES). `raw[0]` is at file offset `fileOffset`.
 */
function hasUnwrittenSector(raw: Uint8Array, end: number, fileOffset: number): boolean {
  for (let start = 0; start < end; ) {
    const shareEnd = Math.min(end, (Math.floor((fileOffset + start) / SECTOR_BYTES) + 1) * SECTOR_BYTES - fileOffset);
    let i = start;
    while (i < shareEnd && raw[i] === 0) i++;
    if (i === shareEnd && shareEnd - start >= ZERO_TAIL_MIN_BYTES) return true;
    start = shareEnd;
  }
  return false;
}

function trailingZeros(raw: Uint8Array): number {
  let n = 0;
  for (let i = raw.length - 1; i >= 0 && raw[i] === 0; i--) n++;
  return n;
}
