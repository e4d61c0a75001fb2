import type { Snapshot } from './types.js';

/**
 * Live snapshots by sequence number. Compaction may drop a version only when no snapshot
 * can see it, so it asks for the oldest one.
 */
export class SnapshotList {
  readonly #counts = new Map<number, number>();

  create(sequence: number): Snapshot {
    this.#counts.set(sequence, (this.#counts.get(sequence) ?? 0) + 1);
    let released = false;
    return {
      sequence,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.#counts.get(sequence) ?? 1) - 1;
        if (n <= 0) this.#counts.delete(sequence);
        else this.#counts.set(sequence, n);
      },
    };
  }

  /** The oldest live snapshot's sequence, or `fallback` (the last sequence) when there is none. */
  oldest(fallback: number): number {
    let min = fallback;
    for (const s of this.#counts.keys()) if (s < min) min = s;
    return min;
  }

  get size(): number {
    let n = 0;
    for (const c of this.#counts.values()) n += c;
    return n;
  }
}
