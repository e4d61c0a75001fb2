import type { Block } from './block.js';

interface Node {
  file: number;
  offset: number;
  block: Block;
  charge: number;
  prev: Node | undefined;
  next: Node | undefined;
}

/**
 * Decrypted, verified blocks, bounded by their total size, least recently used out first.
 * Looked up by (file number, offset) through a map per file, with numeric keys: the lookup
 * sits on every get, where building and hashing a string key per call measured as one of
 * the largest costs. Recency is an intrusive list, so a hit is a few pointer moves.
 */
export class BlockCache {
  readonly capacity: number;
  readonly #files = new Map<number, Map<number, Node>>();
  /** Most recently used at the head. */
  #head: Node | undefined;
  #tail: Node | undefined;
  #usage = 0;
  #count = 0;

  /** A capacity of 0 disables caching. */
  constructor(capacity: number) {
    if (!(capacity >= 0)) throw new RangeError(`block cache capacity must be non-negative (got ${capacity})`);
    this.capacity = capacity;
  }

  get usage(): number {
    return this.#usage;
  }

  get size(): number {
    return this.#count;
  }

  get(file: number, offset: number): Block | undefined {
    const node = this.#files.get(file)?.get(offset);
    if (node === undefined) return undefined;
    if (node !== this.#head) {
      this.#unlink(node);
      this.#pushHead(node);
    }
    return node.block;
  }

  set(file: number, offset: number, block: Block, charge: number): void {
    if (charge > this.capacity) return;
    const old = this.#files.get(file)?.get(offset);
    // Removing the old node may drop the file's (then empty) map: look it up afterwards.
    if (old) this.#remove(old);
    let blocks = this.#files.get(file);
    if (!blocks) this.#files.set(file, (blocks = new Map()));
    const node: Node = { file, offset, block, charge, prev: undefined, next: undefined };
    blocks.set(offset, node);
    this.#pushHead(node);
    this.#usage += charge;
    this.#count++;
    while (this.#usage > this.capacity && this.#tail) this.#remove(this.#tail);
  }

  /** Drops every block of a file (its table was deleted). */
  evictFile(file: number): void {
    const blocks = this.#files.get(file);
    if (!blocks) return;
    for (const node of [...blocks.values()]) this.#remove(node);
  }

  /** Numbers of the files with blocks cached. */
  files(): number[] {
    return [...this.#files.keys()];
  }

  clear(): void {
    this.#files.clear();
    this.#head = this.#tail = undefined;
    this.#usage = 0;
    this.#count = 0;
  }

  #remove(node: Node): void {
    this.#unlink(node);
    const blocks = this.#files.get(node.file)!;
    blocks.delete(node.offset);
    if (blocks.size === 0) this.#files.delete(node.file);
    this.#usage -= node.charge;
    this.#count--;
  }

  #unlink(node: Node): void {
    if (node.prev) node.prev.next = node.next;
    else this.#head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.#tail = node.prev;
    node.prev = node.next = undefined;
  }

  #pushHead(node: Node): void {
    node.next = this.#head;
    if (this.#head) this.#head.prev = node;
    this.#head = node;
    this.#tail ??= node;
  }
}
