import type { AzureStorageOptions } from './azure-storage.js';
import type { BackupStorage } from './backup-storage.js';
import { LocalStorage } from './local-storage.js';
import type { S3StorageOptions } from './s3-storage.js';
import type { StorageSpec } from './storage-url.js';

/** Tuning a command line does not expose (tests use it to force multipart uploads, or trust an emulator's certificate). */
export interface OpenStorageOptions {
  s3?: S3StorageOptions;
  azure?: AzureStorageOptions;
}

/**
 * The backend for a parsed storage URL. The cloud SDKs are loaded only when their scheme is
 * used: a local backup does not pay for loading them.
 */
export async function openStorage(spec: StorageSpec, options: OpenStorageOptions = {}): Promise<BackupStorage> {
  switch (spec.kind) {
    case 'local':
      return new LocalStorage(spec);
    case 's3': {
      const { S3Storage } = await import('./s3-storage.js');
      return new S3Storage(spec, options.s3);
    }
    case 'azure': {
      const { AzureStorage } = await import('./azure-storage.js');
      return new AzureStorage(spec, options.azure);
    }
  }
}
