import { readFile } from 'node:fs/promises';
import { TdekvError, errnoCode } from '../errors.js';
import { zeroize } from '../crypto/random.js';
import type { MasterKey, WrappingKey } from './master-key.js';

const RULE = 'a master key file must hold exactly 64 hexadecimal characters (a 256-bit key) followed by one newline, and nothing else';

/** Parses master key file content; throws naming the path and the rule. Never echoes content. */
export function parseMasterKeyFile(content: Buffer, path: string): Buffer {
  const text = content.toString('latin1');
  if (content.length !== 65 || !/^[0-9a-fA-F]{64}\n$/.test(text)) {
    throw new TdekvError(
      'MASTER_KEY_INVALID',
      `master key file ${path} is not valid: ${RULE} (found ${content.length} bytes). ` +
        `Create one with \`tdekv keygen --out ${path}\`.`,
    );
  }
  return Buffer.from(text.slice(0, 64), 'hex');
}

export class FileMasterKey implements MasterKey {
  readonly type = 'file' as const;
  readonly protectsKeys = true;
  readonly description: string;
  #key: Buffer;

  private constructor(path: string, key: Buffer) {
    this.description = `file ${path}`;
    this.#key = key;
  }

  static async load(path: string): Promise<FileMasterKey> {
    let content: Buffer;
    try {
      content = await readFile(path);
    } catch (err) {
      const code = errnoCode(err);
      const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable by this user' : `cannot be read (${code ?? String(err)})`;
      throw new TdekvError(
        'MASTER_KEY_UNAVAILABLE',
        `master key file ${path} ${why}. Check [security.encryption.master-key] path, or create a key with \`tdekv keygen --out ${path}\`.`,
      );
    }
    try {
      return new FileMasterKey(path, parseMasterKeyFile(content, path));
    } finally {
      zeroize(content);
    }
  }

  async newWrappingKey(): Promise<WrappingKey> {
    return { key: Buffer.from(this.#key), envelope: Buffer.alloc(0) };
  }

  async recoverWrappingKey(): Promise<Buffer> {
    return Buffer.from(this.#key);
  }

  close(): void {
    zeroize(this.#key);
  }
}
