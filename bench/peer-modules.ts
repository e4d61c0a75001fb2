/**
 * The benchmark-only peers (classic-level, lmdb, SQLite3MultipleCiphers) live in their own
 * package, bench/peers, which `npm run bench` installs: SQLite's cipher build compiles from
 * source for minutes, and a user's `npm install` must not pay for it. They are loaded by path
 * from there, typed by the small interfaces below (only what the drivers call).
 */
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** bench/peers/package.json, from this file's place in dist/bench/. */
const PEERS_PACKAGE = fileURLToPath(new URL('../../bench/peers/package.json', import.meta.url));

export async function importPeer<T>(name: string): Promise<T> {
  let path: string;
  try {
    path = createRequire(PEERS_PACKAGE).resolve(name);
  } catch (err) {
    throw new Error(`benchmark peer ${name} is not installed: \`npm run bench\` installs the peers into bench/peers (or run \`npm install --prefix bench/peers\`)`, { cause: err });
  }
  return (await import(pathToFileURL(path).href)) as T;
}

export interface ClassicLevelModule {
  ClassicLevel: new (location: string, options: { keyEncoding: 'buffer'; valueEncoding: 'buffer'; writeBufferSize: number; cacheSize: number }) => ClassicLevelDb;
}

export interface ClassicLevelDb {
  open(): Promise<void>;
  /** A chained batch (abstract-level's batch() without arguments). */
  batch(): ClassicLevelChainedBatch;
  put(key: Buffer, value: Buffer, options?: { sync: boolean }): Promise<void>;
  getSync(key: Buffer): Buffer | undefined;
  iterator(): { nextv(size: number): Promise<Array<[Buffer, Buffer]>>; close(): Promise<void> };
  close(): Promise<void>;
}

export interface ClassicLevelChainedBatch {
  put(key: Buffer, value: Buffer): ClassicLevelChainedBatch;
  write(options?: { sync: boolean }): Promise<void>;
}

export interface LmdbModule {
  open(options: {
    path: string;
    keyEncoding: 'binary';
    encoding: 'binary';
    encryptionKey: string;
    noSync?: boolean;
    overlappingSync?: boolean;
    noMemInit?: boolean;
  }): LmdbDb;
}

export interface LmdbDb {
  putSync(key: Buffer, value: Buffer): void;
  transactionSync<T>(action: () => T): T;
  get(key: Buffer): Buffer | undefined;
  getRange(): Iterable<{ key: Buffer; value: Buffer }>;
  close(): Promise<void>;
}

export interface SqliteModule {
  default: new (path: string) => SqliteDb;
}

export interface SqliteStatement<P extends unknown[], R> {
  run(...params: P): unknown;
  get(...params: P): R | undefined;
  pluck(): SqliteStatement<P, R>;
  raw(): SqliteStatement<P, R>;
  iterate(...params: P): IterableIterator<R>;
}

export interface SqliteDb {
  pragma(source: string): unknown;
  exec(source: string): void;
  prepare<P extends unknown[], R>(source: string): SqliteStatement<P, R>;
  transaction<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void;
  close(): void;
}
