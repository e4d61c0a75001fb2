import { TdekvError } from '../errors.js';
import { ByteSink, getVarint, putVarint, readU64, writeU64 } from './coding.js';
import { crc32c } from './crc32c.js';

/**
 * The SSTable file layout:
 *
 *   data block 0 .. data block n-1 | filter block? | properties block | index block | footer
 *
 * Every block is followed by a 5-byte trailer (type byte, CRC-32C of contents + type), and
 * the footer carries its own CRC-32C, so every byte of a table is covered by a checksum:
 * CTR encryption does not authenticate, and a flipped ciphertext bit flips exactly one
 * plaintext bit, which the checksums catch.
 */

export const BLOCK_TRAILER_BYTES = 5;
/** Raw contents; the type byte leaves room for compression without a format change. */
export const BLOCK_TYPE_RAW = 0;

export const TABLE_FORMAT_VERSION = 1;
export const TABLE_MAGIC = Buffer.from('tdekvSST', 'latin1');
/** 3 handles × 16 + version 4 + crc 4 + magic 8. */
export const FOOTER_BYTES = 64;
const FOOTER_VERSION_AT = 48;
const FOOTER_CRC_AT = 52;
const FOOTER_MAGIC_AT = 56;

/** Where a block's contents are in the file; `size` excludes the trailer. */
export interface BlockHandle {
  offset: number;
  size: number;
}

export interface Footer {
  /** size 0: the table has no filter (bloom filters turned off when it was written). */
  filter: BlockHandle;
  index: BlockHandle;
  properties: BlockHandle;
}

/** What a finished table holds; smallest and largest are internal keys. */
export interface TableProperties {
  entries: number;
  deletions: number;
  /** Bytes of data blocks, trailers included. */
  dataBytes: number;
  fileSize: number;
  smallest: Buffer;
  largest: Buffer;
}

/** The one wording for a damaged table, so every path says what happened and what to do. */
export function tableCorrupted(path: string, detail: string, cause?: unknown): TdekvError {
  return new TdekvError('DATA_CORRUPTED', `file ${path} is damaged: ${detail}; restore the file from a backup`, cause === undefined ? undefined : { cause });
}

/** Block contents followed by their trailer, ready to append. */
export function blockWithTrailer(contents: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(contents.length + BLOCK_TRAILER_BYTES);
  out.set(contents, 0);
  out[contents.length] = BLOCK_TYPE_RAW;
  out.writeUInt32LE(crc32c(out.subarray(0, contents.length + 1)), contents.length + 1);
  return out;
}

/**
 * Checks a block read with its trailer (`raw` = contents + trailer) and returns the
 * contents (a view of `raw`).
 */
export function verifyBlock(raw: Buffer, handle: BlockHandle, path: string): Buffer {
  if (raw.length !== handle.size + BLOCK_TRAILER_BYTES) {
    throw tableCorrupted(path, `block at offset ${handle.offset} is truncated (wanted ${handle.size + BLOCK_TRAILER_BYTES} bytes, the file has ${raw.length} there)`);
  }
  const stored = raw.readUInt32LE(handle.size + 1);
  const actual = crc32c(raw.subarray(0, handle.size + 1));
  if (stored !== actual) {
    throw tableCorrupted(path, `block at offset ${handle.offset} (${handle.size} bytes) fails its checksum`);
  }
  const type = raw[handle.size]!;
  if (type !== BLOCK_TYPE_RAW) {
    throw new TdekvError('FORMAT_TOO_NEW', `file ${path} has a block at offset ${handle.offset} of type ${type}, which this version of tdekv does not know; upgrade tdekv to read it`);
  }
  return raw.subarray(0, handle.size);
}

/** Index entries' values: the data block's handle as two varints. */
export function putBlockHandle(buf: Buffer, at: number, h: BlockHandle): number {
  return putVarint(buf, putVarint(buf, at, h.offset), h.size);
}

/** Decodes a handle at buf[start, end); throws DATA_CORRUPTED naming `path`. */
export function decodeBlockHandle(buf: Buffer, start: number, end: number, path: string, where: string): BlockHandle {
  const pos = { offset: start };
  try {
    const offset = getVarint(buf, pos, end);
    const size = getVarint(buf, pos, end);
    return { offset, size };
  } catch (err) {
    throw tableCorrupted(path, `${where} holds a malformed block handle`, err);
  }
}

export function encodeFooter(f: Footer): Buffer {
  const out = Buffer.alloc(FOOTER_BYTES);
  let at = 0;
  for (const h of [f.filter, f.index, f.properties]) {
    writeU64(out, at, h.offset);
    writeU64(out, at + 8, h.size);
    at += 16;
  }
  out.writeUInt32LE(TABLE_FORMAT_VERSION, FOOTER_VERSION_AT);
  out.writeUInt32LE(crc32c(out.subarray(0, FOOTER_CRC_AT)), FOOTER_CRC_AT);
  TABLE_MAGIC.copy(out, FOOTER_MAGIC_AT);
  return out;
}

/**
 * Decodes the last FOOTER_BYTES of a table of `fileSize` bytes and checks that every handle
 * points inside the file before the footer.
 */
export function decodeFooter(buf: Buffer, fileSize: number, path: string): Footer {
  if (buf.length !== FOOTER_BYTES) {
    throw tableCorrupted(path, `it is ${fileSize} bytes, too small to be a table (the footer alone is ${FOOTER_BYTES})`);
  }
  if (!buf.subarray(FOOTER_MAGIC_AT).equals(TABLE_MAGIC)) {
    throw tableCorrupted(path, 'its footer does not end with the table magic (not a tdekv table, truncated, or overwritten)');
  }
  // The checksum is checked before the version, so a flipped version bit reads as damage,
  // and only an intact footer from a newer writer reads as FORMAT_TOO_NEW.
  if (buf.readUInt32LE(FOOTER_CRC_AT) !== crc32c(buf.subarray(0, FOOTER_CRC_AT))) {
    throw tableCorrupted(path, `its footer (the last ${FOOTER_BYTES} bytes) fails its checksum`);
  }
  const version = buf.readUInt32LE(FOOTER_VERSION_AT);
  if (version > TABLE_FORMAT_VERSION) {
    throw new TdekvError('FORMAT_TOO_NEW', `file ${path} is in table format ${version}, written by a newer tdekv; this version reads up to format ${TABLE_FORMAT_VERSION}: upgrade tdekv to open this data dir`);
  }
  if (version < 1) throw tableCorrupted(path, `its footer names table format ${version}, which never existed`);
  const handles: BlockHandle[] = [];
  const limit = fileSize - FOOTER_BYTES;
  for (let at = 0; at < 48; at += 16) {
    let h: BlockHandle;
    try {
      h = { offset: readU64(buf, at), size: readU64(buf, at + 8) };
    } catch (err) {
      throw tableCorrupted(path, 'its footer holds an impossible block handle', err);
    }
    handles.push(h);
  }
  const [filter, index, properties] = handles as [BlockHandle, BlockHandle, BlockHandle];
  for (const [name, h] of [['index', index], ['properties', properties], ['filter', filter]] as const) {
    if (name === 'filter' && h.size === 0) continue;
    if (h.offset + h.size + BLOCK_TRAILER_BYTES > limit) {
      throw tableCorrupted(path, `its ${name} block (offset ${h.offset}, ${h.size} bytes) lies outside the file`);
    }
  }
  return { filter, index, properties };
}

/** Properties without fileSize, which the reader takes from the file itself. */
export type StoredProperties = Omit<TableProperties, 'fileSize'>;

export function encodeProperties(p: StoredProperties): Buffer {
  const sink = new ByteSink(64 + p.smallest.length + p.largest.length);
  sink.varint(p.entries);
  sink.varint(p.deletions);
  sink.varint(p.dataBytes);
  sink.lengthPrefixed(p.smallest);
  sink.lengthPrefixed(p.largest);
  return sink.copy();
}

/** Fields a newer writer appends after these are ignored (the footer version gates layout changes). */
export function decodeProperties(contents: Buffer, path: string): StoredProperties {
  const pos = { offset: 0 };
  try {
    const entries = getVarint(contents, pos);
    const deletions = getVarint(contents, pos);
    const dataBytes = getVarint(contents, pos);
    const smallest = lengthPrefixedAt(contents, pos);
    const largest = lengthPrefixedAt(contents, pos);
    return { entries, deletions, dataBytes, smallest, largest };
  } catch (err) {
    throw tableCorrupted(path, 'its properties block is malformed', err);
  }
}

function lengthPrefixedAt(buf: Buffer, pos: { offset: number }): Buffer {
  const n = getVarint(buf, pos);
  if (pos.offset + n > buf.length) throw new RangeError('length-prefixed field runs past the end');
  const out = Buffer.from(buf.subarray(pos.offset, pos.offset + n));
  pos.offset += n;
  return out;
}
