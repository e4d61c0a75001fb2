/** Per-connection state the commands read and change. */
export class ClientState {
  readonly id: number;
  readonly addr: string;
  readonly connectedAt = Date.now();
  name: Buffer | undefined;
  libName: string | undefined;
  libVersion: string | undefined;
  authenticated: boolean;
  /**
   * Authenticated as the `admin` user (`AUTH admin <admin-password>`): may run the commands
   * `[security] admin-password` reserves. Another successful AUTH switches back, as in Redis.
   */
  admin = false;
  /** A command is running asynchronously (ENCRYPTION REGENERATE, …): its reply comes later, and the next command waits. */
  blocked = false;
  /** Commands queued by MULTI, or undefined outside a transaction. */
  multi: Buffer[][] | undefined;
  /** Approximate bytes the queued commands hold (Redis's multi-mem), for the client's memory. */
  multiBytes = 0;
  /** An error while queueing: EXEC must abort. */
  multiFailed = false;
  /** Keys this client WATCHes (latin1 → key). */
  readonly watched = new Map<string, Buffer>();
  /** A watched key changed: the next EXEC fails. */
  dirty = false;
  /** Close the connection once the replies so far are sent (QUIT, protocol errors). */
  closeAfterReply = false;
  lastCommand = '';
  /** Set by the connection: its buffers now, for CLIENT LIST (Redis's qbuf, argv-mem, omem, tot-mem). */
  buffers: () => { queryBuffer: number; argv: number; output: number; total: number } = () => ({ queryBuffer: 0, argv: 0, output: 0, total: 0 });

  constructor(id: number, addr: string, authenticated: boolean) {
    this.id = id;
    this.addr = addr;
    this.authenticated = authenticated;
  }
}
