/**
 * Data encryption methods, with TiKV's names and on-disk codes (its EncryptionMethod enum),
 * so dictionaries stay meaningful to anyone who knows TiKV.
 */
export const ENCRYPTION_METHODS = ['plaintext', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr', 'sm4-ctr'] as const;
export type EncryptionMethod = (typeof ENCRYPTION_METHODS)[number];

interface MethodSpec {
  readonly code: number;
  readonly keyLength: number;
  readonly openssl: string | null;
}

const SPECS: Record<EncryptionMethod, MethodSpec> = {
  plaintext: { code: 1, keyLength: 0, openssl: null },
  'aes128-ctr': { code: 2, keyLength: 16, openssl: 'aes-128-ctr' },
  'aes192-ctr': { code: 3, keyLength: 24, openssl: 'aes-192-ctr' },
  'aes256-ctr': { code: 4, keyLength: 32, openssl: 'aes-256-ctr' },
  'sm4-ctr': { code: 5, keyLength: 16, openssl: 'sm4-ctr' },
};

export function isEncryptionMethod(value: unknown): value is EncryptionMethod {
  return typeof value === 'string' && (ENCRYPTION_METHODS as readonly string[]).includes(value);
}

export function keyLengthOf(method: EncryptionMethod): number {
  return SPECS[method].keyLength;
}

export function opensslCipherOf(method: EncryptionMethod): string | null {
  return SPECS[method].openssl;
}

export function methodCode(method: EncryptionMethod): number {
  return SPECS[method].code;
}

export function methodFromCode(code: number): EncryptionMethod | undefined {
  return ENCRYPTION_METHODS.find((m) => SPECS[m].code === code);
}
