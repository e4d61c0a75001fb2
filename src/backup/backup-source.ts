import type { FileFrame } from '../env/encrypted-buffer-sink.js';

/**
 * What a backup reads: the files of one consistent version of a database. Two
 * implementations: a stopped data dir opened through the encrypted env (offline), and a
 * running server over its admin connection, which pins a version for as long as the source
 * is open (online). Files never leave a source in plaintext: each is re-written (every block
 * and record checked under its live key) into the backup's own key, key id and IV.
 */
export interface BackupSourceFile {
  /** Data-dir relative name, as the engine names it: `000012.sst`, `MANIFEST-000005`, `CURRENT`, `000013.log`. */
  name: string;
  kind: 'table' | 'manifest' | 'current' | 'wal';
  /** Bytes in the live data dir, for progress (the export's size may differ: a plaintext source gains tags); 0 when made on export. */
  size: number;
  /**
   * Tables only, optional: a stable identity of this file's contents at this source (e.g. its
   * name and live IV, which a rewrite changes): equal identities promise equal contents, so an
   * incremental backup references the table it stored before instead of exporting it again.
   * Absent: the table is always exported.
   */
  identity?: string;
}

export interface BackupSourceInfo {
  /** The data encryption method of the live store (recorded in the backup for `backup list`). */
  method: string;
  /** The live master key's public identity (type and id/path; never key material). */
  masterKey: string;
  /** Where it came from, for messages: a data dir path or `host:port`. */
  origin: string;
  /** The last sequence number of the pinned version (recorded in the manifest); absent when unknown. */
  sequence?: number;
}

export interface BackupSource {
  info(): BackupSourceInfo;
  /** The files of the pinned version: tables, one manifest, CURRENT, and any WAL it still needs. */
  files(): BackupSourceFile[];
  /**
   * Writes one listed file under `frame` (the backup's key and key id, a fresh IV for this
   * file): `onChunk` gets its ciphertext in order, exactly the bytes the live store would hold
   * under that key. Resolves with the byte count. A block or record that fails its check under
   * the live key rejects with DATA_CORRUPTED naming the file: damage is never carried into a backup.
   */
  export(name: string, frame: FileFrame, onChunk: (ciphertext: Buffer) => void): Promise<number>;
  /** Releases the pinned version (online: ends the server's backup, letting an encryption scan start again). */
  close(): Promise<void>;
}
