import { compareBytes } from './compare-bytes.js';
import { TRAILER_BYTES } from './internal-key.js';
import type { FileMeta } from './version-edit.js';

/** Bytewise compare of the user-key part of an internal key against a user key. */
export function compareUserKeyOf(ikey: Buffer, userKey: Buffer): number {
  return compareBytes(ikey, 0, ikey.length - TRAILER_BYTES, userKey);
}

/** Compare of two internal keys' user-key parts. */
export function compareUserParts(a: Buffer, b: Buffer): number {
  return compareBytes(a, 0, a.length - TRAILER_BYTES, b.subarray(0, b.length - TRAILER_BYTES));
}

/**
 * An immutable set of live files per level. Level 0 is ordered newest first (its files may
 * overlap); deeper levels are sorted by key and do not overlap. Readers pin a version while
 * they use its files, so compaction never deletes a file someone may still open.
 */
export class Version {
  readonly levels: ReadonlyArray<readonly FileMeta[]>;
  refs = 0;

  constructor(levels: ReadonlyArray<readonly FileMeta[]>) {
    this.levels = levels;
  }

  ref(): void {
    this.refs++;
  }

  levelBytes(level: number): number {
    let n = 0;
    for (const f of this.levels[level] ?? []) n += f.size;
    return n;
  }

  fileCount(level: number): number {
    return this.levels[level]?.length ?? 0;
  }

  /** The files of a level > 0 whose range may hold userKey (at most one). */
  fileFor(level: number, userKey: Buffer): FileMeta | undefined {
    const files = this.levels[level]!;
    let lo = 0;
    let hi = files.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareUserKeyOf(files[mid]!.largest, userKey) < 0) lo = mid + 1;
      else hi = mid;
    }
    const f = files[lo];
    return f && compareUserKeyOf(f.smallest, userKey) <= 0 ? f : undefined;
  }

  /** Files of a level overlapping the user-key range [begin, end] (undefined = unbounded). */
  overlapping(level: number, begin: Buffer | undefined, end: Buffer | undefined): FileMeta[] {
    return (this.levels[level] ?? []).filter(
      (f) => (begin === undefined || compareUserKeyOf(f.largest, begin) >= 0) && (end === undefined || compareUserKeyOf(f.smallest, end) <= 0),
    );
  }

  allFiles(): FileMeta[] {
    return this.levels.flat();
  }
}
