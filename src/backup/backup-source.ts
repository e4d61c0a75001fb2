/**
 * What a backup reads: the files of one consistent version of a database, in plaintext (the
 * backup re-encrypts them under its own key). Two implementations: a stopped data dir opened
 * through the encrypted env (offline), and a running server over its admin connection, which
 * pins a version for as long as the source is open (online).
 */
export interface BackupSourceFile {
  /** Data-dir relative name, as the engine names it: `000012.sst`, `MANIFEST-000005`, `CURRENT`, `000013.log`. */
  name: string;
  kind: 'table' | 'manifest' | 'current' | 'wal';
  /** Plaintext length in bytes. */
  size: number;
}

export interface BackupSourceInfo {
  /** The data encryption method of the live store (recorded in the backup for `backup list`). */
  method: string;
  /** The live master key's public identity (type and id/path; never key material). */
  masterKey: string;
  /** Where it came from, for messages: a data dir path or `host:port`. */
  origin: string;
}

export interface BackupSource {
  info(): BackupSourceInfo;
  /** The files of the pinned version: tables, one manifest, CURRENT, and any WAL it still needs. */
  files(): BackupSourceFile[];
  /** Plaintext bytes [offset, offset + length) of one listed file; shorter only at its end. */
  read(name: string, offset: number, length: number): Promise<Buffer>;
  /** Releases the pinned version (online: ends the server's backup, letting an encryption scan start again). */
  close(): Promise<void>;
}
