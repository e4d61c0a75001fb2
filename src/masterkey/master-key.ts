/**
 * A master key wraps the key dictionary. Backends differ in where the root secret lives
 * (a file, a KMS, nowhere for `plaintext`); the key dictionary only ever sees a 32-byte
 * wrapping key plus an opaque envelope stored beside the sealed dictionary, which lets a
 * KMS do envelope encryption (GenerateDataKey once, Decrypt once per open).
 */
export type MasterKeyType = 'plaintext' | 'file' | 'kms';

export interface WrappingKey {
  /** 32 bytes for AES-256-GCM. The caller owns it and zero-fills it when done. */
  key: Buffer;
  /** Stored in clear beside the sealed dictionary; must not reveal `key`. */
  envelope: Buffer;
}

/**
 * Where a master key lives, as fields for status documents and metrics: never key material,
 * credentials or anything else secret.
 */
export type MasterKeyPublicInfo =
  | { type: 'plaintext' }
  | { type: 'file'; path: string }
  | {
      type: 'kms';
      keyId: string;
      region: string;
      /** The configured endpoint without credentials, query or fragment; absent: the SDK's endpoint for the region. */
      endpoint?: string;
    };

export interface MasterKey {
  readonly type: MasterKeyType;
  /** Where the key lives, for messages and status: never key material. */
  readonly description: string;
  /** The same as fields, so nobody parses the description. */
  publicInfo(): MasterKeyPublicInfo;
  /** False for `plaintext`: data keys saved under it must be treated as exposed. */
  readonly protectsKeys: boolean;
  /** A wrapping key for a new seal (KMS: one GenerateDataKey). */
  newWrappingKey(): Promise<WrappingKey>;
  /** The wrapping key behind an envelope this backend produced (KMS: one Decrypt). */
  recoverWrappingKey(envelope: Buffer): Promise<Buffer>;
  /** Releases secrets and connections. */
  close(): void;
}

/** Stable codes stored in the sealed key dictionary's header. */
export const MASTER_KEY_TYPE_CODES: Record<MasterKeyType, number> = { plaintext: 1, file: 2, kms: 3 };

export function masterKeyTypeFromCode(code: number): MasterKeyType | undefined {
  return (Object.keys(MASTER_KEY_TYPE_CODES) as MasterKeyType[]).find((t) => MASTER_KEY_TYPE_CODES[t] === code);
}
