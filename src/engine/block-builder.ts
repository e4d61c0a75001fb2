import { ByteSink, putVarint } from './coding.js';
import { copyBytes } from './compare-bytes.js';

/**
 * Builds one block of sorted entries (LevelDB's layout). Consecutive internal keys share
 * long prefixes, so each entry stores only what differs from the previous key; every
 * `restartInterval` entries a key is stored whole (a restart point) so readers can binary
 * search and walk backwards without decoding the block from its start.
 *
 *   entry    := varint shared, varint unshared, varint valueLength, key[shared..], value
 *   trailer  := uint32 LE restart offset × n, uint32 LE n
 *
 * The caller guarantees strictly increasing internal-key order: checking it here would
 * cost a full comparison per entry, and the table builder already checks it.
 */
export class BlockBuilder {
  readonly #restartInterval: number;
  readonly #sink: ByteSink;
  readonly #restarts: number[] = [0];
  /** Entries since the last restart point. */
  #counter = 0;
  #entries = 0;
  #lastKey: Buffer = Buffer.allocUnsafe(64);
  #lastKeyLength = 0;
  #finished = false;

  constructor(restartInterval: number, initialCapacity = 4096) {
    if (!Number.isInteger(restartInterval) || restartInterval < 1) throw new RangeError(`block restart interval must be a positive integer (got ${restartInterval})`);
    this.#restartInterval = restartInterval;
    this.#sink = new ByteSink(initialCapacity);
  }

  get empty(): boolean {
    return this.#entries === 0;
  }

  get entries(): number {
    return this.#entries;
  }

  add(internalKey: Buffer, value: Uint8Array): void {
    this.addEntry(internalKey, internalKey.length, value, 0, value.length);
  }

  /** Appends key[0, keyLength) and value[valueStart, valueEnd): a table builder's scratch key and a memtable's slab, with no view of either. */
  addEntry(key: Buffer, keyLength: number, value: Uint8Array, valueStart: number, valueEnd: number): void {
    if (this.#finished) throw new Error('BlockBuilder.add after finish() without reset()');
    const internalKey = key;
    let shared = 0;
    if (this.#counter < this.#restartInterval) {
      const last = this.#lastKey;
      const n = Math.min(this.#lastKeyLength, keyLength);
      while (shared < n && last[shared] === internalKey[shared]) shared++;
    } else {
      this.#restarts.push(this.#sink.length);
      this.#counter = 0;
    }
    const unshared = keyLength - shared;
    const sink = this.#sink;
    // Written in place rather than through ByteSink.bytes: no subarray per entry.
    const valueLength = valueEnd - valueStart;
    sink.reserve(3 * 8 + unshared + valueLength);
    let at = putVarint(sink.buf, sink.length, shared);
    at = putVarint(sink.buf, at, unshared);
    at = putVarint(sink.buf, at, valueLength);
    at += copyBytes(internalKey, shared, keyLength, sink.buf, at);
    at += copyBytes(value, valueStart, valueEnd, sink.buf, at);
    sink.length = at;

    if (this.#lastKey.length < keyLength) {
      const grown = Buffer.allocUnsafe(Math.max(keyLength, this.#lastKey.length * 2));
      this.#lastKey.copy(grown, 0, 0, shared);
      this.#lastKey = grown;
    }
    copyBytes(internalKey, shared, keyLength, this.#lastKey, shared);
    this.#lastKeyLength = keyLength;
    this.#counter++;
    this.#entries++;
  }

  /** Size of the block if it were finished now. */
  currentSizeEstimate(): number {
    return this.#sink.length + this.#restarts.length * 4 + 4;
  }

  /**
   * Appends the restart array and returns the block contents. The buffer is a view of the
   * builder's memory: use (or copy) it before reset().
   */
  finish(): Buffer {
    if (!this.#finished) {
      const sink = this.#sink;
      sink.reserve(this.#restarts.length * 4 + 4);
      for (const r of this.#restarts) sink.u32(r);
      sink.u32(this.#restarts.length);
      this.#finished = true;
    }
    return this.#sink.view();
  }

  reset(): void {
    this.#sink.reset();
    this.#restarts.length = 1;
    this.#counter = 0;
    this.#entries = 0;
    this.#lastKeyLength = 0;
    this.#finished = false;
  }
}
