import { WorkSlice, type JobContext } from './background-job.js';
import { DropRule } from './compaction/drop-rule.js';
import type { MemtableIterator } from './memtable-iterator.js';
import { newEntryLocation } from './skip-list.js';
import { TableOutput } from './table-output.js';
import type { FileMeta } from './version-edit.js';

/**
 * The flush runner: writes a memtable to level-0 tables and returns their metadata; the
 * caller installs them. Versions the drop rule hides from every snapshot are left out (RocksDB's
 * flush does the same): a key overwritten many times between flushes is written once, not
 * once per write. On failure the tables written so far are removed. `mem` is a Memtable, or on
 * the worker thread one the main thread shares with it (Memtable.iteratorOf).
 */
export async function writeMemtable(ctx: JobContext, mem: { iterator(): MemtableIterator }, smallestSnapshot: number): Promise<FileMeta[]> {
  // One table, never cut (a target size of Infinity): level-0 tables may overlap anyway.
  const out = new TableOutput(ctx.output, Infinity);
  const it = mem.iterator();
  const slice = new WorkSlice(() => ctx.sliceMs());
  const rule = new DropRule(smallestSnapshot);
  // Entries are read where they lie in the memtable: no Buffer per key and value.
  const at = newEntryLocation();
  try {
    for (it.seekToFirst(); it.valid(); it.next()) {
      it.locate(at);
      const seq = it.seq();
      const kind = it.kind();
      if (rule.dropsVersionAt(at.keys, at.keyStart, at.keyEnd, seq, kind)) continue;
      if (!out.opened) await out.open();
      out.addAt(at, seq, kind);
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
