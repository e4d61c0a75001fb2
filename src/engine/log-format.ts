import { crc32c } from './crc32c.js';

/**
 * The record log under the write-ahead log and the manifest:
 *
 *   [crc32c:4 LE][length:4 LE][type:1][payload: length bytes]
 *
 * The checksum covers length, type and payload, so a damaged length is caught too. Unlike
 * LevelDB there are no 32 KiB blocks: files are read whole (or streamed) and never
 * recycled, so a reader never has to resynchronise in the middle of a file. It only has to
 * tell a torn last append (a crash) from damage before it, which it does by looking for any
 * intact record after the bad one.
 */
export const RECORD_HEADER_BYTES = 9;
/** The type addRecord uses unless told otherwise; the log itself gives types no meaning. */
export const DEFAULT_RECORD_TYPE = 1;
export const MAX_RECORD_PAYLOAD = 0xffff_ffff;

/** Header and payload in one buffer, so one append writes the whole record. */
export function encodeRecord(payload: Uint8Array, type: number = DEFAULT_RECORD_TYPE): Buffer {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw new RangeError(`log record type must be an integer 0..255, got ${type}`);
  if (payload.length > MAX_RECORD_PAYLOAD) throw new RangeError(`log record payload of ${payload.length} bytes exceeds the 4 GiB limit`);
  const out = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payload.length);
  out.writeUInt32LE(payload.length, 4);
  out[8] = type;
  out.set(payload, RECORD_HEADER_BYTES);
  out.writeUInt32LE(crc32c(out.subarray(4)), 0);
  return out;
}

/**
 * Why the record starting at `off` in `buf` is not intact, or null when it is. `buf` must
 * run to the end of the file, so that "runs past the end" means past the end of the file.
 */
export function recordProblem(buf: Buffer, off: number): string | null {
  const left = buf.length - off;
  if (left < RECORD_HEADER_BYTES) return `its header is cut short (${left} of ${RECORD_HEADER_BYTES} bytes)`;
  const len = buf.readUInt32LE(off + 4);
  if (len > left - RECORD_HEADER_BYTES) return `its length (${len} bytes) runs past the end of the file (${left - RECORD_HEADER_BYTES} bytes left)`;
  if (crc32c(buf.subarray(off + 4, off + RECORD_HEADER_BYTES + len)) !== buf.readUInt32LE(off)) return 'it fails its checksum';
  return null;
}

/**
 * Offset of the first intact record starting after `from` (at any byte, not just where
 * records would start if the bad one's length were right), or -1. A crash only tears the
 * last append, so a bad record followed by an intact one is damage, not a crash.
 */
export function findIntactRecordAfter(buf: Buffer, from: number): number {
  for (let p = from + 1; p + RECORD_HEADER_BYTES <= buf.length; p++) {
    const len = buf.readUInt32LE(p + 4);
    if (len > buf.length - p - RECORD_HEADER_BYTES) continue;
    if (crc32c(buf.subarray(p + 4, p + RECORD_HEADER_BYTES + len)) === buf.readUInt32LE(p)) return p;
  }
  return -1;
}
