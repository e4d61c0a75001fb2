import { scrypt, randomBytes } from 'node:crypto';
import { TdekvError, errnoCode } from '../../errors.js';
import { fileIo } from '../../util/file-io.js';
import { secretCopy } from '../secret-copy.js';
import { zeroize } from '../../crypto/random.js';

/**
 * scrypt parameters for the DMK's password protection, stored beside it so they can be raised
 * later without breaking existing key stores. N = 2^17, r = 8, p = 1 is OWASP's recommended
 * minimum for scrypt: 128 MiB and a fraction of a second per guess, paid once per open by
 * password (rare: the SMK opens the DMK in normal operation).
 */
export interface ScryptParams {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
}

/** Group and other permission bits: a password file must have none. */
const OPEN_TO_OTHERS = 0o077;

export const DEFAULT_SCRYPT = { N: 2 ** 17, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
/** Refused beyond this: a damaged or hostile key store must not make tdekv allocate gigabytes. */
const MAX_SCRYPT_MEMORY = 1024 * 2 ** 20;

export function newScryptParams(): ScryptParams {
  return { ...DEFAULT_SCRYPT, salt: randomBytes(SALT_BYTES) };
}

export function scryptMemory(params: Pick<ScryptParams, 'N' | 'r' | 'p'>): number {
  return 128 * params.N * params.r * (params.p + 1);
}

export function validScryptParams(params: Pick<ScryptParams, 'N' | 'r' | 'p'>): boolean {
  const { N, r, p } = params;
  return (
    Number.isInteger(N) && N >= 2 ** 14 && (N & (N - 1)) === 0 && Number.isInteger(r) && r >= 1 && r <= 32 && Number.isInteger(p) && p >= 1 && p <= 16 && scryptMemory(params) <= MAX_SCRYPT_MEMORY
  );
}

/** A 32-byte key from the password. */
export function deriveKey(password: Buffer, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, params.salt, 32, { N: params.N, r: params.r, p: params.p, maxmem: scryptMemory(params) + 2 ** 20 }, (err, key) => {
      if (err) reject(err);
      else {
        const copy = secretCopy(key);
        zeroize(key);
        resolve(copy);
      }
    }),
  );
}

/**
 * The password in a file (never on the command line, where `ps` and shell history show it):
 * its content less one trailing newline, as bytes the caller wipes.
 */
export async function readPasswordFile(path: string, what: string): Promise<Buffer> {
  let content: Buffer;
  let fh: Awaited<ReturnType<typeof fileIo.open>>;
  try {
    fh = await fileIo.open(path, 'r');
  } catch (err) {
    throw new TdekvError('INVALID_ARGUMENT', `${what} ${path} cannot be read (${errnoCode(err) ?? String(err)}).`, { cause: err });
  }
  try {
    // One descriptor for the check and the read, so the file checked is the file read.
    const st = await fh.stat();
    if (!st.isFile()) throw new TdekvError('INVALID_ARGUMENT', `${what} ${path} is not a regular file: give a file holding the password (one line).`);
    const openBits = Number(st.mode) & OPEN_TO_OTHERS;
    if (openBits !== 0 && process.platform !== 'win32') {
      const mode = (Number(st.mode) & 0o777).toString(8).padStart(4, '0');
      throw new TdekvError('INVALID_ARGUMENT', `${what} ${path} has mode ${mode}: group or other users ${openBits & 0o044 ? 'can read it' : 'have access to it'}. Run \`chmod 600 ${path}\` (owner only) and try again; nothing was changed.`);
    }
    content = await fh.readFile();
  } finally {
    await fh.close();
  }
  let end = content.length;
  if (end > 0 && content[end - 1] === 0x0a) end--;
  if (end > 0 && content[end - 1] === 0x0d) end--;
  const password = secretCopy(content.subarray(0, end));
  zeroize(content);
  if (password.length === 0) {
    throw new TdekvError('INVALID_ARGUMENT', `${what} ${path} is empty: write the password into it (one line).`);
  }
  return password;
}
