import { fileIo, writeFully } from '../util/file-io.js';
import type { FileHandle } from 'node:fs/promises';
import { TdekvError } from '../errors.js';
import type { StreamTransform } from '../crypto/ctr.js';
import type { FileAuthenticator } from '../crypto/file-auth.js';

/** Small appends are coalesced into writes of this size. */
const COALESCE_BYTES = 64 * 1024;
/**
 * Large appends are encrypted in slices of this size and written with one writev: small
 * output buffers come from the allocator's warm memory, where a 1 MiB one is fresh pages
 * that fault in on first touch (measured ~18% faster encryption here).
 */
const SLICE_BYTES = 64 * 1024;
/** Encryption of the next chunk overlaps the write of the previous ones, up to this much. */
const MAX_IN_FLIGHT_BYTES = 8 * 1024 * 1024;

/**
 * What writers of records and blocks (LogWriter, the table copy) need of a file: where the
 * next byte goes, the file's tags, appends. An EncryptedWritableFile is one; so is the sink a
 * backup exports a file into (encrypted-buffer-sink.ts), which never touches the disk.
 */
export type AppendSink = Pick<EncryptedWritableFile, 'path' | 'auth' | 'size' | 'append' | 'sync' | 'close'>;

/**
 * An append-only file. Appends are encrypted in order by one CTR stream (so each byte gets
 * its own keystream position), then written with positional writes that may run
 * concurrently on the thread pool: encryption and I/O overlap. Data is durable after sync().
 */
export class EncryptedWritableFile {
  readonly path: string;
  /** Tags for the blocks and records written here; undefined for plaintext files. */
  readonly auth: FileAuthenticator | undefined;
  readonly #fh: FileHandle;
  readonly #stream: StreamTransform;
  #appended = 0;
  #issued = 0;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  readonly #inFlight = new Set<Promise<void>>();
  #inFlightBytes = 0;
  #error: unknown;
  #closed = false;
  /** The new name is durable only once its directory is synced: done at the first sync(). */
  #syncDir: (() => Promise<void>) | undefined;
  /** See reserveAhead(): the step (0: off), and the file's size as set so far. */
  #reserveStep = 0;
  #reserved = 0;

  constructor(path: string, fh: FileHandle, stream: StreamTransform, syncDir?: () => Promise<void>, auth?: FileAuthenticator) {
    this.path = path;
    this.auth = auth;
    this.#fh = fh;
    this.#stream = stream;
    this.#syncDir = syncDir;
  }

  /**
   * From now on, appendSync sets the file's size ahead of what is written, `stepBytes` at a
   * time, and close() cuts it back. An fdatasync after an append that grew the file must also
   * make the new size durable (a journal commit on ext4); one after an append within the size
   * need not: measured here, a 150-byte append plus fdatasync took 180 µs against 265 µs
   * (docs/engine.md, "WAL sync"). The space is a hole: nothing is written or allocated for it,
   * so a full disk still fails the write, as before. A crash leaves the hole, which reads as
   * zeros: log readers take an all-zero rest of a file, from a record boundary, as its end.
   */
  reserveAhead(stepBytes: number): void {
    if (!Number.isSafeInteger(stepBytes) || stepBytes <= 0) throw new RangeError(`reserveAhead: step must be a positive integer, got ${stepBytes}`);
    this.#reserveStep = stepBytes;
  }

  /** Bytes appended so far (the plaintext size, which equals the ciphertext size). */
  get size(): number {
    return this.#appended;
  }

  async append(data: Uint8Array): Promise<void> {
    this.#check();
    if (data.length === 0) return;
    this.#appended += data.length;
    if (data.length >= COALESCE_BYTES) {
      this.#issuePending();
      const slices: Buffer[] = [];
      for (let off = 0; off < data.length; off += SLICE_BYTES) slices.push(this.#stream.update(data.subarray(off, off + SLICE_BYTES)));
      this.#issue(slices);
    } else {
      const ciphertext = this.#stream.update(data);
      this.#pending.push(ciphertext);
      this.#pendingBytes += ciphertext.length;
      if (this.#pendingBytes >= COALESCE_BYTES) this.#issuePending();
    }
    while (this.#inFlightBytes > MAX_IN_FLIGHT_BYTES) await Promise.race(this.#inFlight);
    this.#check();
  }

  /**
   * Appends and hands the bytes to the OS before returning (a blocking write of what is
   * usually a small record): the engine's WAL acknowledges non-sync writes this way, which
   * costs a few microseconds where a thread-pool round trip costs tens. Only valid while no
   * asynchronous append is pending, so the two kinds never reorder; the WAL uses only this.
   */
  appendSync(data: Uint8Array): void {
    this.#check();
    if (this.#pendingBytes > 0 || this.#inFlight.size > 0) {
      throw new TdekvError('INVALID_ARGUMENT', `file ${this.path}: appendSync while asynchronous appends are pending; use one kind of append per file`);
    }
    if (data.length === 0) return;
    const ciphertext = this.#stream.update(data);
    const position = this.#issued;
    if (this.#reserveStep > 0 && position + ciphertext.length > this.#reserved) this.#reserve(position + ciphertext.length);
    try {
      let done = 0;
      while (done < ciphertext.length) done += fileIo.writeSync(this.#fh.fd, ciphertext, done, ciphertext.length - done, position + done);
    } catch (err) {
      // Later appends cannot be made contiguous after a failed write: the file is done for.
      this.#error ??= new TdekvError('IO_FAILED', `write to ${this.path} failed at offset ${position} (${String(err)}); the file is unusable, write it again under a new name`, { cause: err });
      throw this.#error;
    }
    this.#issued += ciphertext.length;
    this.#appended += data.length;
  }

  /** Waits until everything appended has reached the OS. */
  async flush(): Promise<void> {
    this.#check();
    this.#issuePending();
    await Promise.all(this.#inFlight);
    this.#check();
  }

  /**
   * Makes everything appended durable. `inline`: fdatasync on this thread when nothing is
   * left to write, blocking it for the fsync but saving the thread-pool round trip, which on
   * a small VM costs a third as much again as the fsync itself (docs/engine.md, "WAL sync").
   */
  async sync(options?: { inline?: boolean }): Promise<void> {
    this.#check();
    if (options?.inline === true && this.#pendingBytes === 0 && this.#inFlight.size === 0 && !this.#syncDir && !this.#dirSynced) {
      fileIo.fdatasyncSync(this.#fh.fd);
      return;
    }
    await this.flush();
    await this.#fh.datasync();
    // Syncs may overlap (the engine's syncAppendedWal runs beside the write queue's): each
    // waits for the one directory sync, so none returns before the file's name is durable.
    if (this.#syncDir) {
      this.#dirSynced = this.#syncDir().then(() => {
        this.#dirSynced = undefined;
      });
      this.#syncDir = undefined;
    }
    if (this.#dirSynced) await this.#dirSynced;
  }

  /** The directory sync in progress (a failed one stays, so every later sync fails too). */
  #dirSynced: Promise<void> | undefined;

  /** Sets the size to the next step past `end`. Only a speed-up: if the file system refuses, appends just grow the file. */
  #reserve(end: number): void {
    const size = Math.ceil(end / this.#reserveStep) * this.#reserveStep;
    try {
      fileIo.ftruncateSync(this.#fh.fd, size);
      this.#reserved = size;
    } catch {
      this.#reserveStep = 0;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
      // A closed log ends at its last record, so readers see no reserved space (which would
      // read as its end anyway: a failure here loses nothing, and the close goes on).
      if (this.#reserved > this.#issued) await this.#fh.truncate(this.#issued).catch(() => undefined);
    } finally {
      this.#closed = true;
      this.auth?.destroy();
      await this.#fh.close();
    }
  }

  #check(): void {
    if (this.#error) throw this.#error;
    if (this.#closed) throw new TdekvError('CLOSED', `file ${this.path} is closed`);
  }

  #issuePending(): void {
    if (this.#pendingBytes === 0) return;
    // Many tiny appends (log records) become one buffer rather than thousands of iovecs.
    const buf = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#issue([buf]);
  }

  #issue(bufs: Buffer[]): void {
    const length = bufs.reduce((n, b) => n + b.length, 0);
    const position = this.#issued;
    this.#issued += length;
    this.#inFlightBytes += length;
    const p: Promise<void> = writeFully(this.#fh, bufs, position, this.path)
      .catch((err: unknown) => {
        // Later appends cannot be made contiguous after a failed write: the file is done for.
        this.#error ??= new TdekvError('IO_FAILED', `write to ${this.path} failed at offset ${position} (${String(err)}); the file is unusable, write it again under a new name`, { cause: err });
      })
      .finally(() => {
        this.#inFlight.delete(p);
        this.#inFlightBytes -= length;
      });
    this.#inFlight.add(p);
  }
}
