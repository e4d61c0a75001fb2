import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { TdekvError } from '../errors.js';
import type { BackupSourceFile } from './backup-source.js';
import { deriveBackupKey, type SealedHex } from './backup-key.js';
import type { WrappedBackupKey } from './protector.js';

/**
 * The layout of a backup storage:
 *
 *   backups/<id>/started     written first: a backup without a manifest is incomplete
 *   backups/<id>/manifest    written last: the backup is complete once it exists
 *   objects/<id>/<random>    one encrypted file, uploaded by backup <id>
 *
 * Object names are random: they say nothing about the files. Incremental backups recognise a
 * table by its content id (an HMAC of its source identity under the chain's name key),
 * recorded in the manifest, not by its object name.
 *
 * Each object is one engine file framed as the live store would hold it under a data key:
 * AES-256-CTR under the key of the backup that uploaded it, a fresh random IV per file (no
 * (key, IV) pair is used twice), and the engine's per-block/record tags under that key.
 * The manifest records per object the SHA-256 of its bytes and is itself authenticated
 * (HMAC-SHA256 under a key derived from the backup key), so a change to any byte of an
 * object or of the manifest is detected, naming the object.
 */
export const MANIFEST_FORMAT = 'tdekv-backup-manifest-1';
export const STARTED_FORMAT = 'tdekv-backup-started-1';
export const BACKUPS_PREFIX = 'backups/';
export const OBJECTS_PREFIX = 'objects/';

export function manifestName(id: string): string {
  return `${BACKUPS_PREFIX}${id}/manifest`;
}

export function startedName(id: string): string {
  return `${BACKUPS_PREFIX}${id}/started`;
}

export function newObjectName(backupId: string): string {
  return `${OBJECTS_PREFIX}${backupId}/${randomBytes(16).toString('hex')}`;
}

/** The backup that uploaded an object (from its name), or undefined for a foreign name. */
export function uploaderOf(objectName: string): string | undefined {
  const m = /^objects\/([^/]+)\/[0-9a-f]{32}$/.exec(objectName);
  return m?.[1];
}

/** Sortable by time, unique: 20261203T183712.123Z-1a2b3c. */
export function newBackupId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '');
  return `${t}-${randomBytes(3).toString('hex')}`;
}

export function isBackupId(id: string): boolean {
  return /^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$/.test(id);
}

export interface BackupObject {
  /** The data-dir relative file name it restores to. */
  file: string;
  kind: BackupSourceFile['kind'];
  /** Bytes of the object. */
  size: number;
  /** The storage object. */
  object: string;
  /** The data key id it is framed under: this backup's key, or an earlier one of the chain. */
  keyId: number;
  /** The file's IV, hex. */
  iv: string;
  /** SHA-256 of the object's bytes, hex. */
  sha256: string;
  /** Tables with a source identity: how later backups of the chain recognise them. */
  contentId?: string;
  /** Uploaded by this backup (false: referenced from an earlier one). */
  added: boolean;
}

/** An earlier backup's key, which objects referenced here are framed under. */
export interface EarlierKey {
  backup: string;
  keyId: number;
  /** Sealed under this backup's key. */
  sealed: SealedHex;
}

export interface ManifestBody {
  id: string;
  /** The first backup of the incremental chain (this one for a full backup). */
  chain: string;
  /** The backup this one is incremental on, if any. */
  parent?: string;
  createdAt: string;
  tdekvVersion: string;
  source: { origin: string; method: string; masterKey: string };
  /** The last sequence number of the backed-up version, when the source knows it. */
  sequence?: number;
  /** This backup's key (the data key its new objects are framed under), wrapped by its protector. */
  key: WrappedBackupKey;
  keyId: number;
  earlierKeys: EarlierKey[];
  /** The chain's name key, sealed under this backup's key. */
  nameKey: SealedHex;
  objects: BackupObject[];
  totals: { files: number; bytes: number; addedFiles: number; addedBytes: number };
}

export interface StartedMarker {
  format: typeof STARTED_FORMAT;
  id: string;
  startedAt: string;
  origin: string;
}

function macOf(backupKey: Uint8Array, id: string, bodyText: string): string {
  const key = deriveBackupKey(backupKey, 'manifest-mac', id);
  try {
    return createHmac('sha256', key).update(bodyText, 'utf8').digest('hex');
  } finally {
    key.fill(0);
  }
}

/** The stored form: one line of JSON, its body authenticated by `mac`. */
export function encodeManifest(body: ManifestBody, backupKey: Uint8Array): Buffer {
  const bodyText = JSON.stringify(body);
  return Buffer.from(JSON.stringify({ format: MANIFEST_FORMAT, body, mac: macOf(backupKey, body.id, bodyText) }), 'utf8');
}

export interface ParsedManifest {
  body: ManifestBody;
  mac: string;
  /** The body exactly as authenticated. */
  bodyText: string;
  /** Where it was read from (its storage name), which must be its own backup's. */
  name: string;
}

function damaged(name: string, why: string): TdekvError {
  return new TdekvError('BACKUP_DAMAGED', `backup manifest ${name} is damaged: ${why}; it cannot be trusted (take a new backup, or use another one)`);
}

/**
 * Parses a manifest without its key (listing and verify without the protector). A stored
 * manifest is exactly the canonical JSON of what it holds, so a changed byte anywhere either
 * breaks the parse, breaks the canonical form, or changes the authenticated body or MAC.
 */
export function parseManifest(raw: Buffer, name: string): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch {
    throw damaged(name, 'it is not valid JSON');
  }
  if (typeof doc !== 'object' || doc === null) throw damaged(name, 'it is not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d['format'] !== MANIFEST_FORMAT) throw damaged(name, `its format is not ${MANIFEST_FORMAT}`);
  if (typeof d['mac'] !== 'string' || !/^[0-9a-f]{64}$/.test(d['mac'])) throw damaged(name, 'its MAC is missing or malformed');
  if (Object.keys(d).join(',') !== 'format,body,mac' || JSON.stringify(d) !== raw.toString('utf8') || !Buffer.from(JSON.stringify(d), 'utf8').equals(raw)) {
    throw damaged(name, 'it is not in its canonical form (bytes were changed)');
  }
  const body = d['body'] as ManifestBody;
  if (typeof body !== 'object' || body === null || !Array.isArray(body.objects) || typeof body.id !== 'string' || typeof body.key !== 'object') {
    throw damaged(name, 'its body is incomplete');
  }
  // Checked without the key too: copying an older backup's manifest over the newest one's (a
  // rollback anyone who can write the storage can do) must not pass for the newest backup.
  if (manifestName(body.id) !== name) throw damaged(name, `it is the manifest of backup ${body.id}, put in another backup's place`);
  return { body, mac: d['mac'], bodyText: JSON.stringify(body), name };
}

/** Checks the manifest's MAC under its backup key; BACKUP_DAMAGED naming it when it fails. */
export function authenticateManifest(m: ParsedManifest, backupKey: Uint8Array): void {
  const want = Buffer.from(macOf(backupKey, m.body.id, m.bodyText), 'hex');
  if (!timingSafeEqual(want, Buffer.from(m.mac, 'hex'))) throw damaged(m.name, 'it fails its authentication (MAC): it was changed after the backup wrote it');
  if (manifestName(m.body.id) !== m.name) throw damaged(m.name, `it is the manifest of backup ${m.body.id}, put in another backup's place`);
}

/** The error for an object that does not match its manifest entry. */
export function objectDamaged(backupId: string, o: BackupObject, why: string): TdekvError {
  return new TdekvError('BACKUP_DAMAGED', `backup ${backupId}: object ${o.object} (file ${o.file}) ${why}: the backup is damaged or was tampered with`);
}
