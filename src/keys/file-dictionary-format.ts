import { methodCode, methodFromCode, type EncryptionMethod } from '../crypto/method.js';
import { BinaryReader, BinaryWriter } from '../util/binary.js';
import { checksum32 } from './crc.js';

/**
 * The file dictionary: path (relative to the data dir) → method, data key id, IV.
 *
 * Two files share one record codec:
 *   file.dict      snapshot: header + records, always replaced atomically
 *   file.dict.log  append log: header + records, each appended and fsynced
 * header = magic(8) | u16 version | u64 generation. A log applies to the snapshot of the
 * same generation; an older log was already folded into the snapshot (crash during
 * compaction) and is ignored.
 * record = u32 payload length | u32 crc32(length bytes + payload) | payload
 * payload = u8 op (high bit: last record of a batch) | …
 * The batch mark makes one apply() (one write) all-or-nothing: after a crash, records of a
 * batch whose last record is missing or damaged are dropped together.
 */
export const SNAPSHOT_MAGIC = Buffer.from('TDEFDICT');
export const LOG_MAGIC = Buffer.from('TDEFDLOG');
export const SNAPSHOT_VERSION = 1;
export const LOG_VERSION = 1;
export const HEADER_LENGTH = 8 + 2 + 8;
const FRAME_LENGTH = 8;
/** Paths are at most 4 KiB, so anything longer is damage, not a torn append. */
export const MAX_RECORD_LENGTH = 64 * 1024;

export interface FileInfo {
  method: EncryptionMethod;
  /** 0 for plaintext files. */
  keyId: number;
  iv: Buffer;
  /**
   * True when the file's blocks and records carry tags under a key derived from its data key
   * (see src/crypto/file-auth.ts). Set at create for every encrypting method; false only for
   * plaintext files and for files written before tags existed ("unauthenticated" legacy
   * files, read with their CRCs until compaction or `data-key reencrypt` rewrites them).
   * Recorded in the authenticated dictionary, so a file cannot be downgraded to the legacy
   * format by editing the disk.
   */
  authenticated: boolean;
}

/** A rename in flight: resolved at open by whether `from` still exists on disk. */
export interface PendingRename {
  from: string;
  previous?: FileInfo;
}

export interface FileEntry extends FileInfo {
  pending?: PendingRename;
}

export type FileRecord = { op: 'set'; path: string; entry: FileEntry } | { op: 'remove'; path: string };

const OP_SET = 1;
const OP_REMOVE = 2;
const BATCH_END = 0x80;

export function encodeHeader(magic: Buffer, version: number, generation: number): Buffer {
  return new BinaryWriter().bytes(magic).u16(version).u64(generation).finish();
}

export interface Header {
  version: number;
  generation: number;
}

export class DictionaryFormatError extends Error {
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`${reason} at offset ${offset}`);
  }
}

export function decodeHeader(buf: Buffer, magic: Buffer): Header {
  if (buf.length < HEADER_LENGTH) throw new DictionaryFormatError(0, `header is ${buf.length} bytes, expected ${HEADER_LENGTH}`);
  if (!buf.subarray(0, 8).equals(magic)) throw new DictionaryFormatError(0, `bad magic bytes (expected "${magic.toString()}")`);
  const r = new BinaryReader(buf);
  r.bytes(8);
  return { version: r.u16(), generation: r.u64() };
}

function writeInfo(w: BinaryWriter, info: FileInfo): void {
  w.u8(methodCode(info.method)).u64(info.keyId).bytes(info.iv);
}

function readInfo(r: BinaryReader): FileInfo {
  const code = r.u8();
  const method = methodFromCode(code);
  if (!method) throw new Error(`unknown method code ${code}`);
  // Version 1 records predate tags: every file they describe is a legacy (unauthenticated) file.
  return { method, keyId: r.u64(), iv: Buffer.from(r.bytes(16)), authenticated: method !== 'plaintext' }; // TEMPORARY until the v2 dictionary codec lands
}

/** `batchEnd` marks the last record of one durable write. */
export function encodeRecord(rec: FileRecord, batchEnd = true): Buffer {
  const w = new BinaryWriter().u8((rec.op === 'set' ? OP_SET : OP_REMOVE) | (batchEnd ? BATCH_END : 0)).string(rec.path);
  if (rec.op === 'set') {
    writeInfo(w, rec.entry);
    const p = rec.entry.pending;
    w.u8(p ? 1 : 0);
    if (p) {
      w.string(p.from).u8(p.previous ? 1 : 0);
      if (p.previous) writeInfo(w, p.previous);
    }
  }
  const payload = w.finish();
  const frame = Buffer.allocUnsafe(FRAME_LENGTH);
  frame.writeUInt32LE(payload.length, 0);
  frame.writeUInt32LE(checksum32(Buffer.concat([frame.subarray(0, 4), payload])), 4);
  return Buffer.concat([frame, payload]);
}

/** Encodes records written together: only the last carries the batch mark. */
export function encodeBatch(records: readonly FileRecord[]): Buffer {
  return Buffer.concat(records.map((r, i) => encodeRecord(r, i === records.length - 1)));
}

function isBatchEnd(payload: Buffer): boolean {
  return payload.length > 0 && (payload[0]! & BATCH_END) !== 0;
}

function decodePayload(payload: Buffer): FileRecord {
  const r = new BinaryReader(payload);
  const op = r.u8() & ~BATCH_END;
  const path = r.string();
  let rec: FileRecord;
  if (op === OP_REMOVE) {
    rec = { op: 'remove', path };
  } else if (op === OP_SET) {
    const entry: FileEntry = readInfo(r);
    if (r.u8() === 1) {
      const from = r.string();
      entry.pending = r.u8() === 1 ? { from, previous: readInfo(r) } : { from };
    }
    rec = { op: 'set', path, entry };
  } else {
    throw new Error(`unknown record type ${op}`);
  }
  if (r.remaining !== 0) throw new Error(`${r.remaining} unexpected bytes in record`);
  return rec;
}

export interface DecodedRecords {
  records: FileRecord[];
  /** Where the intact records end: the log is truncated here when a torn tail is dropped. */
  end: number;
  /** Set when the bytes after `end` are an incomplete last append. */
  tornTail?: string;
}

/**
 * Decodes records from `start`. With `allowTornTail`, damage after which no intact record
 * follows (an incomplete, garbled or zero-filled last append) is reported in `tornTail`;
 * any other damage throws with the offset, because dropping records before the tail would
 * silently lose files' keys.
 */
export function decodeRecords(buf: Buffer, start: number, allowTornTail: boolean): DecodedRecords {
  const records: FileRecord[] = [];
  let off = start;
  // Where the last complete batch ends, and how many records it closes.
  let committedEnd = start;
  let committed = 0;
  while (off < buf.length) {
    const problem = recordProblem(buf, off);
    if (problem === null) {
      const len = buf.readUInt32LE(off);
      const payload = buf.subarray(off + FRAME_LENGTH, off + FRAME_LENGTH + len);
      try {
        records.push(decodePayload(payload));
      } catch (err) {
        throw new DictionaryFormatError(off, `record has a valid checksum but cannot be decoded (${(err as Error).message})`);
      }
      off += FRAME_LENGTH + len;
      if (isBatchEnd(payload)) {
        committedEnd = off;
        committed = records.length;
      }
      continue;
    }
    if (allowTornTail && !batchEndAfter(buf, off)) return { records: records.slice(0, committed), end: committedEnd, tornTail: problem };
    throw new DictionaryFormatError(off, problem);
  }
  if (allowTornTail && committed < records.length) {
    return { records: records.slice(0, committed), end: committedEnd, tornTail: 'the last batch of records is incomplete' };
  }
  return { records, end: off };
}

function recordProblem(buf: Buffer, off: number): string | null {
  if (buf.length - off < FRAME_LENGTH) return `record header is cut short (${buf.length - off} of ${FRAME_LENGTH} bytes)`;
  const len = buf.readUInt32LE(off);
  if (len > MAX_RECORD_LENGTH) return `record length ${len} exceeds the maximum ${MAX_RECORD_LENGTH}`;
  if (off + FRAME_LENGTH + len > buf.length) return `record is cut short (${buf.length - off - FRAME_LENGTH} of ${len} payload bytes)`;
  const crc = checksum32(Buffer.concat([buf.subarray(off, off + 4), buf.subarray(off + FRAME_LENGTH, off + FRAME_LENGTH + len)]));
  if (crc !== buf.readUInt32LE(off + 4)) return 'record checksum mismatch';
  return null;
}

/**
 * A crash can only damage the last write, so damage at `off` is a torn tail only if no
 * intact end of a batch follows it. A damaged length field in an earlier record (which can
 * look like a record running past EOF) is then still reported as damage.
 */
function batchEndAfter(buf: Buffer, off: number): boolean {
  for (let p = off + 1; p + FRAME_LENGTH <= buf.length; p++) {
    if (recordProblem(buf, p) === null && isBatchEnd(buf.subarray(p + FRAME_LENGTH))) return true;
  }
  return false;
}
