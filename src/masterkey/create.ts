import type { MasterKeyConfig } from '../config/types.js';
import { FileMasterKey } from './file.js';
import type { MasterKey } from './master-key.js';
import { PlaintextMasterKey } from './plaintext.js';

/** The backend a `[security.encryption.master-key]` section describes. */
export async function createMasterKey(config: MasterKeyConfig): Promise<MasterKey> {
  switch (config.type) {
    case 'plaintext':
      return new PlaintextMasterKey();
    case 'file':
      return FileMasterKey.load(config.path);
    case 'kms': {
      // Loaded on demand: the AWS SDK takes ~0.5 s to load, which every command would pay.
      const { KmsMasterKey } = await import('./kms.js');
      return new KmsMasterKey(config);
    }
  }
}
