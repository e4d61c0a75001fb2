import { TdekvError } from '../errors.js';
import { AuthDomain, TAG_BYTES, type FileAuthenticator } from '../crypto/file-auth.js';
import { ByteSink, getVarint, putVarint, readU64, writeU64 } from './coding.js';
import { crc32c } from './crc32c.js';

/**
 * The SSTable file layout:
 *
 *   data block 0 .. data block n-1 | filter block? | properties block | index block | footer
 *
 * Two formats, chosen by the file, not by the table: the file dictionary records whether a
 * file is authenticated, so nobody can pass one format off as the other by editing bytes.
 *
 * Format 2 (every file under an encrypting method): each block is followed by a 17-byte
 * trailer, type byte + a 16-byte tag of (contents, type) bound to the block's offset
 * and length under the file's MAC key (src/crypto/file-auth.ts); the 80-byte footer carries
 * a tag bound to its own offset, so the file's length is covered too. Someone without the
 * data key can change ciphertext bits (CTR is malleable) but cannot make the tag match.
 *
 * Format 1 (plaintext files, and encrypted files written before tags: "unauthenticated"):
 * 5-byte trailers (type byte, CRC-32C of contents + type) and a 64-byte footer with its own
 * CRC-32C. The CRCs catch bit rot; against an attacker they prove nothing, because CRC is
 * linear and a CTR keystream lets anyone XOR a change and its CRC correction into place.
 */

/** Format 1's trailer; kept under its old name for the tools and tests that use it. */
export const BLOCK_TRAILER_BYTES = 5;
/** Raw contents; the type byte leaves room for compression without a format change. */
export const BLOCK_TYPE_RAW = 0;

export const TABLE_FORMAT_VERSION = 2;
export const TABLE_MAGIC = Buffer.from('tdekvSST', 'latin1');
/** Format 1's footer: 3 handles × 16 + version 4 + crc 4 + magic 8. */
export const FOOTER_BYTES = 64;
/** Both formats keep version, CRC and magic in the footer's last 16 bytes, so either can be recognised. */
const VERSION_FROM_END = 16;
const CRC_FROM_END = 12;
const MAGIC_FROM_END = 8;
const HANDLES_BYTES = 48;

/** How one file lays out its tables: format 2 with the file's authenticator, or format 1. */
export interface TableLayout {
  readonly version: 1 | 2;
  readonly trailerBytes: number;
  readonly footerBytes: number;
  readonly auth: FileAuthenticator | undefined;
}

const FORMAT_1: TableLayout = { version: 1, trailerBytes: BLOCK_TRAILER_BYTES, footerBytes: FOOTER_BYTES, auth: undefined };

/** The layout of a file with `auth` (authenticated) or without (plaintext or legacy). */
export function tableLayout(auth: FileAuthenticator | undefined): TableLayout {
  return auth ? { version: 2, trailerBytes: 1 + TAG_BYTES, footerBytes: HANDLES_BYTES + TAG_BYTES + 16, auth } : FORMAT_1;
}

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

/** Block contents followed by their trailer, ready to append at `offset` of the file. */
export function blockWithTrailer(contents: Uint8Array, layout: TableLayout = FORMAT_1, offset = 0): Buffer {
  const out = Buffer.allocUnsafe(contents.length + layout.trailerBytes);
  out.set(contents, 0);
  out[contents.length] = BLOCK_TYPE_RAW;
  const covered = out.subarray(0, contents.length + 1);
  if (layout.auth) layout.auth.tag(AuthDomain.TableBlock, offset, covered).copy(out, contents.length + 1);
  else out.writeUInt32LE(crc32c(covered), contents.length + 1);
  return out;
}

/**
 * Checks a block read with its trailer (`raw` = contents + trailer) and returns the
 * contents (a view of `raw`).
 */
export function verifyBlock(raw: Buffer, handle: BlockHandle, path: string, layout: TableLayout = FORMAT_1): Buffer {
  if (raw.length !== handle.size + layout.trailerBytes) {
    throw tableCorrupted(path, `block at offset ${handle.offset} is truncated (wanted ${handle.size + layout.trailerBytes} bytes, the file has ${raw.length} there)`);
  }
  const covered = raw.subarray(0, handle.size + 1);
  if (layout.auth) {
    if (!layout.auth.verify(AuthDomain.TableBlock, handle.offset, covered, raw.subarray(handle.size + 1))) {
      throw tableCorrupted(path, `block at offset ${handle.offset} (${handle.size} bytes) fails its authentication tag (changed on disk, moved from another offset or file, or read with the wrong key)`);
    }
  } else if (raw.readUInt32LE(handle.size + 1) !== crc32c(covered)) {
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

/** The footer of a table whose footer starts at `offset` (= the file size before it). */
export function encodeFooter(f: Footer, layout: TableLayout = FORMAT_1, offset = 0): Buffer {
  const out = Buffer.alloc(layout.footerBytes);
  let at = 0;
  for (const h of [f.filter, f.index, f.properties]) {
    writeU64(out, at, h.offset);
    writeU64(out, at + 8, h.size);
    at += 16;
  }
  const versionAt = out.length - VERSION_FROM_END;
  out.writeUInt32LE(layout.version, versionAt);
  if (layout.auth) {
    // The tag covers handles and version and is bound to the footer's offset, i.e. the file's length.
    const tag = layout.auth.tag(AuthDomain.TableFooter, offset, Buffer.concat([out.subarray(0, HANDLES_BYTES), out.subarray(versionAt, versionAt + 4)]));
    tag.copy(out, HANDLES_BYTES);
  }
  const crcAt = out.length - CRC_FROM_END;
  out.writeUInt32LE(crc32c(out.subarray(0, crcAt)), crcAt);
  TABLE_MAGIC.copy(out, out.length - MAGIC_FROM_END);
  return out;
}

/**
 * Decodes the last `layout.footerBytes` of a table of `fileSize` bytes and checks that
 * every handle points inside the file before the footer.
 */
export function decodeFooter(buf: Buffer, fileSize: number, path: string, layout: TableLayout = FORMAT_1): Footer {
  if (buf.length !== layout.footerBytes) {
    throw tableCorrupted(path, `it is ${fileSize} bytes, too small to be a table (the footer alone is ${layout.footerBytes})`);
  }
  if (!buf.subarray(buf.length - MAGIC_FROM_END).equals(TABLE_MAGIC)) {
    throw tableCorrupted(path, 'its footer does not end with the table magic (not a tdekv table, truncated, or overwritten)');
  }
  // The checksum is checked before the version, so a flipped version bit reads as damage,
  // and only an intact footer from a newer writer reads as FORMAT_TOO_NEW.
  const crcAt = buf.length - CRC_FROM_END;
  if (buf.readUInt32LE(crcAt) !== crc32c(buf.subarray(0, crcAt))) {
    throw tableCorrupted(path, `its footer (the last ${layout.footerBytes} bytes) fails its checksum`);
  }
  const versionAt = buf.length - VERSION_FROM_END;
  const version = buf.readUInt32LE(versionAt);
  if (version > TABLE_FORMAT_VERSION) {
    throw new TdekvError('FORMAT_TOO_NEW', `file ${path} is in table format ${version}, written by a newer tdekv; this version reads up to format ${TABLE_FORMAT_VERSION}: upgrade tdekv to open this data dir`);
  }
  if (version < 1) throw tableCorrupted(path, `its footer names table format ${version}, which never existed`);
  if (version !== layout.version) {
    // The dictionary, which nobody can edit without the keys, says which format the file has.
    throw tableCorrupted(
      path,
      layout.auth
        ? `it was written with authentication tags, but its footer now claims the unauthenticated format ${version}: the file has been altered`
        : `its footer claims table format ${version}, but the file dictionary records it as unauthenticated (format 1)`,
    );
  }
  if (layout.auth) {
    const covered = Buffer.concat([buf.subarray(0, HANDLES_BYTES), buf.subarray(versionAt, versionAt + 4)]);
    if (!layout.auth.verify(AuthDomain.TableFooter, fileSize - buf.length, covered, buf.subarray(HANDLES_BYTES, HANDLES_BYTES + TAG_BYTES))) {
      throw tableCorrupted(path, `its footer (the last ${layout.footerBytes} bytes) fails its authentication tag (changed on disk, the file was cut or extended, or it is another file's footer)`);
    }
  }
  const handles: BlockHandle[] = [];
  const limit = fileSize - layout.footerBytes;
  for (let at = 0; at < HANDLES_BYTES; at += 16) {
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
    if (h.offset + h.size + layout.trailerBytes > limit) {
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
