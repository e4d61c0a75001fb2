import { createHmac } from 'node:crypto';
import { TdekvError, isTdekvError } from '../errors.js';
import { zeroize } from '../crypto/random.js';
import { createMasterKey } from '../masterkey/create.js';
import { FileMasterKey } from '../masterkey/file.js';
import type { MasterKeyConfig, ServiceMasterKeyConfig } from '../masterkey/master-key-config.js';
import type { MasterKey, MasterKeyPublicInfo } from '../masterkey/master-key.js';
import { CertificateMasterKey, decodeEnvelope } from '../masterkey/certificate/certificate-master-key.js';
import { KeyStore, describeSmk } from '../masterkey/certificate/key-store.js';
import { sealHex, unsealHex, type SealedHex } from './backup-key.js';

/**
 * What wraps a backup's key, chosen at backup time (SQL Server's `BACKUP … WITH ENCRYPTION`,
 * BR's crypter). Each is built on a MasterKey backend: its wrapping key seals the backup key
 * with AES-256-GCM, and its envelope (KMS ciphertext, certificate-wrapped DEK) is kept beside.
 */
export type ProtectorChoice =
  /** The live master key of the config (default). */
  | { kind: 'master-key'; masterKey: MasterKeyConfig }
  /** A certificate of the config's key store (`--certificate NAME`). */
  | { kind: 'certificate'; keyStore: string; certificate: string; serviceMasterKey: ServiceMasterKeyConfig }
  /** A 64-hex-character key file (`--crypter.method aes256-ctr --crypter.key-file F`). */
  | { kind: 'key-file'; method: 'aes256-ctr'; path: string };

/** The protector's public identity, in the manifest: enough to say what restore needs, never a secret. */
export type ProtectorRecord =
  | { kind: 'master-key'; masterKey: MasterKeyPublicInfo }
  | { kind: 'certificate'; certificate: string; thumbprint: string; keyStore: string }
  | {
      kind: 'key-file';
      method: 'aes256-ctr';
      path: string;
      /** HMAC of a constant under the key, truncated: tells a wrong key file from a damaged manifest. */
      keyCheck: string;
    };

export interface WrappedBackupKey {
  protector: ProtectorRecord;
  /** The backend's envelope, hex (empty for key files and file master keys). */
  envelope: string;
  sealed: SealedHex;
}

/** What this machine has to open a backup's key with: from the restore's config and flags. */
export interface AvailableProtectors {
  /** The config's master-key and previous-master-key. */
  masterKeys?: MasterKeyConfig[];
  /** The config's key store and service master key (when its master key is type "certificate"). */
  keyStore?: { keyStore: string; serviceMasterKey: ServiceMasterKeyConfig };
  /** `--crypter.key-file`. */
  keyFile?: string;
}

export const KEY_FILE_METHODS = ['aes256-ctr'] as const;

function aadOf(backupId: string): string {
  return `tdekv backup key ${backupId}`;
}

/** How the key store's registry names a backup, so drop-certificate can say a backup needs the certificate. */
export function registryNameOf(displayUrl: string, backupId: string): string {
  return `backup ${displayUrl} ${backupId}`;
}

export function isBackupRegistryName(name: string): boolean {
  return name.startsWith('backup ');
}

/** Wraps `backupKey`; a certificate protector is recorded in its key store under `registryName`. */
export async function wrapBackupKey(choice: ProtectorChoice, backupKey: Buffer, backupId: string, registryName: string): Promise<WrappedBackupKey> {
  const mk = await openProtectorKey(choice);
  try {
    const w = await mk.newWrappingKey();
    try {
      const sealed = sealHex(w.key, backupKey, aadOf(backupId));
      const info = mk.publicInfo();
      let protector: ProtectorRecord;
      const cert = decodeEnvelope(w.envelope);
      if (choice.kind === 'key-file') {
        protector = { kind: 'key-file', method: choice.method, path: choice.path, keyCheck: keyCheckOf(w.key) };
      } else if (info.type === 'certificate' && cert) {
        await new KeyStore(info.keyStore).recordProtection(registryName, cert);
        protector =
          choice.kind === 'certificate'
            ? { kind: 'certificate', certificate: cert.name, thumbprint: cert.thumbprint, keyStore: info.keyStore }
            : { kind: 'master-key', masterKey: info };
      } else {
        protector = { kind: 'master-key', masterKey: info };
      }
      return { protector, envelope: w.envelope.toString('hex'), sealed };
    } finally {
      zeroize(w.key);
    }
  } finally {
    mk.close();
  }
}

async function openProtectorKey(choice: ProtectorChoice): Promise<MasterKey> {
  switch (choice.kind) {
    case 'master-key':
      return createMasterKey(choice.masterKey);
    case 'certificate': {
      const smk = await createMasterKey(choice.serviceMasterKey);
      return CertificateMasterKey.open({ type: 'certificate', keyStore: choice.keyStore, certificate: choice.certificate, serviceMasterKey: choice.serviceMasterKey }, smk);
    }
    case 'key-file':
      if (!(KEY_FILE_METHODS as readonly string[]).includes(choice.method)) {
        throw new TdekvError('INVALID_ARGUMENT', `--crypter.method ${choice.method} is not supported: the key file protector wraps with a 256-bit key, use --crypter.method aes256-ctr`);
      }
      return FileMasterKey.load(choice.path);
  }
}

function keyCheckOf(key: Uint8Array): string {
  return createHmac('sha256', key).update('tdekv backup key-file check v1').digest('hex').slice(0, 16);
}

/** Where the key is, in words, for messages: what restore needs when it is missing. */
export function describeProtector(p: ProtectorRecord): string {
  switch (p.kind) {
    case 'certificate':
      return `certificate ${p.certificate} (thumbprint ${p.thumbprint})`;
    case 'key-file':
      return `key file ${p.path} (${p.method})`;
    case 'master-key':
      return p.masterKey.type === 'certificate'
        ? `the master key: certificate ${p.masterKey.certificate} of key store ${p.masterKey.keyStore}`
        : p.masterKey.type === 'kms'
          ? `the master key: KMS key id ${p.masterKey.keyId} (region ${p.masterKey.region})`
          : `the master key: ${describeSmk(p.masterKey)}`;
  }
}

function unavailable(backupId: string, p: ProtectorRecord, what: string, cause?: unknown): TdekvError {
  return new TdekvError('BACKUP_KEY_UNAVAILABLE', `backup ${backupId}: its key is wrapped by ${describeProtector(p)}: ${what}`, cause === undefined ? undefined : { cause });
}

/** The backup key, or BACKUP_KEY_UNAVAILABLE saying exactly which protector is needed and how to get it. */
export async function unwrapBackupKey(wrapped: WrappedBackupKey, backupId: string, available: AvailableProtectors): Promise<Buffer> {
  const p = wrapped.protector;
  const envelope = Buffer.from(wrapped.envelope, 'hex');
  const certificate = p.kind === 'certificate' ? p.certificate : p.kind === 'master-key' && p.masterKey.type === 'certificate' ? decodeEnvelope(envelope)?.name : undefined;
  if (certificate !== undefined) {
    const ks = available.keyStore;
    if (!ks) {
      throw unavailable(backupId, p, `give --config whose [security.encryption.master-key] is type = "certificate" (its key store holding that certificate; restore it there with \`${KeyStore.restoreCommand(certificate)}\`)`);
    }
    const smk = await createMasterKey(ks.serviceMasterKey);
    const cmk = await CertificateMasterKey.open({ type: 'certificate', keyStore: ks.keyStore, certificate, serviceMasterKey: ks.serviceMasterKey }, smk);
    try {
      const w = await cmk.recoverWrappingKey(envelope);
      return unsealOrThrow(w, wrapped, backupId, 'the certificate unwrapped a key that does not open the backup key: the manifest is damaged');
    } catch (err) {
      if (isTdekvError(err, 'CERTIFICATE_MISSING') || isTdekvError(err, 'MASTER_KEY_WRONG')) {
        throw unavailable(backupId, p, `it is not in key store ${ks.keyStore}: restore it with \`${KeyStore.restoreCommand(certificate)}\``, err);
      }
      throw err;
    } finally {
      cmk.close();
    }
  }
  if (p.kind === 'key-file') {
    if (available.keyFile === undefined) throw unavailable(backupId, p, `pass --crypter.method ${p.method} --crypter.key-file FILE with that key file`);
    const mk = await FileMasterKey.load(available.keyFile);
    try {
      const w = await mk.recoverWrappingKey();
      if (keyCheckOf(w) !== p.keyCheck) {
        zeroize(w);
        throw unavailable(backupId, p, `--crypter.key-file ${available.keyFile} holds another key: pass the key file the backup was taken with`);
      }
      return unsealOrThrow(w, wrapped, backupId, 'the key file is right but the sealed backup key fails its check: the manifest is damaged');
    } finally {
      mk.close();
    }
  }
  if (p.kind === 'master-key') {
    // Why the last candidate failed (a KMS that cannot be reached is not a wrong key): kept as the cause.
    let lastErr: unknown;
    for (const cfg of available.masterKeys ?? []) {
      if (cfg.type !== p.masterKey.type) continue;
      let mk: MasterKey;
      try {
        mk = await createMasterKey(cfg);
      } catch (err) {
        lastErr = err;
        continue;
      }
      try {
        const w = await mk.recoverWrappingKey(envelope).catch((err: unknown) => {
          lastErr = err;
          return undefined;
        });
        if (!w) continue;
        const key = unsealHex(w, wrapped.sealed, aadOf(backupId));
        zeroize(w);
        if (key) return key;
      } finally {
        mk.close();
      }
    }
    const detail = lastErr instanceof Error ? ` (${lastErr.message})` : '';
    throw unavailable(backupId, p, `configure that key as [security.encryption.master-key] (or previous-master-key) of --config${detail}`, lastErr);
  }
  throw new TdekvError('BACKUP_DAMAGED', `backup ${backupId}: its manifest names an unknown protector`);
}

function unsealOrThrow(wrappingKey: Buffer, wrapped: WrappedBackupKey, backupId: string, damaged: string): Buffer {
  try {
    const key = unsealHex(wrappingKey, wrapped.sealed, aadOf(backupId));
    if (!key) throw new TdekvError('BACKUP_DAMAGED', `backup ${backupId}: ${damaged}`);
    return key;
  } finally {
    zeroize(wrappingKey);
  }
}
