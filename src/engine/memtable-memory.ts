/**
 * The arrays of a flushed memtable, handed to the next one instead of being left to the GC.
 *
 * Why: memory the process has not touched yet costs a page fault per 4 KiB on first write.
 * On the 2-vCPU VMs this project is measured on that is ~11 µs a page (2.7 ms a MiB): a
 * 16 MiB memtable's node records, key arena, value slabs and index faulted in ~50 ms of the
 * writer's thread, and page faults were the main thread's largest single cost in a bulk load
 * and a tenth of a pipelined SET (docs/engine.md, "Memtable memory"). A memtable built on
 * this memory writes to pages that are already there.
 *
 * A memtable gives its memory up (Memtable.retire) only once nothing can read it again: it has
 * been flushed and installed, and no iterator over it is open. The node records and the index
 * are zeroed up to what was used (a node's links and an empty slot read as 0); keys, values
 * and staged ids are always written before they are read, so they are taken as they are.
 */
export interface MemtableMemory {
  /** Node records; words [0, linksUsed) were written and are zeroed before reuse. */
  readonly links: Int32Array;
  readonly linksUsed: number;
  readonly keys: Buffer;
  /** Value slabs of the standard size (entries with their own allocation are not kept). */
  readonly slabs: Buffer[];
  readonly staged: Int32Array;
  readonly index: Int32Array;
  readonly filter: Uint32Array;
}

/**
 * Whether a retired array of `length` serves a new memtable that asks for `wanted`: at least
 * 90 % of it (fresh sizes carry a quarter of headroom, so that still leaves an eighth over the
 * last memtable's use), and at most twice it, so that one unusual memtable (a huge key, a
 * burst of tiny entries) does not pin its oversized array in every memtable after it.
 */
export function reusable(length: number, wanted: number): boolean {
  return length >= wanted * 0.9 && length <= wanted * 2;
}
