import { WorkSlice, type JobContext } from './background-job.js';
import { DropRule } from './compaction/drop-rule.js';
import type { InternalIterator } from './iterator.js';
import { TableOutput } from './table-output.js';
import type { FileMeta } from './version-edit.js';

/**
 * The flush runner: writes a memtable to level-0 tables and returns their metadata; the
 * caller installs them. Versions the drop rule hides from every snapshot are left out (RocksDB's
 * flush does the same): a key overwritten many times between flushes is written once, not
 * once per write. On failure the tables written so far are removed. `mem` is a Memtable, or on
 * the worker thread one the main thread shares with it (Memtable.iteratorOf).
 */
export async function writeMemtable(ctx: JobContext, mem: { iterator(): InternalIterator }, smallestSnapshot: number): Promise<FileMeta[]> {
  const out = new TableOutput(ctx.output, Infinity);
  const it = mem.iterator();
  const slice = new WorkSlice(() => ctx.sliceMs());
  const rule = new DropRule(smallestSnapshot);
  try {
    for (it.seekToFirst(); it.valid(); it.next()) {
      const key = it.userKey();
      const seq = it.seq();
      const kind = it.kind();
      if (rule.dropsVersion(key, seq, kind)) continue;
      if (out.needsOpen(key)) await out.open();
      out.add(key, seq, kind, it.value());
      if (slice.due()) {
        await out.drain();
        await ctx.yieldSlice();
        slice.restart();
      }
    }
    return await out.finish();
  } catch (err) {
    await out.abandon();
    throw err;
  } finally {
    it.close();
  }
}
