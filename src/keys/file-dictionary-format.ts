import { methodCode, methodFromCode, type EncryptionMethod } from '../crypto/method.js';
import { BinaryReader, BinaryWriter } from '../util/binary.js';
import { checksum32 } from './crc.js';
import { DICT_MAC_LENGTH, dictMac, dictMacEquals } from './dict-mac.js';

/**
 * The file dictionary: path (relative to the data dir) → method, data key id, IV.
 *
 * Two files share one record codec (format version 2; see docs/encryption.md, "File formats"):
 *   file.dict      snapshot: header | records | HMAC-SHA256(dictMacKey, all preceding bytes);
 *                  always replaced atomically
 *   file.dict.log  header | HMAC(dictMacKey, header) | batches, each appended and fsynced
 * header = magic(8) | u16 version | u64 generation | u64 keyDictGeneration | u32 crc32 of the
 * preceding 26 bytes. The checksum is checked before anything else is believed, so a changed
 * version byte reads as damage (not as a newer format) and a changed generation is damage
 * (never a reason to ignore the log).
 * batch = u32 length | u32 crc32(length) | mac(32) | records (length bytes), where
 * mac_i = HMAC(dictMacKey, mac_{i-1} || length || records) and mac_0 is the header's MAC: a
 * chain, so a dropped (not last), reordered, replayed or forged batch fails. Only a batch that
 * runs past the end of the file (or a zero-filled tail) is a torn append.
 * record = u32 payload length | u32 crc32(length bytes + payload) | payload
 *
 * Version 1 (legacy, before MACs): header = magic | u16 version | u64 generation, records with
 * a batch mark in the op byte; read for migration only.
 */
export const SNAPSHOT_MAGIC = Buffer.from('TDEFDICT');
export const LOG_MAGIC = Buffer.from('TDEFDLOG');
export const SNAPSHOT_VERSION = 2;
export const LOG_VERSION = 2;
export const LEGACY_VERSION = 1;
export const LEGACY_HEADER_LENGTH = 8 + 2 + 8;
export const HEADER_LENGTH = 8 + 2 + 8 + 8 + 4;
/** Header plus its MAC: what an empty log holds. */
export const LOG_PREAMBLE_LENGTH = HEADER_LENGTH + DICT_MAC_LENGTH;
const FRAME_LENGTH = 8;
const BATCH_FRAME_LENGTH = 8 + DICT_MAC_LENGTH;
/** Paths are at most 4 KiB, so anything longer is damage, not a torn append. */
export const MAX_RECORD_LENGTH = 64 * 1024;
/** A group commit can hold many records; anything longer is damage. */
export const MAX_BATCH_LENGTH = 256 * 1024 * 1024;

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
/** What the log holds: file records, and the key.dict generation each key.dict write is bound to. */
export type DictRecord = FileRecord | { op: 'key-dict'; generation: number };

const OP_SET = 1;
const OP_REMOVE = 2;
const OP_KEY_DICT = 3;
const BATCH_END = 0x80;
const FLAG_AUTHENTICATED = 1;

export function encodeHeader(magic: Buffer, generation: number, keyDictGeneration: number): Buffer {
  const head = new BinaryWriter().bytes(magic).u16(magic === LOG_MAGIC ? LOG_VERSION : SNAPSHOT_VERSION).u64(generation).u64(keyDictGeneration).finish();
  return new BinaryWriter().bytes(head).u32(checksum32(head)).finish();
}

/** A version 1 header: only for tests that build legacy data dirs. */
export function encodeLegacyHeader(magic: Buffer, generation: number): Buffer {
  return new BinaryWriter().bytes(magic).u16(LEGACY_VERSION).u64(generation).finish();
}

export interface Header {
  version: number;
  generation: number;
  /** The key.dict generation recorded when this file was written (0 in version 1). */
  keyDictGeneration: number;
  /** Bytes the header takes. */
  length: number;
}

/** A header whose checksum holds but whose version this build does not know. */
export class HeaderTooNew extends Error {
  constructor(readonly version: number) {
    super(`format version ${version}`);
  }
}

export class DictionaryFormatError extends Error {
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`${reason} at offset ${offset}`);
  }
}

/**
 * The checksum is checked first: only a header whose checksum holds has a version worth
 * believing. A version 1 header (no checksum) is recognised by its version field alone; the
 * caller decides whether a legacy file is acceptable.
 */
export function decodeHeader(buf: Buffer, magic: Buffer): Header {
  if (buf.length < LEGACY_HEADER_LENGTH) throw new DictionaryFormatError(0, `header is ${buf.length} bytes, expected ${HEADER_LENGTH}`);
  if (!buf.subarray(0, 8).equals(magic)) throw new DictionaryFormatError(0, `bad magic bytes (expected "${magic.toString()}")`);
  const version = buf.readUInt16LE(8);
  if (buf.length >= HEADER_LENGTH && checksum32(buf.subarray(0, HEADER_LENGTH - 4)) === buf.readUInt32LE(HEADER_LENGTH - 4)) {
    if (version > SNAPSHOT_VERSION) throw new HeaderTooNew(version);
    if (version !== SNAPSHOT_VERSION) throw new DictionaryFormatError(8, `header checksum holds but version field reads ${version}`);
    const r = new BinaryReader(buf);
    r.bytes(10);
    return { version, generation: r.u64(), keyDictGeneration: r.u64(), length: HEADER_LENGTH };
  }
  if (version === LEGACY_VERSION) {
    return { version, generation: Number(buf.readBigUInt64LE(10) & 0x1fffffffffffffn), keyDictGeneration: 0, length: LEGACY_HEADER_LENGTH };
  }
  throw new DictionaryFormatError(0, 'header checksum mismatch');
}

function writeInfo(w: BinaryWriter, info: FileInfo): void {
  w.u8(methodCode(info.method)).u64(info.keyId).bytes(info.iv).u8(info.authenticated ? FLAG_AUTHENTICATED : 0);
}

function readInfo(r: BinaryReader, version: number): FileInfo {
  const code = r.u8();
  const method = methodFromCode(code);
  if (!method) throw new Error(`unknown method code ${code}`);
  const keyId = r.u64();
  const iv = Buffer.from(r.bytes(16));
  // Version 1 records predate tags: every file they describe is a legacy (unauthenticated) file.
  if (version === LEGACY_VERSION) return { method, keyId, iv, authenticated: false };
  const flags = r.u8();
  if ((flags & ~FLAG_AUTHENTICATED) !== 0) throw new Error(`unknown flags ${flags}`);
  return { method, keyId, iv, authenticated: (flags & FLAG_AUTHENTICATED) !== 0 };
}

/** A version 2 record (no batch mark: batches have their own frame). */
export function encodeRecord(rec: DictRecord): Buffer {
  return frameRecord(recordPayload(rec, SNAPSHOT_VERSION, false));
}

/** A version 1 record: only for tests that build legacy data dirs. */
export function encodeLegacyRecord(rec: FileRecord, batchEnd = true): Buffer {
  return frameRecord(recordPayload(rec, LEGACY_VERSION, batchEnd));
}

/** Version 1 records written together: only the last carries the batch mark. */
export function encodeLegacyBatch(records: readonly FileRecord[]): Buffer {
  return Buffer.concat(records.map((r, i) => encodeLegacyRecord(r, i === records.length - 1)));
}

function recordPayload(rec: DictRecord, version: number, batchEnd: boolean): Buffer {
  if (rec.op === 'key-dict') return new BinaryWriter().u8(OP_KEY_DICT).u64(rec.generation).finish();
  const w = new BinaryWriter().u8((rec.op === 'set' ? OP_SET : OP_REMOVE) | (batchEnd ? BATCH_END : 0)).string(rec.path);
  if (rec.op === 'set') {
    const put = (i: FileInfo) => (version === LEGACY_VERSION ? w.u8(methodCode(i.method)).u64(i.keyId).bytes(i.iv) : writeInfo(w, i));
    put(rec.entry);
    const p = rec.entry.pending;
    w.u8(p ? 1 : 0);
    if (p) {
      w.string(p.from).u8(p.previous ? 1 : 0);
      if (p.previous) put(p.previous);
    }
  }
  return w.finish();
}

function frameRecord(payload: Buffer): Buffer {
  const frame = Buffer.alloc(FRAME_LENGTH);
  frame.writeUInt32LE(payload.length, 0);
  frame.writeUInt32LE(checksum32(Buffer.concat([frame.subarray(0, 4), payload])), 4);
  return Buffer.concat([frame, payload]);
}

/** A whole snapshot: header, every entry, and the MAC over all of it. */
export function encodeSnapshot(macKey: Uint8Array, generation: number, keyDictGeneration: number, entries: Iterable<[string, FileEntry]>): Buffer {
  const parts = [encodeHeader(SNAPSHOT_MAGIC, generation, keyDictGeneration)];
  for (const [path, entry] of entries) parts.push(encodeRecord({ op: 'set', path, entry }));
  const body = Buffer.concat(parts);
  return Buffer.concat([body, dictMac(macKey, body)]);
}

/** An empty log; `mac` starts the chain its batches continue. */
export function encodeLogPreamble(macKey: Uint8Array, generation: number, keyDictGeneration: number): { bytes: Buffer; mac: Buffer } {
  const header = encodeHeader(LOG_MAGIC, generation, keyDictGeneration);
  const mac = dictMac(macKey, header);
  return { bytes: Buffer.concat([header, mac]), mac };
}

/** One durable write: the batch frame and its records, chained to `prevMac`. */
export function encodeLogBatch(macKey: Uint8Array, prevMac: Uint8Array, records: readonly DictRecord[]): { bytes: Buffer; mac: Buffer } {
  const body = Buffer.concat(records.map((r) => encodeRecord(r)));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(body.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(checksum32(length));
  const mac = dictMac(macKey, prevMac, length, body);
  return { bytes: Buffer.concat([length, crc, mac, body]), mac };
}

function isBatchEnd(payload: Buffer): boolean {
  return payload.length > 0 && (payload[0]! & BATCH_END) !== 0;
}

function decodePayload(payload: Buffer, version: number): DictRecord {
  const r = new BinaryReader(payload);
  const op = r.u8() & (version === LEGACY_VERSION ? ~BATCH_END : 0xff);
  if (op === OP_KEY_DICT && version !== LEGACY_VERSION) {
    const generation = r.u64();
    if (r.remaining !== 0) throw new Error(`${r.remaining} unexpected bytes in record`);
    return { op: 'key-dict', generation };
  }
  const path = r.string();
  let rec: FileRecord;
  if (op === OP_REMOVE) {
    rec = { op: 'remove', path };
  } else if (op === OP_SET) {
    const entry: FileEntry = readInfo(r, version);
    if (r.u8() === 1) {
      const from = r.string();
      entry.pending = r.u8() === 1 ? { from, previous: readInfo(r, version) } : { from };
    }
    rec = { op: 'set', path, entry };
  } else {
    throw new Error(`unknown record type ${op}`);
  }
  if (r.remaining !== 0) throw new Error(`${r.remaining} unexpected bytes in record`);
  return rec;
}

export interface DecodedRecords {
  records: DictRecord[];
  /** Where the intact records end: the log is truncated here when a torn tail is dropped. */
  end: number;
  /** Set when the bytes after `end` are an incomplete last append. */
  tornTail?: string;
}

/** Decodes version 2 records filling exactly [start, end): every problem is damage. */
function decodeRecordsStrict(buf: Buffer, start: number, end: number): DictRecord[] {
  const records: DictRecord[] = [];
  const area = buf.subarray(0, end);
  let off = start;
  while (off < end) {
    const problem = recordProblem(area, off);
    if (problem !== null) throw new DictionaryFormatError(off, problem);
    const len = area.readUInt32LE(off);
    try {
      records.push(decodePayload(area.subarray(off + FRAME_LENGTH, off + FRAME_LENGTH + len), SNAPSHOT_VERSION));
    } catch (err) {
      throw new DictionaryFormatError(off, `record has a valid checksum but cannot be decoded (${(err as Error).message})`);
    }
    off += FRAME_LENGTH + len;
  }
  return records;
}

/** A version 2 snapshot after its header: records, then the MAC over everything before it. */
export function decodeSnapshot(buf: Buffer, macKey: Uint8Array): DictRecord[] {
  const end = buf.length - DICT_MAC_LENGTH;
  if (end < HEADER_LENGTH) throw new DictionaryFormatError(HEADER_LENGTH, 'the snapshot is cut short (no room for its MAC)');
  const records = decodeRecordsStrict(buf, HEADER_LENGTH, end);
  if (!dictMacEquals(dictMac(macKey, buf.subarray(0, end)), buf.subarray(end))) {
    throw new DictionaryFormatError(end, 'MAC mismatch: the snapshot was altered, or it belongs to another data dir or key dictionary');
  }
  return records;
}

/**
 * A version 2 log: the header's MAC, then the chain of batches. Only a batch that runs past
 * the end of the file, or a zero-filled tail, is a torn append (a crash); a complete batch
 * that fails its checksum or MAC is damage, however near the end it is.
 */
export function decodeLog(buf: Buffer, macKey: Uint8Array): DecodedRecords {
  if (buf.length < LOG_PREAMBLE_LENGTH) throw new DictionaryFormatError(HEADER_LENGTH, `the log header's MAC is cut short (${buf.length} of ${LOG_PREAMBLE_LENGTH} bytes)`);
  let mac = buf.subarray(HEADER_LENGTH, LOG_PREAMBLE_LENGTH);
  if (!dictMacEquals(dictMac(macKey, buf.subarray(0, HEADER_LENGTH)), mac)) {
    throw new DictionaryFormatError(HEADER_LENGTH, 'MAC mismatch on the header: the log was altered, or it belongs to another data dir or key dictionary');
  }
  const records: DictRecord[] = [];
  let off = LOG_PREAMBLE_LENGTH;
  while (off < buf.length) {
    const torn = (reason: string): DecodedRecords => ({ records, end: off, tornTail: reason });
    if (allZero(buf, off)) return torn('the log ends with zero bytes (a crash after the file grew, before the data reached the disk)');
    if (buf.length - off < BATCH_FRAME_LENGTH) return torn(`batch header is cut short (${buf.length - off} of ${BATCH_FRAME_LENGTH} bytes)`);
    const lengthBytes = buf.subarray(off, off + 4);
    if (checksum32(lengthBytes) !== buf.readUInt32LE(off + 4)) throw new DictionaryFormatError(off, 'batch header checksum mismatch');
    const len = lengthBytes.readUInt32LE();
    if (len > MAX_BATCH_LENGTH) throw new DictionaryFormatError(off, `batch length ${len} exceeds the maximum ${MAX_BATCH_LENGTH}`);
    const start = off + BATCH_FRAME_LENGTH;
    if (start + len > buf.length) return torn(`the last batch is cut short (${buf.length - start} of ${len} bytes)`);
    const body = buf.subarray(start, start + len);
    const expected = dictMac(macKey, mac, lengthBytes, body);
    if (!dictMacEquals(expected, buf.subarray(off + 8, start))) {
      throw new DictionaryFormatError(off, 'batch MAC mismatch: a batch was forged, altered, dropped, reordered or replayed');
    }
    records.push(...decodeRecordsStrict(buf, start, start + len));
    mac = expected;
    off = start + len;
  }
  return { records, end: off };
}

function allZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * Decodes version 1 (legacy) records from `start`. With `allowTornTail`, damage after which no intact record
 * follows (an incomplete, garbled or zero-filled last append) is reported in `tornTail`;
 * any other damage throws with the offset, because dropping records before the tail would
 * silently lose files' keys.
 */
export function decodeLegacyRecords(buf: Buffer, start: number, allowTornTail: boolean): DecodedRecords {
  const records: DictRecord[] = [];
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
        records.push(decodePayload(payload, LEGACY_VERSION));
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
