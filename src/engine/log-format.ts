import { AuthDomain, TAG_BYTES, TAG_PREFIX_BYTES, type FileAuthenticator } from '../crypto/file-auth.js';
import { crc32c } from './crc32c.js';

/**
 * The record log under the write-ahead log and the manifest. Two formats, chosen by the
 * file (the file dictionary records whether a file is authenticated, see FileInfo):
 *
 *   format 2 (authenticated): [hcrc:4][length:4][type:1][payload][tag:16]
 *     hcrc is CRC-32C of length and type, so a damaged length reads as damage, not as a
 *     record running past the end; the tag covers everything before it (hcrc, length,
 *     type, payload) and is bound to the record's offset under the file's MAC key
 *     (src/crypto/file-auth.ts).
 *   format 1 (plaintext and legacy files): [crc32c:4][length:4][type:1][payload]
 *     the checksum covers length, type and payload.
 *
 * Unlike LevelDB there are no 32 KiB blocks: files are read whole (or streamed) and never
 * recycled, so a reader never has to resynchronise in the middle of a file. It has to tell
 * a torn last append (a crash: the record runs past the end of the file, or the file
 * system left its end zero-filled) from damage, which it refuses (log-reader.ts).
 */
export const RECORD_HEADER_BYTES = 9;
/** The type addRecord uses unless told otherwise; the log itself gives types no meaning. */
export const DEFAULT_RECORD_TYPE = 1;
export const MAX_RECORD_PAYLOAD = 0xffff_ffff - TAG_BYTES;

/** How one file frames its records. */
export interface LogLayout {
  readonly auth: FileAuthenticator | undefined;
  /** Bytes after the payload: the tag in format 2, none in format 1. */
  readonly trailerBytes: number;
}

const FORMAT_1: LogLayout = { auth: undefined, trailerBytes: 0 };

export function logLayout(auth: FileAuthenticator | undefined): LogLayout {
  return auth ? { auth, trailerBytes: TAG_BYTES } : FORMAT_1;
}

/** Header, payload and tag in one buffer, so one append writes the whole record at `offset`. */
export function encodeRecord(payload: Uint8Array, type: number = DEFAULT_RECORD_TYPE, layout: LogLayout = FORMAT_1, offset = 0): Buffer {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw new RangeError(`log record type must be an integer 0..255, got ${type}`);
  if (payload.length > MAX_RECORD_PAYLOAD) throw new RangeError(`log record payload of ${payload.length} bytes exceeds the 4 GiB limit`);
  // Format 2 leaves room in front for what the tag covers besides the record (domain, offset,
  // length), so the tag is one HMAC pass; the record is the view after that room.
  const room = layout.auth ? TAG_PREFIX_BYTES : 0;
  const end = room + RECORD_HEADER_BYTES + payload.length;
  const buf = Buffer.allocUnsafe(end + layout.trailerBytes);
  buf.writeUInt32LE(payload.length, room + 4);
  buf[room + 8] = type;
  buf.set(payload, room + RECORD_HEADER_BYTES);
  if (layout.auth) {
    buf.writeUInt32LE(crc32c(buf.subarray(room + 4, room + RECORD_HEADER_BYTES)), room);
    layout.auth.tagWithRoom(AuthDomain.LogRecord, offset, buf, room, end).copy(buf, end);
    return buf.subarray(room);
  }
  buf.writeUInt32LE(crc32c(buf.subarray(4)), 0);
  return buf;
}

/** What is wrong with the record at `off` of `buf` (which runs to the end of the file). */
export type RecordProblem =
  | { kind: 'short'; reason: string }
  | { kind: 'header'; reason: string }
  | { kind: 'past-end'; reason: string }
  | { kind: 'check'; reason: string; end: number };

/**
 * Why the record starting at `off` in `buf` is not intact, or null when it is. `buf` must
 * run to the end of the file, so that "runs past the end" means past the end of the file.
 */
export function recordProblem(buf: Buffer, off: number, layout: LogLayout = FORMAT_1, fileOffset = off): RecordProblem | null {
  const left = buf.length - off;
  if (left < RECORD_HEADER_BYTES) return { kind: 'short', reason: `its header is cut short (${left} of ${RECORD_HEADER_BYTES} bytes)` };
  if (layout.auth && crc32c(buf.subarray(off + 4, off + RECORD_HEADER_BYTES)) !== buf.readUInt32LE(off)) {
    return { kind: 'header', reason: 'its header (length and type) fails its checksum' };
  }
  const len = buf.readUInt32LE(off + 4);
  const room = left - RECORD_HEADER_BYTES - layout.trailerBytes;
  if (len > room) return { kind: 'past-end', reason: `its length (${len} bytes) runs past the end of the file (${Math.max(0, room)} bytes left)` };
  const end = off + RECORD_HEADER_BYTES + len;
  if (layout.auth) {
    if (!layout.auth.verify(AuthDomain.LogRecord, fileOffset, buf.subarray(off, end), buf.subarray(end, end + TAG_BYTES))) {
      return { kind: 'check', reason: 'it fails its authentication tag', end: end + TAG_BYTES };
    }
  } else if (crc32c(buf.subarray(off + 4, end)) !== buf.readUInt32LE(off)) {
    return { kind: 'check', reason: 'it fails its checksum', end };
  }
  return null;
}

/**
 * Offset of the first intact record starting after `from` and before `before` (at any byte,
 * not just where records would start if the bad one's length were right), or -1. Format 1
 * only: a crash only tears the last append, so a bad record followed by an intact one is
 * damage. (Format 2 needs no search: its header checksum tells a damaged length from a torn
 * one, and the reader refuses any bad record with written bytes after it.)
 */
export function findIntactRecordAfter(buf: Buffer, from: number, before = buf.length): number {
  for (let p = from + 1; p < before && p + RECORD_HEADER_BYTES <= buf.length; p++) {
    const len = buf.readUInt32LE(p + 4);
    if (len > buf.length - p - RECORD_HEADER_BYTES) continue;
    if (crc32c(buf.subarray(p + 4, p + RECORD_HEADER_BYTES + len)) === buf.readUInt32LE(p)) return p;
  }
  return -1;
}

/**
 * What a cut-short append can leave: past the last record the file holds zeros (a file
 * system that grew the file before its data landed, or the space the WAL reserves ahead of
 * its appends, wal.ts), and of the record, a written prefix (a write the disk filled part
 * way: any length) or whole 512-byte sectors missing (a crash: each sector holds what was
 * written or what was there before). So a bad record is torn only if at least
 * ZERO_TAIL_MIN_BYTES of it are such zeros, at its end or filling its share of a sector,
 * with nothing written after it. A complete record that fails its check was changed after
 * it was written: damage, even as the last record. 16 zero bytes in a row do not happen in
 * ciphertext by chance, so real damage is not taken for a torn write.
 */
export const SECTOR_BYTES = 512;
export const ZERO_TAIL_MIN_BYTES = 16;
