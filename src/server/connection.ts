import type { Socket } from 'node:net';
import type { Logger } from '../log/logger.js';
import { ClientState } from './client-state.js';
import type { CommandContext } from './commands/command.js';
import { ProtocolError, RequestParser } from './resp/request-parser.js';
import { ReplyWriter } from './resp/reply-writer.js';

/** What a connection needs from the server. */
export interface ConnectionHost {
  readonly maxRequestSize: number;
  readonly logger: Logger;
  execute(ctx: CommandContext, args: Buffer[]): void;
  /** Called after a burst of commands, so their writes go to the engine together. */
  scheduleCommit(): void;
  /** The batch a reply written now depends on (0: none pending). */
  dependency(): number;
  /** This connection holds replies until a batch is applied. */
  holding(conn: Connection): void;
  closed(conn: Connection): void;
  context(conn: Connection): Omit<CommandContext, 'out' | 'client'>;
  countOutput(bytes: number): void;
  countInput(bytes: number): void;
  protocolError(conn: Connection, message: string): void;
}

/** Replies held back past this many bytes pause reading from the client (backpressure). */
const MAX_HELD_BYTES = 8 * 1024 * 1024;

/**
 * One client connection: parses requests, runs them, and sends replies in order. A reply
 * that may depend on a write not yet in the WAL is held until that write's batch is applied.
 */
export class Connection {
  readonly socket: Socket;
  readonly client: ClientState;
  readonly out = new ReplyWriter();
  readonly #parser: RequestParser;
  readonly #host: ConnectionHost;
  readonly #ctx: CommandContext;
  /** Replies waiting for their batch, in order, with how many replies each chunk holds. */
  #held: Array<{ data: Buffer; until: number; replies: number }> = [];
  /** Replies in `out` not yet taken: a held chunk that must be failed is replaced reply for reply. */
  #replies = 0;
  #heldBytes = 0;
  #paused = false;
  #ending = false;
  #closed = false;

  constructor(socket: Socket, id: number, authenticated: boolean, host: ConnectionHost) {
    this.socket = socket;
    this.#host = host;
    this.client = new ClientState(id, `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`, authenticated);
    this.#parser = new RequestParser({ maxBulkLength: host.maxRequestSize });
    this.#parser.restrictUnauthenticated(!authenticated);
    this.#ctx = { ...host.context(this), out: this.out, client: this.client };
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => host.logger.debug({ client: this.client.id, err: err.message }, 'client socket error'));
    socket.on('close', () => this.#onClose());
    socket.on('drain', () => this.#maybeResume());
  }

  #onData(chunk: Buffer): void {
    this.#host.countInput(chunk.length);
    // Past QUIT or a protocol error nothing more is parsed: what still arrives is read only so
    // the client's writes cannot stall before the socket is closed.
    if (this.#ending) return;
    try {
      this.#parser.push(chunk, (args) => {
        if (this.client.closeAfterReply) return;
        const wasAuthenticated = this.client.authenticated;
        const before = this.out.length;
        this.#host.execute(this.#ctx, args);
        if (this.out.length > before) this.#replies++;
        if (!wasAuthenticated && this.client.authenticated) this.#parser.restrictUnauthenticated(false);
      });
      if (this.#parser.pendingBytes > this.#host.maxRequestSize) throw new ProtocolError('Protocol error: too big request');
    } catch (err) {
      // A bug must cost this connection, not the server and every other client.
      const message = err instanceof ProtocolError ? err.message : 'internal error; closing the connection';
      if (!(err instanceof ProtocolError)) this.#host.logger.error({ client: this.client.id, err: err instanceof Error ? err.stack : String(err) }, 'unexpected error while serving a client');
      this.out.error(`ERR ${message}`);
      this.#replies++;
      this.client.closeAfterReply = true;
      if (err instanceof ProtocolError) this.#host.protocolError(this, err.message);
    }
    this.#host.scheduleCommit();
    this.flush();
  }

  /** Sends (or holds) what the commands so far have written. */
  flush(): void {
    if (this.#closed) return;
    if (this.out.length > 0) {
      const data = this.out.take();
      const replies = this.#replies;
      this.#replies = 0;
      const until = this.#host.dependency();
      if (until === 0 && this.#held.length === 0) this.#send(data);
      else {
        this.#held.push({ data, until: Math.max(until, this.#held.at(-1)?.until ?? 0), replies });
        this.#heldBytes += data.length;
        this.#host.holding(this);
      }
    }
    this.#afterOutput();
  }

  /** A batch was applied: sends the replies that waited for it. Returns whether any remain held. */
  release(applied: number): boolean {
    let n = 0;
    while (n < this.#held.length && this.#held[n]!.until <= applied) n++;
    if (n > 0) {
      const ready = this.#held.splice(0, n);
      for (const h of ready) this.#heldBytes -= h.data.length;
      this.#send(ready.length === 1 ? ready[0]!.data : Buffer.concat(ready.map((h) => h.data)));
      this.#afterOutput();
    }
    return this.#held.length > 0;
  }

  /**
   * A batch failed: every reply still held was computed on top of its writes (batches settle
   * in order, so earlier ones were released), so none may be sent as a success. Each is
   * replaced by `error`, one for one, which keeps the client's pipeline in step and its
   * connection open. A held reply of a later batch may stand for a write that does reach the
   * engine; like a timeout, an error reply there means "not acknowledged", never "not done".
   */
  failHeld(error: string): boolean {
    if (this.#held.length === 0) return false;
    const replies = this.#held.reduce((n, h) => n + h.replies, 0);
    this.#held = [];
    this.#heldBytes = 0;
    const w = new ReplyWriter();
    w.proto = this.out.proto;
    for (let i = 0; i < replies; i++) w.error(error);
    this.#send(w.take());
    this.#afterOutput();
    return false;
  }

  #send(data: Buffer): void {
    if (this.#closed) return;
    this.#host.countOutput(data.length);
    this.socket.write(data);
  }

  #afterOutput(): void {
    if (this.client.closeAfterReply && this.#held.length === 0) {
      this.#endAfterReplies();
      return;
    }
    if (this.#heldBytes > MAX_HELD_BYTES || this.socket.writableLength > MAX_HELD_BYTES) this.#pause();
    else this.#maybeResume();
  }

  /**
   * Closes the connection fully once the last reply is handed to the kernel, as Redis does
   * after QUIT or a protocol error. A half-close that stopped reading left a client that kept
   * writing blocked for good, and its socket, file descriptor and client slot were never
   * freed. Input is drained meanwhile, so a client's writes never stall before the close;
   * bytes the client sends in the last instant may still make the kernel answer with a reset,
   * as with Redis.
   */
  #endAfterReplies(): void {
    if (this.#ending) return;
    this.#ending = true;
    this.#paused = false;
    this.socket.resume();
    this.socket.end(() => this.socket.destroy());
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.socket.pause();
  }

  #maybeResume(): void {
    if (!this.#paused || this.client.closeAfterReply || this.#heldBytes > MAX_HELD_BYTES / 2 || this.socket.writableLength > MAX_HELD_BYTES / 2) return;
    this.#paused = false;
    this.socket.resume();
  }

  /** Stops reading requests (server shutdown); replies already due are still sent. */
  stopReading(): void {
    this.client.closeAfterReply = true;
    this.#pause();
  }

  get hasHeld(): boolean {
    return this.#held.length > 0;
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#host.closed(this);
  }
}
