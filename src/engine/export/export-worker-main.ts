import { parentPort } from 'node:worker_threads';
import { zeroize } from '../../crypto/random.js';
import { EncryptedBufferSink } from '../../env/encrypted-buffer-sink.js';
import { openGrantedRead } from '../../env/file-grant.js';
import { serializeError } from '../background/protocol.js';
import { exportOpenedFile } from '../file-export.js';
import type { ExportJob, ExportResult } from './export-protocol.js';

/*
 * An export worker: re-writes one granted file under a backup's frame and posts the
 * ciphertext back (its buffer transferred, not copied). It holds no env and no key dictionary:
 * only the two keys of the job, wiped when the job ends.
 */
const port = parentPort!;

port.on('message', (job: ExportJob) => {
  void run(job).then(
    (result) => port.postMessage(result, result.ok ? result.chunks.map((c) => c.buffer as ArrayBuffer) : []),
    (err: unknown) => port.postMessage({ id: job.id, ok: false, error: serializeError(err) } satisfies ExportResult),
  );
});

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
