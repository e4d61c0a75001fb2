#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { PACKAGE_VERSION } from '../util/package-version.js';
import { isTdekvError } from '../errors.js';
import { createLogger } from '../log/logger.js';
import { startupIoError } from '../util/startup-io-error.js';
import { decryptFile, dumpFile, dumpKey, status, verify, type CtlTarget, type Output } from './ctl.js';
import { init } from './init.js';
import { ENCRYPTION_ACTIONS, encryptionCommand, type EncryptionAction } from './encryption.js';
import { addAdminConnectionOptions } from './admin-connection.js';
import { serve } from './serve.js';
import { reencryptAll, retireDataKeys, rotateDataKey } from './maintenance.js';
import {
  backupCertificateCommand,
  createCertificateCommand,
  createMasterKeyCommand,
  dropCertificateCommand,
  listCommand,
  openMasterKeyCommand,
  restoreCertificateCommand,
} from './key.js';
import { createPkcs11Key, newMasterKeyText, writeMasterKeyFile, writeSecret } from './keygen.js';
import { registerBackupCommands } from './backup.js';

const io: Output = {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
  secret: (bytes) => writeSecret(process.stdout, bytes),
};


function program(): Command {
  const root = new Command('tdekv')
    .description('tdekv: a key-value database that encrypts every byte at rest')
    .version(PACKAGE_VERSION)
    .exitOverride()
    .showHelpAfterError();

  root
    .command('keygen')
    .description('create a new master key (64 hex characters and a newline); never overwrites')
    .option('--out <file>', 'write the key to this file, mode 0600 (default: print to stdout)')
    .option('--pkcs11', 'instead, create a non-extractable AES-256 key on a PKCS#11 token (PIN from --pin-file or TDEKV_PKCS11_PIN)')
    .option('--module <path>', 'with --pkcs11: the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so')
    .option('--token-label <label>', 'with --pkcs11: the token, by label')
    .option('--slot <id>', 'with --pkcs11: the token, by slot id', (v: string) => Number.parseInt(v, 10))
    .option('--key-label <label>', 'with --pkcs11: CKA_LABEL of the new key (key-label in the config)')
    .option('--pin-file <file>', 'with --pkcs11: file holding the user PIN')
    .action(async (opts: { out?: string; pkcs11?: boolean; module?: string; tokenLabel?: string; slot?: number; keyLabel?: string; pinFile?: string }) => {
      if (opts.pkcs11) {
        io.err(
          await createPkcs11Key({
            module: opts.module ?? '',
            keyLabel: opts.keyLabel ?? '',
            ...(opts.tokenLabel !== undefined ? { tokenLabel: opts.tokenLabel } : {}),
            ...(opts.slot !== undefined ? { slot: opts.slot } : {}),
            ...(opts.pinFile !== undefined ? { pinFile: opts.pinFile } : {}),
          }),
        );
      } else if (opts.out) {
        await writeMasterKeyFile(opts.out);
        io.err(`wrote a new master key to ${opts.out} (mode 0600). Keep it off the data disk: tmpfs or a KMS in production.`);
      } else {
        await writeSecret(process.stdout, newMasterKeyText());
      }
    });

  root
    .command('init')
    .description('create the key and file dictionaries of a data dir and print its encryption status')
    .requiredOption('--config <file>', 'TOML configuration')
    .option('--generate-master-key', 'create the master key file named in the config if it does not exist (quickstart only)')
    .option('--adopt-plaintext-files', 'on the first open of a data dir that already holds files, track them as plaintext')
    .action(async (opts: { config: string; generateMasterKey?: boolean; adoptPlaintextFiles?: boolean }) => {
      await init(opts, io, createLogger());
    });

  root
    .command('serve')
    .description('run the Redis-protocol server (and the HTTP status port) until SIGTERM or SIGINT')
    .requiredOption('--config <file>', 'TOML configuration')
    .option('--generate-master-key', 'create the master key file named in the config if it does not exist (quickstart only)')
    .option('--dmk-password-file <file>', 'type = "certificate": if this machine\'s service master key does not open the key store\'s DMK, open it with this password and add its protection')
    .action(async (opts: { config: string; generateMasterKey?: boolean; dmkPasswordFile?: string }) => serve(opts));

  const keys = root.command('data-key').description('data key maintenance on a stopped database (takes the data dir lock)');
  keys
    .command('rotate')
    .description('make a new current data key now; files keep their key until rewritten')
    .requiredOption('--config <file>', 'TOML configuration')
    .action(async (opts: { config: string }) => rotateDataKey(opts, io, createLogger()));
  keys
    .command('reencrypt')
    .description('rewrite every file that is not under the current method and data key')
    .requiredOption('--config <file>', 'TOML configuration')
    .option('--retire', 'then retire the data keys no file uses any more')
    .action(async (opts: { config: string; retire?: boolean }) => reencryptAll(opts, io, createLogger()));
  keys
    .command('retire')
    .description('drop data keys that no file uses and that are not current')
    .requiredOption('--config <file>', 'TOML configuration')
    .action(async (opts: { config: string }) => retireDataKeys(opts, io, createLogger()));

  const online = root
    .command('encryption')
    .description('the encryption lifecycle of a running server (ENCRYPTION commands): address, TLS and passwords from the config');
  const ONLINE: Record<EncryptionAction, string> = {
    status: 'encryption state, scan state and progress, data key and master key (no key material)',
    reload: 're-read [security.encryption] from the config file and apply it online; waits for the scan it starts',
    regenerate: 'a new data key now, then the scan rewrites every file under it; waits for the scan',
    suspend: 'pause the running encryption scan',
    resume: 'continue a suspended or aborted scan; waits for it',
    retire: 'drop the data keys no file uses',
  };
  for (const action of ENCRYPTION_ACTIONS) {
    const cmd = online
      .command(action)
      .description(ONLINE[action])
      .requiredOption('--config <file>', 'TOML configuration the server runs with')
      .option('--json', 'print JSON')
      .option('--interval <ms>', 'milliseconds between two progress polls', (v: string) => Number.parseInt(v, 10), 1000);
    addAdminConnectionOptions(cmd);
    if (action === 'status') cmd.option('--watch', 'show the progress until the running scan ends');
    if (action === 'reload' || action === 'regenerate' || action === 'resume') cmd.option('--no-wait', 'return at once instead of showing the scan until it ends');
    cmd.action(async (opts: { config: string; addr?: string; json?: boolean; tlsCa?: string; tlsCert?: string; tlsKey?: string; interval: number; watch?: boolean; wait?: boolean }) =>
      encryptionCommand(
        action,
        {
          config: opts.config,
          intervalMs: opts.interval,
          ...(opts.addr !== undefined ? { addr: opts.addr } : {}),
          ...(opts.json !== undefined ? { json: opts.json } : {}),
          ...(opts.tlsCa !== undefined ? { tlsCa: opts.tlsCa } : {}),
          ...(opts.tlsCert !== undefined ? { tlsCert: opts.tlsCert } : {}),
          ...(opts.tlsKey !== undefined ? { tlsKey: opts.tlsKey } : {}),
          ...(opts.watch !== undefined ? { watch: opts.watch } : {}),
          ...(opts.wait !== undefined ? { wait: opts.wait } : {}),
        },
        io,
      ),
    );
  }

  const hierarchy = root
    .command('key')
    .description("SQL Server's key hierarchy (type = \"certificate\"): the key store's master key (DMK) and certificates, offline");
  hierarchy
    .command('create-master-key')
    .description('create the key store\'s database master key, protected by a password and by the service master key (CREATE MASTER KEY)')
    .requiredOption('--config <file>', 'TOML configuration')
    .requiredOption('--password-file <file>', 'file holding the password (one line)')
    .action(async (opts: { config: string; passwordFile: string }) => createMasterKeyCommand(opts, io));
  hierarchy
    .command('create-certificate <name>')
    .description('create a self-signed RSA-3072 certificate whose private key the DMK protects (CREATE CERTIFICATE … WITH SUBJECT)')
    .requiredOption('--config <file>', 'TOML configuration')
    .requiredOption('--subject <text>', 'the subject: plain text (becomes the CN) or "CN=…, O=…"')
    .option('--valid-days <n>', 'validity in days (default 3650; tdekv never refuses an expired certificate, as SQL Server does not for TDE)', (v: string) => Number(v), 3650)
    .action(async (name: string, opts: { config: string; subject: string; validDays: number }) => createCertificateCommand(name, opts, io));
  hierarchy
    .command('backup-certificate <name>')
    .description('write the certificate (PEM) and its private key, PKCS#8 encrypted with a password (BACKUP CERTIFICATE … WITH PRIVATE KEY)')
    .requiredOption('--config <file>', 'TOML configuration')
    .requiredOption('--file <file>', 'where to write the certificate (must not exist)')
    .requiredOption('--private-key-file <file>', 'where to write the encrypted private key (must not exist)')
    .requiredOption('--password-file <file>', 'file holding the password that encrypts the private key')
    .action(async (name: string, opts: { config: string; file: string; privateKeyFile: string; passwordFile: string }) => backupCertificateCommand(name, opts, io));
  hierarchy
    .command('restore-certificate <name>')
    .description('add a certificate and its private key from a backup to this key store (CREATE CERTIFICATE … FROM FILE)')
    .requiredOption('--config <file>', 'TOML configuration')
    .requiredOption('--file <file>', 'the certificate (PEM or DER)')
    .requiredOption('--private-key-file <file>', 'the private key, PKCS#8 encrypted with the password')
    .requiredOption('--password-file <file>', 'file holding the password given to backup-certificate')
    .action(async (name: string, opts: { config: string; file: string; privateKeyFile: string; passwordFile: string }) => restoreCertificateCommand(name, opts, io));
  hierarchy
    .command('open-master-key')
    .description('open the DMK by its password; with --add-service-master-key, protect it by this machine\'s SMK (after moving the key store)')
    .requiredOption('--config <file>', 'TOML configuration')
    .requiredOption('--password-file <file>', 'file holding the DMK\'s password')
    .option('--add-service-master-key', 'protect the DMK by the config\'s [security.encryption.service-master-key] (ALTER MASTER KEY ADD ENCRYPTION BY SERVICE MASTER KEY)')
    .action(async (opts: { config: string; passwordFile: string; addServiceMasterKey?: boolean }) => openMasterKeyCommand(opts, io));
  hierarchy
    .command('list')
    .description('the DMK\'s protections and the certificates (thumbprint, subject, expiry, what each protects); no secrets')
    .requiredOption('--config <file>', 'TOML configuration')
    .option('--json', 'print JSON')
    .action(async (opts: { config: string; json?: boolean }) => listCommand(opts, io));
  hierarchy
    .command('drop-certificate <name>')
    .description('remove a certificate from the key store; refused while it protects a DEK')
    .requiredOption('--config <file>', 'TOML configuration')
    .action(async (name: string, opts: { config: string }) => dropCertificateCommand(name, opts, io));

  registerBackupCommands(root, io);

  const ctl = root
    .command('ctl')
    .description('inspect a data dir (read-only)')
    .requiredOption('--config <file>', 'TOML configuration with the [security.encryption] settings')
    .option('--data-dir <dir>', 'data dir (default: [storage] data-dir of the config)');
  const target = (): CtlTarget => {
    const o = ctl.opts<{ config: string; dataDir?: string }>();
    return { config: o.config, ...(o.dataDir ? { dataDir: o.dataDir } : {}) };
  };

  const meta = ctl.command('encryption-meta').description('encryption metadata: file dictionary and data keys');
  meta
    .command('status')
    .description('method, master key, data keys with their age and file counts, dictionary sizes (no secrets)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => status(target(), opts, io));
  meta
    .command('dump-file')
    .description('method, data key id and IV of every file, or of one')
    .option('--path <path>', 'one file, relative to the data dir or absolute')
    .option('--json', 'print JSON')
    .action(async (opts: { path?: string; json?: boolean }) => dumpFile(target(), opts, io));
  meta
    .command('dump-key')
    .description('print data keys in clear (asks for consent)')
    .option('--ids <ids>', 'comma-separated data key ids (default: all)')
    .option('--i-consent', 'skip the prompt: you accept that the keys are printed in clear')
    .action(async (opts: { ids?: string; iConsent?: boolean }) => dumpKey(target(), opts, io));
  meta
    .command('decrypt-file')
    .description('write the plaintext of one data file to a new file')
    .requiredOption('--path <path>', 'the data file, relative to the data dir or absolute')
    .requiredOption('--out-file <file>', 'where to write the plaintext (must not exist)')
    .action(async (opts: { path: string; outFile: string }) => decryptFile(target(), opts, io));

  ctl
    .command('verify')
    .description('check every file of the data dir: table blocks, log records, CURRENT, manifest, file dictionary coverage')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => verify(target(), opts, io));

  return root;
}

async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    // A file-system failure the operator can fix (permissions, read-only mount, full disk) is
    // not a bug: one coded line, not a stack trace.
    const known = await startupIoError(err);
    if (isTdekvError(known)) {
      io.err(`tdekv: ${known.message} [${known.code}]`);
      return 1;
    }
    io.err(`tdekv: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
