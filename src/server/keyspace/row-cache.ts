/**
 * Recently read and written engine entries, by key: RocksDB's row cache. A hot key is then
 * one Map lookup instead of a walk down the memtable and the table levels (filters, index
 * block, data block). Absent keys are cached too (as null), because SET must look up the
 * key it replaces.
 *
 * Eviction is generational rather than strict LRU: entries go to a young map; when it holds
 * half the budget it becomes the old map (the previous old one is dropped), and a hit in the
 * old map moves the entry back to the young one. That costs no bookkeeping per hit.
 */
const ENTRY_OVERHEAD = 64;

export class RowCache {
  readonly #halfBudget: number;
  #young = new Map<string, Buffer | null>();
  #old = new Map<string, Buffer | null>();
  #youngBytes = 0;
  hits = 0;
  misses = 0;

  constructor(budgetBytes: number) {
    this.#halfBudget = Math.floor(budgetBytes / 2);
  }

  get enabled(): boolean {
    return this.#halfBudget > 0;
  }

  /** The cached value, null for "known absent", undefined when not cached. */
  get(k: string): Buffer | null | undefined {
    const young = this.#young.get(k);
    if (young !== undefined) {
      this.hits++;
      return young;
    }
    const old = this.#old.get(k);
    if (old === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.set(k, old);
    return old;
  }

  set(k: string, value: Buffer | null): void {
    if (this.#halfBudget === 0) return;
    this.#young.set(k, value);
    this.#youngBytes += k.length + (value?.length ?? 0) + ENTRY_OVERHEAD;
    if (this.#youngBytes > this.#halfBudget) {
      this.#old = this.#young;
      this.#young = new Map();
      this.#youngBytes = 0;
    }
  }

  clear(): void {
    this.#young = new Map();
    this.#old = new Map();
    this.#youngBytes = 0;
  }

  get entries(): number {
    return this.#young.size + this.#old.size;
  }
}
