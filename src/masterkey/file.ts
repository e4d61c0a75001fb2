import { open, type FileHandle } from 'node:fs/promises';
import { TdekvError, errnoCode } from '../errors.js';
import { zeroize } from '../crypto/random.js';
import { canonicalPath, isInsideDir } from './inside-dir.js';
import { decodeHexBytes, isOneRepeatedByte } from './key-hex.js';
import type { MasterKey, MasterKeyPublicInfo, WrappingKey } from './master-key.js';
import { secretCopy } from './secret-copy.js';

const RULE = 'a master key file must hold exactly 64 hexadecimal characters (a 256-bit key) followed by one newline, and nothing else';
const KEY_BYTES = 32;
const FILE_BYTES = 2 * KEY_BYTES + 1;
/** Beyond this the file is certainly not a key file; it is not read, only its size reported. */
const MAX_READ = 4096;
/** Group and other permission bits: like ssh with private keys, any of them is refused. */
const OPEN_TO_OTHERS = 0o077;

export const ALLOW_INSECURE_PERMISSIONS_SETTING = '[security.encryption.master-key] allow-insecure-permissions = true';

/** What, beyond the content, a master key file must satisfy. */
export interface FileMasterKeyPolicy {
  /**
   * The data dir the key will protect. A key file inside it is refused: whoever copies or
   * steals the data disk would have the key with it.
   */
  dataDir?: string;
  /** `allow-insecure-permissions`: accept a key file that group or others may access (not advised). */
  allowInsecurePermissions?: boolean;
  /**
   * The key being rotated away from (previous-master-key): it only has to be readable and
   * well formed. A weak, exposed or misplaced key is exactly what one rotates away from,
   * so refusing it would block the fix.
   */
  previous?: boolean;
}

/**
 * Parses master key file content into a new non-pooled Buffer; throws naming the path and
 * the rule. Never echoes content, and never makes a JS string of it.
 */
export function parseMasterKeyFile(content: Uint8Array, path: string): Buffer {
  const key = content.length === FILE_BYTES && content[FILE_BYTES - 1] === 0x0a ? decodeHexBytes(content, 0, KEY_BYTES) : undefined;
  if (key === undefined) {
    throw new TdekvError(
      'MASTER_KEY_INVALID',
      `master key file ${path} is not valid: ${RULE} (found ${content.length} bytes). ` +
        `Create one with \`tdekv keygen --out ${path}\`.`,
    );
  }
  return key;
}

function refuseWeakKey(key: Buffer, path: string): void {
  if (!isOneRepeatedByte(key)) return;
  throw new TdekvError(
    'MASTER_KEY_INVALID',
    `master key file ${path} holds one byte repeated 32 times (all zeros or similar): that is a placeholder, not a secret key. ` +
      `Create a random one with \`tdekv keygen --out NEW_PATH\`, then rotate to it: master-key = the new file, previous-master-key = this one.`,
  );
}

export class FileMasterKey implements MasterKey {
  readonly type = 'file' as const;
  readonly protectsKeys = true;
  readonly description: string;
  readonly #path: string;
  #key: Buffer;

  private constructor(path: string, key: Buffer) {
    this.description = `file ${path}`;
    this.#path = path;
    this.#key = key;
  }

  publicInfo(): MasterKeyPublicInfo {
    return { type: 'file', path: this.#path };
  }

  static async load(path: string, policy: FileMasterKeyPolicy = {}): Promise<FileMasterKey> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw unavailable(path, err);
    }
    let content: Buffer | undefined;
    try {
      // One descriptor for the checks and the read, so the file checked is the file read.
      const st = await fh.stat();
      if (!st.isFile()) {
        throw new TdekvError(
          'MASTER_KEY_UNAVAILABLE',
          `master key file ${path} is not a regular file. Check [security.encryption.master-key] path, or create a key with \`tdekv keygen --out ${path}\`.`,
        );
      }
      const openBits = Number(st.mode) & OPEN_TO_OTHERS;
      const strict = policy.previous !== true;
      if (strict && openBits !== 0 && process.platform !== 'win32' && policy.allowInsecurePermissions !== true) {
        const mode = (Number(st.mode) & 0o777).toString(8).padStart(4, '0');
        throw new TdekvError(
          'MASTER_KEY_INVALID',
          `master key file ${path} has mode ${mode}: group or other users ${openBits & 0o044 ? 'can read it' : 'have access to it'}. ` +
            `Run \`chmod 600 ${path}\` (owner only), or, if something else protects it, set ${ALLOW_INSECURE_PERMISSIONS_SETTING}.`,
        );
      }
      if (st.size > MAX_READ) {
        throw new TdekvError('MASTER_KEY_INVALID', `master key file ${path} is not valid: ${RULE} (found ${st.size} bytes).`);
      }
      // Buffer.alloc, never a pooled slice: this Buffer is wiped below and nobody else may share its memory.
      content = Buffer.alloc(st.size + 1);
      const { bytesRead } = await fh.read(content, 0, content.length, 0);
      const key = parseMasterKeyFile(content.subarray(0, bytesRead), path);
      try {
        if (strict) refuseWeakKey(key, path);
        if (strict && policy.dataDir !== undefined) await refuseInsideDataDir(path, policy.dataDir);
      } catch (err) {
        zeroize(key);
        throw err;
      }
      return new FileMasterKey(path, key);
    } catch (err) {
      if (err instanceof TdekvError) throw err;
      throw unavailable(path, err);
    } finally {
      zeroize(content);
      await fh.close();
    }
  }

  async newWrappingKey(): Promise<WrappingKey> {
    return { key: secretCopy(this.#key), envelope: Buffer.alloc(0) };
  }

  async recoverWrappingKey(): Promise<Buffer> {
    return secretCopy(this.#key);
  }

  close(): void {
    zeroize(this.#key);
  }
}

/** Throws MASTER_KEY_INVALID when the key file `path` (which need not exist yet) is inside `dataDir`. */
export async function refuseInsideDataDir(path: string, dataDir: string): Promise<void> {
  const [key, dir] = await Promise.all([canonicalPath(path), canonicalPath(dataDir)]);
  if (!isInsideDir(key, dir)) return;
  throw new TdekvError(
    'MASTER_KEY_INVALID',
    `master key file ${path}${key === path ? '' : ` (${key})`} is inside the data dir ${dataDir}: whoever copies the data ` +
      `(a backup, a disk snapshot, a stolen disk) gets the key with it. Move the key outside the data dir — tmpfs or a ` +
      `secrets mount in production — and update [security.encryption.master-key] path.`,
  );
}

function unavailable(path: string, err: unknown): TdekvError {
  const code = errnoCode(err);
  const why =
    code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable by this user' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${code ?? String(err)})`;
  return new TdekvError(
    'MASTER_KEY_UNAVAILABLE',
    `master key file ${path} ${why}. Check [security.encryption.master-key] path, or create a key with \`tdekv keygen --out ${path}\`.`,
    { cause: err },
  );
}
