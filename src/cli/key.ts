import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { TdekvError, errnoCode } from '../errors.js';
import { zeroize } from '../crypto/random.js';
import { isBackupRegistryName } from '../backup/protector.js';
import { loadConfig } from '../config/config.js';
import type { CertificateMasterKeyConfig, TdekvConfig } from '../config/types.js';
import { createMasterKey } from '../masterkey/create.js';
import type { MasterKey } from '../masterkey/master-key.js';
import { KeyStore, checkCertificateName, describeSmk } from '../masterkey/certificate/key-store.js';
import { readPasswordFile } from '../masterkey/certificate/password.js';
import { createSelfSignedCertificate } from '../masterkey/certificate/x509-builder.js';
import type { Output } from './ctl.js';

/*
 * `tdekv key …`: SQL Server's key hierarchy statements, offline, on the key store of the
 * config's `type = "certificate"` master key (or previous master key).
 */

interface Target {
  cert: CertificateMasterKeyConfig;
  store: KeyStore;
  configPath: string;
}

async function target(configPath: string): Promise<Target> {
  const enc = (await loadConfig(configPath)).security.encryption;
  const cert = [enc.masterKey, enc.previousMasterKey].find((mk): mk is CertificateMasterKeyConfig => mk?.type === 'certificate');
  if (cert === undefined) {
    throw new TdekvError(
      'CONFIG_INVALID',
      `${configPath}: [security.encryption.master-key] is type = "${enc.masterKey.type}", and tdekv key commands work on the key store of a type = "certificate" master key: ` +
        `set type = "certificate", key-store = "…", certificate = "NAME" and a [security.encryption.service-master-key] section.`,
    );
  }
  return { cert, store: new KeyStore(cert.keyStore), configPath };
}

async function withSmk<T>(t: Target, fn: (smk: MasterKey) => Promise<T>): Promise<T> {
  const smk = await createMasterKey(t.cert.serviceMasterKey);
  try {
    return await fn(smk);
  } finally {
    smk.close();
  }
}

async function withPassword<T>(path: string, what: string, fn: (password: Buffer) => Promise<T>): Promise<T> {
  const password = await readPasswordFile(path, what);
  try {
    return await fn(password);
  } finally {
    zeroize(password);
  }
}

async function withDmk<T>(t: Target, fn: (dmk: { dmk: Buffer; dmkId: string }) => Promise<T>): Promise<T> {
  const dmk = await withSmk(t, (smk) => t.store.openDmkBySmk(smk));
  try {
    return await fn(dmk);
  } finally {
    zeroize(dmk.dmk);
  }
}

export async function createMasterKeyCommand(opts: { config: string; passwordFile: string }, io: Output): Promise<void> {
  const t = await target(opts.config);
  await withPassword(opts.passwordFile, '--password-file', (password) => withSmk(t, (smk) => t.store.createMasterKey(password, smk)));
  io.out(`created the database master key of key store ${t.store.dir}, protected by the password and by the service master key. Keep the password: it is the only way to open this key store on another machine.`);
}

export async function createCertificateCommand(name: string, opts: { config: string; subject: string; validDays: number }, io: Output): Promise<void> {
  checkCertificateName(name);
  const t = await target(opts.config);
  await withDmk(t, async (dmk) => {
    const { certificatePem, privateKey } = await createSelfSignedCertificate(opts.subject, opts.validDays);
    const c = await t.store.addCertificate(name, certificatePem, privateKey, dmk);
    io.out(`created certificate ${c.name}: thumbprint (SHA-1) ${c.thumbprint}, subject ${c.subject}, expires ${c.notAfter}.`);
    io.out(`Back it up now with its private key: tdekv key backup-certificate ${c.name} --file ${c.name}.crt --private-key-file ${c.name}.pvk --password-file F --config ${t.configPath}`);
  });
}

export async function backupCertificateCommand(name: string, opts: { config: string; file: string; privateKeyFile: string; passwordFile: string }, io: Output): Promise<void> {
  const t = await target(opts.config);
  const c = await t.store.certificateByName(name);
  if (c === undefined) throw missing(t, name);
  await withDmk(t, async (dmk) => {
    const privateKey = t.store.privateKey(c, dmk);
    const pem = await withPassword(opts.passwordFile, '--password-file', async (password) =>
      // PKCS#8 with PBES2 (PBKDF2 + AES-256-CBC): `openssl pkcs8` and any other PKCS#8 reader open it with the password.
      privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: password }),
    );
    await writeNewFile(opts.file, c.certificatePem, 0o644);
    await writeNewFile(opts.privateKeyFile, String(pem), 0o600);
  });
  io.out(`wrote certificate ${name} (thumbprint ${c.thumbprint}) to ${opts.file} and its private key, encrypted with the password (PKCS#8), to ${opts.privateKeyFile}.`);
}

export async function restoreCertificateCommand(name: string, opts: { config: string; file: string; privateKeyFile: string; passwordFile: string }, io: Output): Promise<void> {
  checkCertificateName(name);
  const t = await target(opts.config);
  const certificatePem = await readInput(opts.file, '--file');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certificatePem);
  } catch (err) {
    throw new TdekvError('INVALID_ARGUMENT', `--file ${opts.file} is not an X.509 certificate (PEM or DER): nothing was changed.`, { cause: err });
  }
  const keyPem = await readInput(opts.privateKeyFile, '--private-key-file');
  const privateKey = await withPassword(opts.passwordFile, '--password-file', async (password): Promise<KeyObject> => {
    try {
      return createPrivateKey({ key: keyPem, format: 'pem', passphrase: password });
    } catch (err) {
      throw new TdekvError(
        'CERTIFICATE_PASSWORD_WRONG',
        `the password does not decrypt the private key in ${opts.privateKeyFile}, or the file is damaged: check --password-file (the password given to backup-certificate); nothing was changed.`,
        { cause: err },
      );
    }
  });
  if (!x509.checkPrivateKey(privateKey)) {
    throw new TdekvError('DATA_CORRUPTED', `the private key in ${opts.privateKeyFile} does not belong to the certificate in ${opts.file} (thumbprint ${x509.fingerprint}): nothing was changed.`);
  }
  const pem = x509.toString();
  const c = await withDmk(t, (dmk) => t.store.addCertificate(name, pem, privateKey, dmk));
  io.out(`restored certificate ${c.name} (thumbprint ${c.thumbprint}) into key store ${t.store.dir}.`);
}

export async function openMasterKeyCommand(opts: { config: string; passwordFile: string; addServiceMasterKey?: boolean }, io: Output): Promise<void> {
  const t = await target(opts.config);
  const dmk = await withPassword(opts.passwordFile, '--password-file', (password) => t.store.openDmkByPassword(password));
  try {
    if (!opts.addServiceMasterKey) {
      io.out(`the password opens the database master key of key store ${t.store.dir}; nothing was changed (add --add-service-master-key to protect it by this machine's service master key).`);
      return;
    }
    const smkName = await withSmk(t, async (smk) => {
      await t.store.addSmkProtection(dmk.dmk, smk);
      return describeSmk(smk.publicInfo());
    });
    io.out(`the database master key of key store ${t.store.dir} is now protected by this machine's service master key (${smkName}).`);
  } finally {
    zeroize(dmk.dmk);
  }
}

export async function listCommand(opts: { config: string; json?: boolean }, io: Output): Promise<void> {
  const t = await target(opts.config);
  const dmk = await t.store.readDmk();
  const protections = await t.store.protections();
  const certificates = (await t.store.certificates()).map((c) => ({
    name: c.name,
    thumbprint: c.thumbprint,
    subject: c.subject,
    expires: c.notAfter,
    configured: c.name === t.cert.certificate,
    protectsDataDirs: protections.filter((p) => p.thumbprint === c.thumbprint).map((p) => p.dataDir),
  }));
  const doc = {
    keyStore: t.store.dir,
    masterKey:
      dmk === undefined
        ? null
        : {
            createdAt: dmk.createdAt,
            password: { kdf: 'scrypt', N: dmk.password.scrypt.N, r: dmk.password.scrypt.r, p: dmk.password.scrypt.p },
            serviceMasterKeys: dmk.serviceMasterKeys.map((p) => ({ ...p.smk, addedAt: p.addedAt })),
          },
    certificates,
  };
  if (opts.json) {
    io.out(JSON.stringify(doc, null, 2));
    return;
  }
  io.out(`key store ${doc.keyStore}`);
  if (dmk === undefined) io.out('  database master key: none (tdekv key create-master-key --password-file F)');
  else {
    io.out(`  database master key: created ${dmk.createdAt}; protected by password (scrypt N=${dmk.password.scrypt.N} r=${dmk.password.scrypt.r} p=${dmk.password.scrypt.p})`);
    for (const p of dmk.serviceMasterKeys) io.out(`    and by service master key ${describeSmk(p.smk)} (added ${p.addedAt})`);
  }
  if (certificates.length === 0) io.out('  certificates: none');
  for (const c of certificates) {
    const uses = [c.configured ? 'the config wraps new DEKs with it' : '', c.protectsDataDirs.length > 0 ? `protects the DEK of ${c.protectsDataDirs.join(', ')}` : ''].filter(Boolean);
    io.out(`  certificate ${c.name}: thumbprint ${c.thumbprint}, subject ${c.subject}, expires ${c.expires}${uses.length > 0 ? `; ${uses.join('; ')}` : ''}`);
  }
}

export async function dropCertificateCommand(name: string, opts: { config: string }, io: Output): Promise<void> {
  const t = await target(opts.config);
  const c = await t.store.certificateByName(name);
  if (c === undefined) throw missing(t, name);
  const users = (await t.store.protections()).filter((p) => p.thumbprint === c.thumbprint).map((p) => p.dataDir);
  if (users.length > 0 || t.cert.certificate === name) {
    const backups = users.filter(isBackupRegistryName);
    const dataDirs = users.filter((u) => !isBackupRegistryName(u));
    const why =
      users.length === 0
        ? `${t.configPath} names it as the certificate that wraps new DEKs`
        : [
            ...(dataDirs.length > 0 ? [`it protects the DEK of ${dataDirs.join(', ')}`] : []),
            ...(backups.length > 0 ? [`a backup needs it (${backups.map((b) => b.slice('backup '.length)).join(', ')}: its key is wrapped by this certificate)`] : []),
          ].join('; ');
    const fix =
      dataDirs.length > 0 || users.length === 0
        ? 'Rotate the data dir to another certificate first (master-key certificate = the new one, previous-master-key = this one), then drop it.'
        : 'Remove those backups first (`tdekv backup prune`), or keep the certificate for as long as they must be restorable.';
    throw new TdekvError('CERTIFICATE_IN_USE', `certificate ${name} (thumbprint ${c.thumbprint}) is not dropped: ${why}, and without it that data cannot be read. ${fix}`);
  }
  await t.store.removeCertificate(name);
  io.out(`dropped certificate ${name} (thumbprint ${c.thumbprint}) from key store ${t.store.dir}.`);
}

function missing(t: Target, name: string): TdekvError {
  return new TdekvError('CERTIFICATE_MISSING', `key store ${t.store.dir} has no certificate named ${name}: \`tdekv key list --config ${t.configPath}\` shows those it has.`);
}

async function readInput(path: string, option: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new TdekvError('INVALID_ARGUMENT', `${option} ${path} cannot be read (${errnoCode(err) ?? String(err)}).`, { cause: err });
  }
}

/** Backups are never written over an existing file: an older backup may be the only one of another certificate. */
async function writeNewFile(path: string, text: string, mode: number): Promise<void> {
  let fh;
  try {
    fh = await open(path, 'wx', mode);
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') throw new TdekvError('FILE_EXISTS', `${path} already exists; backups never overwrite a file. Choose another path.`);
    throw new TdekvError('INVALID_ARGUMENT', `cannot create ${path}: ${errnoCode(err) ?? String(err)}`, { cause: err });
  }
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * `tdekv serve --dmk-password-file F` (setup's DMKPassword in SQL Server): on a machine whose
 * SMK does not yet protect the key store's DMK, open the DMK by password and add this SMK's
 * protection before the server opens the data dir. A no-op when the SMK already opens it.
 * Returns what was done, for the log; never the password.
 */
export async function ensureServiceMasterKeyProtection(config: TdekvConfig, passwordFile: string): Promise<string | undefined> {
  const enc = config.security.encryption;
  const cert = [enc.masterKey, enc.previousMasterKey].find((mk): mk is CertificateMasterKeyConfig => mk?.type === 'certificate');
  if (cert === undefined) {
    throw new TdekvError('CONFIG_INVALID', `--dmk-password-file is for type = "certificate" master keys, and [security.encryption.master-key] is type = "${enc.masterKey.type}": remove the option.`);
  }
  const store = new KeyStore(cert.keyStore);
  const smk = await createMasterKey(cert.serviceMasterKey);
  try {
    try {
      zeroize((await store.openDmkBySmk(smk)).dmk);
      return undefined;
    } catch (err) {
      if (!(err instanceof TdekvError) || err.code !== 'DMK_UNAVAILABLE' || (await store.readDmk()) === undefined) throw err;
    }
    const dmk = await withPassword(passwordFile, '--dmk-password-file', (password) => store.openDmkByPassword(password));
    try {
      await store.addSmkProtection(dmk.dmk, smk);
    } finally {
      zeroize(dmk.dmk);
    }
    return `the database master key of key store ${store.dir} was opened by password and is now protected by this machine's service master key (${describeSmk(smk.publicInfo())})`;
  } finally {
    smk.close();
  }
}
