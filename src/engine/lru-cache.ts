interface Entry<V> {
  value: V;
  charge: number;
}

/**
 * A least-recently-used cache bounded by the sum of its entries' charges (bytes for blocks,
 * 1 per open table). A Map keeps insertion order, so re-inserting on every hit makes its
 * first key the least recently used one: no linked list to maintain.
 *
 * `onEvict` sees every value that leaves the cache for any reason (evicted for room,
 * replaced, deleted, cleared, or refused because it alone exceeds the capacity), so a
 * cache of open tables can close exactly the readers it drops.
 */
export class LruCache<V, K extends string | number = string> {
  readonly #map = new Map<K, Entry<V>>();
  readonly #capacity: number;
  readonly #onEvict: ((key: K, value: V) => void) | undefined;
  #usage = 0;

  /** A capacity of 0 disables caching: set() keeps nothing. */
  constructor(capacity: number, onEvict?: (key: K, value: V) => void) {
    if (!(capacity >= 0)) throw new RangeError(`cache capacity must be non-negative (got ${capacity})`);
    this.#capacity = capacity;
    this.#onEvict = onEvict;
  }

  get capacity(): number {
    return this.#capacity;
  }

  /** Sum of the charges of the entries held. */
  get usage(): number {
    return this.#usage;
  }

  get size(): number {
    return this.#map.size;
  }

  get(key: K): V | undefined {
    const e = this.#map.get(key);
    if (e === undefined) return undefined;
    this.#map.delete(key);
    this.#map.set(key, e);
    return e.value;
  }

  /** Lookup without making the entry more recent. */
  peek(key: K): V | undefined {
    return this.#map.get(key)?.value;
  }

  has(key: K): boolean {
    return this.#map.has(key);
  }

  set(key: K, value: V, charge: number): void {
    const old = this.#map.get(key);
    if (old !== undefined) {
      this.#map.delete(key);
      this.#usage -= old.charge;
      if (old.value !== value) this.#onEvict?.(key, old.value);
    }
    if (charge > this.#capacity) {
      this.#onEvict?.(key, value);
      return;
    }
    this.#map.set(key, { value, charge });
    this.#usage += charge;
    if (this.#usage > this.#capacity) {
      for (const [k, e] of this.#map) {
        if (this.#usage <= this.#capacity) break;
        this.#map.delete(k);
        this.#usage -= e.charge;
        this.#onEvict?.(k, e.value);
      }
    }
  }

  delete(key: K): boolean {
    const e = this.#map.get(key);
    if (e === undefined) return false;
    this.#map.delete(key);
    this.#usage -= e.charge;
    this.#onEvict?.(key, e.value);
    return true;
  }

  /** Drops every entry whose key starts with `prefix` (or satisfies `predicate`); returns how many. */
  deleteWhere(match: string | ((key: K, value: V) => boolean)): number {
    const test = typeof match === 'string' ? (k: K) => String(k).startsWith(match) : match;
    const doomed: K[] = [];
    for (const [k, e] of this.#map) if (test(k, e.value)) doomed.push(k);
    for (const k of doomed) this.delete(k);
    return doomed.length;
  }

  clear(): void {
    const entries = [...this.#map];
    this.#map.clear();
    this.#usage = 0;
    for (const [k, e] of entries) this.#onEvict?.(k, e.value);
  }

  keys(): IterableIterator<K> {
    return this.#map.keys();
  }
}
