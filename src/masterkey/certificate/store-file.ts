import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { TdekvError, errnoCode } from '../../errors.js';
import { fileIo } from '../../util/file-io.js';

/**
 * Key store files are small JSON documents replaced whole. The same crash rule as the data
 * dir's dictionaries (src/keys/atomic-file.ts, a layer above this one): write a temporary
 * file, fsync, rename over NAME, fsync the directory, so a crash leaves the old file or the
 * new one, never half. Concurrent writers do not corrupt a file, but the last one wins.
 */
export async function writeStoreFile(path: string, doc: unknown, mode = 0o600): Promise<void> {
  // Unique per writer: two data dirs opening on one shared key store may write it at once,
  // and a shared NAME.tmp could be renamed into place while the other still writes it.
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await fileIo.open(tmp, 'w', mode);
  try {
    await fh.writeFile(JSON.stringify(doc, null, 2) + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fileIo.rename(tmp, path);
  const dir = await fileIo.open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** The parsed document, or undefined when the file does not exist. */
export async function readStoreFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await fileIo.readFile(path, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new TdekvError('IO_FAILED', `key store file ${path} cannot be read (${errnoCode(err) ?? String(err)}): check its owner and mode.`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw damaged(path, 'it is not valid JSON', err);
  }
}

export function damaged(path: string, why: string, cause?: unknown): TdekvError {
  return new TdekvError(
    'DATA_CORRUPTED',
    `key store file ${path} is damaged: ${why}. Restore the key store from a backup (or the certificate with \`tdekv key restore-certificate\`).`,
    cause === undefined ? undefined : { cause },
  );
}

/** Reads a hex field of a parsed document, refusing anything else. */
export function hexField(doc: Record<string, unknown>, key: string, path: string): Buffer {
  const v = doc[key];
  if (typeof v !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(v)) throw damaged(path, `field "${key}" is not hexadecimal`);
  return Buffer.from(v, 'hex');
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
