import { createHash } from 'node:crypto';
import { isTdekvError } from '../errors.js';
import type { BackupStorage } from './storage/backup-storage.js';
import { KeyRing } from './backup-key.js';
import { objectDamaged, type BackupObject } from './backup-format.js';
import { readCatalog } from './backup-catalog.js';
import { openBackupKeys } from './backup-keys-open.js';
import { ProgressCounter, type BackupProgress } from './backup-progress.js';
import { describeProtector, type AvailableProtectors } from './protector.js';

export interface VerifyOptions {
  /** Only this backup (default: every complete one). */
  backupId?: string;
  /** What opens the backups' keys, to check the manifests' MACs; without it only sizes and hashes are checked. */
  available?: AvailableProtectors;
  onProgress?: (p: BackupProgress) => void;
}

export interface BackupVerdict {
  id: string;
  /** The manifest's MAC was checked under the backup's key. */
  macChecked: boolean;
  /** Why it was not. */
  macNote?: string;
  objects: number;
  bytes: number;
  /** Each names the object (or the manifest) and what is wrong. */
  problems: string[];
}

export interface VerifyResult {
  ok: boolean;
  backups: BackupVerdict[];
}

/**
 * Reads every object of every complete backup (or one) and checks it without restoring:
 * present, its size, its SHA-256 against the manifest, and the manifest's MAC when the
 * protector is available here. An object shared by several backups is read once.
 */
export async function runVerify(storage: BackupStorage, options: VerifyOptions = {}): Promise<VerifyResult> {
  const catalog = (await readCatalog(storage)).filter((e) => e.complete && (options.backupId === undefined || e.id === options.backupId));
  const checked = new Map<string, string | null>();
  const verdicts: BackupVerdict[] = [];
  const all = catalog.flatMap((e) => e.manifest?.body.objects ?? []);
  const unique = new Map(all.map((o) => [o.object, o]));
  const progress = new ProgressCounter('verify', unique.size, [...unique.values()].reduce((n, o) => n + o.size, 0), options.onProgress);
  for (const e of catalog) {
    if (!e.manifest) {
      verdicts.push({ id: e.id, macChecked: false, macNote: 'the manifest could not be read', objects: 0, bytes: 0, problems: [e.damaged?.message ?? `backup ${e.id}: manifest unreadable`] });
      continue;
    }
    const body = e.manifest.body;
    const v: BackupVerdict = { id: e.id, macChecked: false, objects: body.objects.length, bytes: body.totals.bytes, problems: [] };
    const ring = new KeyRing();
    try {
      await openBackupKeys(e.manifest, options.available ?? {}, ring).then(({ nameKey }) => nameKey.fill(0));
      v.macChecked = true;
    } catch (err) {
      if (isTdekvError(err, 'BACKUP_DAMAGED')) v.problems.push(err.message);
      else v.macNote = `the manifest's MAC was not checked: its key is wrapped by ${describeProtector(body.key.protector)}, not available here (${err instanceof Error ? err.message : String(err)})`;
    } finally {
      ring.wipe();
    }
    for (const o of body.objects) {
      let problem = checked.get(o.object);
      if (problem === undefined) {
        problem = await checkObject(storage, e.id, o, progress);
        checked.set(o.object, problem);
        progress.fileDone(o.file);
      }
      if (problem !== null) v.problems.push(problem);
    }
    verdicts.push(v);
  }
  progress.finish();
  return { ok: verdicts.every((v) => v.problems.length === 0), backups: verdicts };
}

async function checkObject(storage: BackupStorage, id: string, o: BackupObject, progress: ProgressCounter): Promise<string | null> {
  try {
    const stat = await storage.stat(o.object);
    if (stat === undefined) return objectDamaged(id, o, 'is missing from the storage').message;
    if (stat.size !== o.size) return objectDamaged(id, o, `is ${stat.size} bytes where the manifest records ${o.size}`).message;
    const sha = createHash('sha256');
    for await (const chunk of (await storage.get(o.object)) as AsyncIterable<Buffer>) {
      sha.update(chunk);
      progress.add(chunk.length, o.file);
    }
    if (sha.digest('hex') !== o.sha256) return objectDamaged(id, o, 'fails its SHA-256 check').message;
    return null;
  } catch (err) {
    return objectDamaged(id, o, `cannot be read (${err instanceof Error ? err.message : String(err)})`).message;
  }
}
