/**
 * The peers tdekv is measured against, each through its natural fast path and with the same
 * durability as tdekv in each mode (sync: every acknowledged write fsynced; nosync: none):
 *
 * - classic-level (LevelDB, no encryption): batch(ops, { sync }), put(k, v, { sync }),
 *   getSync, iterator().nextv(1000). Given tdekv's memory budget: 16 MiB write buffer and
 *   the same block cache (BENCH_CACHE_BYTES; its defaults are 4 MiB and 8 MiB).
 * - lmdb (lmdb-js, `encryptionKey`: ChaCha8 page encryption, a 32-character key string): a
 *   batch is N `put`s issued in one event turn (one transaction, committed on lmdb's write
 *   thread), awaited together; sync: lmdb's defaults (fsync per commit, overlapping sync)
 *   and every write is awaited until `db.flushed`; nosync: `noSync: true` (no fsync at all),
 *   single puts as `putSync` (faster than an awaited async put here). Switching mode reopens
 *   the env (noSync is an env flag).
 * - SQLite (better-sqlite3-multiple-ciphers, SQLite3MultipleCiphers' default cipher
 *   chacha20-poly1305, or TDEKV_BENCH_SQLITE_CIPHER): WITHOUT ROWID table (k BLOB PRIMARY KEY,
 *   v BLOB), journal_mode=WAL, synchronous=FULL (sync) or OFF (nosync), a batch is one
 *   transaction of prepared INSERT OR REPLACE, the same page cache size.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BENCH_CACHE_BYTES, type Driver, type DriverOptions } from './engine-driver.js';
import { importPeer, type ClassicLevelModule, type LmdbModule, type SqliteModule } from './peer-modules.js';

const MiB = 1024 * 1024;
/** tdekv's default write buffer, and the bench's cache size, given to the peers that have the same knobs. */
const WRITE_BUFFER_BYTES = 16 * MiB;
const CACHE_BYTES = BENCH_CACHE_BYTES;
const SCAN_CHUNK = 1000;

export async function openClassicLevel(options: DriverOptions): Promise<Driver> {
  const { ClassicLevel } = await importPeer<ClassicLevelModule>('classic-level');
  const db = new ClassicLevel(options.dir, {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
    writeBufferSize: WRITE_BUFFER_BYTES,
    cacheSize: CACHE_BYTES,
  });
  await db.open();
  const writeOptions = { sync: options.sync };
  return {
    dataDir: options.dir,
    writeBatch: (keys, values) =>
      db.batch(
        keys.map((key, i) => ({ type: 'put' as const, key, value: values[i]! })),
        writeOptions,
      ),
    put: (key, value) => db.put(key, value, writeOptions),
    get: (key) => db.getSync(key),
    async scan(visit) {
      const it = db.iterator();
      let n = 0;
      try {
        for (;;) {
          const entries = await it.nextv(SCAN_CHUNK);
          if (entries.length === 0) break;
          for (const [k, v] of entries) visit(k, v);
          n += entries.length;
        }
      } finally {
        await it.close();
      }
      return n;
    },
    setSync(sync) {
      writeOptions.sync = sync;
    },
    close: () => db.close(),
  };
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
      ...(sync ? {} : { noSync: true }),
    });
  let sync = options.sync;
  let db = openDb(sync);
  return {
    dataDir: options.dir,
    async writeBatch(keys, values) {
      // Puts issued in the same event turn are committed in one transaction.
      let last: Promise<boolean> | undefined;
      for (let i = 0; i < keys.length; i++) last = db.put(keys[i]!, values[i]!);
      await last;
      // With overlapping sync (lmdb's default) a commit resolves before its fsync.
      if (sync) await db.flushed;
    },
    async put(key, value) {
      if (!sync) {
        // One synchronous transaction: faster than an awaited async put when nothing is batched.
        db.putSync(key, value);
        return;
      }
      await db.put(key, value);
      await db.flushed;
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
    async setSync(next) {
      await db.close();
      sync = next;
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
