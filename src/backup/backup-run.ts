import { Readable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { TdekvError } from '../errors.js';
import { freshIv, zeroize } from '../crypto/random.js';
import { newKeyId } from '../keys/data-key.js';
import { ScanThrottle } from '../lifecycle/scan-throttle.js';
import { PACKAGE_VERSION } from '../util/package-version.js';
import type { BackupSource, BackupSourceFile } from './backup-source.js';
import type { BackupStorage } from './storage/backup-storage.js';
import { KeyRing, contentId, deriveBackupKey, newBackupKey, sealHex } from './backup-key.js';
import { encodeManifest, manifestName, newBackupId, newObjectName, startedName, uploaderOf, STARTED_FORMAT, type BackupObject, type EarlierKey, type ManifestBody, type StartedMarker } from './backup-format.js';
import { findBackup } from './backup-catalog.js';
import { ProgressCounter, type BackupProgress } from './backup-progress.js';
import { registryNameOf, wrapBackupKey, type AvailableProtectors, type ProtectorChoice } from './protector.js';
import { earlierAad, nameKeyAad, openBackupKeys } from './backup-keys-open.js';

export interface BackupOptions {
  protector: ProtectorChoice;
  /** Reference the tables the latest complete backup at the storage already holds (a full backup when there is none). */
  incremental?: boolean;
  /** What opens the latest backup's key, for --incremental. */
  available?: AvailableProtectors;
  /** Upload bytes a second; 0 or absent: unlimited. */
  rateLimit?: number;
  onProgress?: (p: BackupProgress) => void;
}

export interface BackupResult {
  id: string;
  manifest: ManifestBody;
}

const NEVER = new Promise<void>(() => {});
/** Upload chunks: small enough that the rate limit holds within a file. */
const UPLOAD_CHUNK = 256 * 1024;

/**
 * Takes one backup of `source` into `storage`: a fresh backup key wrapped by the protector,
 * every file exported under it (verified under its live key on the way), hashed and uploaded,
 * and the authenticated manifest written last, so a backup that stops half way is never
 * listed as complete. Any BackupSource works (a stopped data dir, a running server).
 */
/** Files backed up at once (exports and uploads overlapping). */
const BACKUP_LANES = 3;

export async function runBackup(source: BackupSource, storage: BackupStorage, options: BackupOptions): Promise<BackupResult> {
  const id = newBackupId();
  const files = source.files();
  const info = source.info();
  const ring = new KeyRing();
  let nameKey: Buffer | undefined;
  const backupKey = newBackupKey();
  try {
    // The protector first: a missing certificate or key file fails before anything is uploaded.
    const wrapped = await wrapBackupKey(options.protector, backupKey, id, registryNameOf(storage.displayUrl, id));
    const known = new Map<string, BackupObject>();
    let chain = id;
    let parent: string | undefined;
    if (options.incremental) {
      const latest = await findBackup(storage).catch((err: unknown) => {
        if (err instanceof TdekvError && err.code === 'BACKUP_NOT_FOUND') return undefined;
        throw err;
      });
      if (latest) {
        const opened = await openBackupKeys(latest, options.available ?? {}, ring, 'an incremental backup needs it to reference what that backup holds; or take a full backup (without --incremental)');
        nameKey = opened.nameKey;
        chain = latest.body.chain;
        parent = latest.body.id;
        for (const o of latest.body.objects) if (o.contentId !== undefined) known.set(o.contentId, o);
      }
    }
    nameKey ??= randomBytes(32);
    const keyId = newKeyId(new Set(ring.ids()));
    const started: StartedMarker = { format: STARTED_FORMAT, id, startedAt: new Date().toISOString(), origin: info.origin };
    const marker = Buffer.from(JSON.stringify(started), 'utf8');
    await storage.put(startedName(id), marker, marker.length);

    const throttle = new ScanThrottle();
    throttle.limit = options.rateLimit ?? 0;
    const progress = new ProgressCounter('backup', files.length, files.reduce((n, f) => n + f.size, 0), options.onProgress);
    const objects: BackupObject[] = [];
    const sealKey = deriveBackupKey(backupKey, 'key-seal', id);
    const earlier = new Map<number, EarlierKey>();
    let sealedNameKey;
    // Several files at once: their exports (on the source's worker threads, or the server) overlap
    // each other and the storage's writes and syncs. The manifest lists them in the source's order.
    const slots: Array<BackupObject | undefined> = new Array(files.length);
    try {
      sealedNameKey = sealHex(sealKey, nameKey, nameKeyAad(id));
      const backupOne = async (f: BackupSourceFile): Promise<BackupObject> => {
        const cid = f.kind === 'table' && f.identity !== undefined ? contentId(nameKey!, f.identity) : undefined;
        const prior = cid !== undefined ? known.get(cid) : undefined;
        if (prior) {
          if (!earlier.has(prior.keyId)) {
            earlier.set(prior.keyId, { backup: uploaderOf(prior.object) ?? '', keyId: prior.keyId, sealed: sealHex(sealKey, ring.get(prior.keyId), earlierAad(id, prior.keyId)) });
          }
          progress.add(f.size, f.name);
          progress.fileDone(f.name);
          return { ...prior, file: f.name, added: false };
        }
        const iv = freshIv();
        const chunks: Buffer[] = [];
        const sha = createHash('sha256');
        const size = await source.export(f.name, { method: 'aes256-ctr', key: backupKey, keyId, iv }, (c) => {
          chunks.push(c);
          sha.update(c);
        });
        const object = newObjectName(id);
        await storage.put(object, Readable.from(paced(chunks, throttle, (n) => progress.add(n * (f.size / Math.max(size, 1)), f.name))), size);
        progress.fileDone(f.name);
        return { file: f.name, kind: f.kind, size, object, keyId, iv: iv.toString('hex'), sha256: sha.digest('hex'), ...(cid !== undefined ? { contentId: cid } : {}), added: true };
      };
      let next = 0;
      // The first failure stops the other lanes from starting more files.
      let failure: { err: unknown } | undefined;
      const lane = async (): Promise<void> => {
        while (failure === undefined && next < files.length) {
          const i = next++;
          try {
            slots[i] = await backupOne(files[i]!);
          } catch (err) {
            failure ??= { err };
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(BACKUP_LANES, files.length) }, lane));
      if (failure !== undefined) throw failure.err;
      for (const o of slots) objects.push(o!);
    } finally {
      zeroize(sealKey);
    }
    progress.finish();
    const added = objects.filter((o) => o.added);
    const body: ManifestBody = {
      id,
      chain,
      ...(parent !== undefined ? { parent } : {}),
      createdAt: new Date().toISOString(),
      tdekvVersion: PACKAGE_VERSION,
      source: { origin: info.origin, method: info.method, masterKey: info.masterKey },
      ...(info.sequence !== undefined ? { sequence: info.sequence } : {}),
      key: wrapped,
      keyId,
      earlierKeys: [...earlier.values()],
      nameKey: sealedNameKey,
      objects,
      totals: {
        files: objects.length,
        bytes: objects.reduce((n, o) => n + o.size, 0),
        addedFiles: added.length,
        addedBytes: added.reduce((n, o) => n + o.size, 0),
      },
    };
    const manifest = encodeManifest(body, backupKey);
    await storage.put(manifestName(id), manifest, manifest.length);
    return { id, manifest: body };
  } finally {
    zeroize(backupKey, nameKey);
    ring.wipe();
  }
}

async function* paced(chunks: Buffer[], throttle: ScanThrottle, done: (n: number) => void): AsyncGenerator<Buffer> {
  for (const c of chunks) {
    for (let at = 0; at < c.length; at += UPLOAD_CHUNK) {
      const part = c.subarray(at, at + UPLOAD_CHUNK);
      await throttle.take(part.length, NEVER);
      yield part;
      done(part.length);
    }
  }
}
