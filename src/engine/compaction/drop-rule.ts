import { compareBytes } from '../compare-bytes.js';
import { ValueKind } from '../internal-key.js';

/**
 * The one rule for which versions a flush or a compaction leaves out of its output, fed the
 * entries in internal-key order (user key ascending, newest version first):
 * - a version hidden by a newer version of its key that every snapshot sees can never be
 *   read again (RocksDB's flush and compaction drop it the same way);
 * - a tombstone every snapshot sees, with nothing older of its key left below the output
 *   (`isBottommost`), hides nothing. A flush passes none: level 0 always has levels below.
 */
export class DropRule {
  readonly #smallestSnapshot: number;
  readonly #isBottommost: ((userKey: Buffer) => boolean) | undefined;
  /** The previous entry's user key: bytes [#start, #end) of #key (none before the first entry). */
  #key: Buffer | undefined;
  #start = 0;
  #end = 0;
  #previousSeq = 0;

  /** `smallestSnapshot`: the oldest sequence a reader may read at; MAX_SEQUENCE at recovery, when no reader exists yet. */
  constructor(smallestSnapshot: number, isBottommost?: (userKey: Buffer) => boolean) {
    this.#smallestSnapshot = smallestSnapshot;
    this.#isBottommost = isBottommost;
  }

  /** Call once per entry, in order; true when the entry is left out. */
  dropsVersion(userKey: Buffer, seq: number, kind: ValueKind): boolean {
    return this.dropsVersionAt(userKey, 0, userKey.length, seq, kind);
  }

  /**
   * dropsVersion() of the user key key[start, end), read where it lies: the bytes must stay
   * unchanged until the next call (a flush passes a memtable's key arena).
   */
  dropsVersionAt(key: Buffer, start: number, end: number, seq: number, kind: ValueKind): boolean {
    const previous = this.#key;
    const sameKey = previous !== undefined && end - start === this.#end - this.#start && compareBytes(key, start, end, previous, this.#start, this.#end) === 0;
    if (!sameKey) {
      this.#key = key;
      this.#start = start;
      this.#end = end;
    }
    const previousSeq = this.#previousSeq;
    this.#previousSeq = seq;
    if (sameKey && previousSeq <= this.#smallestSnapshot) return true;
    return kind === ValueKind.Deletion && seq <= this.#smallestSnapshot && this.#isBottommost !== undefined && this.#isBottommost(key.subarray(start, end));
  }
}
