/** Little helpers for the fixed little-endian binary formats of the metadata files. */

export class BinaryWriter {
  #chunks: Buffer[] = [];
  #length = 0;

  u8(v: number): this {
    return this.#push(Buffer.of(v));
  }

  u16(v: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeUInt16LE(v);
    return this.#push(b);
  }

  u32(v: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(v >>> 0);
    return this.#push(b);
  }

  /** Safe integers only: ids, counters and timestamps all fit in 53 bits. */
  u64(v: number): this {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64LE(BigInt(v));
    return this.#push(b);
  }

  bytes(v: Uint8Array): this {
    return this.#push(Buffer.from(v));
  }

  /** u16 length prefix. */
  string(v: string): this {
    const b = Buffer.from(v, 'utf8');
    return this.u16(b.length).#push(b);
  }

  /** u32 length prefix. */
  blob(v: Uint8Array): this {
    return this.u32(v.length).bytes(v);
  }

  get length(): number {
    return this.#length;
  }

  finish(): Buffer {
    return Buffer.concat(this.#chunks, this.#length);
  }

  #push(b: Buffer): this {
    this.#chunks.push(b);
    this.#length += b.length;
    return this;
  }
}

/** Thrown when a field would run past the end of the buffer. */
export class TruncatedInput extends Error {
  constructor(readonly offset: number) {
    super(`input ends early at offset ${offset}`);
    this.name = 'TruncatedInput';
  }
}

export class BinaryReader {
  offset = 0;

  constructor(readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  u8(): number {
    return this.#take(1).readUInt8();
  }

  u16(): number {
    return this.#take(2).readUInt16LE();
  }

  u32(): number {
    return this.#take(4).readUInt32LE();
  }

  u64(): number {
    const v = this.#take(8).readBigUInt64LE();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new TruncatedInput(this.offset - 8);
    return Number(v);
  }

  bytes(n: number): Buffer {
    return this.#take(n);
  }

  string(): string {
    return this.#take(this.u16()).toString('utf8');
  }

  blob(): Buffer {
    return this.#take(this.u32());
  }

  #take(n: number): Buffer {
    if (this.offset + n > this.buf.length) throw new TruncatedInput(this.offset);
    const out = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }
}
