import { X509Certificate, createPrivateKey, randomBytes, randomFillSync, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { TdekvError, errnoCode, isTdekvError } from '../../errors.js';
import { AuthenticationFailure, seal, unseal, type Sealed } from '../../crypto/seal.js';
import { zeroize } from '../../crypto/random.js';
import { fileIo } from '../../util/file-io.js';
import type { MasterKey, MasterKeyPublicInfo } from '../master-key.js';
import { deriveKey, newScryptParams, validScryptParams, type ScryptParams } from './password.js';
import { damaged, hexField, isRecord, readStoreFile, writeStoreFile } from './store-file.js';

/*
 * The key store: SQL Server's master database, as a directory outside the data dirs, which
 * several data dirs may share. It holds
 *   master-key.json              the DMK, sealed twice: by a password (scrypt) and by each added SMK
 *   certificates/NAME.json       a certificate (PEM) and its private key sealed by the DMK
 *   protected-data-dirs.json     which data dir's DEK each certificate wraps (for drop-certificate)
 * Nothing in it is secret in clear: a copy of the key store alone opens nothing without the
 * password or the SMK.
 */

const DMK_FILE = 'master-key.json';
const CERT_DIR = 'certificates';
const REGISTRY_FILE = 'protected-data-dirs.json';
const DMK_FORMAT = 'tdekv-dmk-1';
const CERT_FORMAT = 'tdekv-certificate-1';
const REGISTRY_FORMAT = 'tdekv-dek-protections-1';
const DMK_BYTES = 32;
const NAME_RULE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export interface SmkProtection {
  smk: MasterKeyPublicInfo;
  envelope: Buffer;
  sealed: Sealed;
  addedAt: string;
}

export interface DmkFile {
  /** Random, public: binds every seal made with this DMK to it (additional authenticated data). */
  dmkId: string;
  createdAt: string;
  password: { scrypt: ScryptParams; sealed: Sealed };
  serviceMasterKeys: SmkProtection[];
}

export interface StoredCertificate {
  name: string;
  /** SHA-1 thumbprint as openssl prints it: "AB:CD:…". */
  thumbprint: string;
  certificatePem: string;
  subject: string;
  notAfter: string;
  /** The DMK the private key is sealed by. */
  dmkId: string;
  sealedPrivateKey: Sealed;
  createdAt: string;
  path: string;
}

export interface DekProtection {
  dataDir: string;
  certificate: string;
  thumbprint: string;
  updatedAt: string;
}

export function checkCertificateName(name: string): void {
  if (!NAME_RULE.test(name)) {
    throw new TdekvError(
      'INVALID_ARGUMENT',
      `certificate name ${JSON.stringify(name)} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (it is also a file name in the key store).`,
    );
  }
}

function dmkAad(dmkId: string, by: 'password' | 'smk'): Buffer {
  return Buffer.from(`tdekv-dmk:${dmkId}:${by}`);
}

function privateKeyAad(dmkId: string, thumbprint: string): Buffer {
  return Buffer.from(`tdekv-certificate-private-key:${dmkId}:${thumbprint}`);
}

function sealedToJson(s: Sealed): Record<string, string> {
  return { nonce: s.nonce.toString('hex'), ciphertext: s.ciphertext.toString('hex'), tag: s.tag.toString('hex') };
}

function sealedFromJson(v: unknown, path: string): Sealed {
  if (!isRecord(v)) throw damaged(path, 'a sealed value is missing');
  return { nonce: hexField(v, 'nonce', path), ciphertext: hexField(v, 'ciphertext', path), tag: hexField(v, 'tag', path) };
}

/** A service master key in words, for messages and `tdekv key list`: never key material. */
export function describeSmk(info: MasterKeyPublicInfo): string {
  switch (info.type) {
    case 'file':
      return `file ${info.path}`;
    case 'kms':
      return `kms key-id=${info.keyId} region=${info.region}`;
    case 'pkcs11':
      return `pkcs11 ${info.tokenLabel !== undefined ? `token-label=${info.tokenLabel}` : `slot=${info.slot}`} key-label=${info.keyLabel}`;
    default:
      return info.type;
  }
}


export class KeyStore {
  constructor(readonly dir: string) {}

  get dmkPath(): string {
    return join(this.dir, DMK_FILE);
  }

  get registryPath(): string {
    return join(this.dir, REGISTRY_FILE);
  }

  certificatePath(name: string): string {
    checkCertificateName(name);
    return join(this.dir, CERT_DIR, `${name}.json`);
  }

  /** The restore command, for messages. */
  static restoreCommand(name: string): string {
    return `tdekv key restore-certificate ${name} --file CERT_FILE --private-key-file KEY_FILE --password-file PASSWORD_FILE --config CONFIG`;
  }

  async #ensureDirs(): Promise<void> {
    await fileIo.mkdir(join(this.dir, CERT_DIR), { recursive: true, mode: 0o700 });
  }

  async readDmk(): Promise<DmkFile | undefined> {
    const path = this.dmkPath;
    const doc = await readStoreFile(path);
    if (doc === undefined) return undefined;
    if (!isRecord(doc) || doc['format'] !== DMK_FORMAT) throw damaged(path, `it is not a ${DMK_FORMAT} document`);
    const pw = doc['password'];
    if (!isRecord(pw) || !isRecord(pw['scrypt'])) throw damaged(path, 'the password protection is missing');
    const sp = pw['scrypt'];
    const scrypt: ScryptParams = { N: Number(sp['N']), r: Number(sp['r']), p: Number(sp['p']), salt: hexField(sp, 'salt', path) };
    if (!validScryptParams(scrypt)) throw damaged(path, 'its scrypt parameters are out of range');
    const smks = doc['serviceMasterKeys'];
    if (!Array.isArray(smks)) throw damaged(path, 'the service master key protections are missing');
    if (typeof doc['dmkId'] !== 'string' || !/^[0-9a-f]{16}$/.test(doc['dmkId'])) throw damaged(path, 'its dmkId is missing or malformed');
    return {
      dmkId: doc['dmkId'],
      createdAt: String(doc['createdAt']),
      password: { scrypt, sealed: sealedFromJson(pw['sealed'], path) },
      serviceMasterKeys: smks.map((s: unknown) => {
        if (!isRecord(s) || !isRecord(s['smk'])) throw damaged(path, 'a service master key protection is malformed');
        return { smk: s['smk'] as MasterKeyPublicInfo, envelope: hexField(s, 'envelope', path), sealed: sealedFromJson(s['sealed'], path), addedAt: String(s['addedAt']) };
      }),
    };
  }

  async #writeDmk(f: DmkFile): Promise<void> {
    await this.#ensureDirs();
    await writeStoreFile(this.dmkPath, {
      format: DMK_FORMAT,
      dmkId: f.dmkId,
      createdAt: f.createdAt,
      password: {
        kdf: 'scrypt',
        scrypt: { N: f.password.scrypt.N, r: f.password.scrypt.r, p: f.password.scrypt.p, salt: f.password.scrypt.salt.toString('hex') },
        sealed: sealedToJson(f.password.sealed),
      },
      serviceMasterKeys: f.serviceMasterKeys.map((s) => ({ smk: s.smk, envelope: s.envelope.toString('hex'), sealed: sealedToJson(s.sealed), addedAt: s.addedAt })),
    });
  }

  async #requireDmk(): Promise<DmkFile> {
    const f = await this.readDmk();
    if (f === undefined) {
      throw new TdekvError(
        'DMK_UNAVAILABLE',
        `key store ${this.dir} has no database master key (${DMK_FILE}): create one with \`tdekv key create-master-key --password-file PASSWORD_FILE --config CONFIG\`.`,
      );
    }
    return f;
  }

  /** CREATE MASTER KEY ENCRYPTION BY PASSWORD: a new random DMK, sealed by the password and by the SMK. */
  async createMasterKey(password: Buffer, smk: MasterKey): Promise<DmkFile> {
    if ((await this.readDmk()) !== undefined) {
      throw new TdekvError(
        'FILE_EXISTS',
        `key store ${this.dir} already has a database master key; it is never replaced (its certificates' private keys are sealed by it). ` +
          `To use this key store on another machine, run \`tdekv key open-master-key --password-file F --add-service-master-key\`.`,
      );
    }
    // Buffer.alloc, never randomBytes' pooled memory: this key is wiped below.
    const dmk = randomFillSync(Buffer.alloc(DMK_BYTES));
    try {
      const dmkId = randomBytes(8).toString('hex');
      const scrypt = newScryptParams();
      const pwKey = await deriveKey(password, scrypt);
      let sealed: Sealed;
      try {
        sealed = seal(pwKey, dmk, dmkAad(dmkId, 'password'));
      } finally {
        zeroize(pwKey);
      }
      const f: DmkFile = { dmkId, createdAt: new Date().toISOString(), password: { scrypt, sealed }, serviceMasterKeys: [await smkProtection(dmkId, dmk, smk)] };
      await this.#writeDmk(f);
      return f;
    } finally {
      zeroize(dmk);
    }
  }

  /** The DMK through the first SMK protection this machine's SMK opens; the caller wipes it. */
  async openDmkBySmk(smk: MasterKey): Promise<{ dmk: Buffer; dmkId: string }> {
    const f = await this.#requireDmk();
    const mine = describeSmk(smk.publicInfo());
    for (const p of f.serviceMasterKeys) {
      // Another backend's envelope means nothing to this one (a KMS would call it damaged).
      if (p.smk.type !== smk.type) continue;
      let key: Buffer | undefined;
      try {
        key = await smk.recoverWrappingKey(p.envelope);
        return { dmk: unseal(key, p.sealed, dmkAad(f.dmkId, 'smk')), dmkId: f.dmkId };
      } catch (err) {
        // Another machine's SMK (a file key whose seal does not authenticate, a KMS key or token
        // key that refuses the envelope): try the next protection. An SMK that cannot be
        // reached at all is not "another machine's", and says so itself.
        if (!(err instanceof AuthenticationFailure) && !isTdekvError(err, 'MASTER_KEY_WRONG')) throw err;
      } finally {
        zeroize(key);
      }
    }
    const theirs = f.serviceMasterKeys.map((p) => describeSmk(p.smk)).join('; ') || 'none';
    throw new TdekvError(
      'DMK_UNAVAILABLE',
      `the database master key of key store ${this.dir} is not protected by this machine's service master key (${mine}; ` +
        `the key store's protections: ${theirs}): it was moved from another machine, or the service master key changed. ` +
        `Open it with its password and add this machine's protection: \`tdekv key open-master-key --password-file PASSWORD_FILE --add-service-master-key --config CONFIG\` ` +
        `(or start the server with --dmk-password-file).`,
    );
  }

  /** OPEN MASTER KEY DECRYPTION BY PASSWORD; the caller wipes the DMK. */
  async openDmkByPassword(password: Buffer): Promise<{ dmk: Buffer; dmkId: string }> {
    const f = await this.#requireDmk();
    const key = await deriveKey(password, f.password.scrypt);
    try {
      return { dmk: unseal(key, f.password.sealed, dmkAad(f.dmkId, 'password')), dmkId: f.dmkId };
    } catch (err) {
      if (!(err instanceof AuthenticationFailure)) throw err;
      throw new TdekvError(
        'DMK_PASSWORD_WRONG',
        `the password does not open the database master key of key store ${this.dir} (or ${this.dmkPath} was altered): check the password file; nothing was changed.`,
      );
    } finally {
      zeroize(key);
    }
  }

  /** ALTER MASTER KEY ADD ENCRYPTION BY SERVICE MASTER KEY: replaces any protection by the same SMK. */
  async addSmkProtection(dmk: Buffer, smk: MasterKey): Promise<void> {
    const f = await this.#requireDmk();
    const info = JSON.stringify(smk.publicInfo());
    const others = f.serviceMasterKeys.filter((p) => JSON.stringify(p.smk) !== info);
    await this.#writeDmk({ ...f, serviceMasterKeys: [...others, await smkProtection(f.dmkId, dmk, smk)] });
  }

  async certificates(): Promise<StoredCertificate[]> {
    let names: string[];
    try {
      names = await fileIo.readdir(join(this.dir, CERT_DIR));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw err;
    }
    const out: StoredCertificate[] = [];
    for (const file of names.filter((n) => n.endsWith('.json')).sort()) {
      const c = await this.#readCertificate(join(this.dir, CERT_DIR, file));
      if (c !== undefined) out.push(c);
    }
    return out;
  }

  async certificateByName(name: string): Promise<StoredCertificate | undefined> {
    return this.#readCertificate(this.certificatePath(name));
  }

  async certificateByThumbprint(thumbprint: string): Promise<StoredCertificate | undefined> {
    return (await this.certificates()).find((c) => c.thumbprint === thumbprint);
  }

  async #readCertificate(path: string): Promise<StoredCertificate | undefined> {
    const doc = await readStoreFile(path);
    if (doc === undefined) return undefined;
    if (!isRecord(doc) || doc['format'] !== CERT_FORMAT || typeof doc['certificatePem'] !== 'string') throw damaged(path, `it is not a ${CERT_FORMAT} document`);
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(doc['certificatePem']);
    } catch (err) {
      throw damaged(path, 'its certificate does not parse', err);
    }
    // Recomputed, not trusted from the file: the thumbprint is what a DEK's envelope names.
    if (x509.fingerprint !== doc['thumbprint']) throw damaged(path, 'its thumbprint does not match its certificate');
    return {
      name: String(doc['name']),
      thumbprint: x509.fingerprint,
      certificatePem: doc['certificatePem'],
      subject: x509.subject.replace(/\n/g, ', '),
      notAfter: new Date(x509.validTo).toISOString(),
      dmkId: String(doc['dmkId']),
      sealedPrivateKey: sealedFromJson(doc['privateKey'], path),
      createdAt: String(doc['createdAt']),
      path,
    };
  }

  /** Stores a certificate with its private key sealed by the DMK. Never replaces one. */
  async addCertificate(name: string, certificatePem: string, privateKey: KeyObject, dmk: { dmk: Buffer; dmkId: string }): Promise<StoredCertificate> {
    const path = this.certificatePath(name);
    const x509 = new X509Certificate(certificatePem);
    if (!x509.checkPrivateKey(privateKey)) {
      throw new TdekvError('DATA_CORRUPTED', `the private key does not belong to certificate ${name} (thumbprint ${x509.fingerprint}); nothing was changed.`);
    }
    if ((await this.certificateByName(name)) !== undefined) {
      throw new TdekvError('FILE_EXISTS', `key store ${this.dir} already has a certificate named ${name}: choose another name, or drop it first with \`tdekv key drop-certificate ${name}\`.`);
    }
    const same = await this.certificateByThumbprint(x509.fingerprint);
    if (same !== undefined) {
      throw new TdekvError('FILE_EXISTS', `key store ${this.dir} already has this certificate (thumbprint ${x509.fingerprint}) as ${same.name}; nothing was changed.`);
    }
    const der = privateKey.export({ type: 'pkcs8', format: 'der' });
    let sealed: Sealed;
    try {
      sealed = seal(dmk.dmk, der, privateKeyAad(dmk.dmkId, x509.fingerprint));
    } finally {
      zeroize(der);
    }
    await this.#ensureDirs();
    const createdAt = new Date().toISOString();
    await writeStoreFile(path, {
      format: CERT_FORMAT,
      name,
      thumbprint: x509.fingerprint,
      subject: x509.subject.replace(/\n/g, ', '),
      notAfter: new Date(x509.validTo).toISOString(),
      certificatePem,
      dmkId: dmk.dmkId,
      privateKey: sealedToJson(sealed),
      createdAt,
    });
    const stored = await this.certificateByName(name);
    if (stored === undefined) throw new TdekvError('IO_FAILED', `certificate ${name} was written to ${path} but cannot be read back.`);
    return stored;
  }

  /** The certificate's private key, unsealed by the DMK. */
  privateKey(cert: StoredCertificate, dmk: { dmk: Buffer; dmkId: string }): KeyObject {
    if (cert.dmkId !== dmk.dmkId) {
      throw new TdekvError(
        'DMK_UNAVAILABLE',
        `certificate ${cert.name} (${cert.path}) is sealed by another database master key than key store ${this.dir}'s: restore it from its backup with \`${KeyStore.restoreCommand(cert.name)}\`.`,
      );
    }
    let der: Buffer;
    try {
      der = unseal(dmk.dmk, cert.sealedPrivateKey, privateKeyAad(dmk.dmkId, cert.thumbprint));
    } catch (err) {
      if (!(err instanceof AuthenticationFailure)) throw err;
      throw damaged(cert.path, "its private key does not authenticate under the key store's database master key");
    }
    try {
      return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } finally {
      zeroize(der);
    }
  }

  async removeCertificate(name: string): Promise<void> {
    await fileIo.rm(this.certificatePath(name));
  }

  async protections(): Promise<DekProtection[]> {
    const path = this.registryPath;
    const doc = await readStoreFile(path);
    if (doc === undefined) return [];
    if (!isRecord(doc) || doc['format'] !== REGISTRY_FORMAT || !Array.isArray(doc['dataDirs'])) throw damaged(path, `it is not a ${REGISTRY_FORMAT} document`);
    return (doc['dataDirs'] as unknown[]).filter(isRecord).map((e) => ({
      dataDir: String(e['dataDir']),
      certificate: String(e['certificate']),
      thumbprint: String(e['thumbprint']),
      updatedAt: String(e['updatedAt']),
    }));
  }

  /** Forgets an entry (a backup pruned, a restore's staging directory renamed away); a missing one is not an error. */
  async removeProtection(dataDir: string): Promise<void> {
    const all = await this.protections();
    if (!all.some((e) => e.dataDir === dataDir)) return;
    await writeStoreFile(this.registryPath, { format: REGISTRY_FORMAT, dataDirs: all.filter((e) => e.dataDir !== dataDir) });
  }

  /** Notes that `dataDir`'s DEK is now wrapped by this certificate (one entry per data dir). */
  async recordProtection(dataDir: string, cert: Pick<StoredCertificate, 'name' | 'thumbprint'>): Promise<void> {
    const all = await this.protections();
    const current = all.find((e) => e.dataDir === dataDir);
    if (current !== undefined && current.thumbprint === cert.thumbprint && current.certificate === cert.name) return;
    const entries = [...all.filter((e) => e.dataDir !== dataDir), { dataDir, certificate: cert.name, thumbprint: cert.thumbprint, updatedAt: new Date().toISOString() }];
    await this.#ensureDirs();
    await writeStoreFile(this.registryPath, { format: REGISTRY_FORMAT, dataDirs: entries });
  }
}

async function smkProtection(dmkId: string, dmk: Buffer, smk: MasterKey): Promise<SmkProtection> {
  const w = await smk.newWrappingKey();
  try {
    return { smk: smk.publicInfo(), envelope: Buffer.from(w.envelope), sealed: seal(w.key, dmk, dmkAad(dmkId, 'smk')), addedAt: new Date().toISOString() };
  } finally {
    zeroize(w.key);
  }
}

