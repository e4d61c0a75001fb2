import type { BlockCache } from './block-cache.js';
import { Block } from './block.js';

/**
 * New tables' data blocks, handed to the block cache when the tables are installed (RocksDB's
 * prepopulate_block_cache). Without it, the first read of each block of a flushed or compacted
 * table pays a pread, a CTR decryption and an HMAC check, and node:crypto's cipher and HMAC
 * objects cost about 2.5 µs each to create: a cold 4 KiB block was ~10 µs of crypto, where a
 * plaintext table pays a CRC. After a compaction the input tables' cached blocks are dropped
 * with the tables, so reads of data that was hot went cold until each block was read again.
 *
 * The plaintext is what the table builder already made: the pieces it handed to the file,
 * before encryption. Nothing is read back or decrypted, and nothing is copied on the worker
 * thread (the pieces are transferred to the main thread, not cloned; the main thread copies
 * each block out of its piece, as a read would have made it a buffer of its own).
 */
export interface WarmTable {
  number: number;
  /** The table's plaintext, in the pieces it was written in, each at its file offset. */
  chunks: Array<{ offset: number; bytes: Uint8Array }>;
  /** Its data blocks, as offset and size pairs (contents without trailers). */
  blocks: number[];
}

/** How many bytes of plaintext a job may still keep, and the tables it kept them for. */
export class WarmBlocks {
  bytesLeft: number;
  readonly tables: WarmTable[] = [];

  constructor(bytes: number) {
    this.bytesLeft = Math.max(0, Math.floor(bytes));
  }

  /** The pieces' memory, to move to another thread instead of copying it (each piece owns its ArrayBuffer). */
  transferList(): ArrayBuffer[] {
    const out: ArrayBuffer[] = [];
    for (const t of this.tables) for (const c of t.chunks) out.push(c.bytes.buffer as ArrayBuffer);
    return out;
  }
}

/**
 * A piece kept by the table builder: the bytes themselves when they own their memory (a
 * batch of blocks), else a copy that does (a small piece may be a slice of Buffer's shared
 * pool, which must not be transferred).
 */
export function ownedPiece(bytes: Buffer): Buffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer)) return bytes;
  const own = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(own);
  return own;
}

/**
 * Puts the kept data blocks of installed tables in the cache, as a read of each would have.
 * Returns the number of blocks put. `pathOf` names a table's file (for error messages of
 * later reads).
 */
export function warmBlockCache(cache: BlockCache, tables: readonly WarmTable[], pathOf: (number: number) => string): number {
  let put = 0;
  for (const t of tables) {
    const path = pathOf(t.number);
    let c = 0;
    for (let i = 0; i + 1 < t.blocks.length; i += 2) {
      const offset = t.blocks[i]!;
      const size = t.blocks[i + 1]!;
      // Pieces and blocks are both in file order.
      while (c < t.chunks.length && t.chunks[c]!.offset + t.chunks[c]!.bytes.length <= offset) c++;
      const chunk = t.chunks[c];
      if (chunk === undefined) break;
      if (offset < chunk.offset || offset + size > chunk.offset + chunk.bytes.length) continue;
      // Copied out: a view would keep the whole piece (up to a megabyte) alive for as long as
      // any one of its blocks stays cached, beyond what the cache counts.
      const at = chunk.bytes.byteOffset + offset - chunk.offset;
      const data = Buffer.allocUnsafeSlow(size);
      data.set(new Uint8Array(chunk.bytes.buffer, at, size));
      const block = new Block(data, path, offset);
      cache.set(t.number, offset, block, block.size);
      put++;
    }
  }
  return put;
}
