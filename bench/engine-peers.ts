/**
 * The peers tdekv is measured against, each through its fastest public API and in its
 * fastest configuration with the same durability as tdekv in each mode (sync: every
 * acknowledged write fsynced; nosync: none, but a process crash loses nothing acknowledged).
 * Why each choice, and what was measured against it: docs/benchmarks.md, "How peers are
 * configured".
 *
 * - classic-level (LevelDB, no encryption): a chained batch `batch().put(k, v)….write()`,
 *   `put(k, v)`, getSync, iterator().nextv(1000). No write options at all without fsync
 *   (LevelDB's default is no fsync); `{ sync: true }` with. An array batch with any options
 *   object is ~3× slower: abstract-level spreads the options into every operation. Given
 *   tdekv's memory budget: 16 MiB write buffer and the same block cache (BENCH_CACHE_BYTES;
 *   its defaults are 4 MiB and 8 MiB).
 * - lmdb (lmdb-js, `encryptionKey`: ChaCha8 page encryption, a 32-character key string): a
 *   batch is one `transactionSync` of `putSync`s, a single put `putSync`; nosync: `noSync`
 *   (no fsync at all); sync: `overlappingSync: false`, so a commit returns only once it is
 *   fsynced (with lmdb's default overlapping sync a commit returns before its fsync and
 *   every write would have to wait for `db.flushed` too). Both with `noMemInit` (pages are
 *   encrypted whole, so skipping their zeroing exposes nothing). Switching mode reopens the
 *   env (both are env flags).
 * - SQLite (better-sqlite3-multiple-ciphers, SQLite3MultipleCiphers' default cipher
 *   chacha20-poly1305, or TDEKV_BENCH_SQLITE_CIPHER): WITHOUT ROWID table (k BLOB PRIMARY KEY,
 *   v BLOB), locking_mode=EXCLUSIVE (one process, as tdekv's directory lock; no shared-memory
 *   WAL index), journal_mode=WAL, synchronous=FULL (sync) or OFF (nosync), a batch is one
 *   transaction of prepared INSERT OR REPLACE, the same page cache size.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { abstractLevelDriver } from './abstract-level-driver.js';
import { BENCH_CACHE_BYTES, type Driver, type DriverOptions } from './engine-driver.js';
import { importPeer, type ClassicLevelModule, type LmdbModule, type SqliteModule } from './peer-modules.js';

const MiB = 1024 * 1024;
/** tdekv's default write buffer, and the bench's cache size, given to the peers that have the same knobs. */
const WRITE_BUFFER_BYTES = 16 * MiB;
const CACHE_BYTES = BENCH_CACHE_BYTES;

export async function openClassicLevel(options: DriverOptions): Promise<Driver> {
  const { ClassicLevel } = await importPeer<ClassicLevelModule>('classic-level');
  const db = new ClassicLevel(options.dir, {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
    writeBufferSize: WRITE_BUFFER_BYTES,
    cacheSize: CACHE_BYTES,
  });
  await db.open();
  return abstractLevelDriver(db, options.dir, options.sync === true);
}

export async function openLmdb(options: DriverOptions): Promise<Driver> {
  const { open } = await importPeer<LmdbModule>('lmdb');
  // lmdb-js reads encryptionKey as a string whose UTF-8 form must be 32 bytes (a Buffer
  // aborts the process): 32 base64 characters, 192 random bits.
  const encryptionKey = randomBytes(24).toString('base64');
  const openDb = (sync: boolean) =>
    open({
      path: options.dir,
      keyEncoding: 'binary',
      encoding: 'binary',
      encryptionKey,
      noMemInit: true,
      // Synchronous transactions: no hop to lmdb's write thread for writes that are awaited one
      // at a time anyway. Without overlapping sync their commit returns only once fsynced.
      ...(sync ? { overlappingSync: false } : { noSync: true }),
    });
  let db = openDb(options.sync);
  return {
    dataDir: options.dir,
    writeBatch(keys, values) {
      db.transactionSync(() => {
        for (let i = 0; i < keys.length; i++) db.putSync(keys[i]!, values[i]!);
      });
    },
    put(key, value) {
      db.putSync(key, value);
    },
    get: (key) => db.get(key),
    scan(visit) {
      let n = 0;
      for (const { key, value } of db.getRange()) {
        visit(key, value);
        n++;
      }
      return n;
    },
    async setSync(sync) {
      await db.close();
      db = openDb(sync);
    },
    close: () => db.close(),
  };
}

export async function openSqlite(options: DriverOptions): Promise<Driver> {
  const { default: Database } = await importPeer<SqliteModule>('better-sqlite3-multiple-ciphers');
  const db = new Database(join(options.dir, 'kv.db'));
  const cipher = sqliteCipher();
  db.pragma(`cipher='${cipher}'`);
  db.pragma(`key='${randomBytes(32).toString('hex')}'`);
  // One process owns the database, as tdekv's directory lock makes it: no shared-memory WAL
  // index or file locks per transaction. Set before WAL mode, which then keeps no -shm file.
  db.pragma('locking_mode = EXCLUSIVE');
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${options.sync ? 'FULL' : 'OFF'}`);
  db.pragma(`cache_size = ${-CACHE_BYTES / 1024}`);
  db.exec('CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID');
  const insert = db.prepare<[Buffer, Buffer], unknown>('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)');
  const select = db.prepare<[Buffer], Buffer>('SELECT v FROM kv WHERE k = ?').pluck();
  const all = db.prepare<[], [Buffer, Buffer]>('SELECT k, v FROM kv ORDER BY k').raw();
  const batch = db.transaction((keys: readonly Buffer[], values: readonly Buffer[]) => {
    for (let i = 0; i < keys.length; i++) insert.run(keys[i]!, values[i]!);
  });
  return {
    dataDir: options.dir,
    writeBatch: (keys, values) => batch(keys, values),
    put: (key, value) => void insert.run(key, value),
    get: (key) => select.get(key),
    scan(visit) {
      let n = 0;
      for (const [k, v] of all.iterate()) {
        visit(k, v);
        n++;
      }
      return n;
    },
    setSync(sync) {
      db.pragma(`synchronous = ${sync ? 'FULL' : 'OFF'}`);
    },
    close: () => void db.close(),
  };
}

export function sqliteCipher(): string {
  const c = process.env.TDEKV_BENCH_SQLITE_CIPHER?.trim() || 'chacha20';
  if (!/^[a-z0-9]+$/.test(c)) throw new Error(`TDEKV_BENCH_SQLITE_CIPHER=${c}: expected a SQLite3MultipleCiphers cipher name such as chacha20, sqlcipher, aes256cbc`);
  return c;
}
