import { loadConfig } from '../config/config.js';
import { pathExists } from '../keys/atomic-file.js';
import { createLogger, type Logger } from '../log/logger.js';
import { checkListenAddresses, TdekvServer } from '../server/server.js';
import { warnIfCoreDumpsEnabled } from './core-dumps.js';
import { refuseInsideDataDir } from '../masterkey/file.js';
import { writeMasterKeyFile } from './keygen.js';
import { ensureServiceMasterKeyProtection } from './key.js';

/**
 * `tdekv serve`: runs the server until SIGTERM or SIGINT, then shuts down cleanly (writes
 * received are applied and acknowledged, the memtable is flushed). A second signal while
 * stopping exits at once; the WAL still holds every acknowledged write.
 */
export async function serve(opts: { config: string; generateMasterKey?: boolean; dmkPasswordFile?: string }): Promise<void> {
  const config = await loadConfig(opts.config);
  const logger = createLogger({ level: config.log.level, format: config.log.format, redactUserData: config.security.redactInfoLog });
  // Before any key is loaded, so the warning comes first.
  await warnIfCoreDumpsEnabled(logger);
  // Before anything is written: a busy port must not leave a new key file or data dir behind.
  await checkListenAddresses(config);
  await generateQuickstartKey(config.security.encryption.masterKey, config.storage.dataDir, opts.generateMasterKey === true, logger);
  if (opts.dmkPasswordFile !== undefined) {
    const done = await ensureServiceMasterKeyProtection(config, opts.dmkPasswordFile);
    if (done !== undefined) logger.warn(done);
  }
  const server = await TdekvServer.start(config, logger);
  // ENCRYPTION RELOAD re-reads the file, checked by every rule a start would apply.
  server.setEncryptionConfigSource(async () => (await loadConfig(opts.config)).security.encryption);
  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(130);
      }
      logger.info({ signal }, 'shutting down');
      server.stop().then(resolve, (err: unknown) => {
        logger.error({ err: err instanceof Error ? err.message : String(err) }, 'shutdown failed');
        process.exitCode = 1;
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', () => reloadOnSignal(server, logger));
  });
  logger.flush();
}

/**
 * SIGHUP: as ENCRYPTION RELOAD, the config file's [security.encryption] is applied online. A
 * refused reload (a bad config, a change while a scan runs) is logged and changes nothing; it
 * never stops the server.
 */
function reloadOnSignal(server: TdekvServer, logger: Logger): void {
  logger.info({ signal: 'SIGHUP' }, 'reloading [security.encryption] from the config file');
  server.reloadEncryption().then(
    (report) => {
      const s = report.status;
      logger.info(
        { applied: report.applied, needsRestart: report.needsRestart, encryptionState: s.encryptionStateDesc, scanState: s.scanStateDesc, percentComplete: s.percentComplete },
        report.needsRestart.length > 0 ? `reload applied ${report.applied.length} change(s); these need a restart and were not applied: ${report.needsRestart.join(', ')}` : `reload applied ${report.applied.length} change(s)`,
      );
    },
    (err: unknown) => logger.error({ err: err instanceof Error ? err.message : String(err) }, 'reload refused; nothing was changed'),
  );
}

async function generateQuickstartKey(mk: { type: string; path?: string }, dataDir: string, generate: boolean, logger: Logger): Promise<void> {
  if (mk.type !== 'file' || mk.path === undefined || !generate || (await pathExists(mk.path))) return;
  // Refused before it is written: a key generated into the data dir would only be refused at open.
  await refuseInsideDataDir(mk.path, dataDir);
  await writeMasterKeyFile(mk.path);
  logger.warn(
    { path: mk.path },
    'generated a master key file for this quickstart. Production master keys belong on tmpfs or in a KMS, never on the same disk as the data: whoever has both can read everything.',
  );
}
