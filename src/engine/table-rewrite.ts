import { WorkSlice, type JobContext } from './background-job.js';
import { BlockBuilder } from './block-builder.js';
import { blockWithTrailer, encodeFooter, encodeProperties, putBlockHandle, tableLayout, type BlockHandle } from './table-format.js';
import { createTableFile, discardTableFile } from './table-output.js';
import type { TableReader } from './table-reader.js';
import type { FileMeta } from './version-edit.js';

/** Output is handed to the file in appends of about this size. */
const APPEND_BYTES = 1 << 20;
/** With a rate limit, the copy asks for this many bytes at a time: small steps, so the limit holds within a table too. */
const PACE_BYTES = 256 * 1024;

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
    const layout = tableLayout(file.auth);
    const index = new BlockBuilder(1);
    const handleBytes = Buffer.allocUnsafe(20);
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let offset = 0;
    const put = (contents: Buffer): BlockHandle => {
      const handle = { offset, size: contents.length };
      const block = blockWithTrailer(contents, layout, offset);
      pending.push(block);
      pendingBytes += block.length;
      offset += block.length;
      return handle;
    };
    const append = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      await file.append(out);
    };
    const slice = new WorkSlice(() => ctx.sliceMs());
    const paceEvery = ctx.pace ? PACE_BYTES : Infinity;
    let unpaced = 0;
    for await (const { indexKey, contents, offset: from } of reader.dataBlocks()) {
      const before = offset;
      const handle = put(contents);
      unpaced += offset - before;
      blockMoved?.(reader.fileNumber, from, number, handle.offset);
      index.add(indexKey, handleBytes.subarray(0, putBlockHandle(handleBytes, 0, handle)));
      if (pendingBytes >= APPEND_BYTES) await append();
      if (unpaced >= paceEvery) {
        await append();
        await ctx.pace!(unpaced);
        unpaced = 0;
        slice.restart();
      } else if (slice.due()) {
        await append();
        await ctx.yieldSlice();
        slice.restart();
      }
    }
    if (unpaced > 0) await ctx.pace?.(unpaced);
    const dataBytes = offset;
    const filterContents = reader.filterContents;
    const filter = filterContents ? put(filterContents) : { offset: 0, size: 0 };
    const { fileSize: _inputSize, ...stored } = reader.properties;
    const properties = put(encodeProperties({ ...stored, dataBytes }));
    const indexHandle = put(index.finish());
    const footer = encodeFooter({ filter, index: indexHandle, properties }, layout, offset);
    pending.push(footer);
    pendingBytes += footer.length;
    offset += footer.length;
    await append();
    await file.sync();
    await file.close();
    return [{ number, size: offset, smallest: stored.smallest, largest: stored.largest, entries: stored.entries }];
  } catch (err) {
    await discardTableFile(ctx.output, number, file);
    throw err;
  }
}
