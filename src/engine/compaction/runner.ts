import { WorkSlice, type JobContext } from '../background-job.js';
import { ConcatIterator } from '../concat-iterator.js';
import type { InternalIterator } from '../iterator.js';
import { MergingIterator } from '../merging-iterator.js';
import { discardTableFile, TableOutput } from '../table-output.js';
import type { TableReader } from '../table-reader.js';
import { rewriteTableBlocks } from '../table-rewrite.js';
import type { FileMeta } from '../version-edit.js';
import { bottommostRule, type CompactionJob } from './compaction.js';
import { DropRule } from './drop-rule.js';

/** Table copies run at once by a rewrite in place below level 0. */
const IN_PLACE_LANES = 2;

export interface CompactionContext extends JobContext {
  /** An iterator over one input table. */
  openTable(tableNumber: number): InternalIterator;
  /** One input table's reader, held open until release(): for the block copy of a rewrite in place. */
  openTableReader(tableNumber: number): { reader: TableReader; release(): void };
  /**
   * A block copied by a rewrite in place, from (table, offset) to (table, offset): where the
   * block cache lives (in-process), the cached block is kept under its new place, so reads of
   * a table the scan just rewrote still hit the cache.
   */
  blockMoved?(fromTable: number, fromOffset: number, toTable: number, toOffset: number): void;
  /**
   * Copies one table of a rewrite in place below level 0 on another thread (an unthrottled
   * scan: ExportPool), returning the new table; absent, the copy runs here in slices.
   */
  copyTable?(input: FileMeta): Promise<FileMeta[]>;
}

/**
 * The compaction runner: merges the job's inputs into new tables at the output level,
 * leaving out what the drop rule drops, and returns their metadata; the caller installs
 * them. On failure the tables written so far are removed.
 */
export async function runCompaction(job: CompactionJob, ctx: CompactionContext): Promise<FileMeta[]> {
  const [first, second] = job.inputs;
  if (job.rewriteInPlace) return rewriteInPlace(job, ctx);
  const levelIterator = (files: readonly FileMeta[]): InternalIterator => new ConcatIterator(files, (i) => ctx.openTable(files[i]!.number));
  const out = new TableOutput(ctx.output, ctx.output.tuning.targetFileSizeBase);
  const input = new MergingIterator([
    ...(job.level === 0 ? first.map((f) => ctx.openTable(f.number)) : [levelIterator(first)]),
    ...(second.length > 0 ? [levelIterator(second)] : []),
  ]);
  try {
    const rule = new DropRule(job.smallestSnapshot, bottommostRule(job.levelsBelow));
    const slice = new WorkSlice(() => ctx.sliceMs());
    for (input.seekToFirst(); input.valid(); input.next()) {
      if (slice.due()) {
        await out.drain();
        await ctx.yieldSlice();
        slice.restart();
      }
      const key = input.userKey();
      const seq = input.seq();
      const kind = input.kind();
      if (rule.dropsVersion(key, seq, kind)) continue;
      if (out.needsOpen(key)) await out.open();
      out.add(key, seq, kind, input.value());
    }
    return await out.finish();
  } catch (err) {
    await out.abandon();
    throw err;
  } finally {
    input.close();
  }
}

/**
 * The encryption scan's copies, one output per input. Below level 0 two run at once, so one
 * table's reads and fsync overlap the other's copy; level 0's run one after another in input
 * order, because its outputs must be numbered in that order (see encryption-scan.ts).
 */
async function rewriteInPlace(job: CompactionJob, ctx: CompactionContext): Promise<FileMeta[]> {
  const inputs = job.inputs[0];
  const outputs: Array<FileMeta[] | undefined> = inputs.map(() => undefined);
  const offThread = ctx.copyTable !== undefined && job.level > 0;
  const copy = async (i: number): Promise<void> => {
    if (offThread) {
      outputs[i] = await ctx.copyTable!(inputs[i]!);
      return;
    }
    const { reader, release } = ctx.openTableReader(inputs[i]!.number);
    try {
      outputs[i] = await rewriteTableBlocks(reader, ctx, ctx.blockMoved);
    } finally {
      release();
    }
  };
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < inputs.length) await copy(next++);
  };
  // Off the thread, every copy of the step is queued at once: the pool keeps each of its workers busy.
  const lanes = job.level === 0 ? 1 : offThread ? inputs.length : Math.min(IN_PLACE_LANES, inputs.length);
  const settled = await Promise.allSettled(Array.from({ length: lanes }, () => lane()));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    // Each copy removes its own output when it fails; the ones that finished go too.
    for (const f of outputs.flat()) if (f) await discardTableFile(ctx.output, f.number, undefined);
    throw failed.reason;
  }
  return outputs.flatMap((o) => o ?? []);
}
