import { FileAuthenticator } from '../crypto/file-auth.js';
import { ctrStreamAt, type StreamTransform } from '../crypto/ctr.js';
import type { EncryptionMethod } from '../crypto/method.js';
import { TdekvError } from '../errors.js';

/** The key, key id and IV a file is written under, outside the live key dictionary (a backup's). */
export interface FileFrame {
  method: Exclude<EncryptionMethod, 'plaintext'>;
  key: Buffer;
  keyId: number;
  iv: Buffer;
}

/**
 * A file written into memory exactly as the env would write it to disk under `frame`: the
 * same CTR stream from offset 0 and the same per-file tags (so a reader given that key, key id
 * and IV accepts it). A backup exports tables and logs into these, so plaintext never reaches
 * a disk or a socket, and a restore can put the bytes in place unchanged.
 */
export class EncryptedBufferSink {
  readonly path: string;
  readonly auth: FileAuthenticator;
  readonly #stream: StreamTransform;
  #chunks: Buffer[] = [];
  #size = 0;
  #closed = false;
  /** Called with each encrypted chunk as it is produced (for hashing or streaming). */
  readonly #onChunk: ((chunk: Buffer) => void) | undefined;

  constructor(path: string, frame: FileFrame, onChunk?: (chunk: Buffer) => void) {
    this.path = path;
    const auth = FileAuthenticator.forFile(frame.method, frame.key, frame.keyId, frame.iv);
    if (auth === undefined) throw new TdekvError('INVALID_ARGUMENT', `${path}: an exported file needs an encrypting method`);
    this.auth = auth;
    this.#stream = ctrStreamAt(frame.method, frame.key, frame.iv, 0);
    this.#onChunk = onChunk;
  }

  get size(): number {
    return this.#size;
  }

  async append(data: Uint8Array): Promise<void> {
    if (this.#closed) throw new TdekvError('INVALID_ARGUMENT', `${this.path}: append after close`);
    if (data.length === 0) return;
    const out = this.#stream.update(data);
    this.#size += data.length;
    if (this.#onChunk) this.#onChunk(out);
    else this.#chunks.push(out);
  }

  async sync(): Promise<void> {}

  async close(): Promise<void> {
    this.#closed = true;
  }

  /** The ciphertext written so far (empty when an onChunk callback took it). */
  take(): Buffer {
    const out = Buffer.concat(this.#chunks, this.#size);
    this.#chunks = [];
    return out;
  }
}
