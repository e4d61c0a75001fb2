import type { MasterKeyConfig } from './master-key-config.js';
import { FileMasterKey } from './file.js';
import type { MasterKey } from './master-key.js';
import { PlaintextMasterKey } from './plaintext.js';

/** Where the key is used: needed by the checks a key must pass. */
export interface MasterKeyContext {
  /** The data dir the key protects: a key file inside it is refused. */
  dataDir?: string;
  /** previous-master-key: the key being rotated away from, held to fewer checks (see FileMasterKeyPolicy). */
  previous?: boolean;
}

/** The backend a `[security.encryption.master-key]` section describes. */
export async function createMasterKey(config: MasterKeyConfig, context: MasterKeyContext = {}): Promise<MasterKey> {
  switch (config.type) {
    case 'plaintext':
      return new PlaintextMasterKey();
    case 'file':
      return FileMasterKey.load(config.path, {
        ...(context.dataDir !== undefined ? { dataDir: context.dataDir } : {}),
        ...(config.allowInsecurePermissions !== undefined ? { allowInsecurePermissions: config.allowInsecurePermissions } : {}),
        ...(context.previous !== undefined ? { previous: context.previous } : {}),
      });
    case 'kms': {
      // Loaded on demand: the AWS SDK takes ~0.5 s to load, which every command would pay.
      const { KmsMasterKey } = await import('./kms.js');
      return new KmsMasterKey(config);
    }
    case 'pkcs11': {
      const { Pkcs11MasterKey } = await import('./pkcs11.js');
      return Pkcs11MasterKey.open(config, context.previous !== undefined ? { previous: context.previous } : {});
    }
    case 'certificate': {
      // The SMK is checked like any master key of this machine: a key file inside the data dir is refused.
      const smk = await createMasterKey(config.serviceMasterKey, context.dataDir !== undefined ? { dataDir: context.dataDir } : {});
      const { CertificateMasterKey } = await import('./certificate/certificate-master-key.js');
      return CertificateMasterKey.open(config, smk, context.dataDir !== undefined ? { dataDir: context.dataDir } : {});
    }
  }
}
