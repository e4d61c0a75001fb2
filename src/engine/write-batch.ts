import { getVarint, putVarint, readU64, varintLength, writeU64 } from './coding.js';
import { MAX_SEQUENCE, ValueKind } from './internal-key.js';
import type { BatchOp } from './types.js';
import { bufferView } from '../util/buffer-view.js';
import { TdekvError } from '../errors.js';

/**
 * A write batch as the write-ahead log holds it (one log record per batch, so a batch is
 * replayed whole or not at all):
 *
 *   [first sequence:8 LE][count:4 LE] then per op [kind:1][varint key length][key]
 *   and, for puts only, [varint value length][value].
 *
 * Op i gets sequence first + i, so sequences need not be stored per op.
 */
export const BATCH_HEADER_BYTES = 12;
const MAX_COUNT = 0xffff_ffff;

/** Exact encoded size of a batch of `ops`. */
export function batchByteSize(ops: readonly BatchOp[]): number {
  let size = BATCH_HEADER_BYTES;
  for (const op of ops) {
    size += 1 + varintLength(op.key.length) + op.key.length;
    if (op.type === 'put') size += varintLength(op.value.length) + op.value.length;
  }
  return size;
}

/**
 * The batch of `ops`, numbered from `firstSeq`. TdekvError INVALID_ARGUMENT for an op that is
 * not a put or a del of bytes, before anything is returned.
 */
export function encodeBatch(ops: readonly BatchOp[], firstSeq: number): Buffer {
  checkSequences(firstSeq, ops.length);
  // Room for every op's worst-case varints, so the builder never grows on the way (the ops
  // are not checked yet: what is not bytes counts nothing here and is refused below).
  let room = BATCH_HEADER_BYTES;
  for (const op of ops) room += 1 + 2 * MAX_LENGTH_VARINT + lengthOf(op.key) + (op.type === 'put' ? lengthOf(op.value) : 0);
  const builder = new WriteBatchBuilder(room);
  for (const op of ops) {
    if (op.type === 'put') builder.put(op.key, op.value);
    else if (op.type === 'del') builder.del(op.key);
    else {
      // The same order of checks as put and del: the key first.
      builder.del((op as { key: Uint8Array }).key);
      throw new TdekvError('INVALID_ARGUMENT', `batch operation type must be "put" or "del" (got ${JSON.stringify((op as { type: unknown }).type)})`);
    }
  }
  const out = builder.take();
  writeU64(out, 0, firstSeq);
  return out;
}

/**
 * Copies all of `bytes` into buf at `at`; returns where it ends. Whole: TypedArray.set takes
 * the source as it is, where copying a range needs a subarray (an allocation) per copy, which
 * made a builder put 2.5 times the cost of a native set of each key and value.
 */
function appendBytes(buf: Buffer, at: number, bytes: Uint8Array): number {
  const n = bytes.length;
  if (n <= 4) for (let i = 0; i < n; i++) buf[at + i] = bytes[i]!;
  else buf.set(bytes, at);
  return at + n;
}

function lengthOf(bytes: unknown): number {
  return bytes instanceof Uint8Array ? bytes.length : 0;
}

/** Bytes of a varint for a length below 2^35 (every key and value length), at most. */
const MAX_LENGTH_VARINT = 5;

/**
 * Builds an encoded batch op by op, as a caller adds them (a chained batch, the server's
 * commands in one turn): no op object per write, no array of them, and no second pass to
 * encode it. encodeBatch() is this over an array. Engine.writeBatch takes the bytes, and the
 * builder starts over.
 */
export class WriteBatchBuilder {
  /** Empty after take() until the next op: a builder that is not refilled allocates nothing more. */
  #buf: Buffer = EMPTY;
  #length = BATCH_HEADER_BYTES;
  #count = 0;
  /** Room to start a batch with: the size of the last one taken (likely the next one's), at least the initial size. */
  #startBytes: number;
  readonly #initialBytes: number;

  constructor(initialBytes = 4096) {
    this.#initialBytes = Math.max(BATCH_HEADER_BYTES, initialBytes);
    this.#startBytes = this.#initialBytes;
  }

  /** Ops added since the last take() or clear(). */
  get count(): number {
    return this.#count;
  }

  /** Encoded bytes so far, header included. */
  get byteLength(): number {
    return this.#length;
  }

  put(key: Uint8Array, value: Uint8Array): void {
    if (!(key instanceof Uint8Array)) throw new TdekvError('INVALID_ARGUMENT', `batch operation key must be a Buffer or Uint8Array (got ${typeof key})`);
    if (!(value instanceof Uint8Array)) throw new TdekvError('INVALID_ARGUMENT', `put value must be a Buffer or Uint8Array (got ${typeof value})`);
    let at = this.#room(1 + 2 * MAX_LENGTH_VARINT + key.length + value.length);
    const buf = this.#buf;
    buf[at++] = ValueKind.Value;
    at = putVarint(buf, at, key.length);
    at = appendBytes(buf, at, key);
    at = putVarint(buf, at, value.length);
    this.#length = appendBytes(buf, at, value);
  }

  del(key: Uint8Array): void {
    if (!(key instanceof Uint8Array)) throw new TdekvError('INVALID_ARGUMENT', `batch operation key must be a Buffer or Uint8Array (got ${typeof key})`);
    let at = this.#room(1 + MAX_LENGTH_VARINT + key.length);
    const buf = this.#buf;
    buf[at++] = ValueKind.Deletion;
    at = putVarint(buf, at, key.length);
    this.#length = appendBytes(buf, at, key);
  }

  /** Drops the ops added so far. */
  clear(): void {
    this.#length = BATCH_HEADER_BYTES;
    this.#count = 0;
  }

  /** The encoded batch (sequence unset), which the caller now owns; the builder starts over, empty. */
  take(): Buffer {
    if (this.#buf.length < BATCH_HEADER_BYTES) this.#buf = Buffer.allocUnsafe(BATCH_HEADER_BYTES);
    const buf = this.#buf;
    writeU64(buf, 0, 0);
    buf.writeUInt32LE(this.#count, 8);
    const out = buf.subarray(0, this.#length);
    // Sized by this batch, not by the largest ever: one huge batch must not make every later one huge.
    this.#startBytes = Math.max(this.#initialBytes, this.#length);
    this.#buf = EMPTY;
    this.clear();
    return out;
  }

  /** Makes room for one more op of at most `bytes`; returns where it starts. */
  #room(bytes: number): number {
    if (this.#count === MAX_COUNT) throw new RangeError(`write batch of more than ${MAX_COUNT} ops`);
    this.#count++;
    const need = this.#length + bytes;
    if (need > this.#buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.#buf.length * 2, this.#buf.length === 0 ? this.#startBytes : 0));
      // The header is written by take(); only the ops so far are copied.
      if (this.#buf.length > 0) this.#buf.copy(grown, BATCH_HEADER_BYTES, BATCH_HEADER_BYTES, this.#length);
      this.#buf = grown;
    }
    return this.#length;
  }
}

/**
 * Calls `visit` for each op in order, with keys and values as views of `payload` (copy them
 * to keep them past the payload's life; Memtable.add copies). Throws RangeError on malformed
 * input, possibly after visiting the ops before the bad one: a batch that fails to decode
 * means the log is damaged, and the caller refuses the whole replay.
 */
export function decodeBatch(payload: Buffer, visit: (seq: number, kind: ValueKind, key: Buffer, value: Buffer) => void): { firstSeq: number; count: number } {
  return decodeBatchAt(payload, (seq, kind, keyOff, keyLen, valueOff, valueLen) =>
    visit(seq, kind, bufferView(payload, keyOff, keyOff + keyLen), kind === ValueKind.Value ? bufferView(payload, valueOff, valueOff + valueLen) : EMPTY),
  );
}

/**
 * decodeBatch() with each op's key and value as ranges of `payload` (a deletion's value is
 * the empty range at 0): Memtable.addAt inserts them from there, with no view per op.
 */
export function decodeBatchAt(
  payload: Buffer,
  visit: (seq: number, kind: ValueKind, keyOff: number, keyLen: number, valueOff: number, valueLen: number) => void,
): { firstSeq: number; count: number } {
  if (payload.length < BATCH_HEADER_BYTES) throw new RangeError(`write batch of ${payload.length} bytes is shorter than its ${BATCH_HEADER_BYTES}-byte header`);
  const firstSeq = readU64(payload, 0);
  const count = payload.readUInt32LE(8);
  checkSequences(firstSeq, count);
  const pos = { offset: BATCH_HEADER_BYTES };
  const end = payload.length;
  for (let i = 0; i < count; i++) {
    if (pos.offset >= end) throw new RangeError(`write batch ends after ${i} of ${count} ops`);
    const kind = payload[pos.offset++]!;
    if (kind !== ValueKind.Value && kind !== ValueKind.Deletion) throw new RangeError(`write batch op ${i} has unknown kind ${kind}`);
    const keyLen = lengthPrefixed(payload, pos, end, i, 'key');
    const keyOff = pos.offset - keyLen;
    let valueOff = 0;
    let valueLen = 0;
    if (kind === ValueKind.Value) {
      valueLen = lengthPrefixed(payload, pos, end, i, 'value');
      valueOff = pos.offset - valueLen;
    }
    visit(firstSeq + i, kind, keyOff, keyLen, valueOff, valueLen);
  }
  if (pos.offset !== end) throw new RangeError(`write batch has ${end - pos.offset} bytes after its ${count} ops`);
  return { firstSeq, count };
}

const EMPTY = Buffer.alloc(0);

/** Reads a length and steps `pos` past the bytes it prefixes; returns the length. */
function lengthPrefixed(buf: Buffer, pos: { offset: number }, end: number, op: number, what: string): number {
  const len = getLength(buf, pos, end, op, what);
  const start = pos.offset;
  if (len > end - start) throw new RangeError(`write batch op ${op}: ${what} of ${len} bytes runs past the end of the batch`);
  pos.offset = start + len;
  return len;
}

function getLength(buf: Buffer, pos: { offset: number }, end: number, op: number, what: string): number {
  // Inline fast path for one-byte lengths (keys and small values), the common case.
  const b = pos.offset < end ? buf[pos.offset]! : 0x80;
  if (b < 0x80) {
    pos.offset++;
    return b;
  }
  try {
    return getVarint(buf, pos, end);
  } catch (err) {
    throw new RangeError(`write batch op ${op}: ${what} length is malformed (${(err as Error).message})`);
  }
}

function checkSequences(firstSeq: number, count: number): void {
  if (!Number.isSafeInteger(firstSeq) || firstSeq < 0) throw new RangeError(`write batch first sequence must be a non-negative safe integer, got ${firstSeq}`);
  if (count > MAX_COUNT) throw new RangeError(`write batch of ${count} ops exceeds the ${MAX_COUNT}-op limit`);
  if (count > 0 && count - 1 > MAX_SEQUENCE - firstSeq) throw new RangeError(`write batch sequences ${firstSeq}.. run past the largest sequence number`);
}

/** Sets the first sequence of an encoded batch (batches are encoded when submitted, numbered when logged). */
export function setBatchSequence(batch: Buffer, firstSeq: number): void {
  checkSequences(firstSeq, batch.readUInt32LE(8));
  writeU64(batch, 0, firstSeq);
}

export function batchCount(batch: Buffer): number {
  return batch.readUInt32LE(8);
}

/** One batch holding the ops of `batches` in order (a commit group becomes one log record). */
export function concatBatches(batches: readonly Buffer[]): Buffer {
  let count = 0;
  let size = BATCH_HEADER_BYTES;
  for (const b of batches) {
    count += b.readUInt32LE(8);
    size += b.length - BATCH_HEADER_BYTES;
  }
  if (count > MAX_COUNT) throw new RangeError(`write batch of ${count} ops exceeds the ${MAX_COUNT}-op limit`);
  const out = Buffer.allocUnsafe(size);
  writeU64(out, 0, 0);
  out.writeUInt32LE(count, 8);
  let off = BATCH_HEADER_BYTES;
  for (const b of batches) off += b.copy(out, off, BATCH_HEADER_BYTES);
  return out;
}
