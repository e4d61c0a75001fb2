import type { ValueKind } from './internal-key.js';

/**
 * The engine's internal cursor over versioned entries, in internal-key order (user key
 * ascending, sequence descending). Memtables, blocks, tables, levels and the merge of them
 * all implement it, so the database iterator works on any of them.
 *
 * All methods are synchronous: reads come from memory or page-cached preads. Buffers
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
}
