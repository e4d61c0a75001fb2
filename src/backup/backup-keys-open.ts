import { TdekvError } from '../errors.js';
import { zeroize } from '../crypto/random.js';
import { KeyRing, deriveBackupKey, unsealHex } from './backup-key.js';
import { authenticateManifest, type ParsedManifest } from './backup-format.js';
import { unwrapBackupKey, type AvailableProtectors } from './protector.js';

export function earlierAad(id: string, keyId: number): string {
  return `tdekv backup ${id} earlier key ${keyId}`;
}

export function nameKeyAad(id: string): string {
  return `tdekv backup ${id} name key`;
}

/**
 * Opens a backup's keys: its own (through its protector), which authenticates the manifest,
 * then the earlier keys of the chain it carries sealed under its own, all into `ring`.
 * Returns the chain's name key (the caller wipes it). `why` says, in a missing-protector
 * error, what the key is needed for.
 */
export async function openBackupKeys(m: ParsedManifest, available: AvailableProtectors, ring: KeyRing, why?: string): Promise<{ nameKey: Buffer }> {
  const id = m.body.id;
  let key: Buffer;
  try {
    key = await unwrapBackupKey(m.body.key, id, available);
  } catch (err) {
    if (why !== undefined && err instanceof TdekvError && err.code === 'BACKUP_KEY_UNAVAILABLE') {
      throw new TdekvError('BACKUP_KEY_UNAVAILABLE', `${err.message} (${why})`, { cause: err });
    }
    throw err;
  }
  authenticateManifest(m, key);
  ring.set(m.body.keyId, key);
  const sealKey = deriveBackupKey(key, 'key-seal', id);
  try {
    for (const e of m.body.earlierKeys) {
      const k = unsealHex(sealKey, e.sealed, earlierAad(id, e.keyId));
      if (!k) throw new TdekvError('BACKUP_DAMAGED', `backup ${id}: the key of earlier backup ${e.backup} it carries fails its check: the manifest is damaged`);
      ring.set(e.keyId, k);
    }
    const nameKey = unsealHex(sealKey, m.body.nameKey, nameKeyAad(id));
    if (!nameKey) throw new TdekvError('BACKUP_DAMAGED', `backup ${id}: its sealed name key fails its check: the manifest is damaged`);
    return { nameKey };
  } finally {
    zeroize(sealKey);
  }
}
