import { crc32c as nativeCrc32c } from '@node-rs/crc32';

/**
 * CRC-32C (Castagnoli), the checksum LevelDB and RocksDB put on every log record and
 * block. The native implementation uses the CPU's CRC instruction: checksums sit on the
 * hot path of every read and write, where a table-driven JS loop would cost more than the
 * decryption.
 */
export function crc32c(data: Uint8Array, initial = 0): number {
  return nativeCrc32c(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength), initial) >>> 0;
}
