import type { ValueKind } from './internal-key.js';

/**
 * The engine's internal cursor over versioned entries, in internal-key order (user key
 * ascending, sequence descending). Memtables, blocks, tables, levels and the merge of them
 * all implement it, so the database iterator works on any of them.
 *
 * All methods are synchronous: reads come from memory or page-cached preads. A caller that
 * may wait (an async iterator) asks readBeforeStep/readBeforeSeek first, so that a block not
 * in the cache is read on the thread pool instead. Buffers
 * returned by userKey()/value() stay valid after the cursor moves (implementations return
 * subarrays of immutable blocks or stored buffers, never a reused scratch buffer).
 * A damaged block throws a TdekvError('DATA_CORRUPTED') naming the file.
 */
export interface InternalIterator {
  valid(): boolean;
  seekToFirst(): void;
  seekToLast(): void;
  /** First entry at or after (userKey, seq) in internal order. */
  seek(userKey: Uint8Array, seq: number): void;
  /** Last entry at or before (userKey, seq) in internal order. */
  seekForPrev(userKey: Uint8Array, seq: number): void;
  next(): void;
  prev(): void;
  userKey(): Buffer;
  seq(): number;
  kind(): ValueKind;
  value(): Buffer;
  /** Releases what the cursor pins (table handles, cache entries). Idempotent. */
  close(): void;
  /**
   * The block read that the next next() (`forward`) or prev() would make synchronously,
   * started on the thread pool: once it settles, that move reads from memory. Undefined when
   * the move needs no read (or the cursor cannot tell: the move then reads as always);
   * EXHAUSTS when the move leaves the cursor with no entry (a level then reads ahead into its
   * next file). Optional: memtables never read.
   */
  readBeforeStep?(forward: boolean): StepRead;
  /** The same for a seek, before it is made: the block(s) it would land in. */
  readBeforeSeek?(target: SeekTarget): Promise<void> | undefined;
}

/**
 * Shared by the table cursors under one database iterator: how many of them sit on the first
 * or last entry of a block, where their next move may need a read. While it is 0 no move can,
 * and the iterator skips asking (the question costs a chain of calls on every move).
 */
export interface BlockEdges {
  count: number;
}

/** See InternalIterator.readBeforeStep. */
export const EXHAUSTS = 1;
export type StepRead = Promise<void> | undefined | typeof EXHAUSTS;

/** A positioning move: seekToFirst, seekToLast, seek or seekForPrev (with its target). */
export type SeekTarget =
  | { readonly to: 'first' | 'last' }
  | { readonly to: 'at-or-after' | 'at-or-before'; readonly userKey: Uint8Array; readonly seq: number };

/** Moves `it` as `target` says. */
export function seekTo(it: InternalIterator, target: SeekTarget): void {
  switch (target.to) {
    case 'first':
      return it.seekToFirst();
    case 'last':
      return it.seekToLast();
    case 'at-or-after':
      return it.seek(target.userKey, target.seq);
    case 'at-or-before':
      return it.seekForPrev(target.userKey, target.seq);
  }
}

/** One promise for several reads (undefined when there are none). */
export function allReads(reads: ReadonlyArray<Promise<void> | undefined>): Promise<void> | undefined {
  const pending = reads.filter((r): r is Promise<void> => r !== undefined);
  if (pending.length === 0) return undefined;
  if (pending.length === 1) return pending[0];
  return Promise.all(pending).then(() => undefined);
}
