/**
 * The bench driver for any abstract-level database (classic-level, TdekvLevel), through its
 * public methods in their fastest form (docs/benchmarks.md, "How peers are configured"): a
 * chained batch `batch().put(k, v)….write()`, `put(k, v)`, `getSync`, and the scan
 * `iterator().nextv(1000)`. No write options without fsync, `{ sync: true }` with:
 * abstract-level copies a batch's options into every operation of an array batch, which
 * costs more than the write itself; a chained batch takes them once, at write().
 */
import type { Driver } from './engine-driver.js';

const SCAN_CHUNK = 1000;

/** What the driver calls: the part of abstract-level's API both databases share. */
export interface LevelLike {
  batch(): { put(key: Buffer, value: Buffer): unknown; write(options?: { sync: true }): Promise<void> };
  put(key: Buffer, value: Buffer, options?: { sync: true }): Promise<void>;
  getSync(key: Buffer): Buffer | undefined;
  iterator(): { nextv(size: number): Promise<Array<[Buffer, Buffer]>>; close(): Promise<void> };
  close(): Promise<void>;
}

export function abstractLevelDriver(db: LevelLike, dataDir: string, sync: boolean, close: () => Promise<void> = () => db.close()): Driver {
  let writeOptions: { sync: true } | undefined = sync ? { sync: true } : undefined;
  return {
    dataDir,
    writeBatch(keys, values) {
      const batch = db.batch();
      for (let i = 0; i < keys.length; i++) batch.put(keys[i]!, values[i]!);
      return writeOptions ? batch.write(writeOptions) : batch.write();
    },
    put: (key, value) => (writeOptions ? db.put(key, value, writeOptions) : db.put(key, value)),
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
    setSync(on) {
      writeOptions = on ? { sync: true } : undefined;
    },
    close,
  };
}
