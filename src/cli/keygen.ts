import { open } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { TdekvError, errnoCode } from '../errors.js';
import { zeroize } from '../crypto/random.js';

/** A master key file's exact content: 64 hex characters and a newline. */
export function newMasterKeyText(): Buffer {
  const key = randomBytes(32);
  try {
    return Buffer.from(key.toString('hex') + '\n', 'latin1');
  } finally {
    zeroize(key);
  }
}

/** Writes a new master key file, mode 0600; never overwrites an existing file. */
export async function writeMasterKeyFile(path: string): Promise<void> {
  const text = newMasterKeyText();
  let fh;
  try {
    fh = await open(path, 'wx', 0o600);
  } catch (err) {
    zeroize(text);
    if (errnoCode(err) === 'EEXIST') {
      throw new TdekvError('FILE_EXISTS', `${path} already exists; tdekv keygen never overwrites a key file (losing a master key loses the data). Choose another path or remove the file yourself.`);
    }
    throw new TdekvError('INVALID_ARGUMENT', `cannot create ${path}: ${errnoCode(err) ?? String(err)}`);
  }
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    zeroize(text);
    await fh.close();
  }
}
