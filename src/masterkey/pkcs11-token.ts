import { stat } from 'node:fs/promises';
import { TdekvError, errnoCode } from '../errors.js';
import { CK, CKR, ckrCode, ckrName, loadBinding, type Attribute, type Handle, type Mechanism, type Pkcs11Lib } from './pkcs11-binding.js';

const SETTING = '[security.encryption.master-key]';
const UNCHANGED = 'nothing on disk was changed';

/** Which token: the settings that name it. */
export interface TokenTarget {
  module: string;
  tokenLabel?: string;
  slot?: number;
}

/** What the token says about a secret key (never its value). */
export interface KeyFacts {
  keyType: number;
  /** Bytes. */
  valueLen: number;
  extractable: boolean;
  encrypt: boolean;
  decrypt: boolean;
}

/**
 * C_Initialize and C_Finalize are per process, not per caller: the current and the previous
 * master key (or keygen and a test) may use the same library at once, so each library is
 * loaded once and finalized when its last user closes.
 */
const libraries = new Map<string, { lib: Pkcs11Lib; refs: number }>();

function acquireLibrary(module: string): Pkcs11Lib {
  const open = libraries.get(module);
  if (open !== undefined) {
    open.refs++;
    return open.lib;
  }
  const { PKCS11 } = loadBinding();
  const lib = new PKCS11();
  try {
    lib.load(module);
  } catch (err) {
    throw new TdekvError(
      'MASTER_KEY_UNAVAILABLE',
      `PKCS#11 module ${module} could not be loaded (${ckrName(err)}): check ${SETTING} module is the token's PKCS#11 library ` +
        `(SoftHSM2: /usr/lib/softhsm/libsofthsm2.so); ${UNCHANGED}.`,
      { cause: err },
    );
  }
  try {
    lib.C_Initialize();
  } catch (err) {
    if (ckrCode(err) !== CKR.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      closeQuietly(lib);
      throw new TdekvError(
        'MASTER_KEY_UNAVAILABLE',
        `PKCS#11 module ${module} failed to initialize (${ckrName(err)}): check the token's own configuration ` +
          `(SoftHSM2: SOFTHSM2_CONF and its tokendir); ${UNCHANGED}.`,
        { cause: err },
      );
    }
  }
  libraries.set(module, { lib, refs: 1 });
  return lib;
}

function releaseLibrary(module: string): void {
  const open = libraries.get(module);
  if (open === undefined || --open.refs > 0) return;
  libraries.delete(module);
  try {
    open.lib.C_Finalize();
  } catch {
    // Finalizing is cleanup: a library that cannot is unloaded all the same.
  }
  closeQuietly(open.lib);
}

function closeQuietly(lib: Pkcs11Lib): void {
  try {
    lib.close();
  } catch {
    // nothing left to release
  }
}

/** Return values after which the session (or the login) is gone and a fresh one may succeed. */
const SESSION_LOST = new Set<number>([
  CKR.CKR_SESSION_CLOSED,
  CKR.CKR_SESSION_HANDLE_INVALID,
  CKR.CKR_DEVICE_ERROR,
  CKR.CKR_DEVICE_REMOVED,
  CKR.CKR_TOKEN_NOT_PRESENT,
  CKR.CKR_USER_NOT_LOGGED_IN,
  CKR.CKR_GENERAL_ERROR,
  // A cached object handle the token renumbered: a fresh session looks the key up again.
  CKR.CKR_KEY_HANDLE_INVALID,
  CKR.CKR_OBJECT_HANDLE_INVALID,
]);

export function isSessionLost(err: unknown): boolean {
  const code = ckrCode(err);
  return code !== undefined && SESSION_LOST.has(code);
}

class TokenTimeout extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no answer within ${ms} ms`);
    this.name = 'TokenTimeout';
  }
}

export function isTokenTimeout(err: unknown): boolean {
  return err instanceof Error && err.name === 'TokenTimeout';
}

/**
 * One logged-in session on one token. PKCS#11 sessions run one operation at a time, so calls
 * are queued; a session lost to a token error is re-opened (and logged in again) once.
 */
export class Pkcs11Token {
  readonly target: TokenTarget;
  readonly #lib: Pkcs11Lib;
  readonly #slot: Handle;
  readonly #pin: string;
  readonly #rw: boolean;
  readonly #timeoutMs: number;
  #session: Handle | undefined;
  readonly #keys = new Map<string, Handle>();
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(target: TokenTarget, lib: Pkcs11Lib, slot: Handle, pin: string, rw: boolean, timeoutMs: number) {
    this.target = target;
    this.#lib = lib;
    this.#slot = slot;
    this.#pin = pin;
    this.#rw = rw;
    this.#timeoutMs = timeoutMs;
  }

  /** Loads the module, finds the token and logs in; every failure names the setting to fix. */
  static async open(target: TokenTarget, pin: string, options: { timeoutMs: number; readWrite?: boolean }): Promise<Pkcs11Token> {
    await checkModuleFile(target.module);
    const lib = acquireLibrary(target.module);
    let token: Pkcs11Token | undefined;
    try {
      const slot = findSlot(lib, target);
      token = new Pkcs11Token(target, lib, slot, pin, options.readWrite === true, options.timeoutMs);
      token.#openSession();
      return token;
    } catch (err) {
      if (token !== undefined) token.close();
      else releaseLibrary(target.module);
      throw asTokenError(target, err);
    }
  }

  /** "token-label=X" or "slot=N", as configured. */
  get where(): string {
    return describeTarget(this.target);
  }

  hasMechanism(mechanism: number): boolean {
    return this.#lib.C_GetMechanismList(this.#slot).includes(mechanism);
  }

  /** Secret keys with this CKA_LABEL. */
  findSecretKeys(label: string): Promise<Handle[]> {
    return this.#run(() => this.#find(this.#live(), label));
  }

  /** At most two: enough to tell "none", "one" and "ambiguous" apart. */
  #find(session: Handle, label: string): Handle[] {
    this.#lib.C_FindObjectsInit(session, [
      { type: CK.CKA_CLASS, value: CK.CKO_SECRET_KEY },
      { type: CK.CKA_LABEL, value: label },
    ]);
    try {
      return this.#lib.C_FindObjects(session, 2);
    } finally {
      this.#lib.C_FindObjectsFinal(session);
    }
  }

  keyFacts(key: Handle): Promise<KeyFacts> {
    return this.#run(() => {
      const attrs = this.#lib.C_GetAttributeValue(this.#live(), key, [
        { type: CK.CKA_KEY_TYPE },
        { type: CK.CKA_VALUE_LEN },
        { type: CK.CKA_EXTRACTABLE },
        { type: CK.CKA_ENCRYPT },
        { type: CK.CKA_DECRYPT },
      ]);
      const get = (type: number): Buffer => attrs.find((a) => a.type === type)?.value ?? Buffer.alloc(0);
      return {
        keyType: ulong(get(CK.CKA_KEY_TYPE)),
        valueLen: ulong(get(CK.CKA_VALUE_LEN)),
        extractable: get(CK.CKA_EXTRACTABLE)[0] === 1,
        encrypt: get(CK.CKA_ENCRYPT)[0] === 1,
        decrypt: get(CK.CKA_DECRYPT)[0] === 1,
      };
    });
  }

  /** A new persistent, sensitive, non-extractable AES key (keygen). */
  generateAesKey(label: string, bytes: number): Promise<Handle> {
    const template: Attribute[] = [
      { type: CK.CKA_CLASS, value: CK.CKO_SECRET_KEY },
      { type: CK.CKA_KEY_TYPE, value: CK.CKK_AES },
      { type: CK.CKA_VALUE_LEN, value: bytes },
      { type: CK.CKA_LABEL, value: label },
      { type: CK.CKA_TOKEN, value: true },
      { type: CK.CKA_PRIVATE, value: true },
      { type: CK.CKA_SENSITIVE, value: true },
      { type: CK.CKA_EXTRACTABLE, value: false },
      { type: CK.CKA_ENCRYPT, value: true },
      { type: CK.CKA_DECRYPT, value: true },
    ];
    return this.#run(() => this.#lib.C_GenerateKey(this.#live(), { mechanism: CK.CKM_AES_KEY_GEN }, template));
  }

  /** With the secret key labelled `keyLabel`, looked up again whenever the session was re-opened. */
  encrypt(mechanism: Mechanism, keyLabel: string, data: Buffer, maxOut: number): Promise<Buffer> {
    return this.#crypt('C_Encrypt', mechanism, keyLabel, data, maxOut);
  }

  decrypt(mechanism: Mechanism, keyLabel: string, data: Buffer, maxOut: number): Promise<Buffer> {
    return this.#crypt('C_Decrypt', mechanism, keyLabel, data, maxOut);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#dropSession();
    releaseLibrary(this.target.module);
  }

  #crypt(op: 'C_Encrypt' | 'C_Decrypt', mechanism: Mechanism, keyLabel: string, data: Buffer, maxOut: number): Promise<Buffer> {
    return this.#run(async () => {
      const session = this.#live();
      const key = this.#keyHandle(session, keyLabel);
      const out = Buffer.alloc(maxOut);
      const call = new Promise<Buffer>((resolve, reject) => {
        const done = (err: Error | null, result: Buffer): void => (err ? reject(err) : resolve(result));
        if (op === 'C_Encrypt') {
          this.#lib.C_EncryptInit(session, mechanism, key);
          this.#lib.C_Encrypt(session, data, out, done);
        } else {
          this.#lib.C_DecryptInit(session, mechanism, key);
          this.#lib.C_Decrypt(session, data, out, done);
        }
      });
      return this.#withDeadline(op, call);
    });
  }

  /**
   * Runs `fn` after every earlier call, retrying once on a fresh session when the session was
   * lost (a token restarted, a network HSM reconnected) or the call timed out.
   */
  #run<T>(fn: () => T | Promise<T>): Promise<T> {
    const attempt = async (): Promise<T> => {
      if (this.#closed) throw new TdekvError('CLOSED', `the PKCS#11 master key on ${this.where} is closed.`);
      try {
        return await fn();
      } catch (err) {
        if (!isSessionLost(err) && !isTokenTimeout(err)) throw err;
        this.#dropSession();
        this.#openSession();
        try {
          return await fn();
        } catch (again) {
          // A session left mid-operation (a call that never answered) would refuse the next
          // call with CKR_OPERATION_ACTIVE: the next call starts on a fresh one.
          if (isSessionLost(again) || isTokenTimeout(again)) this.#dropSession();
          throw again;
        }
      }
    };
    const result = this.#queue.then(attempt, attempt);
    this.#queue = result.catch(() => {});
    return result;
  }

  async #withDeadline<T>(what: string, call: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TokenTimeout(what, this.#timeoutMs)), this.#timeoutMs);
    });
    call.catch(() => {});
    try {
      return await Promise.race([call, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Object handles are not stable: a token may renumber its objects when the login that made
   * them visible ends (SoftHSM2 does), so handles are cached per session only.
   */
  #keyHandle(session: Handle, label: string): Handle {
    const cached = this.#keys.get(label);
    if (cached !== undefined) return cached;
    const found = this.#find(session, label);
    if (found.length !== 1) {
      throw new TdekvError(
        'MASTER_KEY_UNAVAILABLE',
        `PKCS#11 token ${this.where} now has ${found.length} secret keys labelled ${JSON.stringify(label)} (it had one when opened): ` +
          `restore the key on the token; ${UNCHANGED}.`,
      );
    }
    this.#keys.set(label, found[0]!);
    return found[0]!;
  }

  #live(): Handle {
    if (this.#session === undefined) this.#openSession();
    return this.#session!;
  }

  #openSession(): void {
    const flags = CK.CKF_SERIAL_SESSION | (this.#rw ? CK.CKF_RW_SESSION : 0);
    let session: Handle;
    try {
      session = this.#lib.C_OpenSession(this.#slot, flags);
    } catch (err) {
      throw new TdekvError(
        'MASTER_KEY_UNAVAILABLE',
        `PKCS#11 token ${this.where} in ${this.target.module} refused a session (${ckrName(err)}): check the token is present and working; ${UNCHANGED}.`,
        { cause: err },
      );
    }
    try {
      this.#lib.C_Login(session, CK.CKU_USER, this.#pin);
    } catch (err) {
      // Login is per application and token: another session of this process may have done it.
      if (ckrCode(err) !== CKR.CKR_USER_ALREADY_LOGGED_IN) {
        try {
          this.#lib.C_CloseSession(session);
        } catch {
          // the login error is the one to report
        }
        throw loginError(this.target, err);
      }
    }
    this.#session = session;
  }

  #dropSession(): void {
    const session = this.#session;
    this.#session = undefined;
    this.#keys.clear();
    if (session === undefined) return;
    try {
      this.#lib.C_CloseSession(session);
    } catch {
      // already gone with the token: that is why it is being dropped
    }
  }
}

/** A TdekvError as it is; anything else the token threw, as MASTER_KEY_UNAVAILABLE naming the token. */
export function asTokenError(target: TokenTarget, err: unknown): TdekvError {
  if (err instanceof TdekvError) return err;
  return new TdekvError(
    'MASTER_KEY_UNAVAILABLE',
    `PKCS#11 token ${describeTarget(target)} in ${target.module} failed (${ckrName(err)}): check the token is present and working; ${UNCHANGED}.`,
    { cause: err },
  );
}

export function describeTarget(target: TokenTarget): string {
  return target.tokenLabel !== undefined ? `token-label=${JSON.stringify(target.tokenLabel)}` : `slot=${target.slot ?? '?'}`;
}

async function checkModuleFile(module: string): Promise<void> {
  try {
    const st = await stat(module);
    if (st.isFile()) return;
    throw new TdekvError('MASTER_KEY_UNAVAILABLE', `PKCS#11 module ${module} is not a file: check ${SETTING} module; ${UNCHANGED}.`);
  } catch (err) {
    if (err instanceof TdekvError) throw err;
    const code = errnoCode(err);
    throw new TdekvError(
      'MASTER_KEY_UNAVAILABLE',
      `PKCS#11 module ${module} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? String(err)})`}: check ${SETTING} module ` +
        `(SoftHSM2: apt-get install softhsm2, then /usr/lib/softhsm/libsofthsm2.so); ${UNCHANGED}.`,
      { cause: err },
    );
  }
}

function findSlot(lib: Pkcs11Lib, target: TokenTarget): Handle {
  const slots = lib.C_GetSlotList(true);
  const seen: string[] = [];
  const matches: Handle[] = [];
  for (const slot of slots) {
    const label = lib.C_GetTokenInfo(slot).label.trim();
    const id = ulong(slot);
    seen.push(`slot ${id} "${label}"`);
    if (target.tokenLabel !== undefined ? label === target.tokenLabel : id === target.slot) matches.push(slot);
  }
  if (matches.length === 1) return matches[0]!;
  const what = describeTarget(target);
  if (matches.length > 1) {
    throw new TdekvError(
      'MASTER_KEY_UNAVAILABLE',
      `PKCS#11 module ${target.module} has ${matches.length} tokens labelled ${JSON.stringify(target.tokenLabel)}: name one by ${SETTING} slot instead ` +
        `(tokens: ${seen.join(', ')}); ${UNCHANGED}.`,
    );
  }
  throw new TdekvError(
    'MASTER_KEY_UNAVAILABLE',
    `PKCS#11 module ${target.module} has no token with ${what} (tokens present: ${seen.length > 0 ? seen.join(', ') : 'none'}): ` +
      `check ${SETTING} token-label or slot, and that the token is inserted (SoftHSM2: softhsm2-util --show-slots); ${UNCHANGED}.`,
  );
}

function loginError(target: TokenTarget, err: unknown): TdekvError {
  const code = ckrCode(err);
  const where = `PKCS#11 token ${describeTarget(target)} in ${target.module}`;
  const pinSource = `${SETTING} pin-file or TDEKV_PKCS11_PIN`;
  if (code === CKR.CKR_PIN_INCORRECT || code === CKR.CKR_PIN_INVALID || code === CKR.CKR_PIN_LEN_RANGE) {
    return new TdekvError(
      'MASTER_KEY_UNAVAILABLE',
      `${where} refused the PIN (${ckrName(err)}): fix the user PIN in ${pinSource}. Each wrong attempt may count towards locking the token; ${UNCHANGED}.`,
      { cause: err },
    );
  }
  if (code === CKR.CKR_PIN_LOCKED || code === CKR.CKR_PIN_EXPIRED) {
    return new TdekvError(
      'MASTER_KEY_UNAVAILABLE',
      `${where} will not log in: ${ckrName(err)}. The token's security officer must unlock or reset the user PIN; ${UNCHANGED}.`,
      { cause: err },
    );
  }
  return new TdekvError('MASTER_KEY_UNAVAILABLE', `${where} refused the login (${ckrName(err)}); ${UNCHANGED}.`, { cause: err });
}

/** A CK_ULONG as the binding returns it (little-endian, 4 or 8 bytes). */
function ulong(b: Buffer): number {
  if (b.length >= 8) return Number(b.readBigUInt64LE(0));
  if (b.length >= 4) return b.readUInt32LE(0);
  return b.length > 0 ? b[0]! : 0;
}
