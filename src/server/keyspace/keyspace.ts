import { TdekvError } from '../../errors.js';
import type { BatchingStore } from './batching-store.js';
import { RECORD_RANGE, STATS_KEY, decodeExpiryKey, expiryKey, expiryRangeUntil, fieldKey, fieldOf, fieldRange, recordKey, recordRangeWithPrefix, userKeyOf } from './key-codec.js';
import { RECORD_HEADER_BYTES, decodeMetaAt, decodeRecord, encodeRecord, encodeStringRecord, type KeyRecord } from './record.js';
import type { ValueLocation } from './row-cache.js';

/** Thrown by typed accessors; the command layer turns it into Redis's WRONGTYPE reply. */
export class WrongTypeError extends Error {
  constructor() {
    super('WRONGTYPE Operation against a key holding the wrong kind of value');
  }
}

export type KeyType = KeyRecord['type'];
/**
 * What a write needs of the record it replaces: whether there is one, its type and expiry.
 * Read-only: lookups of keys without expiry share one object (record.ts, decodeMetaAt).
 */
export type KeyMeta = Readonly<Pick<KeyRecord, 'type' | 'expireAt'>>;
export type HashRecord = Extract<KeyRecord, { type: 'hash' }>;

/** A record's string value (undefined when there is no record); WrongTypeError for a hash. */
export function stringOf(r: KeyRecord | undefined): Buffer | undefined {
  if (r === undefined) return undefined;
  if (r.type !== 'string') throw new WrongTypeError();
  return r.value;
}

/** A record as a hash (undefined when there is none); WrongTypeError for a string. */
export function hashOf(r: KeyRecord | undefined): HashRecord | undefined {
  if (r === undefined) return undefined;
  if (r.type !== 'hash') throw new WrongTypeError();
  return r;
}

export interface KeyspaceEvents {
  /** A key was written, deleted or expired (WATCH marks its watchers dirty). */
  touched(key: Buffer): void;
  /** A key was removed because its expiry passed. */
  expired(key: Buffer): void;
  /** A command read a key (INFO keyspace_hits / keyspace_misses). */
  read(hit: boolean): void;
}

/** Everything the whole database can be cleared of (FLUSHDB). */
const EVERYTHING = { gte: Buffer.from([0x00]), lt: Buffer.from([0xff]) };

/**
 * The Redis data model on the batching store: strings and hashes with millisecond expiry.
 * Synchronous: a command reads and writes it without yielding, so each command (and each
 * MULTI/EXEC block) is atomic, and all writes of an event-loop turn share one WAL record.
 *
 * Expired keys are removed when touched (lazy) and by `expireCycle` walking the expiry index
 * in time order (active), as Redis does; expiry times are stored with the key, so they
 * survive a restart.
 */
export class Keyspace {
  readonly #store: BatchingStore;
  readonly #events: KeyspaceEvents;
  #keys = 0;
  #expires = 0;
  #statsDirty = false;
  now: () => number = Date.now;

  constructor(store: BatchingStore, events: KeyspaceEvents) {
    this.#store = store;
    this.#events = events;
    const stats = store.get(STATS_KEY);
    if (stats !== undefined && stats.length >= 16) {
      this.#keys = stats.readUInt32BE(0) * 0x1_0000_0000 + stats.readUInt32BE(4);
      this.#expires = stats.readUInt32BE(8) * 0x1_0000_0000 + stats.readUInt32BE(12);
    }
  }

  get keyCount(): number {
    return this.#keys;
  }

  get expiresCount(): number {
    return this.#expires;
  }

  /** Adds the key counts to the batch when they changed; call before each commit. */
  beforeCommit(): void {
    if (!this.#statsDirty) return;
    this.#statsDirty = false;
    const b = Buffer.allocUnsafe(16);
    b.writeUInt32BE(Math.floor(this.#keys / 0x1_0000_0000), 0);
    b.writeUInt32BE(this.#keys % 0x1_0000_0000, 4);
    b.writeUInt32BE(Math.floor(this.#expires / 0x1_0000_0000), 8);
    b.writeUInt32BE(this.#expires % 0x1_0000_0000, 12);
    this.#store.put(STATS_KEY, b);
  }

  // ------------------------------------------------------------------ records

  /** The key's record, or undefined when it does not exist or has expired (then it is removed). */
  lookup(key: Buffer): KeyRecord | undefined {
    return this.#live(key, decodeRecordChecked);
  }

  /**
   * Adds to `reads` the reads from disk a command would make to look up `key`'s record, or
   * with `field` that field of its hash, and makes none when they are in memory
   * (BatchingStore.readAhead): the command can wait for them and then run without a read.
   */
  readAhead(key: Buffer, field: Buffer | undefined, reads: Array<Promise<unknown>>): void {
    const read = this.#store.readAhead(field === undefined ? this.#recordKey(key) : fieldKey(key, field));
    if (read !== undefined) reads.push(read);
  }

  /**
   * Adds to `reads` a read of the first `limit` fields of `key`'s hash as a walk of them
   * would make it (on the thread pool, leaving the blocks in the block cache). Never rejects.
   */
  readAheadFields(key: Buffer, limit: number, reads: Array<Promise<unknown>>): void {
    reads.push(this.#store.readAheadRange(fieldRange(key), limit).catch(() => undefined));
  }

  /**
   * `lookup` without the value: for a write that replaces the key whatever it holds (SET),
   * which then makes no view of the old value.
   */
  lookupMeta(key: Buffer): KeyMeta | undefined {
    return this.#locateRecord(key, this.#at);
  }

  /**
   * getString(key) for a reply (GET): where the string's bytes lie, into `at`, read before
   * the next write to the keyspace; its length, or -1 when there is no such key. A counted
   * read; WrongTypeError for a hash. No Buffer is made for the value.
   */
  readStringAt(key: Buffer, at: ValueLocation): number {
    const meta = this.#locateRecord(key, at);
    this.#events.read(meta !== undefined);
    if (meta === undefined) return -1;
    if (meta.type !== 'string') throw new WrongTypeError();
    at.start += RECORD_HEADER_BYTES;
    return this.#recordLength - RECORD_HEADER_BYTES;
  }

  /**
   * The live record's type and expiry, read where it lies (beside the key, in the row cache),
   * with the record located into `at` and its length in #recordLength.
   */
  #locateRecord(key: Buffer, at: ValueLocation): KeyMeta | undefined {
    const n = this.#store.locate(this.#recordKey(key), at);
    if (n < 0) return undefined;
    checkRecord(n, at.buf[at.start]!, key);
    this.#recordLength = n;
    return this.#unlessExpired(key, decodeMetaAt(at.buf, at.start));
  }

  #recordLength = 0;
  readonly #at: ValueLocation = { buf: Buffer.alloc(0), start: 0 };
  /** A location for readStringAt's callers to reuse. */
  readonly valueAt: ValueLocation = { buf: Buffer.alloc(0), start: 0 };

  #live<T extends KeyMeta>(key: Buffer, decode: (raw: Buffer, key: Buffer) => T): T | undefined {
    const raw = this.#store.get(this.#recordKey(key));
    if (raw === undefined) return undefined;
    return this.#unlessExpired(key, decode(raw, key));
  }

  /** `r`, or undefined when it has expired (then the key is removed). */
  #unlessExpired<T extends KeyMeta>(key: Buffer, r: T): T | undefined {
    if (r.expireAt !== 0 && r.expireAt <= this.now()) {
      this.#remove(key, r);
      this.#events.expired(key);
      return undefined;
    }
    return r;
  }

  /** `lookup` for a command that reads the key: counted as a keyspace hit or miss. */
  read(key: Buffer): KeyRecord | undefined {
    const r = this.lookup(key);
    this.#events.read(r !== undefined);
    return r;
  }

  /** The string at `key` (a counted read); throws WrongTypeError for another type. */
  getString(key: Buffer): Buffer | undefined {
    return stringOf(this.read(key));
  }

  /**
   * Sets a string, replacing any value of any type. `expireAt` 0 clears the expiry;
   * 'keep' keeps the current one (SET KEEPTTL, APPEND, INCR...). `existing` is lookup(key) or
   * lookupMeta(key), which the caller has always made already.
   */
  setString(key: Buffer, value: Buffer, expireAt: number | 'keep', existing: KeyMeta | undefined): void {
    const at = expireAt === 'keep' ? (existing?.expireAt ?? 0) : expireAt;
    if (existing?.type === 'hash') this.#deleteFields(key);
    // Encoded from its parts: no record object per SET.
    this.#writeEncoded(key, at, encodeStringRecord(value, at), existing);
  }

  /** Deletes the key; returns whether it existed. */
  delete(key: Buffer): boolean {
    const r = this.lookup(key);
    if (r === undefined) return false;
    this.#remove(key, r);
    this.#events.touched(key);
    return true;
  }

  /** Sets or clears (0) the expiry of an existing key. */
  setExpiry(key: Buffer, r: KeyRecord, expireAt: number): void {
    if (expireAt !== 0 && expireAt <= this.now()) {
      this.#remove(key, r);
      this.#events.touched(key);
      return;
    }
    this.#writeRecord(key, { ...r, expireAt }, r);
  }

  /** Moves a key's value and expiry to `to`, replacing it (RENAME). */
  rename(from: Buffer, r: KeyRecord, to: Buffer): void {
    if (from.equals(to)) return;
    const target = this.lookup(to);
    if (target !== undefined) this.#remove(to, target);
    if (r.type === 'hash') {
      for (const [field, value] of this.hashEntries(from)) this.#store.put(fieldKey(to, field), value);
    }
    this.#remove(from, r);
    this.#writeRecord(to, r, undefined);
    this.#events.touched(from);
  }

  // ------------------------------------------------------------------ hashes

  /** The hash at `key` (a counted read); throws WrongTypeError for another type. */
  getHash(key: Buffer): HashRecord | undefined {
    return hashOf(this.read(key));
  }

  hashGet(key: Buffer, field: Buffer): Buffer | undefined {
    return this.#store.get(fieldKey(key, field));
  }

  /** Sets fields of the hash (created if absent); returns how many fields were new. */
  hashSet(key: Buffer, pairs: ReadonlyArray<readonly [Buffer, Buffer]>, options: { onlyNew?: boolean } = {}): number {
    // A write: the key is looked up, not counted as a read (Redis's lookupKeyWrite).
    const r = hashOf(this.lookup(key));
    let added = 0;
    for (const [field, value] of pairs) {
      const fk = fieldKey(key, field);
      const exists = this.#store.get(fk) !== undefined;
      if (exists && options.onlyNew === true) continue;
      if (!exists) added++;
      this.#store.put(fk, value);
    }
    if (r === undefined || added > 0) this.#writeRecord(key, { type: 'hash', expireAt: r?.expireAt ?? 0, fields: (r?.fields ?? 0) + added }, r);
    else this.#events.touched(key);
    return added;
  }

  /** Deletes fields; the hash goes when its last field does. Returns how many were removed. */
  hashDelete(key: Buffer, r: HashRecord, fields: readonly Buffer[]): number {
    let removed = 0;
    for (const field of fields) {
      const fk = fieldKey(key, field);
      if (this.#store.get(fk) === undefined) continue;
      this.#store.del(fk);
      removed++;
    }
    if (removed === 0) return 0;
    const left = r.fields - removed;
    if (left <= 0) this.#remove(key, r);
    else this.#writeRecord(key, { ...r, fields: left }, r);
    this.#events.touched(key);
    return removed;
  }

  /** Fields in byte order, from `after` (exclusive) when given. */
  *hashEntries(key: Buffer, after?: Buffer): Generator<[Buffer, Buffer]> {
    const range = fieldRange(key);
    const gte = after === undefined ? range.gte : Buffer.concat([fieldKey(key, after), Buffer.from([0])]);
    for (const [fk, value] of this.#store.entries({ gte, lt: range.lt })) yield [fieldOf(fk, key.length), value];
  }

  // ------------------------------------------------------------------ keyspace walks

  /** Live keys in byte order, from `after` (exclusive), restricted to a prefix when given. */
  *keys(options: { after?: Buffer; prefix?: Buffer } = {}): Generator<[Buffer, KeyRecord]> {
    const range = options.prefix !== undefined && options.prefix.length > 0 ? recordRangeWithPrefix(options.prefix) : RECORD_RANGE;
    let gte = range.gte;
    if (options.after !== undefined) {
      const from = Buffer.concat([recordKey(options.after), Buffer.from([0])]);
      if (Buffer.compare(from, gte) > 0) gte = from;
    }
    const now = this.now();
    const expired: Array<[Buffer, KeyRecord]> = [];
    try {
      for (const [rk, raw] of this.#store.entries({ gte, lt: range.lt })) {
        const key = userKeyOf(rk);
        const r = decodeRecordChecked(raw, key);
        if (r.expireAt !== 0 && r.expireAt <= now) {
          expired.push([Buffer.from(key), r]);
          continue;
        }
        yield [key, r];
      }
    } finally {
      // Removed after the walk: the walk's iterator must not see its own deletes midway.
      for (const [key, r] of expired) {
        this.#remove(key, r);
        this.#events.expired(key);
      }
    }
  }

  /** Removes every key (FLUSHDB / FLUSHALL). */
  clear(): void {
    this.#store.clear(EVERYTHING);
    this.#keys = 0;
    this.#expires = 0;
    this.#statsDirty = true;
  }

  /**
   * Reads from disk, on the thread pool, what `expireCycle(limit)` would read: the first
   * `limit` due entries of the expiry index and their keys' records.
   */
  async readAheadExpiry(limit: number): Promise<void> {
    if (this.#expires === 0) return;
    const reads: Array<Promise<unknown>> = [];
    for (const k of await this.#store.readAheadRange(expiryRangeUntil(this.now()), limit)) {
      const read = this.#store.readAhead(recordKey(decodeExpiryKey(k).key));
      if (read !== undefined) reads.push(read);
    }
    await Promise.all(reads);
  }

  /**
   * Active expiry: removes up to `limit` keys whose expiry has passed, oldest first.
   * Returns how many index entries it looked at (the caller repeats while it is `limit`).
   */
  expireCycle(limit: number): number {
    // Nothing to walk (as Redis skips a database without expires): the walk would make the
    // engine link every key written since the last one into its memtable's list.
    if (this.#expires === 0) return 0;
    const now = this.now();
    const due: Array<{ at: number; key: Buffer; indexKey: Buffer }> = [];
    for (const [k] of this.#store.entries(expiryRangeUntil(now))) {
      const { at, key } = decodeExpiryKey(k);
      due.push({ at, key: Buffer.from(key), indexKey: k });
      if (due.length >= limit) break;
    }
    for (const { at, key, indexKey } of due) {
      const raw = this.#store.get(recordKey(key));
      const r = raw === undefined ? undefined : decodeRecordChecked(raw, key);
      if (r !== undefined && r.expireAt === at) {
        this.#remove(key, r);
        this.#events.expired(key);
      } else {
        // A stale index entry (the expiry changed without its old entry being found): drop it.
        this.#store.del(indexKey);
      }
    }
    return due.length;
  }

  // ------------------------------------------------------------------ internals

  /**
   * recordKey(key), remembered for the last key: a command reads a key's record and then
   * writes it with the same argument Buffer, and the store keys its maps by the same bytes.
   */
  #recordKey(key: Buffer): Buffer {
    if (key !== this.#lastKey) {
      this.#lastKey = key;
      this.#lastRecordKey = recordKey(key);
    }
    return this.#lastRecordKey;
  }

  #lastKey: Buffer | undefined;
  #lastRecordKey: Buffer = Buffer.alloc(0);

  #writeRecord(key: Buffer, r: KeyRecord, previous: KeyMeta | undefined): void {
    this.#writeEncoded(key, r.expireAt, encodeRecord(r), previous);
  }

  /** Writes `record` (encodeRecord's bytes, of a record expiring at `expireAt`) under `key`, with the counts and the expiry index. */
  #writeEncoded(key: Buffer, expireAt: number, record: Buffer, previous: KeyMeta | undefined): void {
    if (previous === undefined) {
      this.#keys++;
      this.#statsDirty = true;
    }
    const before = previous?.expireAt ?? 0;
    if (before !== expireAt) {
      if (before !== 0) {
        this.#store.del(expiryKey(before, key));
        this.#expires--;
      }
      if (expireAt !== 0) {
        this.#store.put(expiryKey(expireAt, key), EMPTY);
        this.#expires++;
      }
      this.#statsDirty = true;
    }
    this.#store.put(this.#recordKey(key), record);
    this.#events.touched(key);
  }

  #remove(key: Buffer, r: KeyMeta): void {
    if (r.type === 'hash') this.#deleteFields(key);
    if (r.expireAt !== 0) {
      this.#store.del(expiryKey(r.expireAt, key));
      this.#expires--;
    }
    this.#store.del(this.#recordKey(key));
    this.#keys--;
    this.#statsDirty = true;
  }

  #deleteFields(key: Buffer): void {
    const keys: Buffer[] = [];
    for (const [fk] of this.#store.entries(fieldRange(key))) keys.push(fk);
    for (const fk of keys) this.#store.del(fk);
  }
}

const EMPTY = Buffer.alloc(0);

/** `length`: the record's, or its prefix's when that is shorter than the record (then ≥ 9). */
function checkRecord(length: number, type: number, key: Buffer): void {
  if (length < 9 || type > 1) {
    throw new TdekvError('DATA_CORRUPTED', `the record of a key (${key.length} bytes) is damaged (${length < 9 ? `${length} bytes` : `type ${type}`}); run \`tdekv ctl verify\` and restore from a backup`);
  }
}

function decodeRecordChecked(raw: Buffer, key: Buffer): KeyRecord {
  checkRecord(raw.length, raw[0]!, key);
  return decodeRecord(raw);
}
