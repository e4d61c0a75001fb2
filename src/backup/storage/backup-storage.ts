import type { Readable } from 'node:stream';

/**
 * Where backups live: a flat namespace of objects under one prefix (a local directory, an S3
 * bucket/prefix, an Azure container/prefix). Object names are relative, `/`-separated, and
 * chosen by the backup format (e.g. `backups/<id>/manifest`, `objects/<name>`); a backend
 * maps them under its prefix. Everything a backup writes is already encrypted by tdekv;
 * server-side encryption (S3 SSE, Azure scope or customer key) is a second layer the backend
 * adds on every write.
 */
export interface BackupStorage {
  /** The URL for messages and listings, with any key or credential redacted. */
  readonly displayUrl: string;
  /**
   * Writes one object whole. `size` is its exact length (backends use it to choose a single
   * PUT or a multipart upload). The object appears only when the write has succeeded: a failed
   * or interrupted write leaves no partial object under `name`.
   */
  put(name: string, body: Readable | Buffer, size: number): Promise<void>;
  /** Reads one object; a missing one is a TdekvError with code 'BACKUP_OBJECT_MISSING'. */
  get(name: string): Promise<Readable>;
  /** Reads one small object into memory (manifests); missing: as `get`. */
  getBuffer(name: string): Promise<Buffer>;
  /** The object's size, or undefined when it does not exist. */
  stat(name: string): Promise<{ size: number } | undefined>;
  /** Every object whose name starts with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<{ name: string; size: number }>;
  /** Removes an object; removing a missing one is not an error. */
  remove(name: string): Promise<void>;
  /** Releases connections. */
  close(): Promise<void>;
}
