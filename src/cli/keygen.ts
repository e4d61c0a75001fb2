import { open } from 'node:fs/promises';
import { randomFillSync } from 'node:crypto';
import { TdekvError, errnoCode } from '../errors.js';
import { zeroize } from '../crypto/random.js';
import { encodeHexInto } from '../masterkey/key-hex.js';

/**
 * A master key file's exact content: 64 hex characters and a newline, built byte by byte in
 * a non-pooled Buffer (never a JS string, which could not be wiped). The caller wipes it.
 */
export function newMasterKeyText(): Buffer {
  const key = randomFillSync(Buffer.alloc(32));
  try {
    const text = Buffer.alloc(65);
    text[encodeHexInto(key, text, 0)] = 0x0a;
    return text;
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

/**
 * Writes secret bytes to a stream and wipes them once the stream is done with them: a
 * stream keeps a reference to a queued Buffer, so wiping right after write() could send
 * zeros instead.
 */
export async function writeSecret(stream: NodeJS.WritableStream, bytes: Buffer): Promise<void> {
  try {
    await new Promise<void>((resolve, reject) => stream.write(bytes, (err) => (err ? reject(err) : resolve())));
  } finally {
    zeroize(bytes);
  }
}
