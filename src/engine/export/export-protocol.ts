import type { FileFrame } from '../../env/encrypted-buffer-sink.js';
import type { FileGrant } from '../../env/file-grant.js';
import type { SerializedError } from '../background/protocol.js';
import type { EngineFileKind } from '../file-names.js';

/** One file to export: the grant to read it (its live key) and the frame to write it under (the backup's). */
export interface ExportJob {
  kind: 'export';
  id: number;
  grant: FileGrant;
  frame: FileFrame;
  parsed: { kind: EngineFileKind; number: number };
}

/** One table to copy block by block into a new table file (the encryption scan's rewrite in place): the grants to read the one and create the other. */
export interface CopyTableJob {
  kind: 'copy-table';
  id: number;
  grant: FileGrant;
  output: FileGrant;
  tableNumber: number;
}

export type PoolJob = ExportJob | CopyTableJob;

/** The ciphertext as the chunks the cipher produced, their buffers transferred (not copied) to the main thread. */
export type ExportResult = { id: number; ok: true; chunks: Uint8Array[]; size: number } | { id: number; ok: false; error: SerializedError };

/** A copied table's size (its file is synced and closed). */
export type CopyTableResult = { id: number; ok: true; size: number } | { id: number; ok: false; error: SerializedError };

/** Main thread → worker besides jobs: the test fault injector was installed or removed (background/fault-channel.ts). */
export interface FaultsInstalled {
  kind: 'faults';
  installed: boolean;
}

/** Worker → main thread besides results: one file call for the injector to answer over the channel. */
export interface FaultQuestion {
  fault: { op: string; path: string };
}
