interface Node<K, V> {
  key: K;
  value: V;
  charge: number;
  /** Neighbours in recency order: `older` toward the least recently used end. */
  older: Node<K, V> | undefined;
  newer: Node<K, V> | undefined;
}

/**
 * A least-recently-used cache bounded by the sum of its entries' charges (1 per open table).
 * Recency is an intrusive list, so a hit moves two pointers. It sits on every point read
 * (once per table consulted): re-inserting the key into the Map on each hit instead, which
 * also kept the order, left a deleted slot per hit, and the Map's rehashing to reclaim them
 * cost a sixth of a warm read.
 *
 * `onEvict` sees every value that leaves the cache for any reason (evicted for room,
 * replaced, deleted, cleared, or refused because it alone exceeds the capacity), so a
 * cache of open tables can close exactly the readers it drops.
 */
export class LruCache<V, K extends string | number = string> {
  readonly #map = new Map<K, Node<K, V>>();
  readonly #capacity: number;
  readonly #onEvict: ((key: K, value: V) => void) | undefined;
  #usage = 0;
  #oldest: Node<K, V> | undefined;
  #newest: Node<K, V> | undefined;

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
    const node = this.#map.get(key);
    if (node === undefined) return undefined;
    if (node !== this.#newest) {
      this.#unlink(node);
      this.#append(node);
    }
    return node.value;
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
      this.#remove(old);
      if (old.value !== value) this.#onEvict?.(key, old.value);
    }
    if (charge > this.#capacity) {
      this.#onEvict?.(key, value);
      return;
    }
    const node: Node<K, V> = { key, value, charge, older: undefined, newer: undefined };
    this.#map.set(key, node);
    this.#append(node);
    this.#usage += charge;
    while (this.#usage > this.#capacity && this.#oldest !== undefined) {
      const victim = this.#oldest;
      this.#remove(victim);
      this.#onEvict?.(victim.key, victim.value);
    }
  }

  delete(key: K): boolean {
    const node = this.#map.get(key);
    if (node === undefined) return false;
    this.#remove(node);
    this.#onEvict?.(key, node.value);
    return true;
  }

  /** Drops every entry whose key starts with `prefix` (or satisfies `predicate`); returns how many. */
  deleteWhere(match: string | ((key: K, value: V) => boolean)): number {
    const test = typeof match === 'string' ? (k: K) => String(k).startsWith(match) : match;
    const doomed: K[] = [];
    for (let n = this.#oldest; n !== undefined; n = n.newer) if (test(n.key, n.value)) doomed.push(n.key);
    for (const k of doomed) this.delete(k);
    return doomed.length;
  }

  clear(): void {
    const nodes: Array<Node<K, V>> = [];
    for (let n = this.#oldest; n !== undefined; n = n.newer) nodes.push(n);
    this.#map.clear();
    this.#oldest = this.#newest = undefined;
    this.#usage = 0;
    for (const n of nodes) this.#onEvict?.(n.key, n.value);
  }

  /** Keys from the least to the most recently used. */
  *keys(): IterableIterator<K> {
    for (let n = this.#oldest; n !== undefined; n = n.newer) yield n.key;
  }

  #remove(node: Node<K, V>): void {
    this.#map.delete(node.key);
    this.#unlink(node);
    this.#usage -= node.charge;
  }

  #unlink(node: Node<K, V>): void {
    if (node.older) node.older.newer = node.newer;
    else this.#oldest = node.newer;
    if (node.newer) node.newer.older = node.older;
    else this.#newest = node.older;
    node.older = node.newer = undefined;
  }

  #append(node: Node<K, V>): void {
    node.older = this.#newest;
    if (this.#newest) this.#newest.newer = node;
    this.#newest = node;
    this.#oldest ??= node;
  }
}
