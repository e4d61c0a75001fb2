import { randomBytes } from 'node:crypto';
import { fileIo, writeFully, type FileIo } from '../../util/file-io.js';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { errnoCode, TdekvError } from '../../errors.js';
import { mkdirDurable, syncDir } from '../../keys/atomic-file.js';
import type { BackupStorage } from './backup-storage.js';
import { ExactLength, lengthError } from './exact-length.js';
import { checkObjectName, TEMP_MARK } from './object-name.js';

type FileHandle = Awaited<ReturnType<FileIo['open']>>;
import type { LocalStorageSpec } from './storage-url.js';

/**
 * Backups in a directory (local disk, NFS, a mounted bucket). Each object is written under a
 * temporary name in its final directory, synced, then renamed into place and the directory
 * synced: a crash or a failed body leaves either nothing or the whole object under its name.
 */
export class LocalStorage implements BackupStorage {
  readonly displayUrl: string;
  private readonly root: string;

  constructor(spec: LocalStorageSpec) {
    this.root = spec.root;
    this.displayUrl = spec.displayUrl;
  }

  private path(name: string): string {
    checkObjectName(name, this.displayUrl);
    return join(this.root, ...name.split('/'));
  }

  private ioError(op: string, name: string, err: unknown): TdekvError {
    if (err instanceof TdekvError) return err;
    const code = errnoCode(err) ?? String(err);
    const hint =
      code === 'EACCES' || code === 'EPERM'
        ? 'give the tdekv user write access to the directory'
        : code === 'ENOSPC'
          ? 'free space on that file system'
          : code === 'ENOTDIR' || code === 'EISDIR'
            ? 'a file and a directory collide in the backup directory: is another program writing there?'
            : 'check the directory and the disk';
    return new TdekvError('IO_FAILED', `backup storage ${this.displayUrl}: ${op} ${name} failed (${code}): ${hint}`, { cause: err });
  }

  async put(name: string, body: Readable | Buffer, size: number): Promise<void> {
    const final = this.path(name);
    const dir = dirname(final);
    const tmp = join(dir, `${TEMP_MARK}${randomBytes(8).toString('hex')}`);
    let fh: FileHandle | undefined;
    // The disk's own error (ENOSPC, EIO): pipeline may reject with the abort it causes instead.
    let diskError: unknown;
    try {
      // A new directory's entry must be durable too, or a crash could lose the renamed object.
      await mkdirDurable(dir);
      fh = await fileIo.open(tmp, 'wx', 0o600);
      if (Buffer.isBuffer(body)) {
        if (body.length !== size) throw lengthError(name, size, String(body.length));
        await fh.writeFile(body);
      } else {
        const out = fh;
        let at = 0;
        await pipeline(body, new ExactLength(size, name), async (source: AsyncIterable<Buffer>) => {
          for await (const chunk of source) {
            await writeFully(out, [chunk], at, tmp).catch((err: unknown) => {
              diskError = err;
              throw err;
            });
            at += chunk.length;
          }
        });
      }
      await fh.sync();
      await fh.close();
      fh = undefined;
      await fileIo.rename(tmp, final);
      await syncDir(dir);
    } catch (err) {
      if (!Buffer.isBuffer(body)) body.destroy();
      await fh?.close().catch(() => undefined);
      await fileIo.unlink(tmp).catch(() => undefined);
      throw this.ioError('writing', name, diskError ?? err);
    }
  }

  async get(name: string): Promise<Readable> {
    const path = this.path(name);
    let fh: FileHandle;
    try {
      fh = await fileIo.open(path, 'r');
      if (!(await fh.stat()).isFile()) {
        await fh.close();
        throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
      }
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'EISDIR') throw this.missing(name);
      throw this.ioError('reading', name, err);
    }
    // 1 MiB reads: a restore streams whole tables, and 64 KiB ones cost a thread-pool round trip each.
    return fh.createReadStream({ highWaterMark: 1 << 20 });
  }

  async getBuffer(name: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    const stream = await this.get(name);
    try {
      for await (const chunk of stream) chunks.push(chunk as Buffer);
    } catch (err) {
      throw this.ioError('reading', name, err);
    }
    return Buffer.concat(chunks);
  }

  async stat(name: string): Promise<{ size: number } | undefined> {
    try {
      const st = await fileIo.stat(this.path(name));
      return st.isFile() ? { size: st.size } : undefined;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined;
      throw this.ioError('reading', name, err);
    }
  }

  async *list(prefix: string): AsyncIterable<{ name: string; size: number }> {
    // Walk only the deepest directory the prefix names whole.
    const cut = prefix.lastIndexOf('/');
    const startRel = cut < 0 ? '' : prefix.slice(0, cut);
    if (startRel !== '') checkObjectName(startRel, this.displayUrl);
    yield* this.walk(startRel, prefix);
  }

  private async *walk(rel: string, prefix: string): AsyncIterable<{ name: string; size: number }> {
    const dir = rel === '' ? this.root : join(this.root, ...rel.split('/'));
    let entries;
    try {
      entries = await fileIo.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return;
      throw this.ioError('listing', rel === '' ? '/' : rel, err);
    }
    for (const entry of entries) {
      if (entry.name.startsWith(TEMP_MARK)) continue;
      const name = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        // Descend only where names under it can still match the prefix.
        const asDir = `${name}/`;
        if (asDir.startsWith(prefix) || prefix.startsWith(asDir)) yield* this.walk(name, prefix);
      } else if (entry.isFile() && name.startsWith(prefix)) {
        try {
          yield { name, size: (await fileIo.stat(join(dir, entry.name))).size };
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') throw this.ioError('listing', name, err); // removed meanwhile
        }
      }
    }
  }

  async remove(name: string): Promise<void> {
    try {
      await fileIo.unlink(this.path(name));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return;
      throw this.ioError('removing', name, err);
    }
  }

  async close(): Promise<void> {}

  private missing(name: string): TdekvError {
    return new TdekvError(
      'BACKUP_OBJECT_MISSING',
      `backup object ${name} is not in ${this.displayUrl}: the backup is incomplete or was pruned; check the --storage URL`,
    );
  }
}

