import { createRequire } from 'node:module';
import { TdekvError } from '../errors.js';

/**
 * The part of the `pkcs11js` binding tdekv uses, typed here rather than imported: the binding
 * is an optional dependency (it is compiled at install time, and a machine without a C++
 * compiler must still be able to install and run tdekv with the other master keys), so the
 * build cannot rely on its type declarations being present.
 */
export const PKCS11_BINDING = 'pkcs11js';
export const PKCS11_BINDING_VERSION = '2.1.7';

/** Object and session handles are CK_ULONGs, which the binding passes as little-endian Buffers. */
export type Handle = Buffer;

export interface Attribute {
  type: number;
  value?: number | boolean | string | Buffer;
}

export interface Mechanism {
  mechanism: number;
  parameter?: { type: number; iv: Buffer; ivBits: number; aad?: Buffer; tagBits?: number };
}

export interface Pkcs11Lib {
  load(path: string): void;
  close(): void;
  C_Initialize(): void;
  C_Finalize(): void;
  C_GetSlotList(tokenPresent?: boolean): Handle[];
  C_GetTokenInfo(slot: Handle): { label: string };
  C_GetMechanismList(slot: Handle): number[];
  C_OpenSession(slot: Handle, flags: number): Handle;
  C_CloseSession(session: Handle): void;
  C_Login(session: Handle, userType: number, pin?: string): void;
  C_FindObjectsInit(session: Handle, template: Attribute[]): void;
  C_FindObjects(session: Handle, maxObjectCount: number): Handle[];
  C_FindObjectsFinal(session: Handle): void;
  C_GetAttributeValue(session: Handle, object: Handle, template: Attribute[]): Array<{ type: number; value: Buffer }>;
  C_GenerateKey(session: Handle, mechanism: Mechanism, template: Attribute[]): Handle;
  C_EncryptInit(session: Handle, mechanism: Mechanism, key: Handle): void;
  C_Encrypt(session: Handle, inData: Buffer, outData: Buffer, cb: (error: Error | null, data: Buffer) => void): void;
  C_DecryptInit(session: Handle, mechanism: Mechanism, key: Handle): void;
  C_Decrypt(session: Handle, inData: Buffer, outData: Buffer, cb: (error: Error | null, data: Buffer) => void): void;
}

interface Binding {
  PKCS11: new () => Pkcs11Lib;
}

/** PKCS#11 v2.40 constants (fixed by the standard, so they need not come from the binding). */
export const CK = {
  CKF_RW_SESSION: 0x2,
  CKF_SERIAL_SESSION: 0x4,
  CKU_USER: 1,
  CKO_SECRET_KEY: 4,
  CKK_AES: 0x1f,
  CKA_CLASS: 0x0,
  CKA_TOKEN: 0x1,
  CKA_PRIVATE: 0x2,
  CKA_LABEL: 0x3,
  CKA_KEY_TYPE: 0x100,
  CKA_SENSITIVE: 0x103,
  CKA_ENCRYPT: 0x104,
  CKA_DECRYPT: 0x105,
  CKA_VALUE_LEN: 0x161,
  CKA_EXTRACTABLE: 0x162,
  CKM_AES_KEY_GEN: 0x1080,
  CKM_AES_GCM: 0x1087,
  CK_PARAMS_GCM: 25,
} as const;

/** Return values tdekv reacts to (name → CKR code). */
export const CKR = {
  CKR_GENERAL_ERROR: 0x5,
  CKR_DEVICE_ERROR: 0x30,
  CKR_DEVICE_MEMORY: 0x31,
  CKR_DEVICE_REMOVED: 0x32,
  CKR_ENCRYPTED_DATA_INVALID: 0x40,
  CKR_KEY_HANDLE_INVALID: 0x60,
  CKR_OBJECT_HANDLE_INVALID: 0x82,
  CKR_ENCRYPTED_DATA_LEN_RANGE: 0x41,
  CKR_PIN_INCORRECT: 0xa0,
  CKR_PIN_INVALID: 0xa1,
  CKR_PIN_LEN_RANGE: 0xa2,
  CKR_PIN_EXPIRED: 0xa3,
  CKR_PIN_LOCKED: 0xa4,
  CKR_SESSION_CLOSED: 0xb0,
  CKR_SESSION_HANDLE_INVALID: 0xb3,
  CKR_TOKEN_NOT_PRESENT: 0xe0,
  CKR_TOKEN_NOT_RECOGNIZED: 0xe1,
  CKR_USER_ALREADY_LOGGED_IN: 0x100,
  CKR_USER_NOT_LOGGED_IN: 0x101,
  CKR_CRYPTOKI_ALREADY_INITIALIZED: 0x191,
} as const;

/** The CKR code of a binding error (Pkcs11Error carries it as `code`), or undefined for other failures. */
export function ckrCode(err: unknown): number | undefined {
  if (err instanceof Error && err.name === 'Pkcs11Error' && 'code' in err) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' ? code : undefined;
  }
  return undefined;
}

/** "CKR_PIN_INCORRECT" or the error's own words, for messages. */
export function ckrName(err: unknown): string {
  const code = ckrCode(err);
  const known = Object.entries(CKR).find(([, v]) => v === code)?.[0];
  if (known !== undefined) return known;
  const raw = err instanceof Error ? err.message : String(err);
  const flat = raw.replace(/\s+/g, ' ').trim();
  return (flat.length > 200 ? `${flat.slice(0, 200)}…` : flat) || '(no message)';
}

let cached: Binding | undefined;

/** The binding, loaded on first use so that tdekv without it runs every other master key. */
export function loadBinding(): Binding {
  if (cached !== undefined) return cached;
  try {
    // createRequire: the binding is CommonJS, and require() also honours NODE_PATH.
    cached = createRequire(import.meta.url)(PKCS11_BINDING) as Binding;
    return cached;
  } catch (err) {
    throw new TdekvError(
      'MASTER_KEY_UNAVAILABLE',
      `[security.encryption.master-key] type = "pkcs11" needs the optional package ${PKCS11_BINDING}, which is not installed or did not build ` +
        `(${err instanceof Error ? err.message.split('\n')[0] : String(err)}). It compiles at install time: install a C++ toolchain ` +
        `(Debian: apt-get install g++ make python3) and run \`npm install ${PKCS11_BINDING}@${PKCS11_BINDING_VERSION}\` in tdekv's directory.`,
      { cause: err },
    );
  }
}
