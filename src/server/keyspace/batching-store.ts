import type { Engine } from '../../engine/engine.js';
import { NOT_CACHED } from '../../engine/table-reader.js';
import { WriteBatchBuilder } from '../../engine/write-batch.js';
import { RowCache, ownedCopy, type ValueLocation } from './row-cache.js';

/** A pending write: the value, or null for a delete, and the batch that carries it. */
interface Pending {
  value: Buffer | null;
  batch: number;
}

export interface StoreRange {
  gte: Buffer;
  lt: Buffer;
}

/** One batch's writes in the order made: keys[i] set to values[i] (null: deleted). */
interface BatchWrites {
  keys: Buffer[];
  values: Array<Buffer | null>;
}

/** Called when a batch has been applied (or has failed); batches settle in id order. */
export type BatchListener = (batch: number, error?: unknown) => void;

/**
 * The server's view of the engine: every command runs synchronously against it, and its
 * writes are gathered into one engine batch per turn of the event loop.
 *
 * A write is visible to the next command at once (through the overlay of pending writes)
 * even though the engine applies it only when its WAL record is written. The server holds
 * replies until the batch that a reply may depend on has been applied, so nothing is
 * acknowledged before it is in the WAL (and fsynced, with `sync`).
 *
 * With the row cache on, pending writes are found there: it is written through, so it holds
 * the newest value of every key written, until it forgets something (a generation dropped,
 * the cache emptied). Only then is an overlay map of the pending writes built, and kept
 * until they have all been applied: a pipelined SET no longer makes a string of its key and
 * inserts it in a map, and its lookup of the key it replaces probes one table, not two.
 */
export class BatchingStore {
  readonly #engine: Engine;
  readonly #sync: boolean;
  /**
   * latin1(key) → newest pending write (latin1 keeps byte order under string comparison).
   * Without a row cache always kept; with one, undefined until needed (see the class comment).
   */
  #overlay: Map<string, Pending> | undefined;
  /** The row cache's forget count when the pending writes were last none. */
  #forgetMark = 0;
  /** This turn's writes, encoded as they are made. */
  readonly #batch = new WriteBatchBuilder();
  /** This turn's writes, and those of each batch not yet settled (so settling costs its own size). */
  #writes: BatchWrites = { keys: [], values: [] };
  readonly #inFlight = new Map<number, BatchWrites>();
  #pendingWrites = 0;
  /** Id of the batch being gathered; lower ids are in flight or applied. */
  #current = 1;
  #lastApplied = 0;
  /** While a flush of everything is in flight, the engine's older contents are hidden. */
  #hideEngineUntil = 0;
  #failure: unknown;
  #listener: BatchListener = () => undefined;
  readonly #idle: Array<() => void> = [];

  readonly cache: RowCache;

  constructor(engine: Engine, options: { sync: boolean; rowCacheBytes?: number }) {
    this.#engine = engine;
    this.#sync = options.sync;
    this.cache = new RowCache(options.rowCacheBytes ?? 0);
    if (!this.cache.enabled) this.#overlay = new Map();
  }

  onBatchSettled(listener: BatchListener): void {
    this.#listener = listener;
  }

  /**
   * Set after a batch failed to apply, while the engine still refuses writes; cleared once it
   * accepts them again (it recovers from a full disk by itself).
   */
  get failure(): unknown {
    if (this.#failure !== undefined && this.#engine.writeFailure() === undefined) this.#failure = undefined;
    return this.#failure;
  }

  /** The value of `key`, a Buffer the caller may keep (see RowCache.get), or undefined. */
  get(key: Buffer): Buffer | undefined {
    const at = this.#at;
    const n = this.locate(key, at);
    return n < 0 ? undefined : ownedCopy(at, n);
  }

  readonly #at: ValueLocation = { buf: Buffer.alloc(0), start: 0 };

  /**
   * get(key) without a Buffer for a cached value: where the value's bytes lie, into `at`
   * (read them before the next write to the store). The value's length, or -1 when the key
   * is absent. A cached small value is read beside its key in the row cache.
   */
  locate(key: Buffer, at: ValueLocation): number {
    // The cache first: a value it holds is never older than a pending write of the key.
    if (this.cache.enabled) {
      const n = this.cache.locate(key, at);
      if (n !== -2) return n;
    }
    const overlay = this.#overlayIfNeeded();
    if (overlay !== undefined && overlay.size > 0) {
      const p = overlay.get(this.#mapKey(key));
      if (p !== undefined) return locateBuffer(p.value, at);
    }
    const value = this.#fromEngine(key);
    if (this.cache.enabled) this.cache.set(key, value ?? null);
    return locateBuffer(value ?? null, at);
  }

  /**
   * For a command about to read `key`: undefined when get(key) would be answered from memory
   * now (the row cache, a pending write, the engine's memtables and cached blocks); otherwise
   * the engine's read of it on the thread pool, which leaves what it read in the engine's
   * table and block caches, so that the command's own synchronous read then finds it there.
   * The promise never rejects: the command's own read meets the failure and reports it.
   */
  readAhead(key: Buffer): Promise<unknown> | undefined {
    if (this.cache.enabled && this.cache.has(key)) return undefined;
    const overlay = this.#overlayIfNeeded();
    if (overlay !== undefined && overlay.size > 0 && overlay.has(this.#mapKey(key))) return undefined;
    if (this.#hideEngineUntil > this.#lastApplied) return undefined;
    if (this.#engine.getCached(key) !== NOT_CACHED) return undefined;
    return this.#engine.get(key).catch(() => undefined);
  }

  /**
   * The first `limit` keys of `range` in the engine (pending writes left out), read with the
   * engine's iterator on the thread pool: a walk of the range right after finds its blocks in
   * the block cache.
   */
  async readAheadRange(range: StoreRange, limit: number): Promise<Buffer[]> {
    if (this.#hideEngineUntil > this.#lastApplied) return [];
    await this.#engine.prepareIterator();
    const it = this.#engine.iterator({ gte: range.gte, lt: range.lt });
    try {
      return (await it.nextBatch(limit)).map((e) => e[0]);
    } finally {
      it.close();
    }
  }

  /** latin1(key), remembered for the last Buffer: a read and a write of one record share it. */
  #mapKey(key: Buffer): string {
    if (key !== this.#lastKey) {
      this.#lastKey = key;
      this.#lastMapKey = key.toString('latin1');
    }
    return this.#lastMapKey;
  }

  #lastKey: Buffer | undefined;
  #lastMapKey = '';

  #fromEngine(key: Buffer): Buffer | undefined {
    if (this.#hideEngineUntil > this.#lastApplied) return undefined;
    return this.#engine.getSync(key);
  }

  put(key: Buffer, value: Buffer): void {
    this.#batch.put(key, value);
    this.#remember(key, value);
  }

  del(key: Buffer): void {
    this.#batch.del(key);
    this.#remember(key, null);
  }

  #remember(key: Buffer, value: Buffer | null): void {
    if (this.#pendingWrites === 0 && this.#overlay === undefined) this.#forgetMark = this.cache.forgets;
    this.#pendingWrites++;
    this.#writes.keys.push(key);
    this.#writes.values.push(value);
    this.#overlay?.set(this.#mapKey(key), { value, batch: this.#current });
    // Write-through: the cache then never holds a value older than the engine's, nor than a pending write.
    this.cache.set(key, value);
  }

  /**
   * The overlay, when a lookup that missed the row cache needs it: always without a cache;
   * with one, once the cache has forgotten anything since the pending writes were last none
   * (it may have forgotten one of them), or when `all` of them are wanted. Built then from the
   * pending writes, oldest first, and kept until they have all been applied.
   */
  #overlayIfNeeded(all = false): Map<string, Pending> | undefined {
    if (this.#overlay !== undefined || this.#pendingWrites === 0 || (!all && this.cache.forgets === this.#forgetMark)) return this.#overlay;
    const overlay = new Map<string, Pending>();
    const add = (batch: number, w: BatchWrites): void => {
      for (let i = 0; i < w.keys.length; i++) overlay.set(w.keys[i]!.toString('latin1'), { value: w.values[i]!, batch });
    };
    for (const [batch, w] of this.#inFlight) add(batch, w);
    add(this.#current, this.#writes);
    this.#overlay = overlay;
    return overlay;
  }

  /** Deletes every key in the store, atomically with the rest of the current batch. */
  clear(range: StoreRange): void {
    for (const [key] of this.entries(range)) this.#batch.del(key);
    // The writes made so far are gone: an empty overlay, kept until they are all applied.
    this.#overlay = new Map();
    this.cache.clear();
    this.#hideEngineUntil = this.#current;
  }

  /** Entries with gte <= key < lt in key order, pending writes included. Synchronous. */
  *entries(range: StoreRange): Generator<[Buffer, Buffer]> {
    const lo = range.gte.toString('latin1');
    const hi = range.lt.toString('latin1');
    const pending: Array<[string, Pending]> = [];
    // Every pending write, the cached ones too: the cache cannot list a range.
    for (const e of this.#overlayIfNeeded(true) ?? []) if (e[0] >= lo && e[0] < hi) pending.push(e);
    pending.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const it = this.#hideEngineUntil > this.#lastApplied ? undefined : this.#engine.iterator({ gte: range.gte, lt: range.lt });
    try {
      let e = it?.next();
      let i = 0;
      for (;;) {
        const p = pending[i];
        if (e === undefined && p === undefined) return;
        const pk = p === undefined ? undefined : Buffer.from(p[0], 'latin1');
        const c = e === undefined ? 1 : pk === undefined ? -1 : Buffer.compare(e[0], pk);
        if (c < 0) {
          yield e!;
          e = it!.next();
          continue;
        }
        if (c === 0) e = it!.next();
        i++;
        if (p![1].value !== null) yield [pk!, p![1].value];
      }
    } finally {
      it?.close();
    }
  }

  /** Operations gathered for the next batch. */
  get pendingOps(): number {
    return this.#batch.count;
  }

  /** Whether pending writes are kept in an overlay map now (for tests: with a row cache, only once it forgot something). */
  get overlayBuilt(): boolean {
    return this.#overlay !== undefined && this.cache.enabled;
  }

  /** Writes not yet applied (gathered or in flight). */
  get pendingWrites(): number {
    return this.#pendingWrites;
  }

  /** The batch a reply produced now depends on, or 0 when everything is applied. */
  get dependency(): number {
    if (this.#batch.count > 0) return this.#current;
    return this.#current - 1 > this.#lastApplied ? this.#current - 1 : 0;
  }

  /** Sends the gathered operations to the engine as one atomic batch. */
  commit(): void {
    if (this.#batch.count === 0) return;
    const id = this.#current++;
    this.#inFlight.set(id, this.#writes);
    this.#writes = { keys: [], values: [] };
    // Only once every older batch has settled: the engine may have applied one whose settle
    // is still a queued microtask, and batches must settle in id order.
    if (!this.#sync && this.#lastApplied === id - 1) {
      // Usually the engine can apply it now: settled at once, the replies waiting for it go
      // out with the rest of the turn's instead of being held and released later.
      let applied: boolean;
      try {
        applied = this.#engine.writeBatchNow(this.#batch);
      } catch (err) {
        // Reported as a failed writeBatch() is: after the caller's turn.
        queueMicrotask(() => this.#failed(id, err));
        return;
      }
      if (applied) {
        this.#settle(id);
        return;
      }
    }
    this.#engine.writeBatch(this.#batch, { sync: this.#sync }).then(
      () => this.#settle(id),
      (err: unknown) => this.#failed(id, err),
    );
  }

  #failed(id: number, err: unknown): void {
    this.#failure ??= err;
    // The cache may hold values of the failed batch, which the engine does not have.
    this.cache.clear();
    this.#settle(id, err);
  }

  /** Resolves when every batch committed so far has settled. */
  async drain(): Promise<void> {
    this.commit();
    if (this.#lastApplied >= this.#current - 1) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  #settle(id: number, err?: unknown): void {
    this.#lastApplied = id;
    const writes = this.#inFlight.get(id);
    this.#inFlight.delete(id);
    if (id === this.#current - 1 && this.#batch.count === 0) {
      // Nothing was written since this batch was committed (the usual case: the engine applied
      // it in the same turn), so every pending write is this batch's or an older one's.
      this.#pendingWrites = 0;
      if (this.cache.enabled) this.#overlay = undefined;
      else this.#overlay!.clear();
    } else if (writes !== undefined) {
      this.#pendingWrites -= writes.keys.length;
      const overlay = this.#overlay;
      if (overlay !== undefined) {
        for (const key of writes.keys) {
          const k = key.toString('latin1');
          if (overlay.get(k)?.batch === id) overlay.delete(k);
        }
      }
    }
    this.#listener(id, err);
    if (id === this.#current - 1) for (const resolve of this.#idle.splice(0)) resolve();
  }
}

function locateBuffer(value: Buffer | null, at: ValueLocation): number {
  if (value === null) return -1;
  at.buf = value;
  at.start = 0;
  return value.length;
}
