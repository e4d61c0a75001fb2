/** The engine's public surface, used by the abstract-level class, the server and benches. */

export type BatchOp = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array };

export interface WriteOptions {
  /** Acknowledge only after the WAL is fsynced (default false: survives a process crash, not a power loss). */
  sync?: boolean;
}

/** A consistent point-in-time view; release it when done so compaction can drop old versions. */
export interface Snapshot {
  readonly sequence: number;
  release(): void;
}

export interface ReadOptions {
  snapshot?: Snapshot;
}

export interface RangeOptions {
  gt?: Uint8Array;
  gte?: Uint8Array;
  lt?: Uint8Array;
  lte?: Uint8Array;
}

export interface IteratorOptions extends RangeOptions, ReadOptions {
  reverse?: boolean;
  /** Maximum entries returned; -1 or undefined for no limit. */
  limit?: number;
}

/** A cursor over user keys at one snapshot. Synchronous: data comes from memory or page-cached reads. */
export interface EngineIterator {
  /** Next entry in the iterator's direction, or undefined at the end of the range. */
  next(): [key: Buffer, value: Buffer] | undefined;
  /**
   * Up to `max` entries, as next() returns them, except that a table block not in the block
   * cache is read on the thread pool instead of on the calling thread. Fewer only at the end
   * of the range, or when the iterator was closed meanwhile.
   */
  nextBatch(max: number): Promise<Array<[key: Buffer, value: Buffer]>>;
  /** Repositions at the first key at or after `target` (at or before, when reverse), within the range. */
  seek(target: Uint8Array): void;
  close(): void;
}
