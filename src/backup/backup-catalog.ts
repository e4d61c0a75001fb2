import { TdekvError, isTdekvError } from '../errors.js';
import { BACKUPS_PREFIX, isBackupId, manifestName, parseManifest, type ParsedManifest } from './backup-format.js';
import type { BackupStorage } from './storage/backup-storage.js';

/** One backup at a storage: complete once its manifest exists (the manifest is written last). */
export interface CatalogEntry {
  id: string;
  complete: boolean;
  /** A complete backup's manifest, parsed but not authenticated (that needs its key). */
  manifest?: ParsedManifest;
  /** Why a manifest that exists could not be parsed. */
  damaged?: TdekvError;
}

/** Every backup at the storage, oldest first (ids sort by time). */
export async function readCatalog(storage: BackupStorage): Promise<CatalogEntry[]> {
  const ids = new Map<string, boolean>();
  for await (const { name } of storage.list(BACKUPS_PREFIX)) {
    const m = /^backups\/([^/]+)\/(started|manifest)$/.exec(name);
    if (!m || !isBackupId(m[1]!)) continue;
    ids.set(m[1]!, (ids.get(m[1]!) ?? false) || m[2] === 'manifest');
  }
  const out: CatalogEntry[] = [];
  for (const id of [...ids.keys()].sort()) {
    if (!ids.get(id)) {
      out.push({ id, complete: false });
      continue;
    }
    try {
      out.push({ id, complete: true, manifest: parseManifest(await storage.getBuffer(manifestName(id)), manifestName(id)) });
    } catch (err) {
      if (!isTdekvError(err, 'BACKUP_DAMAGED')) throw err;
      out.push({ id, complete: true, damaged: err });
    }
  }
  return out;
}

/** A complete backup by id, or the latest one; BACKUP_NOT_FOUND naming the storage otherwise. */
export async function findBackup(storage: BackupStorage, id?: string): Promise<ParsedManifest> {
  if (id !== undefined) {
    if (!isBackupId(id) || (await storage.stat(manifestName(id))) === undefined) {
      throw new TdekvError('BACKUP_NOT_FOUND', `no complete backup ${id} at ${storage.displayUrl}: \`tdekv backup list --storage ${storage.displayUrl}\` shows the backups there`);
    }
    return parseManifest(await storage.getBuffer(manifestName(id)), manifestName(id));
  }
  const complete = (await readCatalog(storage)).filter((e) => e.complete);
  const latest = complete[complete.length - 1];
  if (!latest) throw new TdekvError('BACKUP_NOT_FOUND', `no complete backup at ${storage.displayUrl}: take one with \`tdekv backup full\``);
  if (latest.damaged) throw latest.damaged;
  return latest.manifest!;
}
