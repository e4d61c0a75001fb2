import type { BackupSource, BackupSourceFile, BackupSourceInfo } from '../backup/backup-source.js';
import type { FileFrame } from '../env/encrypted-buffer-sink.js';
import type { TdekvConfig } from '../config/types.js';
import { TdekvError } from '../errors.js';
import { formatHostPort } from '../util/host-port.js';
import { authenticate, clientAddress, connectToServer, type AdminConnectionOptions } from './admin-connection.js';
import { RespError, type RespClient, type RespReply } from './resp-client.js';

const OFFLINE_HINT = 'If the server is stopped, back up its data dir with --offline.';

/**
 * Bytes asked per BACKUP READ (the server gives up to 8 MiB): 1 MiB keeps each reply under a
 * modest client-output-buffer-limit, which disconnects a client for a single larger reply.
 */
const READ_BYTES = 1024 * 1024;

/** The key as hex in a Buffer, never a string (a string cannot be wiped); the caller wipes it. */
function hexBytes(key: Buffer): Buffer {
  const digits = '0123456789abcdef';
  const out = Buffer.alloc(key.length * 2);
  for (let i = 0; i < key.length; i++) {
    out[2 * i] = digits.charCodeAt(key[i]! >> 4);
    out[2 * i + 1] = digits.charCodeAt(key[i]! & 15);
  }
  return out;
}

function refused(what: string, reply: RespError): TdekvError {
  const hint = reply.message.startsWith('NOPERM') ? '. Set [security] admin-password in the config file this command reads (it authenticates as AUTH admin <admin-password>).' : '';
  return new TdekvError('SERVER_REFUSED', `the server refused ${what}: ${reply.message}${hint}`);
}

function unexpected(what: string, reply: RespReply): TdekvError {
  return new TdekvError('SERVER_REFUSED', `unexpected reply to ${what} (${Array.isArray(reply) ? 'an array' : typeof reply}): is this a tdekv server of the same version?`);
}

/**
 * A running server's pinned version, over its admin connection (BACKUP BEGIN|EXPORT|READ|END):
 * the online source of `tdekv backup full`. The server re-writes each file under the frame
 * sent with EXPORT, so only ciphertext crosses the connection; the frame's key does, once per
 * file (use TLS when the server is not on this machine).
 */
export class OnlineBackupSource implements BackupSource {
  readonly #client: RespClient;
  readonly #session: string;
  readonly #info: BackupSourceInfo;
  readonly #files: BackupSourceFile[];
  #closed = false;
  /** One command at a time on the connection (RespClient's rule), in the order they are asked for. */
  #turn: Promise<unknown> = Promise.resolve();

  private constructor(client: RespClient, session: string, info: BackupSourceInfo, files: BackupSourceFile[]) {
    this.#client = client;
    this.#session = session;
    this.#info = info;
    this.#files = files;
  }

  /**
   * Connects to the server the config file describes (its address, TLS, admin password, as
   * `tdekv encryption` does) and begins a session.
   */
  static async connect(config: TdekvConfig, opts: AdminConnectionOptions): Promise<OnlineBackupSource> {
    const client = await connectToServer(config, opts, OFFLINE_HINT);
    try {
      await authenticate(client, config);
      return await OnlineBackupSource.begin(client, formatHostPort(clientAddress(config, opts.addr)));
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** Begins a session on an authenticated admin connection; the source owns the connection from here. */
  static async begin(client: RespClient, origin: string): Promise<OnlineBackupSource> {
    const reply = await client.call('BACKUP', 'BEGIN');
    if (reply instanceof RespError) throw refused('BACKUP BEGIN', reply);
    if (!Array.isArray(reply) || reply.length % 2 !== 0) throw unexpected('BACKUP BEGIN', reply);
    const m = new Map<string, RespReply>();
    for (let i = 0; i < reply.length; i += 2) m.set(String(reply[i]), reply[i + 1]!);
    const list = m.get('files');
    if (!Array.isArray(list)) throw unexpected('BACKUP BEGIN', reply);
    const files = list.map((f): BackupSourceFile => {
      if (!Array.isArray(f) || f.length !== 4) throw unexpected('BACKUP BEGIN', reply);
      const kind = String(f[1]);
      if (kind !== 'table' && kind !== 'manifest' && kind !== 'current' && kind !== 'wal') throw unexpected('BACKUP BEGIN', reply);
      return { name: String(f[0]), kind, size: Number(f[2]), ...(typeof f[3] === 'string' ? { identity: f[3] } : {}) };
    });
    const info: BackupSourceInfo = { method: String(m.get('method')), masterKey: String(m.get('master_key')), origin, sequence: Number(m.get('sequence')) };
    return new OnlineBackupSource(client, String(m.get('session')), info, files);
  }

  info(): BackupSourceInfo {
    return this.#info;
  }

  files(): BackupSourceFile[] {
    return this.#files;
  }

  /**
   * Exports one file: EXPORT (queued on the server at once), SIZE (once exported), READs. Each
   * command waits its turn on the connection, so several exports asked for at once (runBackup
   * has three in flight) are all queued on the server before the first is read: the server
   * exports them on its worker pool while this reads the ones done.
   */
  async export(name: string, frame: FileFrame, onChunk: (ciphertext: Buffer) => void): Promise<number> {
    const key = hexBytes(frame.key);
    let queued: RespReply;
    try {
      queued = await this.#command('BACKUP', 'EXPORT', this.#session, name, key, String(frame.keyId), frame.iv.toString('hex'));
    } finally {
      key.fill(0);
    }
    // Never echo the command: it held the key.
    if (queued instanceof RespError) throw refused(`BACKUP EXPORT of ${name}`, queued);
    const sized = await this.#command('BACKUP', 'SIZE', this.#session, name);
    if (sized instanceof RespError) throw refused(`the export of ${name}`, sized);
    if (typeof sized !== 'number') throw unexpected(`BACKUP SIZE of ${name}`, sized);
    let got = 0;
    while (got < sized) {
      const part = await this.#turnOf(() => this.#client.callBytes('BACKUP', 'READ', this.#session, name, String(got), String(READ_BYTES)));
      if (part instanceof RespError) throw refused(`BACKUP READ of ${name}`, part);
      if (part.length === 0) throw new TdekvError('SERVER_REFUSED', `the server sent ${got} of the ${sized} bytes of ${name} and then nothing`);
      onChunk(part);
      got += part.length;
    }
    return sized;
  }

  #command(...args: Array<string | Buffer>): Promise<RespReply> {
    return this.#turnOf(() => this.#client.call(...args));
  }

  /** One command at a time on the connection, in the order asked. */
  #turnOf<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#turn.then(fn);
    this.#turn = run.catch(() => undefined);
    return run;
  }

  /** Ends the session (the server releases the version and lets the encryption scan run) and closes the connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      const reply = await this.#command('BACKUP', 'END', this.#session);
      if (reply instanceof RespError) throw refused('BACKUP END', reply);
    } finally {
      // Closing the connection ends the session on the server in any case.
      this.#client.close();
    }
  }
}
