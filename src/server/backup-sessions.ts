import { randomBytes } from 'node:crypto';
import type { CheckpointFile, EngineCheckpoint } from '../engine/checkpoint.js';
import type { FileFrame } from '../env/encrypted-buffer-sink.js';
import { TdekvError } from '../errors.js';
import type { Logger } from '../log/logger.js';

/** What BACKUP BEGIN answers: the session and the pinned version's files. */
export interface BackupBegun {
  session: string;
  sequence: number;
  method: string;
  masterKey: string;
  files: Array<CheckpointFile & { identity?: string }>;
}

/** The server's side of `tdekv backup full` (BACKUP BEGIN|EXPORT|READ|END): what commands may ask of it. */
export interface BackupControl {
  begin(clientId: number): Promise<BackupBegun>;
  /**
   * Starts exporting one file of the session's version under `frame` (on the engine's worker
   * pool) and returns at once, so a client can queue the next file while it reads this one.
   */
  export(clientId: number, session: string, name: string, frame: FileFrame): void;
  /** The exported file's size, once its export is done (its failure, if it failed). */
  size(clientId: number, session: string, name: string): Promise<number>;
  /** Bytes [offset, offset + length) of an exported file, once its export is done; the file is let go after its last byte. */
  read(clientId: number, session: string, name: string, offset: number, length: number): Promise<Buffer>;
  end(clientId: number, session: string): void;
  /** Sessions open now (INFO, /status). */
  readonly active: number;
}

/** What sessions need of the server. */
export interface BackupHost {
  /** A pinned version with every write received so far in it (Engine.checkpoint). */
  checkpoint(): Promise<EngineCheckpoint>;
  /** Refuses while an encryption scan runs (ENCRYPTION_CHANGE_REFUSED); the function it returns ends the exclusion. */
  beginBackup(): () => void;
  describe(): { method: string; masterKey: string };
  /**
   * A table's identity for incremental backups: the same for the same file, and never for
   * another one (its name, its random IV and its size, as the offline source makes it).
   */
  identityOf(name: string, size: number): string | undefined;
}

/** Limits that keep a client (a hostile one, or a backup tool that hangs) from holding versions for ever. */
export interface BackupSessionLimits {
  /** Sessions open at once; one more is refused. */
  maxSessions: number;
  /** A session with no BACKUP command for this long is ended (its version released). */
  idleMs: number;
}

export const DEFAULT_BACKUP_SESSION_LIMITS: BackupSessionLimits = { maxSessions: 2, idleMs: 10 * 60 * 1000 };

interface Session {
  clientId: number;
  /** Ends the session when it has been idle for limits.idleMs. */
  idleTimer: NodeJS.Timeout | undefined;
  checkpoint: EngineCheckpoint;
  /** Ends the exclusion with the encryption scan (lifecycle.beginBackup()). */
  endExclusion: () => void;
  /** Files being exported or exported and not yet read to their end, by name. */
  exports: Map<string, Promise<Buffer>>;
  startedAt: number;
  bytesServed: number;
}

/** Most bytes one BACKUP READ returns: a client reads a file in slices, so no reply is huge. */
export const BACKUP_READ_MAX = 8 * 1024 * 1024;
/** Files a session may hold exported and unread at once (each is in memory until read). */
export const BACKUP_EXPORTS_HELD = 3;

/**
 * Backup sessions on a running server. A session pins one version (Engine.checkpoint: the
 * memtable flushed first, its tables kept from compaction) and holds off the encryption scan
 * (the seed's rule: a backup and the scan exclude each other) until it ends: by BACKUP END, by
 * its connection closing, or by the server stopping. A session belongs to the connection that
 * began it. Files leave only re-framed under the key the client sends (FileFrame), never in
 * plaintext; the key is wiped once the file is exported.
 */
export class BackupSessions implements BackupControl {
  readonly #sessions = new Map<string, Session>();
  readonly #host: BackupHost;
  readonly #logger: Logger;
  readonly #limits: BackupSessionLimits;
  /** BEGINs waiting for their checkpoint (a flush). */
  #beginning = 0;

  constructor(host: BackupHost, logger: Logger, limits: BackupSessionLimits = DEFAULT_BACKUP_SESSION_LIMITS) {
    this.#host = host;
    this.#logger = logger;
    this.#limits = limits;
  }

  get active(): number {
    return this.#sessions.size;
  }

  async begin(clientId: number): Promise<BackupBegun> {
    // Sessions still beginning count too: two BEGINs at once must not both pass the limit while their flushes run.
    if (this.#sessions.size + this.#beginning >= this.#limits.maxSessions) {
      throw new TdekvError('INVALID_ARGUMENT', `${this.#sessions.size + this.#beginning} backup sessions are open, the most at once: each pins a version whose files stay on disk; wait for one to end (BACKUP END, or its connection closing)`);
    }
    const endExclusion = this.#host.beginBackup();
    let checkpoint: EngineCheckpoint;
    this.#beginning++;
    try {
      checkpoint = await this.#host.checkpoint();
    } catch (err) {
      endExclusion();
      throw err;
    } finally {
      this.#beginning--;
    }
    const session = randomBytes(8).toString('hex');
    const s: Session = { clientId, idleTimer: undefined, checkpoint, endExclusion, exports: new Map(), startedAt: Date.now(), bytesServed: 0 };
    this.#sessions.set(session, s);
    this.#touch(session, s);
    const files = checkpoint.files().map((f) => {
      const identity = f.kind === 'table' ? this.#host.identityOf(f.name, f.size) : undefined;
      return identity === undefined ? f : { ...f, identity };
    });
    this.#logger.info({ session, client: clientId, tables: files.filter((f) => f.kind === 'table').length, sequence: checkpoint.lastSequence }, 'backup began: a version is pinned and the encryption scan is held off until it ends');
    return { session, sequence: checkpoint.lastSequence, ...this.#host.describe(), files };
  }

  export(clientId: number, session: string, name: string, frame: FileFrame): void {
    const s = this.#session(clientId, session);
    try {
      if (s.exports.has(name)) throw new TdekvError('INVALID_ARGUMENT', `${name} is being exported already in this session: read it (BACKUP READ) before exporting it again`);
      if (s.exports.size >= BACKUP_EXPORTS_HELD) {
        throw new TdekvError('INVALID_ARGUMENT', `${s.exports.size} files of this session are exported and not yet read to their end, the most at once: read one first (BACKUP READ)`);
      }
      if (!s.checkpoint.files().some((f) => f.name === name)) {
        throw new TdekvError('INVALID_ARGUMENT', `${name} is not a file of this checkpoint (BACKUP BEGIN listed its files)`);
      }
    } catch (err) {
      frame.key.fill(0);
      throw err;
    }
    const key = frame.key;
    const done = s.checkpoint.exportFramed(name, frame).then(
      (chunks) => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)),
      (err: unknown) => {
        this.#logger.warn({ session, file: name, err: err instanceof Error ? err.message : String(err) }, 'backup export failed');
        throw err;
      },
    );
    done.finally(() => key.fill(0)).catch(() => undefined);
    s.exports.set(name, done);
  }

  async size(clientId: number, session: string, name: string): Promise<number> {
    return (await this.#exported(clientId, session, name)).length;
  }

  async read(clientId: number, session: string, name: string, offset: number, length: number): Promise<Buffer> {
    const bytes = await this.#exported(clientId, session, name);
    const s = this.#sessions.get(session);
    if (offset > bytes.length) throw new TdekvError('INVALID_ARGUMENT', `offset ${offset} is past the end of ${name} (${bytes.length} bytes)`);
    const out = bytes.subarray(offset, offset + Math.min(length, BACKUP_READ_MAX));
    if (s !== undefined) {
      s.bytesServed += out.length;
      // Its last byte is read: the session lets it go.
      if (offset + out.length >= bytes.length) s.exports.delete(name);
    }
    return out;
  }

  /** An exported file's ciphertext, once its export is done; refused when the session has no such file. */
  #exported(clientId: number, session: string, name: string): Promise<Buffer> {
    const s = this.#session(clientId, session);
    const done = s.exports.get(name);
    if (done === undefined) throw new TdekvError('INVALID_ARGUMENT', `${name} is not exported in this session (or was read to its end): BACKUP EXPORT it first`);
    return done.catch((err: unknown) => {
      // A failed export is reported once, then let go.
      s.exports.delete(name);
      throw err;
    });
  }

  end(clientId: number, session: string): void {
    this.#close(session, this.#session(clientId, session), 'ended by BACKUP END');
  }

  /** A connection closed: its sessions end (a backup tool that died must not hold the scan off for ever). */
  endAllOf(clientId: number): void {
    for (const [id, s] of this.#sessions) if (s.clientId === clientId) this.#close(id, s, 'its connection closed before BACKUP END');
  }

  /** The server is stopping. */
  endAll(): void {
    for (const [id, s] of this.#sessions) this.#close(id, s, 'the server is stopping');
  }

  #session(clientId: number, session: string): Session {
    const s = this.#sessions.get(session);
    if (s === undefined || s.clientId !== clientId) throw new TdekvError('INVALID_ARGUMENT', `no backup session ${session} on this connection (a session belongs to the connection that began it, and ends with it or after ${Math.round(this.#limits.idleMs / 1000)} s without a BACKUP command): BACKUP BEGIN a new one`);
    this.#touch(session, s);
    return s;
  }

  #touch(id: string, s: Session): void {
    if (s.idleTimer !== undefined) clearTimeout(s.idleTimer);
    s.idleTimer = setTimeout(() => {
      if (this.#sessions.get(id) === s) this.#close(id, s, `no BACKUP command for ${Math.round(this.#limits.idleMs / 1000)} s`);
    }, this.#limits.idleMs);
    s.idleTimer.unref();
  }

  #close(id: string, s: Session, why: string): void {
    this.#sessions.delete(id);
    if (s.idleTimer !== undefined) clearTimeout(s.idleTimer);
    s.exports.clear();
    s.checkpoint.release();
    s.endExclusion();
    this.#logger.info({ session: id, client: s.clientId, seconds: Math.round((Date.now() - s.startedAt) / 1000), bytes: s.bytesServed }, `backup session ended: ${why}`);
  }
}
