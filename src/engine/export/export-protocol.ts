import type { FileFrame } from '../../env/encrypted-buffer-sink.js';
import type { FileGrant } from '../../env/file-grant.js';
import type { SerializedError } from '../background/protocol.js';
import type { EngineFileKind } from '../file-names.js';

/** One file to export: the grant to read it (its live key) and the frame to write it under (the backup's). */
export interface ExportJob {
  id: number;
  grant: FileGrant;
  frame: FileFrame;
  parsed: { kind: EngineFileKind; number: number };
}

/** The ciphertext as the chunks the cipher produced, their buffers transferred (not copied) to the main thread. */
export type ExportResult = { id: number; ok: true; chunks: Uint8Array[]; size: number } | { id: number; ok: false; error: SerializedError };
