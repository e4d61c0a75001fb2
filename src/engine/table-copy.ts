import type { AppendSink } from '../env/writable-file.js';
import { BlockBuilder } from './block-builder.js';
import { blockWithTrailer, encodeFooter, encodeProperties, putBlockHandle, tableLayout, type BlockHandle } from './table-format.js';
import type { TableReader } from './table-reader.js';

/** Output is handed to the file in appends of about this size. */
const APPEND_BYTES = 1 << 20;
/** With a rate limit, the copy asks for this many bytes at a time: small steps, so the limit holds within a table too. */
const PACE_BYTES = 256 * 1024;

export interface TableCopyOptions {
  /** Rate limit: resolves when `bytes` more may be written. */
  pace?(bytes: number): Promise<void>;
  /** Asked once per block: whether the host should get its turn now (then yieldSlice runs). */
  yieldDue?(): boolean;
  yieldSlice?(): Promise<void>;
  blockMoved?(fromOffset: number, toOffset: number): void;
}

/**
 * Copies one table's blocks into `file` (a new table file, or a backup's export sink), each
 * checked under the input's key and written under the output's with a fresh trailer; builds
 * the index, properties and footer anew. Returns the output's size.
 */
export async function copyTableBlocks(reader: TableReader, file: AppendSink, options: TableCopyOptions = {}): Promise<number> {
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
  const paceEvery = options.pace ? PACE_BYTES : Infinity;
  let unpaced = 0;
  for await (const { indexKey, contents, offset: from } of reader.dataBlocks()) {
    const before = offset;
    const handle = put(contents);
    unpaced += offset - before;
    options.blockMoved?.(from, handle.offset);
    index.add(indexKey, handleBytes.subarray(0, putBlockHandle(handleBytes, 0, handle)));
    if (pendingBytes >= APPEND_BYTES) await append();
    if (unpaced >= paceEvery) {
      await append();
      await options.pace!(unpaced);
      unpaced = 0;
    } else if (options.yieldDue?.()) {
      await append();
      await options.yieldSlice?.();
    }
  }
  if (unpaced > 0) await options.pace?.(unpaced);
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
  return offset;
}
