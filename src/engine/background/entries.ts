import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { TdekvError } from '../../errors.js';
import { WorkSlice } from '../background-job.js';
import { getVarint, putVarint, varintLength } from '../coding.js';
import type { ValueKind } from '../internal-key.js';
import type { InternalIterator } from '../iterator.js';

/**
 * A memtable's entries in one ArrayBuffer, so a flush can hand them to the worker thread in
 * a postMessage transfer list (moved, not copied): per entry `[key length varint][key]
 * [seq: f64][kind: u8][value length varint][value]`, in the memtable's internal-key order.
 */
export interface SerializedEntries {
  buffer: ArrayBuffer;
  /** Bytes used; the buffer may be longer. */
  length: number;
  entries: number;
}

/**
 * Copies the entries of an immutable memtable, in slices of `sliceMs` between turns of the
 * event loop (a 16 MiB memtable is tens of ms of copying, which must not stall requests).
 */
export async function serializeEntries(mem: { iterator(): InternalIterator; approximateBytes: number }, sliceMs: number): Promise<SerializedEntries> {
  let buf = Buffer.from(new ArrayBuffer(Math.max(4096, mem.approximateBytes)));
  let at = 0;
  let entries = 0;
  const slice = new WorkSlice(() => sliceMs);
  const it = mem.iterator();
  try {
    for (it.seekToFirst(); it.valid(); it.next()) {
      const key = it.userKey();
      const value = it.value();
      const need = varintLength(key.length) + key.length + 9 + varintLength(value.length) + value.length;
      if (at + need > buf.length) {
        // Not an ArrayBuffer of the pool: the whole buffer is transferred.
        const bigger = Buffer.from(new ArrayBuffer(Math.max(buf.length * 2, at + need)));
        buf.copy(bigger, 0, 0, at);
        buf = bigger;
      }
      at = putVarint(buf, at, key.length);
      at += key.copy(buf, at);
      buf.writeDoubleLE(it.seq(), at);
      buf[at + 8] = it.kind();
      at = putVarint(buf, at + 9, value.length);
      at += value.copy(buf, at);
      entries++;
      if (slice.due()) {
        await yieldToEventLoop();
        slice.restart();
      }
    }
  } finally {
    it.close();
  }
  return { buffer: buf.buffer as ArrayBuffer, length: at, entries };
}

/** The forward cursor the flush runner reads serialized entries with (it only scans). */
export class EntriesIterator implements InternalIterator {
  readonly #buf: Buffer;
  readonly #pos = { offset: 0 };
  #valid = false;
  #key: Buffer = Buffer.alloc(0);
  #seq = 0;
  #kind = 0 as ValueKind;
  #value: Buffer = Buffer.alloc(0);

  constructor(entries: SerializedEntries) {
    this.#buf = Buffer.from(entries.buffer, 0, entries.length);
  }

  valid(): boolean {
    return this.#valid;
  }

  seekToFirst(): void {
    this.#pos.offset = 0;
    this.next();
  }

  next(): void {
    const buf = this.#buf;
    const pos = this.#pos;
    if (pos.offset >= buf.length) {
      this.#valid = false;
      return;
    }
    const keyLength = getVarint(buf, pos);
    this.#key = buf.subarray(pos.offset, pos.offset + keyLength);
    pos.offset += keyLength;
    this.#seq = buf.readDoubleLE(pos.offset);
    this.#kind = buf[pos.offset + 8]! as ValueKind;
    pos.offset += 9;
    const valueLength = getVarint(buf, pos);
    this.#value = buf.subarray(pos.offset, pos.offset + valueLength);
    pos.offset += valueLength;
    this.#valid = true;
  }

  userKey(): Buffer {
    return this.#key;
  }

  seq(): number {
    return this.#seq;
  }

  kind(): ValueKind {
    return this.#kind;
  }

  value(): Buffer {
    return this.#value;
  }

  seekToLast(): void {
    throw forwardOnly();
  }

  seek(): void {
    throw forwardOnly();
  }

  seekForPrev(): void {
    throw forwardOnly();
  }

  prev(): void {
    throw forwardOnly();
  }

  close(): void {}
}

function forwardOnly(): TdekvError {
  return new TdekvError('INVALID_ARGUMENT', 'serialized memtable entries are read front to back only (by a flush)');
}
