import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import assert from 'node:assert/strict';
import { pino, type Logger } from 'pino';
import { isTdekvError, type TdekvErrorCode } from '../../src/errors.js';
import { FileMasterKey } from '../../src/masterkey/file.js';
import type { MasterKey } from '../../src/masterkey/master-key.js';
import { EncryptedEnv, type EnvOptions } from '../../src/env/encrypted-env.js';
import { silentLogger } from '../../src/log/logger.js';

/** A fresh directory under the OS temp dir; remove it with `cleanup`. */
export async function tempDir(prefix = 'tdekv-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function cleanup(...dirs: string[]): Promise<void> {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
}

/** Runs `fn` with a fresh temp dir that is always removed afterwards. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await tempDir();
  try {
    return await fn(dir);
  } finally {
    await cleanup(dir);
  }
}

/** Writes a valid master key file (64 hex + '\n', mode 0600) and returns its path and hex. */
export async function writeKeyFile(dir: string, name = 'master.key'): Promise<{ path: string; hex: string }> {
  const hex = randomBytes(32).toString('hex');
  const path = join(dir, name);
  await writeFile(path, hex + '\n', { mode: 0o600 });
  return { path, hex };
}

/** A real FileMasterKey loaded from a fresh key file. */
export async function newFileMasterKey(dir: string, name = 'master.key'): Promise<FileMasterKey> {
  const { path } = await writeKeyFile(dir, name);
  return FileMasterKey.load(path);
}

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A pino logger whose JSON lines are kept in `lines`, to assert on warnings. */
export function captureLogger(): { logger: Logger; lines: LogLine[]; warnings: () => LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'trace' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines, warnings: () => lines.filter((l) => l.level === 40) };
}

/** Every regular file under `root`, relative path → bytes (directories are listed with a trailing '/'). */
export async function snapshotTree(root: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  async function walk(dir: string): Promise<void> {
    for (const d of await readdir(dir, { withFileTypes: true })) {
      const abs = join(dir, d.name);
      const rel = relative(root, abs);
      if (d.isDirectory()) {
        out.set(rel + '/', Buffer.alloc(0));
        await walk(abs);
      } else {
        out.set(rel, await readFile(abs));
      }
    }
  }
  await walk(root);
  return out;
}

/** A snapshot without the data dir lock file, which taking the lock creates and which never holds data. */
export function withoutLock(tree: Map<string, Buffer>): Map<string, Buffer> {
  return new Map([...tree].filter(([rel]) => rel !== join('encryption-meta', 'LOCK')));
}

/** XORs one byte of a file in place, as a careless edit or a bad disk would; the same mask again restores it. */
export async function flipByte(path: string, offset: number, mask: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0]! ^= mask;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

/** Asserts two tree snapshots are identical: same names, same bytes. */
export function assertSameTree(after: Map<string, Buffer>, before: Map<string, Buffer>, what: string): void {
  assert.deepEqual([...after.keys()].sort(), [...before.keys()].sort(), `${what}: the set of files changed`);
  for (const [name, bytes] of before) assert.ok(after.get(name)!.equals(bytes), `${what}: ${name} changed`);
}

/** For assert.rejects/throws: checks the code and that the message mentions each string. */
export function expectCode(code: TdekvErrorCode, ...mustMention: string[]): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isTdekvError(err, code), `expected TdekvError ${code}, got ${String(err)}`);
    for (const text of mustMention) assert.ok(err.message.includes(text), `message should mention ${JSON.stringify(text)}: ${err.message}`);
    return true;
  };
}

/** An aes256-ctr env with the default rotation period and dictionary settings, silent; `overrides` win. */
export function openTestEnv(dataDir: string, masterKey: MasterKey, overrides: Partial<EnvOptions> = {}): Promise<EncryptedEnv> {
  return EncryptedEnv.open({
    dataDir,
    method: 'aes256-ctr',
    rotationPeriodMs: 7 * 24 * 3600_000,
    masterKey,
    fileDictionaryLog: true,
    fileDictionaryRewriteThreshold: 1_000_000,
    logger: silentLogger(),
    ...overrides,
  });
}
