import { X509Certificate, constants, privateDecrypt, publicEncrypt, randomFillSync } from 'node:crypto';
import { TdekvError } from '../../errors.js';
import { zeroize } from '../../crypto/random.js';
import type { CertificateMasterKeyConfig } from '../master-key-config.js';
import type { MasterKey, MasterKeyPublicInfo, WrappingKey } from '../master-key.js';
import { KeyStore, describeSmk } from './key-store.js';


const DEK_BYTES = 32;
const MAGIC = Buffer.from('TDKC');
const VERSION = 1;
const THUMBPRINT_BYTES = 20;

/** How a DEK's envelope names its certificate: by thumbprint (what identifies it) and by name (what the user restores it as). */
export interface CertificateEnvelope {
  thumbprint: string;
  name: string;
  wrapped: Buffer;
}

export function encodeEnvelope(e: CertificateEnvelope): Buffer {
  const name = Buffer.from(e.name, 'utf8');
  return Buffer.concat([MAGIC, Buffer.from([VERSION]), Buffer.from(e.thumbprint.replace(/:/g, ''), 'hex'), Buffer.from([name.length]), name, e.wrapped]);
}

export function decodeEnvelope(envelope: Buffer): CertificateEnvelope | undefined {
  const head = MAGIC.length + 1 + THUMBPRINT_BYTES + 1;
  if (envelope.length < head || !envelope.subarray(0, MAGIC.length).equals(MAGIC) || envelope[MAGIC.length] !== VERSION) return undefined;
  const tp = envelope.subarray(MAGIC.length + 1, MAGIC.length + 1 + THUMBPRINT_BYTES);
  const nameLen = envelope[head - 1]!;
  if (envelope.length < head + nameLen + 1) return undefined;
  return {
    thumbprint: (tp.toString('hex').toUpperCase().match(/../g) ?? []).join(':'),
    name: envelope.subarray(head, head + nameLen).toString('utf8'),
    wrapped: envelope.subarray(head + nameLen),
  };
}

export interface CertificateMasterKeyOptions {
  /** The data dir this key protects: recorded in the key store, so drop-certificate knows the certificate is in use. */
  dataDir?: string;
}

/**
 * The SQL Server model as a master key: each wrapping key of the key dictionary (the DEK) is
 * random and wrapped by a certificate's RSA public key (RSA-OAEP-SHA256). Wrapping needs only
 * the certificate; unwrapping needs its private key, which the key store's DMK seals, which
 * this machine's SMK (or the password) opens.
 */
export class CertificateMasterKey implements MasterKey {
  readonly type = 'certificate' as const;
  readonly protectsKeys = true;
  readonly description: string;
  readonly #config: CertificateMasterKeyConfig;
  readonly #store: KeyStore;
  readonly #smk: MasterKey;
  readonly #options: CertificateMasterKeyOptions;
  #dmk: { dmk: Buffer; dmkId: string } | undefined;

  private constructor(config: CertificateMasterKeyConfig, smk: MasterKey, options: CertificateMasterKeyOptions) {
    this.#config = config;
    this.#store = new KeyStore(config.keyStore);
    this.#smk = smk;
    this.#options = options;
    this.description = `certificate ${config.certificate} in key store ${config.keyStore} (service master key: ${describeSmk(smk.publicInfo())})`;
  }

  /** Takes ownership of `smk` (closed with this key). */
  static async open(config: CertificateMasterKeyConfig, smk: MasterKey, options: CertificateMasterKeyOptions = {}): Promise<CertificateMasterKey> {
    return new CertificateMasterKey(config, smk, options);
  }

  publicInfo(): MasterKeyPublicInfo {
    return { type: 'certificate', keyStore: this.#config.keyStore, certificate: this.#config.certificate, serviceMasterKey: this.#smk.publicInfo() };
  }

  async newWrappingKey(): Promise<WrappingKey> {
    const name = this.#config.certificate;
    const cert = await this.#store.certificateByName(name);
    if (cert === undefined) {
      throw new TdekvError(
        'CERTIFICATE_MISSING',
        `[security.encryption.master-key] certificate = ${JSON.stringify(name)} is not in key store ${this.#config.keyStore}: create it with ` +
          `\`tdekv key create-certificate ${name} --subject "…" --config CONFIG\`, or restore it with \`${KeyStore.restoreCommand(name)}\`.`,
      );
    }
    const key = randomFillSync(Buffer.alloc(DEK_BYTES));
    const wrapped = publicEncrypt({ key: new X509Certificate(cert.certificatePem).publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, key);
    if (this.#options.dataDir !== undefined) await this.#store.recordProtection(this.#options.dataDir, cert);
    return { key, envelope: encodeEnvelope({ thumbprint: cert.thumbprint, name: cert.name, wrapped }) };
  }

  async recoverWrappingKey(envelope: Buffer): Promise<Buffer> {
    const e = decodeEnvelope(envelope);
    if (e === undefined) {
      throw new TdekvError(
        'MASTER_KEY_WRONG',
        `the sealed key dictionary was not sealed by a certificate (its envelope is not a tdekv certificate envelope): configure the master key it was sealed with as previous-master-key to rotate; nothing was changed.`,
      );
    }
    const configured = this.#config.certificate;
    const mine = await this.#store.certificateByName(configured);
    // Only the configured certificate's DEKs: one wrapped by another certificate is
    // previous-master-key's to open, so that key.dict is then re-sealed under this one.
    if (mine !== undefined ? mine.thumbprint !== e.thumbprint : e.name !== configured) {
      throw new TdekvError(
        'MASTER_KEY_WRONG',
        `the DEK is wrapped by certificate ${e.name} (thumbprint ${e.thumbprint}), not by certificate = ${JSON.stringify(configured)}` +
          `${mine !== undefined ? ` (thumbprint ${mine.thumbprint})` : ''}: to change certificates, set [security.encryption.previous-master-key] to the old one`,
      );
    }
    const cert = mine ?? (await this.#store.certificateByThumbprint(e.thumbprint));
    if (cert === undefined) {
      throw new TdekvError(
        'CERTIFICATE_MISSING',
        `the DEK cannot be decrypted until the right certificate is available: it is wrapped by certificate ${e.name} (SHA-1 thumbprint ${e.thumbprint}), ` +
          `which is not in key store ${this.#config.keyStore}. Restore it from its backup: \`${KeyStore.restoreCommand(e.name)}\`; nothing was changed.`,
      );
    }
    const privateKey = this.#store.privateKey(cert, await this.#openDmk());
    try {
      const key = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, e.wrapped);
      if (key.length !== DEK_BYTES) throw new Error(`unwrapped ${key.length} bytes`);
      if (this.#options.dataDir !== undefined) {
        // A data dir copied here (and its certificate restored) is now known to need it, so
        // drop-certificate refuses it. Best effort: a read-only key store must not stop an open.
        await this.#store.recordProtection(this.#options.dataDir, cert).catch(() => {});
      }
      return key;
    } catch (err) {
      throw new TdekvError(
        'KEY_DICTIONARY_DAMAGED',
        `certificate ${cert.name} (thumbprint ${e.thumbprint}) could not unwrap the key dictionary's DEK: its envelope is damaged. Restore the key dictionary from a backup; nothing was changed.`,
        { cause: err },
      );
    }
  }

  async #openDmk(): Promise<{ dmk: Buffer; dmkId: string }> {
    this.#dmk ??= await this.#store.openDmkBySmk(this.#smk);
    return this.#dmk;
  }

  close(): void {
    zeroize(this.#dmk?.dmk);
    this.#dmk = undefined;
    this.#smk.close();
  }
}
