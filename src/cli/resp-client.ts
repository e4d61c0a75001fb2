import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';

/*
 * The few lines of RESP2 the `tdekv encryption` CLI needs: one connection, one command at a
 * time, no reconnects. A full client library would retry, reconnect and queue behind a
 * server that is down, where the CLI must say at once that no server answers.
 */

/** A RESP2 reply; error replies are RespError values, not exceptions, so a caller sees the server's text. */
export type RespReply = string | number | null | RespReply[] | RespError;

export class RespError {
  constructor(readonly message: string) {}
}

/** One reply from `buf` at `pos`, or undefined while incomplete. With `bytes`, bulk strings stay Buffers (binary data). */
export function parseReply(buf: Buffer, pos = 0, bytes = false): { value: RespReply; end: number } | undefined {
  const lineEnd = buf.indexOf('\r\n', pos);
  if (lineEnd < 0) return undefined;
  const type = buf[pos];
  const line = buf.toString('utf8', pos + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case 0x2b: // +
      return { value: line, end: next };
    case 0x2d: // -
      return { value: new RespError(line), end: next };
    case 0x3a: // :
      return { value: Number(line), end: next };
    case 0x24: {
      // $
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return undefined;
      if (bytes) return { value: Buffer.from(buf.subarray(next, next + n)) as unknown as RespReply, end: next + n + 2 };
      return { value: buf.toString('utf8', next, next + n), end: next + n + 2 };
    }
    case 0x2a: {
      // *
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items: RespReply[] = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, p, bytes);
        if (r === undefined) return undefined;
        items.push(r.value);
        p = r.end;
      }
      return { value: items, end: p };
    }
    default:
      throw new Error(`unexpected RESP type byte 0x${(type ?? 0).toString(16)}: is this a tdekv (Redis protocol) port?`);
  }
}

function encode(args: ReadonlyArray<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(a, 'utf8');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

export interface RespConnectOptions {
  host: string;
  port: number;
  /** TLS options; absent for plain TCP. */
  tls?: ConnectionOptions;
  /** Called once the TLS handshake is done, before any command: throws to refuse the server (certificate pinning). */
  checkPeer?: (socket: TLSSocket) => void;
  /** For the connection (and TLS handshake). */
  timeoutMs: number;
  /** For each reply: a lifecycle change (a KMS call, a re-seal) can take a while. */
  replyTimeoutMs: number;
}

/** For an incomplete top-level bulk string: the bytes it needs in all (header, payload, CRLF); 0 when unknown. */
function bulkBytesNeeded(buf: Buffer): number {
  if (buf[0] !== 0x24) return 0;
  const lineEnd = buf.indexOf('\r\n');
  if (lineEnd < 0) return 0;
  const n = Number(buf.toString('latin1', 1, lineEnd));
  return Number.isSafeInteger(n) && n > 0 ? lineEnd + 2 + n + 2 : 0;
}

export class RespClient {
  readonly #socket: Socket;
  #buf: Buffer = Buffer.alloc(0);
  /** Data received since #buf was last joined: a large reply arrives in many chunks, joined once it is whole. */
  #chunks: Buffer[] = [];
  #chunkBytes = 0;
  /** Bytes the reply being received needs (known from a bulk header), so it is not parsed again before then. */
  #needed = 0;
  #waiter: { resolve: (r: RespReply) => void; reject: (e: Error) => void; bytes: boolean } | undefined;
  #closedError: Error | undefined;
  readonly #timeoutMs: number;

  private constructor(socket: Socket, timeoutMs: number) {
    this.#socket = socket;
    this.#timeoutMs = timeoutMs;
    socket.on('data', (d: Buffer) => {
      this.#chunks.push(d);
      this.#chunkBytes += d.length;
      if (this.#buf.length + this.#chunkBytes >= this.#needed) this.#drain();
    });
    const closed = (err?: Error): void => {
      this.#closedError ??= err ?? new Error('the server closed the connection');
      this.#waiter?.reject(this.#closedError);
      this.#waiter = undefined;
    };
    socket.on('error', closed);
    socket.on('close', () => closed());
  }

  static connect(opts: RespConnectOptions): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const socket = opts.tls !== undefined ? tlsConnect({ host: opts.host, port: opts.port, ...opts.tls }) : netConnect({ host: opts.host, port: opts.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(Object.assign(new Error(`no answer within ${opts.timeoutMs} ms`), { code: 'ETIMEDOUT' }));
      }, opts.timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once(opts.tls !== undefined ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        try {
          opts.checkPeer?.(socket as TLSSocket);
        } catch (err) {
          socket.destroy();
          reject(err);
          return;
        }
        socket.removeAllListeners('error');
        resolve(new RespClient(socket, opts.replyTimeoutMs));
      });
    });
  }

  #drain(): void {
    if (this.#waiter === undefined) return;
    if (this.#chunks.length > 0) {
      this.#buf = Buffer.concat([this.#buf, ...this.#chunks]);
      this.#chunks = [];
      this.#chunkBytes = 0;
    }
    let r: { value: RespReply; end: number } | undefined;
    try {
      r = parseReply(this.#buf, 0, this.#waiter.bytes);
    } catch (err) {
      this.#waiter.reject(err as Error);
      this.#waiter = undefined;
      this.#socket.destroy();
      return;
    }
    if (r === undefined) {
      this.#needed = bulkBytesNeeded(this.#buf);
      return;
    }
    this.#needed = 0;
    this.#buf = this.#buf.subarray(r.end);
    const w = this.#waiter;
    this.#waiter = undefined;
    w.resolve(r.value);
  }

  /** Sends one command and waits for its reply (one at a time). */
  call(...args: Array<string | Buffer>): Promise<RespReply> {
    return this.#call(args, false);
  }

  /** As call(), for a command whose reply is binary: a bulk string comes back as a Buffer (an error as a RespError). */
  async callBytes(...args: Array<string | Buffer>): Promise<Buffer | RespError> {
    const r = (await this.#call(args, true)) as unknown;
    if (r instanceof RespError || Buffer.isBuffer(r)) return r;
    throw new Error(`expected a bulk string in reply to ${args[0] ?? ''}, got ${typeof r}`);
  }

  #call(args: ReadonlyArray<string | Buffer>, bytes: boolean): Promise<RespReply> {
    if (this.#closedError !== undefined) return Promise.reject(this.#closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        this.#socket.destroy();
        reject(Object.assign(new Error(`no reply to ${args[0] ?? ''} within ${this.#timeoutMs} ms`), { code: 'ETIMEDOUT' }));
      }, this.#timeoutMs);
      this.#waiter = {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
        bytes,
      };
      this.#socket.write(encode(args));
      this.#drain();
    });
  }

  close(): void {
    this.#socket.end();
    this.#socket.destroy();
  }
}
