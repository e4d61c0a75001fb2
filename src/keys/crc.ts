import { crc32 } from 'node:zlib';

/** CRC-32 (IEEE) from zlib: guards metadata records against torn writes and bit rot. */
export function checksum32(data: Uint8Array): number {
  return crc32(data) >>> 0;
}
