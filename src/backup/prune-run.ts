import { TdekvError } from '../errors.js';
import type { BackupStorage } from './storage/backup-storage.js';
import { OBJECTS_PREFIX, manifestName, startedName, uploaderOf } from './backup-format.js';
import { readCatalog } from './backup-catalog.js';
import { registryNameOf } from './protector.js';
import { KeyStore } from '../masterkey/certificate/key-store.js';

export interface PruneResult {
  kept: string[];
  removedBackups: string[];
  removedObjects: number;
  removedBytes: number;
}

/**
 * Keeps the newest `keep` complete backups and removes the rest: their manifests first (so a
 * backup half pruned is incomplete, never complete with objects missing), then every object
 * no kept manifest references, then the markers. A backup still running (incomplete and newer
 * than every complete one) and its objects are left alone.
 */
export interface PruneOptions {
  /** A key store whose registry records which backups need its certificates: the removed backups' entries are dropped from it. */
  keyStore?: string;
}

export async function runPrune(storage: BackupStorage, keep: number, options: PruneOptions = {}): Promise<PruneResult> {
  if (!Number.isInteger(keep) || keep < 1) throw new TdekvError('INVALID_ARGUMENT', `--keep ${keep}: keep at least one backup (an integer ≥ 1)`);
  const catalog = await readCatalog(storage);
  const complete = catalog.filter((e) => e.complete);
  if (complete.some((e) => e.damaged)) {
    const bad = complete.filter((e) => e.damaged).map((e) => e.id);
    throw new TdekvError('BACKUP_DAMAGED', `prune refused: the manifests of ${bad.join(', ')} cannot be read, so what they reference is unknown; run \`tdekv backup verify\` and remove them by hand if they are beyond repair`);
  }
  const kept = complete.slice(-keep);
  const newestComplete = complete[complete.length - 1]?.id ?? '';
  const running = new Set(catalog.filter((e) => !e.complete && e.id > newestComplete).map((e) => e.id));
  const keptIds = new Set(kept.map((e) => e.id));
  const removedBackups = catalog.filter((e) => !keptIds.has(e.id) && !running.has(e.id)).map((e) => e.id);
  for (const id of removedBackups) await storage.remove(manifestName(id));
  const referenced = new Set(kept.flatMap((e) => e.manifest!.body.objects.map((o) => o.object)));
  let removedObjects = 0;
  let removedBytes = 0;
  const doomed: Array<{ name: string; size: number }> = [];
  for await (const o of storage.list(OBJECTS_PREFIX)) {
    const uploader = uploaderOf(o.name);
    if (referenced.has(o.name) || (uploader !== undefined && running.has(uploader))) continue;
    doomed.push(o);
  }
  for (const o of doomed) {
    await storage.remove(o.name);
    removedObjects++;
    removedBytes += o.size;
  }
  for (const id of removedBackups) await storage.remove(startedName(id));
  // drop-certificate may drop a certificate only these backups needed.
  if (options.keyStore !== undefined) for (const id of removedBackups) await new KeyStore(options.keyStore).removeProtection(registryNameOf(storage.displayUrl, id));
  return { kept: kept.map((e) => e.id), removedBackups, removedObjects, removedBytes };
}
