import { WorkSlice, type JobContext } from './background-job.js';
import { createTableFile, discardTableFile } from './table-output.js';
import { copyTableBlocks } from './table-copy.js';
import type { TableReader } from './table-reader.js';
import type { FileMeta } from './version-edit.js';

/**
 * The encryption scan's rewrite of one table where it lies: every block is read and checked
 * under the old key (tags or checksums), and written as it is under the new one with a fresh
 * trailer; only the index (block offsets move when the trailer size changes, plaintext to
 * encrypted), the properties and the footer are built anew. No entry is decoded or dropped —
 * that stays compaction's work — so the scan runs at close to the speed of its ciphers and
 * the disk instead of the engine's merge. Same keys, same entries: the result replaces the
 * input at the same level.
 */
export async function rewriteTableBlocks(
  reader: TableReader,
  ctx: JobContext,
  blockMoved?: (fromTable: number, fromOffset: number, toTable: number, toOffset: number) => void,
): Promise<FileMeta[]> {
  const { number, file } = await createTableFile(ctx.output);
  try {
    const slice = new WorkSlice(() => ctx.sliceMs());
    const size = await copyTableBlocks(reader, file, {
      ...(ctx.pace
        ? {
            pace: async (bytes: number) => {
              await ctx.pace!(bytes);
              slice.restart();
            },
          }
        : {}),
      yieldDue: () => slice.due(),
      yieldSlice: async () => {
        await ctx.yieldSlice();
        slice.restart();
      },
      ...(blockMoved ? { blockMoved: (from, to) => blockMoved(reader.fileNumber, from, number, to) } : {}),
    });
    await file.sync();
    await file.close();
    const { smallest, largest, entries } = reader.properties;
    return [{ number, size, smallest, largest, entries }];
  } catch (err) {
    await discardTableFile(ctx.output, number, file);
    throw err;
  }
}
