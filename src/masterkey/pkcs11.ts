import { open } from 'node:fs/promises';
import { randomBytes, randomFillSync } from 'node:crypto';
import { TdekvError, errnoCode } from '../errors.js';
import { zeroize } from '../crypto/random.js';
import type { MasterKey, MasterKeyPublicInfo, WrappingKey } from './master-key.js';
import { PKCS11_PIN_ENV, type Pkcs11MasterKeyConfig } from './master-key-config.js';
import { CK, CKR, ckrCode, ckrName, type Mechanism } from './pkcs11-binding.js';
import { Pkcs11Token, asTokenError, describeTarget, isTokenTimeout } from './pkcs11-token.js';
import { secretCopy } from './secret-copy.js';

const SETTING = '[security.encryption.master-key]';
const UNCHANGED = 'nothing on disk was changed';
const WRAPPING_KEY_BYTES = 32;
/** The token key must be AES-256: a shorter key would be the weakest link of the whole chain. */
const TOKEN_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const ENVELOPE_VERSION = 1;
const MECH_AES_GCM = 1;
const HEADER_BYTES = 2;
const ENVELOPE_BYTES = HEADER_BYTES + IV_BYTES + WRAPPING_KEY_BYTES + TAG_BYTES;
/** Bound into every seal, like the KMS encryption context: a GCM blob made for anything else under the same key fails. */
const AAD_LABEL = Buffer.from('tdekv-key-dictionary');
const MAX_PIN_FILE = 1024;
const OPEN_TO_OTHERS = 0o077;

/** A decrypt the token refuses with one of these means the envelope is not this key's (or is damaged). */
const WRONG_KEY_CODES = new Set<number>([CKR.CKR_ENCRYPTED_DATA_INVALID, CKR.CKR_ENCRYPTED_DATA_LEN_RANGE, CKR.CKR_GENERAL_ERROR]);

export interface Pkcs11Context {
  /** previous-master-key: the key being rotated away from may be extractable (that may be why). */
  previous?: boolean;
}

/**
 * A master key that never leaves a PKCS#11 token: the 32-byte wrapping key is random, sealed
 * inside the token with AES-256-GCM (CKM_AES_GCM) under the token key, and the sealed form is
 * the envelope, exactly like a KMS data key. Opening a database costs one C_Decrypt.
 */
export class Pkcs11MasterKey implements MasterKey {
  readonly type = 'pkcs11' as const;
  readonly protectsKeys = true;
  readonly description: string;
  readonly #config: Pkcs11MasterKeyConfig;
  readonly #token: Pkcs11Token;

  private constructor(config: Pkcs11MasterKeyConfig, token: Pkcs11Token) {
    this.#config = config;
    this.#token = token;
    this.description = `pkcs11 module=${config.module} ${describeTarget(config)} key-label=${JSON.stringify(config.keyLabel)}`;
  }

  /** Connects, logs in and checks the key now, so a bad setting fails before anything is written. */
  static async open(config: Pkcs11MasterKeyConfig, context: Pkcs11Context = {}): Promise<Pkcs11MasterKey> {
    checkConfig(config);
    const pin = await readPin(config);
    const token = await Pkcs11Token.open(config, pin, { timeoutMs: config.timeoutMs });
    try {
      if (!token.hasMechanism(CK.CKM_AES_GCM)) {
        throw new TdekvError(
          'MASTER_KEY_UNAVAILABLE',
          `PKCS#11 token ${token.where} in ${config.module} does not offer CKM_AES_GCM, which tdekv seals the key dictionary with; ` +
            `use a token (or firmware) with AES-GCM; ${UNCHANGED}.`,
        );
      }
      await checkKey(token, config, context);
      return new Pkcs11MasterKey(config, token);
    } catch (err) {
      token.close();
      throw asTokenError(config, err);
    }
  }

  publicInfo(): MasterKeyPublicInfo {
    const c = this.#config;
    return {
      type: 'pkcs11',
      module: c.module,
      ...(c.tokenLabel !== undefined ? { tokenLabel: c.tokenLabel } : {}),
      ...(c.slot !== undefined ? { slot: c.slot } : {}),
      keyLabel: c.keyLabel,
    };
  }

  async newWrappingKey(): Promise<WrappingKey> {
    const key = randomFillSync(Buffer.alloc(WRAPPING_KEY_BYTES));
    const header = Buffer.from([ENVELOPE_VERSION, MECH_AES_GCM]);
    const iv = randomBytes(IV_BYTES);
    let sealed: Buffer;
    try {
      sealed = await this.#token.encrypt(gcm(iv, header), this.#config.keyLabel, key, WRAPPING_KEY_BYTES + TAG_BYTES + 16);
    } catch (err) {
      zeroize(key);
      throw this.#translate('C_Encrypt', err);
    }
    if (sealed.length !== WRAPPING_KEY_BYTES + TAG_BYTES) {
      zeroize(key);
      throw new TdekvError(
        'MASTER_KEY_UNAVAILABLE',
        `PKCS#11 token ${this.#token.where} returned ${sealed.length} bytes for an AES-GCM seal of ${WRAPPING_KEY_BYTES} bytes ` +
          `(expected ${WRAPPING_KEY_BYTES + TAG_BYTES}); ${UNCHANGED}.`,
      );
    }
    return { key, envelope: Buffer.concat([header, iv, sealed]) };
  }

  async recoverWrappingKey(envelope: Buffer): Promise<Buffer> {
    if (envelope.length !== ENVELOPE_BYTES || envelope[0] !== ENVELOPE_VERSION || envelope[1] !== MECH_AES_GCM) {
      throw new TdekvError(
        'KEY_DICTIONARY_DAMAGED',
        `the sealed key dictionary's PKCS#11 envelope is not one ${this.description} made (${envelope.length} bytes, ` +
          `expected ${ENVELOPE_BYTES} of version ${ENVELOPE_VERSION}): restore the key dictionary from a backup or configure the master key it was sealed with.`,
      );
    }
    const header = envelope.subarray(0, HEADER_BYTES);
    const iv = envelope.subarray(HEADER_BYTES, HEADER_BYTES + IV_BYTES);
    const sealed = envelope.subarray(HEADER_BYTES + IV_BYTES);
    let plain: Buffer;
    try {
      plain = await this.#token.decrypt(gcm(iv, header), this.#config.keyLabel, sealed, sealed.length + 16);
    } catch (err) {
      throw this.#translate('C_Decrypt', err);
    }
    if (plain.length !== WRAPPING_KEY_BYTES) {
      zeroize(plain);
      throw new TdekvError('MASTER_KEY_WRONG', `PKCS#11 token ${this.#token.where} unsealed ${plain.length} bytes, not a ${WRAPPING_KEY_BYTES}-byte key; ${UNCHANGED}.`);
    }
    const key = secretCopy(plain);
    zeroize(plain);
    return key;
  }

  close(): void {
    this.#token.close();
  }

  #translate(op: 'C_Encrypt' | 'C_Decrypt', err: unknown): TdekvError {
    if (err instanceof TdekvError) return err;
    const where = `PKCS#11 token ${this.#token.where} key-label=${JSON.stringify(this.#config.keyLabel)} in ${this.#config.module}`;
    if (isTokenTimeout(err)) {
      return new TdekvError(
        'MASTER_KEY_UNAVAILABLE',
        `${where} did not answer ${op} within ${this.#config.timeoutMs} ms (twice, on a fresh session the second time): ` +
          `check the HSM and its connection, or raise ${SETTING} timeout; ${UNCHANGED}.`,
        { cause: err },
      );
    }
    const code = ckrCode(err);
    if (op === 'C_Decrypt' && code !== undefined && WRONG_KEY_CODES.has(code)) {
      return new TdekvError(
        'MASTER_KEY_WRONG',
        `${where} could not unseal the key dictionary's envelope (${ckrName(err)}): it was sealed under a different key, or it is damaged. ` +
          `Configure the key it was sealed with as previous-master-key to rotate; ${UNCHANGED}.`,
        { cause: err },
      );
    }
    return new TdekvError('MASTER_KEY_UNAVAILABLE', `${where} failed ${op} (${ckrName(err)}); ${UNCHANGED}.`, { cause: err });
  }
}

function gcm(iv: Buffer, header: Buffer): Mechanism {
  return {
    mechanism: CK.CKM_AES_GCM,
    parameter: { type: CK.CK_PARAMS_GCM, iv, ivBits: IV_BYTES * 8, aad: Buffer.concat([AAD_LABEL, header]), tagBits: TAG_BYTES * 8 },
  };
}

function checkConfig(config: Pkcs11MasterKeyConfig): void {
  const hasLabel = config.tokenLabel !== undefined;
  const hasSlot = config.slot !== undefined;
  if (!config.module || !config.keyLabel || hasLabel === hasSlot) {
    throw new TdekvError(
      'CONFIG_INVALID',
      `${SETTING} type = "pkcs11" needs module, key-label and exactly one of token-label and slot ` +
        `(found ${[hasLabel && 'token-label', hasSlot && 'slot'].filter(Boolean).join(' and ') || 'neither'}).`,
    );
  }
  if (!(config.timeoutMs > 0)) {
    throw new TdekvError('CONFIG_INVALID', `${SETTING} timeout must be positive (found ${config.timeoutMs} ms).`);
  }
}

async function checkKey(token: Pkcs11Token, config: Pkcs11MasterKeyConfig, context: Pkcs11Context): Promise<void> {
  const where = `PKCS#11 token ${token.where} in ${config.module}`;
  const label = JSON.stringify(config.keyLabel);
  const keys = await token.findSecretKeys(config.keyLabel);
  if (keys.length === 0) {
    throw new TdekvError(
      'MASTER_KEY_UNAVAILABLE',
      `${where} has no secret key labelled ${label} visible to the user: check ${SETTING} key-label, ` +
        `or create the key with \`tdekv keygen --pkcs11 --module ${config.module} --${config.tokenLabel !== undefined ? `token-label ${config.tokenLabel}` : `slot ${config.slot}`} --key-label ${config.keyLabel}\`; ${UNCHANGED}.`,
    );
  }
  if (keys.length > 1) {
    throw new TdekvError('MASTER_KEY_INVALID', `${where} has several secret keys labelled ${label}: give the key a unique label; ${UNCHANGED}.`);
  }
  const key = keys[0]!;
  const facts = await token.keyFacts(key);
  const fix = `create a non-extractable AES-256 key with \`tdekv keygen --pkcs11\` and rotate to it (previous-master-key = this one); ${UNCHANGED}.`;
  if (facts.keyType !== CK.CKK_AES || facts.valueLen !== TOKEN_KEY_BYTES) {
    const what = facts.keyType !== CK.CKK_AES ? `is not an AES key (CKA_KEY_TYPE 0x${facts.keyType.toString(16)})` : `is AES-${facts.valueLen * 8}, not AES-256`;
    throw new TdekvError('MASTER_KEY_INVALID', `${where} key ${label} ${what}: ${fix}`);
  }
  if (!facts.encrypt || !facts.decrypt) {
    throw new TdekvError('MASTER_KEY_INVALID', `${where} key ${label} may not be used to ${!facts.encrypt ? 'encrypt' : 'decrypt'} (CKA_ENCRYPT/CKA_DECRYPT): ${fix}`);
  }
  // An extractable key can be copied off the token, which defeats the point of an HSM. The
  // previous key only decrypts once, during the rotation away from it, so it is accepted.
  if (facts.extractable && context.previous !== true) {
    throw new TdekvError('MASTER_KEY_INVALID', `${where} key ${label} is extractable (CKA_EXTRACTABLE = true), so it can leave the token: ${fix}`);
  }
}

/** The PIN from pin-file (one line) or TDEKV_PKCS11_PIN; the message never includes it. */
export async function readPin(config: Pick<Pkcs11MasterKeyConfig, 'pinFile' | 'allowInsecurePermissions'>): Promise<string> {
  if (config.pinFile === undefined) {
    const pin = process.env[PKCS11_PIN_ENV];
    if (pin === undefined || pin === '') {
      throw new TdekvError(
        'MASTER_KEY_UNAVAILABLE',
        `no PIN for the PKCS#11 token: set ${SETTING} pin-file to a file holding the user PIN (mode 0600), or the ${PKCS11_PIN_ENV} environment variable; ${UNCHANGED}.`,
      );
    }
    return pin;
  }
  const path = config.pinFile;
  let content: Buffer | undefined;
  try {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new TdekvError('MASTER_KEY_UNAVAILABLE', `PIN file ${path} is not a regular file: check ${SETTING} pin-file; ${UNCHANGED}.`);
      const openBits = Number(st.mode) & OPEN_TO_OTHERS;
      if (openBits !== 0 && process.platform !== 'win32' && config.allowInsecurePermissions !== true) {
        const mode = (Number(st.mode) & 0o777).toString(8).padStart(4, '0');
        throw new TdekvError(
          'MASTER_KEY_INVALID',
          `PIN file ${path} has mode ${mode}: group or other users have access to it. Run \`chmod 600 ${path}\`, ` +
            `or, if something else protects it, set ${SETTING} allow-insecure-permissions = true.`,
        );
      }
      content = Buffer.alloc(MAX_PIN_FILE + 1);
      const { bytesRead } = await fh.read(content, 0, content.length, 0);
      if (bytesRead > MAX_PIN_FILE) throw new TdekvError('MASTER_KEY_INVALID', `PIN file ${path} is larger than ${MAX_PIN_FILE} bytes: it must hold only the PIN.`);
      let end = bytesRead;
      while (end > 0 && (content[end - 1] === 0x0a || content[end - 1] === 0x0d)) end--;
      if (end === 0) throw new TdekvError('MASTER_KEY_INVALID', `PIN file ${path} is empty: write the user PIN into it (one line).`);
      // The binding takes the PIN as a string; it lives as long as the master key (re-login after a token error).
      return content.toString('utf8', 0, end);
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof TdekvError) throw err;
    const code = errnoCode(err);
    throw new TdekvError(
      'MASTER_KEY_UNAVAILABLE',
      `PIN file ${path} ${code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable by this user' : `cannot be read (${code ?? String(err)})`}: ` +
        `check ${SETTING} pin-file; ${UNCHANGED}.`,
      { cause: err },
    );
  } finally {
    zeroize(content);
  }
}
