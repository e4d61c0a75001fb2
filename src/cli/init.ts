import { loadConfig } from '../config/config.js';
import { encryptionStatus } from '../env/encryption-status.js';
import { openEnvFromConfig } from '../env/open-env.js';
import { formatStatus } from './status-format.js';
import type { Logger } from '../log/logger.js';
import { pathExists } from '../keys/atomic-file.js';
import { refuseInsideDataDir } from '../masterkey/file.js';
import { writeMasterKeyFile } from './keygen.js';
import type { Output } from './ctl.js';

/**
 * Prepares a data dir: creates the key and file dictionaries (and, when asked, a missing
 * master key file), then prints the encryption status.
 */
export async function init(opts: { config: string; generateMasterKey?: boolean; adoptPlaintextFiles?: boolean }, io: Output, logger: Logger): Promise<void> {
  const config = await loadConfig(opts.config);
  const mk = config.security.encryption.masterKey;
  if (mk.type === 'file' && opts.generateMasterKey && !(await pathExists(mk.path))) {
    // Refused before it is written: a key generated into the data dir would only be refused at open.
    await refuseInsideDataDir(mk.path, config.storage.dataDir);
    await writeMasterKeyFile(mk.path);
    logger.warn(
      { path: mk.path },
      'generated a master key file for this quickstart. Production master keys belong on tmpfs or in a KMS, never on the same disk as the data: whoever has both can read everything.',
    );
  }
  const managed = await openEnvFromConfig(config, { logger, adoptPlaintextFiles: opts.adoptPlaintextFiles ?? false });
  try {
    for (const line of formatStatus(await encryptionStatus(managed.env))) io.out(line);
  } finally {
    await managed.close();
  }
}
