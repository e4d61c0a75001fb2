/**
 * SCAN and HSCAN cursors. Redis encodes a hash-table position in its cursor; tdekv walks
 * keys in order, so a cursor stands for "the last key returned". Clients treat cursors as
 * 64-bit numbers, so the server keeps the key and hands out a number for it. The table is
 * bounded: the oldest cursors are forgotten, and a forgotten cursor is an error rather than
 * a restart, so a client never silently misses or repeats keys.
 */
export class ScanCursors {
  readonly #positions = new Map<number, { scope: string; after: Buffer }>();
  readonly #max: number;
  #next = 1;

  constructor(max = 100_000) {
    this.#max = max;
  }

  /** A new cursor that resumes after `after` within `scope` (the SCAN kind and key). */
  save(scope: string, after: Buffer): number {
    const id = this.#next++;
    this.#positions.set(id, { scope, after: Buffer.from(after) });
    if (this.#positions.size > this.#max) {
      const oldest = this.#positions.keys().next().value as number;
      this.#positions.delete(oldest);
    }
    return id;
  }

  /** 'start' for cursor 0, the key to resume after, or 'unknown'. */
  resume(scope: string, cursor: number): Buffer | 'start' | 'unknown' {
    if (cursor === 0) return 'start';
    const p = this.#positions.get(cursor);
    if (p === undefined || p.scope !== scope) return 'unknown';
    return p.after;
  }
}
