import { open } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { TdekvError, errnoCode } from '../errors.js';
import { loadConfig } from '../config/config.js';
import { openEnvFromConfig, type ManagedEnv } from '../env/open-env.js';
import { zeroize } from '../crypto/random.js';
import type { FileInfo } from '../keys/file-dictionary-format.js';
import { createLogger, silentLogger } from '../log/logger.js';
import { DataKeyStore } from '../keys/data-key-store.js';
import { KEY_DICT_NAME } from '../env/encrypted-env.js';
import { canonicalPath, isInsideDir } from '../masterkey/inside-dir.js';
import { encodeHexInto } from '../masterkey/key-hex.js';
import { askConsent } from './consent.js';
import { encryptionStatus } from '../env/encryption-status.js';
import { formatStatus } from './status-format.js';
import { formatVerifyReport, verifyDataDir } from './verify.js';

export interface CtlTarget {
  config: string;
  dataDir?: string;
}

export interface Output {
  out: (line: string) => void;
  err: (line: string) => void;
  /**
   * A line holding key material, as bytes ending in a newline: written, then wiped. Absent
   * (tests), the line goes to `out` as a string.
   */
  secret?: (line: Buffer) => Promise<void>;
}

/** Opens the data dir read-only: ctl inspects, it never changes dictionaries. */
export async function openForCtl(target: CtlTarget): Promise<ManagedEnv> {
  const config = await loadConfig(target.config);
  if (target.dataDir) config.storage.dataDir = resolve(target.dataDir);
  return openEnvFromConfig(config, { readOnly: true, logger: silentLogger() });
}

async function withEnv<T>(target: CtlTarget, fn: (m: ManagedEnv) => Promise<T>): Promise<T> {
  const managed = await openForCtl(target);
  try {
    return await fn(managed);
  } finally {
    await managed.close();
  }
}

function describe(path: string, info: FileInfo): string {
  return `${path}\tmethod=${info.method}\tkey-id=${info.keyId}\tiv=${info.iv.toString('hex')}`;
}

/** A path given as absolute (as TiKV's ctl takes it) or relative to the data dir. */
function toDataDirPath(dataDir: string, path: string): string {
  if (!isAbsolute(path)) return path;
  const rel = relative(dataDir, path);
  if (rel.startsWith('..') || isAbsolute(rel)) throw new TdekvError('INVALID_PATH', `${path} is not inside the data dir ${dataDir}`);
  return rel;
}

export async function dumpFile(target: CtlTarget, opts: { path?: string; json?: boolean }, io: Output): Promise<void> {
  await withEnv(target, async ({ env }) => {
    let files: Array<[string, FileInfo]>;
    if (opts.path !== undefined) {
      const rel = toDataDirPath(env.dataDir, opts.path);
      const info = env.fileInfo(rel);
      if (!info) throw new TdekvError('FILE_NOT_TRACKED', `${rel} is not in the file dictionary of ${env.dataDir}`);
      files = [[rel, info]];
    } else {
      files = env.files();
    }
    if (opts.json) {
      io.out(JSON.stringify(files.map(([path, i]) => ({ path, method: i.method, keyId: i.keyId, iv: i.iv.toString('hex') })), null, 2));
    } else {
      for (const [path, info] of files) io.out(describe(path, info));
    }
  });
}

export async function status(target: CtlTarget, opts: { json?: boolean }, io: Output): Promise<void> {
  await withEnv(target, async ({ env }) => {
    const s = await encryptionStatus(env);
    if (opts.json) io.out(JSON.stringify(s, null, 2));
    else for (const line of formatStatus(s)) io.out(line);
  });
}

export const DUMP_KEY_WARNING =
  'WARNING: this prints data keys in clear text. Anyone who sees them can decrypt the files that use them, ' +
  'without the master key. Print them only to recover data, and rotate the data key afterwards.';

export async function dumpKey(
  target: CtlTarget,
  opts: { ids?: string; iConsent?: boolean },
  io: Output,
  consent: () => Promise<boolean> = () => askConsent(DUMP_KEY_WARNING),
): Promise<void> {
  const ids = opts.ids === undefined ? undefined : parseIds(opts.ids);
  if (!opts.iConsent && !(await consent())) {
    throw new TdekvError('INVALID_ARGUMENT', 'consent not given: nothing was printed. Type exactly "I consent", or pass --i-consent in scripts.');
  }
  await withEnv(target, async ({ env, keyAdmin }) => {
    const keys = keyAdmin.exportDataKeys(ids);
    // Recorded (and audited) before a single key is printed: ctl is read-only, so the next
    // writable open folds the note into key.dict and rotates away from an exposed current key.
    await DataKeyStore.noteExposure(join(env.metaDir, KEY_DICT_NAME), keys.map((k) => k.id), createLogger({ name: 'tdekv-ctl' }));
    for (const k of keys) {
      const prefix = `${k.id}\tmethod=${k.method}\tcreated=${new Date(k.createdAtMs).toISOString()}\texposed=${k.exposed}\tkey=`;
      // Hex built in a non-pooled Buffer, never a JS string: only this Buffer holds the key, and it is wiped.
      const line = Buffer.alloc(prefix.length + 2 * k.key.length + 1);
      line.write(prefix, 0, 'latin1');
      line[encodeHexInto(k.key, line, prefix.length)] = 0x0a;
      zeroize(k.key);
      try {
        if (io.secret) await io.secret(line);
        else io.out(line.toString('latin1', 0, line.length - 1));
      } finally {
        zeroize(line);
      }
    }
  });
}

function parseIds(text: string): number[] {
  const ids = text.split(',').map((s) => s.trim());
  for (const id of ids) {
    if (!/^\d+$/.test(id) || !Number.isSafeInteger(Number(id))) {
      throw new TdekvError('INVALID_ARGUMENT', `--ids must be a comma-separated list of data key ids (as shown by dump-file), got "${text}"`);
    }
  }
  return ids.map(Number);
}

const CHUNK = 1 << 20;

/** Writes the plaintext of one data file to a new file (mode 0600: it is user data). */
export async function decryptFile(target: CtlTarget, opts: { path: string; outFile: string }, io: Output): Promise<void> {
  await withEnv(target, async ({ env }) => {
    await refuseOutputInDataDir(opts.outFile, env.dataDir);
    const rel = toDataDirPath(env.dataDir, opts.path);
    const src = await env.openRead(rel);
    let out;
    try {
      out = await open(opts.outFile, 'wx', 0o600);
    } catch (err) {
      src.close();
      if (errnoCode(err) === 'EEXIST') throw new TdekvError('FILE_EXISTS', `--out-file ${opts.outFile} exists; choose a new path (decrypt-file never overwrites)`);
      throw new TdekvError('INVALID_ARGUMENT', `cannot create --out-file ${opts.outFile}: ${errnoCode(err) ?? String(err)}`);
    }
    try {
      for (let off = 0; off < src.size; off += CHUNK) {
        const chunk = await src.read(off, CHUNK);
        await out.write(chunk);
      }
      await out.sync();
    } finally {
      src.close();
      await out.close();
    }
    io.err(`decrypted ${rel} (${src.size} bytes) to ${opts.outFile}`);
  });
}

/**
 * Plaintext written into the data dir would sit beside the ciphertext it was meant to keep
 * private, end up in backups of the data dir, and (in encryption-meta/ or as a table name)
 * be read by tdekv itself. The output's parent is resolved, so symlinks and `..` do not hide it.
 */
async function refuseOutputInDataDir(outFile: string, dataDir: string): Promise<void> {
  const out = resolve(outFile);
  const [parent, dir] = await Promise.all([canonicalPath(dirname(out)), canonicalPath(dataDir)]);
  if (!isInsideDir(parent, dir)) return;
  throw new TdekvError(
    'INVALID_PATH',
    `--out-file ${outFile} is inside the data dir ${dataDir}: decrypted data must not be written where the encrypted data lives ` +
      `(it would be copied by backups of the data dir, and tdekv may read or delete it). Choose a path outside the data dir, ` +
      `preferably on an encrypted or temporary file system, and remove the file when done.`,
  );
}

/**
 * Checks every file of the data dir end to end (see engine/verify.ts) and prints one line per
 * file and a summary. Damage, untracked or missing files make it fail (exit status 1).
 */
export async function verify(target: CtlTarget, opts: { json?: boolean }, io: Output): Promise<void> {
  // Manifests are replayed with the configured number of levels, as the server's open replays them.
  const { numLevels } = (await loadConfig(target.config)).engine;
  await withEnv(target, async ({ env }) => {
    const report = await verifyDataDir(env, numLevels === undefined ? {} : { numLevels });
    if (opts.json) io.out(JSON.stringify(report, null, 2));
    else for (const line of formatVerifyReport(report)) io.out(line);
    if (report.damaged > 0) {
      const bad = [...report.files.filter((f) => !f.ok).map((f) => f.path), ...report.problems];
      throw new TdekvError(
        'DATA_CORRUPTED',
        `verify found ${report.damaged} problem(s) in ${env.dataDir}: ${bad.slice(0, 5).join('; ')}${bad.length > 5 ? '; …' : ''}. Restore damaged or missing files from a backup (encryption-meta/ from the same one); see each line above for the reason`,
      );
    }
  });
}
