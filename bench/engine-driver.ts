/**
 * What the engine benchmark needs from a key-value store, and the stores it knows. Every
 * driver is the store's fastest public API for the operation in the configuration that gives
 * the durability asked for (docs/benchmarks.md, "How peers are configured"); `sync` decides
 * whether an acknowledged write has been fsynced.
 */

export interface Driver {
  /** One atomic batch of puts; with sync, durable (fsynced) when the promise resolves. */
  writeBatch(keys: readonly Buffer[], values: readonly Buffer[]): Promise<void> | void;
  /** One put on its own (its own transaction / WAL record). */
  put(key: Buffer, value: Buffer): Promise<void> | void;
  /** A synchronous point read. */
  get(key: Buffer): Uint8Array | undefined;
  /** Every entry in key order; resolves with the number of entries seen. */
  scan(visit: (key: Uint8Array, value: Uint8Array) => void): Promise<number> | number;
  /** Switches durability for the writes that follow (lmdb reopens its env: noSync is an env flag). */
  setSync(sync: boolean): Promise<void> | void;
  close(): Promise<void> | void;
  /** The directory whose files make up the database (bytes on disk are counted under it). */
  readonly dataDir: string;
  /** Stores whose background work can be observed (tdekv's Engine): its write stalls so far, and a wait for it to finish. */
  readonly background?: BackgroundObserver;
}

export interface BackgroundObserver {
  /** Writes that waited 1 ms (slowdowns) and writes that waited for a flush or compaction to finish (stops), since open. */
  stalls(): { writeSlowdowns: number; writeStops: number; flushes: number; compactions: number };
  /** Resolves once no flush or compaction is pending. */
  settle(): Promise<void>;
}

/**
 * Block/page cache of every engine that has one (TDEKV_BENCH_CACHE_MB, default 256 MiB: the
 * 1M-key data set fits, as it does in lmdb's memory map; tdekv's own default is 64 MiB).
 */
export const BENCH_CACHE_BYTES = Number(process.env['TDEKV_BENCH_CACHE_MB'] ?? 256) * 1024 * 1024;

export interface DriverOptions {
  /** A fresh, empty directory the driver owns. */
  dir: string;
  /** fsync every acknowledged write (batch or put); see Driver.setSync. */
  sync: boolean;
}

export const ENGINES = [
  'tdekv-plaintext',
  'tdekv-aes256-ctr',
  'tdekv-sm4-ctr',
  'tdekv-level-aes256-ctr',
  'classic-level',
  'lmdb-encrypted',
  'sqlite-encrypted',
] as const;
export type EngineName = (typeof ENGINES)[number];

/** The engine the "aes256 ×" ratios and the engine targets are about (tdekv's Engine class). */
export const SUBJECT: EngineName = 'tdekv-aes256-ctr';

/** What users call: TdekvLevel over the same engine; its own ratio column and targets. */
export const LEVEL_SUBJECT: EngineName = 'tdekv-level-aes256-ctr';

/** The drivers that need no benchmark peer installed (bench/peers). */
export const TDEKV_ENGINES: readonly EngineName[] = ENGINES.filter((e) => e.startsWith('tdekv-'));

/** Opens a driver; imports only that engine's modules, so a child's RSS is its engine's. */
export async function openDriver(engine: EngineName, options: DriverOptions): Promise<Driver> {
  switch (engine) {
    case 'tdekv-plaintext':
      return (await import('./engine-tdekv.js')).openTdekv('plaintext', options);
    case 'tdekv-aes256-ctr':
      return (await import('./engine-tdekv.js')).openTdekv('aes256-ctr', options);
    case 'tdekv-sm4-ctr':
      return (await import('./engine-tdekv.js')).openTdekv('sm4-ctr', options);
    case 'tdekv-level-aes256-ctr':
      return (await import('./engine-tdekv.js')).openTdekvLevel('aes256-ctr', options);
    case 'classic-level':
      return (await import('./engine-peers.js')).openClassicLevel(options);
    case 'lmdb-encrypted':
      return (await import('./engine-peers.js')).openLmdb(options);
    case 'sqlite-encrypted':
      return (await import('./engine-peers.js')).openSqlite(options);
  }
}
