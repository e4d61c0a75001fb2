import { TdekvError } from '../../errors.js';
import type { BackupStorage } from './backup-storage.js';
import { LocalStorage } from './local-storage.js';
import type { StorageSpec } from './storage-url.js';

/**
 * The backend for a parsed storage URL. The cloud SDKs are loaded only when their scheme is
 * used: a local backup does not pay for loading them.
 */
export async function openStorage(spec: StorageSpec): Promise<BackupStorage> {
  switch (spec.kind) {
    case 'local':
      return new LocalStorage(spec);
    case 's3':
    case 'azure':
      throw new TdekvError('INVALID_ARGUMENT', `--storage ${spec.displayUrl}: the ${spec.kind} backend is not built yet`);
  }
}
