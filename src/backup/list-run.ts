import type { BackupStorage } from './storage/backup-storage.js';
import { readCatalog } from './backup-catalog.js';
import { describeProtector } from './protector.js';

export interface BackupListing {
  id: string;
  complete: boolean;
  createdAt?: string;
  /** Bytes of every object the backup needs (its own and those it references). */
  bytes?: number;
  /** Bytes this backup uploaded. */
  addedBytes?: number;
  files?: number;
  method?: string;
  protector?: string;
  /** The backup it is incremental on. */
  parent?: string;
  origin?: string;
  sequence?: number;
  /** A manifest that cannot be parsed. */
  damaged?: string;
}

/** The backups at a storage, oldest first; needs no key (the manifest's MAC is `backup verify`'s). */
export async function runList(storage: BackupStorage): Promise<BackupListing[]> {
  return (await readCatalog(storage)).map((e): BackupListing => {
    if (!e.manifest) return { id: e.id, complete: e.complete, ...(e.damaged ? { damaged: e.damaged.message } : {}) };
    const b = e.manifest.body;
    return {
      id: b.id,
      complete: true,
      createdAt: b.createdAt,
      bytes: b.totals.bytes,
      addedBytes: b.totals.addedBytes,
      files: b.totals.files,
      method: b.source.method,
      protector: describeProtector(b.key.protector),
      ...(b.parent !== undefined ? { parent: b.parent } : {}),
      origin: b.source.origin,
      ...(b.sequence !== undefined ? { sequence: b.sequence } : {}),
    };
  });
}
