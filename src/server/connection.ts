import type { Socket } from 'node:net';
import type { OutputBufferLimit } from './server-options.js';
import type { Logger } from '../log/logger.js';
import { ClientState } from './client-state.js';
import type { CommandContext, DeferredReply } from './commands/command.js';
import { ProtocolError, RequestParser } from './resp/request-parser.js';
import { ReplyWriter } from './resp/reply-writer.js';

/** What a connection needs from the server. */
export interface ConnectionHost {
  readonly maxRequestSize: number;
  readonly logger: Logger;
  execute(ctx: CommandContext, args: Buffer[]): void;
  /** Called after a burst of commands, so their writes go to the engine together. */
  scheduleCommit(): void;
  /**
   * Calls `conn.flush()` at the end of this turn of the event loop, after every socket that
   * was readable in it has been read: as Redis's handleClientsWithPendingWrites, replies go
   * out after the reads, not between them.
   */
  flushLater(conn: Connection): void;
  /** The batch a reply written now depends on (0: none pending). */
  dependency(): number;
  /** This connection holds replies until a batch is applied. */
  holding(conn: Connection): void;
  closed(conn: Connection): void;
  context(conn: Connection): Omit<CommandContext, 'out' | 'client' | 'defer'>;
  countOutput(bytes: number): void;
  countInput(bytes: number): void;
  protocolError(conn: Connection, message: string): void;
  /** `client-query-buffer-limit` and `client-output-buffer-limit`. */
  readonly clientLimits: { readonly queryBuffer: number; readonly output: OutputBufferLimit };
  /** The connection's memory (see `memory`) may have changed since it last said so. */
  memoryChanged(conn: Connection): void;
  /** The connection went over a client limit and is being closed. */
  limitReached(conn: Connection, limit: 'client-query-buffer-limit' | 'client-output-buffer-limit', bytes: number): void;
}

/**
 * Backpressure: past this many bytes of replies not yet taken by the client, no further command
 * of it is run, and its socket is not read, until they drop below RESUME_OUTPUT_BYTES. A
 * pipelined client that never reads otherwise made each 64 KiB of GETs of a 100 KB value
 * cost ~900 MB. Per client at most this plus one reply is buffered, whatever it sends.
 */
const PAUSE_OUTPUT_BYTES = 1024 * 1024;
const RESUME_OUTPUT_BYTES = 256 * 1024;
/**
 * Replies up to this size wait for the end of the event-loop turn (see ConnectionHost.flushLater);
 * bigger ones go out at once, so that a burst of big replies is not gathered in memory first.
 */
const DEFER_FLUSH_BYTES = 64 * 1024;
/** After QUIT or a protocol error, a client that does not read its last replies is cut off after this long. */
const CLOSE_AFTER_REPLY_MS = 10_000;

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
  /** Whether the host will call flush() at the end of this turn. */
  flushQueued = false;
  /** Replies in `out` not yet taken: a held chunk that must be failed is replaced reply for reply. */
  #replies = 0;
  #heldBytes = 0;
  #paused = false;
  #resuming = false;
  #ending = false;
  #closed = false;
  #destroyed = false;
  /** When the output went over the soft limit, while it stays over (0: not over). */
  #softSince = 0;
  /** The memory the host was last told about: it keeps the total of all clients. */
  reportedMemory = 0;

  constructor(socket: Socket, id: number, authenticated: boolean, host: ConnectionHost) {
    this.socket = socket;
    this.#host = host;
    this.client = new ClientState(id, `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`, authenticated);
    this.#parser = new RequestParser({ maxBulkLength: host.maxRequestSize });
    this.#parser.restrictUnauthenticated(!authenticated);
    this.#ctx = { ...host.context(this), out: this.out, client: this.client, defer: (reply) => this.#defer(reply) };
    this.client.buffers = () => ({ queryBuffer: this.#parser.pendingBytes, argv: this.#parser.argvBytes, output: this.outputBytes, total: this.memory });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => host.logger.debug({ client: this.client.id, err: err.message }, 'client socket error'));
    socket.on('close', () => this.#onClose());
    socket.on('drain', () => {
      this.#host.memoryChanged(this);
      this.#maybeResume();
    });
  }

  #onData(chunk: Buffer): void {
    this.#host.countInput(chunk.length);
    // Past QUIT or a protocol error nothing more is parsed: what still arrives is read only so
    // the client's writes cannot stall before the socket is closed.
    if (this.#ending) return;
    this.#chunk = chunk;
    this.#parse(this.#pushChunk, true);
  }

  /** The chunk #pushChunk parses: a field and a bound method rather than a closure per chunk. */
  #chunk: Buffer | undefined;
  readonly #pushChunk = (): void => {
    const chunk = this.#chunk!;
    this.#chunk = undefined;
    this.#parser.push(chunk, this.#runCommand);
  };
  readonly #resumeParser = (): void => this.#parser.resume(this.#runCommand);

  /** Runs one command; false (stop parsing) once the client has enough replies waiting. */
  readonly #runCommand = (args: Buffer[]): boolean => {
    if (this.client.closeAfterReply) return true;
    const wasAuthenticated = this.client.authenticated;
    const before = this.out.length;
    this.#host.execute(this.#ctx, args);
    if (this.out.length > before) this.#replies++;
    if (!wasAuthenticated && this.client.authenticated) this.#parser.restrictUnauthenticated(false);
    // The reply comes later; the commands after it wait, as behind a blocking command in Redis.
    if (this.client.blocked) return false;
    // Checked on the reply as made, before the kernel takes any of it: as in Redis, one reply
    // bigger than the hard limit closes the client.
    if (!this.checkOutputLimit()) return false;
    return this.outputBytes < PAUSE_OUTPUT_BYTES;
  };

  /**
   * `deferFlush`: replies may wait for the end of the turn (input from a 'data' event); they
   * are sent at once when the client is to be closed, is paused, or has much output waiting.
   */
  #parse(parse: () => void, deferFlush = false): void {
    try {
      parse();
      if (this.#parser.pendingBytes > this.#host.clientLimits.queryBuffer) {
        // As Redis: no reply (the client is mid-request), a log line, and the connection closed.
        this.#host.limitReached(this, 'client-query-buffer-limit', this.#parser.pendingBytes);
        this.destroy();
        return;
      }
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
    if (deferFlush && !this.client.closeAfterReply && !this.#parser.stopped && this.out.length <= DEFER_FLUSH_BYTES && this.outputBytes < PAUSE_OUTPUT_BYTES) {
      if (this.out.length > 0 && !this.flushQueued) {
        this.flushQueued = true;
        this.#host.flushLater(this);
      }
      // An unfinished request grows with no reply to flush: maxmemory-clients must see it now,
      // not at the next once-a-second sweep (by then a fast client has sent gigabytes).
      this.#host.memoryChanged(this);
      return;
    }
    this.flush();
  }

  #defer(reply: Promise<DeferredReply>): void {
    this.client.blocked = true;
    const done = (write: DeferredReply): void => {
      this.client.blocked = false;
      if (this.destroyed) return;
      write(this.out);
      this.#replies++;
      // The command may have written (one that waited for a read from disk runs only now).
      this.#host.scheduleCommit();
      // The commands that waited behind it run now, so that their replies go out with its own.
      this.#maybeResume();
      this.flush();
    };
    reply
      .then(done, (err: unknown) => {
        this.#host.logger.error({ client: this.client.id, err: err instanceof Error ? err.stack : String(err) }, 'a deferred command failed unexpectedly');
        done((out) => out.error('ERR internal error'));
      })
      // Writing the reply itself failed (the connection broke meanwhile): logged, never an unhandled rejection that ends the server.
      .catch((err: unknown) => this.#host.logger.error({ client: this.client.id, err: err instanceof Error ? err.stack : String(err) }, 'sending a deferred reply failed'));
  }

  /** Bytes of replies not yet taken by the client: written by commands, held for their batch, or queued on the socket. */
  get outputBytes(): number {
    return this.out.length + this.#heldBytes + this.socket.writableLength;
  }

  /**
   * What this client costs the server in buffers (Redis's tot-mem, roughly): its query buffer
   * (unparsed input), the arguments of its unfinished command, its queued transaction, and
   * its unsent replies.
   */
  get memory(): number {
    return this.#parser.pendingBytes + this.#parser.argvBytes + this.client.multiBytes + this.outputBytes;
  }

  get queryBufferBytes(): number {
    return this.#parser.pendingBytes;
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
    if (this.destroyed) return;
    this.#host.countOutput(data.length);
    this.socket.write(data);
  }

  #afterOutput(): void {
    if (this.destroyed) return;
    this.#host.memoryChanged(this);
    if (this.client.closeAfterReply && this.#held.length === 0) {
      this.#endAfterReplies();
      return;
    }
    if (!this.checkOutputLimit()) return;
    if (this.#parser.stopped || this.outputBytes >= PAUSE_OUTPUT_BYTES) this.#pause();
    this.#maybeResume();
  }

  /**
   * Redis's client-output-buffer-limit for normal clients: over the hard limit, or over the
   * soft limit for soft-seconds in a row, the client is disconnected (its replies dropped).
   * Called after output and by the server's periodic sweep. False if the client was closed.
   */
  checkOutputLimit(now = Date.now()): boolean {
    const { hard, soft, softSeconds } = this.#host.clientLimits.output;
    if (hard === 0 && soft === 0) return true;
    const bytes = this.outputBytes;
    let over = hard > 0 && bytes > hard;
    if (soft > 0 && bytes > soft) {
      if (this.#softSince === 0) this.#softSince = now;
      else if (now - this.#softSince >= softSeconds * 1000) over = true;
    } else this.#softSince = 0;
    if (!over) return true;
    this.#host.limitReached(this, 'client-output-buffer-limit', bytes);
    this.destroy();
    return false;
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
    // A client that never reads would otherwise keep the socket, its fd and its slot for good.
    setTimeout(() => this.socket.destroy(), CLOSE_AFTER_REPLY_MS).unref();
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.socket.pause();
  }

  /**
   * Reads and runs again once the client has taken enough of its replies; input that waited
   * runs first. Replies the kernel takes at once leave no 'drain' to wait for, so this loops
   * until the waiting input is done or the client's replies pile up again.
   */
  #maybeResume(): void {
    if (!this.#paused || this.#resuming) return;
    this.#resuming = true;
    try {
      while (this.#parser.stopped && !this.client.blocked && !this.destroyed && !this.client.closeAfterReply && this.outputBytes <= RESUME_OUTPUT_BYTES) {
        this.#parse(this.#resumeParser);
      }
    } finally {
      this.#resuming = false;
    }
    if (this.destroyed || this.client.blocked || this.client.closeAfterReply || this.#parser.stopped || this.outputBytes > RESUME_OUTPUT_BYTES) return;
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

  /** Closes at once, dropping unsent replies (limits, eviction, shutdown after the grace time). */
  destroy(): void {
    this.#destroyed = true;
    this.socket.destroy();
  }

  get destroyed(): boolean {
    return this.#destroyed || this.#closed;
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#host.closed(this);
  }
}
