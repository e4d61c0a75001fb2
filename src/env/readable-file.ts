import { fileIo } from '../util/file-io.js';
import { TdekvError } from '../errors.js';
import { ctrStreamAt, type StreamTransform } from '../crypto/ctr.js';
import type { EncryptionMethod } from '../crypto/method.js';
import type { FileAuthenticator } from '../crypto/file-auth.js';

const SCRATCH_LIMIT = 1 << 20;

/**
 * Random-access reads of one file: read the ciphertext at an offset, decrypt it with the
 * keystream positioned at that offset. A read that starts where the last one ended
 * continues the same keystream, so sequential scans pay for one cipher setup.
 *
 * `readSync` serves the engine's synchronous gets (pread on a page-cached file beats a thread
 * pool round trip); `read` does the pread on the thread pool so a cold disk never blocks
 * the event loop.
 */
export class EncryptedReadableFile {
  readonly path: string;
  readonly size: number;
  /**
   * Tags for this file's blocks and records (see src/crypto/file-auth.ts), or undefined for
   * plaintext files and legacy files written before tags existed: then only checksums guard
   * the contents, against bit rot but not against someone who edits the disk.
   */
  readonly auth: FileAuthenticator | undefined;
  readonly method: EncryptionMethod;
  readonly #fd: number;
  readonly #method: EncryptionMethod;
  readonly #key: Buffer;
  readonly #iv: Buffer;
  #stream: StreamTransform | undefined;
  #streamAt = -1;
  #scratch: Buffer = Buffer.alloc(0);
  #closed = false;

  constructor(path: string, absolutePath: string, method: EncryptionMethod, key: Buffer, iv: Buffer, auth?: FileAuthenticator) {
    this.path = path;
    this.#fd = fileIo.openSync(absolutePath, 'r');
    this.size = fileIo.fstatSync(this.#fd).size;
    this.auth = auth;
    this.method = method;
    this.#method = method;
    // A private copy: the env may retire or wipe its keys while this reader is open.
    this.#key = Buffer.from(key);
    this.#iv = iv;
  }

  /** Up to `length` bytes from `offset`; fewer only at end of file. */
  readSync(offset: number, length: number): Buffer {
    // Ciphertext only lives until it is decrypted into a new buffer, so synchronous reads
    // can share one scratch buffer (async reads may overlap, so they cannot).
    const buf = this.#method === 'plaintext' ? this.#buffer(offset, length) : this.#scratchFor(offset, length);
    let got = 0;
    while (got < buf.length) {
      const n = fileIo.readSync(this.#fd, buf, got, buf.length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return this.#decrypt(buf, offset, got);
  }

  /**
   * The bytes as they are on disk, not decrypted: only to tell a zero-filled tail (a write
   * the file system had not finished when the machine stopped) from damage.
   */
  readRawSync(offset: number, length: number): Buffer {
    const buf = this.#buffer(offset, length);
    let got = 0;
    while (got < buf.length) {
      const n = fileIo.readSync(this.#fd, buf, got, buf.length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = this.#buffer(offset, length);
    let got = 0;
    while (got < buf.length) {
      const n = await preadAsync(this.#fd, buf, got, buf.length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return this.#decrypt(buf, offset, got);
  }

  #scratchFor(offset: number, length: number): Buffer {
    const want = this.#wanted(offset, length);
    // Keep at most 1 MiB per open file; bigger reads are rare and get their own buffer.
    if (want > SCRATCH_LIMIT) return Buffer.allocUnsafe(want);
    if (this.#scratch.length < want) this.#scratch = Buffer.allocUnsafe(Math.max(want, 4096));
    return this.#scratch.subarray(0, want);
  }

  #buffer(offset: number, length: number): Buffer {
    return Buffer.allocUnsafe(this.#wanted(offset, length));
  }

  /** Validates a read and returns how many bytes it can return (fewer at end of file). */
  #wanted(offset: number, length: number): number {
    if (this.#closed) throw new TdekvError('CLOSED', `file ${this.path} is closed`);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new TdekvError('INVALID_ARGUMENT', `read of ${this.path}: offset and length must be non-negative integers (got ${offset}, ${length})`);
    }
    return Math.max(0, Math.min(length, this.size - offset));
  }

  #decrypt(buf: Buffer, offset: number, got: number): Buffer {
    const ciphertext = got === buf.length ? buf : buf.subarray(0, got);
    if (this.#method === 'plaintext') return ciphertext;
    if (this.#streamAt !== offset || !this.#stream) this.#stream = ctrStreamAt(this.#method, this.#key, this.#iv, offset);
    this.#streamAt = offset + got;
    return this.#stream.update(ciphertext);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#key.fill(0);
    this.auth?.destroy();
    this.#stream = undefined;
    fileIo.closeSync(this.#fd);
  }
}

function preadAsync(fd: number, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fileIo.read(fd, buf, at, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}
