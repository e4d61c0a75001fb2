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
  #key: Buffer | undefined;
  #previousSeq = 0;

  /** `smallestSnapshot`: the oldest sequence a reader may read at; MAX_SEQUENCE at recovery, when no reader exists yet. */
  constructor(smallestSnapshot: number, isBottommost?: (userKey: Buffer) => boolean) {
    this.#smallestSnapshot = smallestSnapshot;
    this.#isBottommost = isBottommost;
  }

  /** Call once per entry, in order; true when the entry is left out. */
  dropsVersion(userKey: Buffer, seq: number, kind: ValueKind): boolean {
    const previous = this.#key;
    const sameKey = previous !== undefined && userKey.length === previous.length && compareBytes(userKey, 0, userKey.length, previous) === 0;
    if (!sameKey) this.#key = userKey;
    const previousSeq = this.#previousSeq;
    this.#previousSeq = seq;
    if (sameKey && previousSeq <= this.#smallestSnapshot) return true;
    return kind === ValueKind.Deletion && seq <= this.#smallestSnapshot && this.#isBottommost !== undefined && this.#isBottommost(userKey);
  }
}
