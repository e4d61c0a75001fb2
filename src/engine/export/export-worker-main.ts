import { parentPort, workerData } from 'node:worker_threads';
import { setFileFaults } from '../../util/file-io.js';
import { askOverChannel } from '../background/fault-channel.js';
import { zeroize } from '../../crypto/random.js';
import { EncryptedBufferSink } from '../../env/encrypted-buffer-sink.js';
import { createGranted, openGrantedRead } from '../../env/file-grant.js';
import { serializeError } from '../background/protocol.js';
import { exportOpenedFile } from '../file-export.js';
import type { CopyTableJob, CopyTableResult, ExportJob, ExportResult, FaultQuestion, FaultsInstalled, PoolJob } from './export-protocol.js';
import { BlockCache } from '../block-cache.js';
import { copyTableBlocks } from '../table-copy.js';
import { TableReader } from '../table-reader.js';

/*
 * A pool worker: re-writes one granted file under a backup's frame and posts the ciphertext
 * back (its buffers transferred, not copied), or copies one granted table into a granted new
 * one (the encryption scan). It holds no env and no key dictionary: only the keys of the job's
 * grants and frame, wiped when the files are opened or the job ends.
 */
const port = parentPort!;
const faultChannel = (workerData as { faultChannel: SharedArrayBuffer }).faultChannel;

port.on('message', (job: PoolJob | FaultsInstalled) => {
  if (job.kind === 'faults') {
    setFileFaults(job.installed ? (op, path) => askOverChannel(faultChannel, () => port.postMessage({ fault: { op, path } } satisfies FaultQuestion)) : undefined);
    return;
  }
  if (job.kind === 'copy-table') {
    void copyTable(job).then(
      (result) => port.postMessage(result),
      (err: unknown) => port.postMessage({ id: job.id, ok: false, error: serializeError(err) } satisfies CopyTableResult),
    );
    return;
  }
  void run(job).then(
    (result) => port.postMessage(result, result.ok ? result.chunks.map((c) => c.buffer as ArrayBuffer) : []),
    (err: unknown) => port.postMessage({ id: job.id, ok: false, error: serializeError(err) } satisfies ExportResult),
  );
});

async function copyTable(job: CopyTableJob): Promise<CopyTableResult> {
  const reader = TableReader.open(openGrantedRead(job.grant), job.tableNumber, new BlockCache(0));
  try {
    const file = await createGranted(job.output);
    try {
      const size = await copyTableBlocks(reader, file);
      await file.sync();
      return { id: job.id, ok: true, size };
    } finally {
      await file.close();
    }
  } finally {
    reader.close();
  }
}

async function run(job: ExportJob): Promise<ExportResult> {
  const key = Buffer.from(job.frame.key);
  try {
    const chunks: Buffer[] = [];
    const sink = new EncryptedBufferSink(job.grant.path, { ...job.frame, key, iv: Buffer.from(job.frame.iv) }, (c) => chunks.push(c));
    await exportOpenedFile(openGrantedRead(job.grant), job.parsed, sink);
    // A chunk that owns its whole buffer is transferred as it is; one that shares a buffer (Node's pool) is copied out first.
    const own = chunks.map((c) => (c.byteOffset === 0 && c.byteLength === c.buffer.byteLength ? c : new Uint8Array(c)));
    return { id: job.id, ok: true, chunks: own, size: sink.size };
  } finally {
    zeroize(key, job.frame.key);
  }
}
