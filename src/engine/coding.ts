/** Varints and fixed-width integers for the engine's on-disk formats (all little-endian). */

/** Bytes a varint of `v` takes (v a non-negative safe integer). */
export function varintLength(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes `v` as a varint at `offset`; returns the offset after it. */
export function putVarint(buf: Buffer, offset: number, v: number): number {
  while (v >= 0x80) {
    buf[offset++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[offset++] = v;
  return offset;
}

/**
 * Reads a varint at `offset`. Returns the value and stores the next offset in `pos.offset`,
 * so hot loops decode without allocating. Throws RangeError past `end` or past 53 bits:
 * callers turn that into a DATA_CORRUPTED error naming their file.
 */
export function getVarint(buf: Buffer, pos: { offset: number }, end = buf.length): number {
  let result = 0;
  let mul = 1;
  let off = pos.offset;
  for (;;) {
    if (off >= end) throw new RangeError('varint runs past the end');
    const b = buf[off++]!;
    result += (b & 0x7f) * mul;
    if (b < 0x80) break;
    mul *= 128;
    if (mul > 2 ** 49) throw new RangeError('varint too long');
  }
  pos.offset = off;
  return result;
}

/** A growable output buffer for building blocks and records without many small allocations. */
export class ByteSink {
  buf: Buffer;
  length = 0;

  constructor(initial = 4096) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  reserve(extra: number): void {
    if (this.length + extra <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + extra));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  varint(v: number): void {
    this.reserve(8);
    this.length = putVarint(this.buf, this.length, v);
  }

  u8(v: number): void {
    this.reserve(1);
    this.buf[this.length++] = v;
  }

  u32(v: number): void {
    this.reserve(4);
    this.buf.writeUInt32LE(v >>> 0, this.length);
    this.length += 4;
  }

  /** Safe integers only. */
  u64(v: number): void {
    this.reserve(8);
    writeU64(this.buf, this.length, v);
    this.length += 8;
  }

  bytes(data: Uint8Array, start = 0, end = data.length): void {
    const n = end - start;
    this.reserve(n);
    this.buf.set(data.subarray(start, end), this.length);
    this.length += n;
  }

  /** Varint length prefix, then the bytes. */
  lengthPrefixed(data: Uint8Array): void {
    this.varint(data.length);
    this.bytes(data);
  }

  /** A view of what was written (shares memory until the sink is reset or grows). */
  view(): Buffer {
    return this.buf.subarray(0, this.length);
  }

  /** A copy of what was written. */
  copy(): Buffer {
    return Buffer.from(this.view());
  }

  reset(): void {
    this.length = 0;
  }
}

/** Safe integers only (53 bits). */
export function writeU64(buf: Buffer, offset: number, v: number): void {
  buf.writeUInt32LE(v % 0x1_0000_0000, offset);
  buf.writeUInt32LE(Math.floor(v / 0x1_0000_0000), offset + 4);
}

/** Throws RangeError when the value does not fit in 53 bits. */
export function readU64(buf: Buffer, offset: number): number {
  const hi = buf.readUInt32LE(offset + 4);
  if (hi > 0x1f_ffff) throw new RangeError('64-bit value exceeds 2^53');
  return hi * 0x1_0000_0000 + buf.readUInt32LE(offset);
}
