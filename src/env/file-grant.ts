import { dirname } from 'node:path';
import { ctrStreamAt } from '../crypto/ctr.js';
import { FileAuthenticator } from '../crypto/file-auth.js';
import type { EncryptionMethod } from '../crypto/method.js';
import { zeroize } from '../crypto/random.js';
import { TdekvError, errnoCode } from '../errors.js';
import { syncDir } from '../keys/atomic-file.js';
import { fileIo } from '../util/file-io.js';
import { EncryptedReadableFile } from './readable-file.js';
import { EncryptedWritableFile } from './writable-file.js';

/**
 * Everything needed to read, or to create and write, exactly one file of the data dir: its
 * path, method, data key, IV and whether it carries tags. The env hands grants out (the file's
 * dictionary entry exists and is durable before a create grant is given), and whoever holds
 * one opens the file with the functions below, in any thread: this is how background work on
 * a worker thread gets at files without the env, the key dictionary or the master key. A grant
 * is plain data, so it can be posted to a worker; its key is a copy that opening the file wipes.
 */
export interface FileGrant {
  /** Relative to the data dir, as the env names it. */
  readonly path: string;
  readonly absolutePath: string;
  readonly access: 'read' | 'create';
  readonly method: EncryptionMethod;
  readonly keyId: number;
  /** The data key's bytes (empty for plaintext files). Wiped once the file is opened. */
  readonly key: Uint8Array;
  readonly iv: Uint8Array;
  /** Whether the file's blocks and records carry tags (see FileInfo.authenticated). */
  readonly authenticated: boolean;
}

/** A grant's key is wiped when the file is opened: a second use would encrypt under zeros. */
function checkUnused(grant: FileGrant): void {
  if (grant.method !== 'plaintext' && grant.key.every((b) => b === 0)) {
    throw new TdekvError('INVALID_ARGUMENT', `the grant for ${grant.path} was used already (its key is wiped once the file is opened); ask the env for a new one`);
  }
}

function authenticatorOf(grant: FileGrant): FileAuthenticator | undefined {
  return grant.authenticated ? FileAuthenticator.forFile(grant.method, grant.key, grant.keyId, grant.iv) : undefined;
}

/** Opens the granted file for random-access reads; the grant's key is wiped. */
export function openGrantedRead(grant: FileGrant): EncryptedReadableFile {
  if (grant.access !== 'read') throw new TdekvError('INVALID_ARGUMENT', `the grant for ${grant.path} is for ${grant.access}, not read`);
  checkUnused(grant);
  let auth: FileAuthenticator | undefined;
  try {
    auth = authenticatorOf(grant);
    return new EncryptedReadableFile(grant.path, grant.absolutePath, grant.method, Buffer.from(grant.key.buffer, grant.key.byteOffset, grant.key.length), Buffer.from(grant.iv), auth);
  } catch (err) {
    auth?.destroy();
    if (errnoCode(err) === 'ENOENT') throw new TdekvError('FILE_NOT_FOUND', `file ${grant.path} is in the file dictionary but not on disk (${grant.absolutePath})`);
    throw err;
  } finally {
    // The reader and the authenticator keep their own copies.
    zeroize(grant.key);
  }
}

/**
 * Opens the granted new file (the env created it empty) and returns it for appending; its
 * name is made durable by the first sync(). A file that is no longer empty is refused: files
 * are written once, and a second writer under the same IV would reuse keystream. The grant's
 * key is wiped.
 */
export async function createGranted(grant: FileGrant): Promise<EncryptedWritableFile> {
  if (grant.access !== 'create') throw new TdekvError('INVALID_ARGUMENT', `the grant for ${grant.path} is for ${grant.access}, not create`);
  checkUnused(grant);
  try {
    let fh;
    try {
      fh = await fileIo.open(grant.absolutePath, 'r+');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw new TdekvError('FILE_NOT_FOUND', `cannot write ${grant.path}: it was removed after it was granted`);
      throw err;
    }
    if ((await fh.stat()).size !== 0) {
      await fh.close();
      throw new TdekvError('FILE_EXISTS', `file ${grant.path} has been written already: a create grant is good for one writer`);
    }
    const auth = authenticatorOf(grant);
    return new EncryptedWritableFile(grant.path, fh, ctrStreamAt(grant.method, grant.key, grant.iv, 0), () => syncDir(dirname(grant.absolutePath)), auth);
  } finally {
    // The cipher and the authenticator hold their own keys by now.
    zeroize(grant.key);
  }
}
