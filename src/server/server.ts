import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { PACKAGE_VERSION } from '../util/package-version.js';
import { readTlsMaterial } from './tls-material.js';
import type { ClientMemoryLimit, ServerOptions } from './server-options.js';
import { BackupSessions } from './backup-sessions.js';
import { Engine } from '../engine/engine.js';
import type { WalSyncMode } from '../engine/options.js';
import type { EncryptionConfig } from '../env/encryption-config.js';
import { EncryptionLifecycle, type ReloadReport } from '../lifecycle/encryption-lifecycle.js';
import { LogRateLimit } from '../log/log-rate-limit.js';
import { TdekvError, errnoCode } from '../errors.js';
import { openEnvFromConfig, type ManagedEnv } from '../env/open-env.js';
import { startupIoError } from '../util/startup-io-error.js';
import type { Logger } from '../log/logger.js';
import { createMetricsRegistry } from '../metrics/registry.js';
import { ClientState } from './client-state.js';
import { ReplyError, type CommandContext, type CommandSpec, type ServerContext } from './commands/command.js';
import { REDIS_COMPAT_VERSION } from './commands/connection.js';
import { Connection, type ConnectionHost } from './connection.js';
import { Dispatcher } from './dispatcher.js';
import { startStatusServer, type StatusServer } from './http/status-server.js';
import { encryptionInfo, infoText } from './info.js';
import { BatchingStore } from './keyspace/batching-store.js';
import { Keyspace } from './keyspace/keyspace.js';
import { ScanCursors } from './scan-cursors.js';
import { ServerStats } from './server-stats.js';
import { statusReport } from './status-report.js';
import { failureReason, refusalReply } from './write-refusal.js';


/**
 * The server's default for `[engine] wal-sync` (embedded, the engine's is "inline"): with many
 * clients, the main thread parses and runs the next requests while the pool fsyncs, which an
 * inline fsync would hold back. Measured with sync-writes = "always", redis-benchmark SET, 50
 * clients, alternated twice: 17.2k and 15.5k requests/s on the pool, 14.6k and 12.8k inline.
 */
const SERVER_WAL_SYNC: WalSyncMode = 'thread-pool';

/** Active expiry: how often, how many keys per step, and the time budget of one run. */
const EXPIRE_INTERVAL_MS = 100;
const EXPIRE_STEP = 200;
const EXPIRE_BUDGET_MS = 10;
/** How long shutdown waits for clients to read their last replies before cutting them off. */
const CLOSE_GRACE_MS = 2000;
/** How often client limits that depend on time (the soft output limit) and the memory total are checked. */
const CLIENTS_CRON_MS = 1000;

export interface ServerAddresses {
  addr: AddressInfo;
  statusAddr: AddressInfo;
}

/**
 * The Redis-protocol server: an engine on the encrypted env, the keyspace on top, client
 * connections (TCP or TLS), and the HTTP status endpoint.
 */
export class TdekvServer implements ServerContext, ConnectionHost {
  readonly config: ServerOptions;
  readonly logger: Logger;
  readonly stats = new ServerStats();
  readonly cursors = new ScanCursors();
  readonly runId = randomBytes(20).toString('hex');
  readonly version = PACKAGE_VERSION;
  readonly maxRequestSize: number;
  readonly clientLimits: ConnectionHost['clientLimits'];
  /** maxmemory-clients in bytes (0: none), and what the clients hold now (kept up to date as they report changes). */
  readonly #clientMemoryLimit: number;
  #clientMemory = 0;
  readonly #managed: ManagedEnv;
  readonly #engine: Engine;
  readonly #lifecycle: EncryptionLifecycle;
  /** BACKUP sessions: each pins a version and holds the encryption scan off until it ends. */
  readonly backups: BackupSessions;
  /** Failed AUTH attempts are logged at most once a second; INFO acl_access_denied_auth counts them all. */
  readonly authFailureLog = new LogRateLimit(1000);
  /** Re-reads the `[security.encryption]` section of the config file (set by `tdekv serve`); without it ENCRYPTION RELOAD has nothing to read. */
  #encryptionConfigSource: (() => Promise<EncryptionConfig>) | undefined;
  readonly #store: BatchingStore;
  readonly #ks: Keyspace;
  readonly #dispatcher: Dispatcher;
  readonly #connections = new Set<Connection>();
  readonly #holding = new Set<Connection>();
  readonly #watchers = new Map<string, Set<ClientState>>();
  #listener: NetServer | undefined;
  #status: StatusServer | undefined;
  #nextClientId = 1;
  #commitScheduled = false;
  /** The end-of-turn callback is scheduled (it commits, then sends the replies in #flushQueue). */
  #turnScheduled = false;
  #flushQueue: Connection[] = [];
  #writesSinceSync = false;
  #timers: NodeJS.Timeout[] = [];
  #stopping: Promise<void> | undefined;
  /** Every batch after the first failure fails the same way: one log line says it. */
  #failureLogged = false;

  private constructor(config: ServerOptions, logger: Logger, managed: ManagedEnv, engine: Engine, lifecycle: EncryptionLifecycle) {
    this.config = config;
    this.logger = logger;
    this.maxRequestSize = config.server.maxRequestSize;
    this.clientLimits = { queryBuffer: config.server.clientQueryBufferLimit, output: config.server.clientOutputBufferLimit };
    this.#clientMemoryLimit = clientMemoryLimitBytes(config.server.maxmemoryClients);
    this.#managed = managed;
    this.#engine = engine;
    this.#lifecycle = lifecycle;
    this.#store = new BatchingStore(engine, { sync: config.storage.syncWrites === 'always', rowCacheBytes: config.storage.rowCacheSize });
    this.backups = new BackupSessions(
      {
        // Writes received before BACKUP BEGIN are in the backup: the batch being gathered is committed first.
        checkpoint: async () => {
          await this.#store.drain();
          return this.#engine.checkpoint();
        },
        beginBackup: () => this.#lifecycle.beginBackup(),
        identityOf: (name, size) => {
          const iv = this.#managed.env.fileInfo(name)?.iv;
          return iv === undefined ? undefined : `${name}:${Buffer.from(iv).toString('hex')}:${size}`;
        },
        describe: () => {
          const st = this.#lifecycle.status();
          return { method: st.method, masterKey: `${st.masterKeyType} ${st.masterKeyIdentity}` };
        },
      },
      logger,
    );
    this.#store.onBatchSettled((id, err) => this.#onBatchSettled(id, err));
    this.#ks = new Keyspace(this.#store, {
      touched: (key) => this.touch(key),
      expired: (key) => {
        this.stats.expiredKeys++;
        this.touch(key);
      },
      read: (hit) => {
        if (hit) this.stats.keyspaceHits++;
        else this.stats.keyspaceMisses++;
      },
    });
    this.#dispatcher = new Dispatcher(logger, this.stats);
    // What a command reads ahead is kept for it in the block cache: without one it would be read twice.
    const readAhead = engine.stats().blockCache.capacity === 0 ? 'never' : config.server.readAhead;
    this.#dispatcher.readAhead = readAhead === 'auto' ? () => engine.readsAreSlow() : readAhead === 'always' ? () => true : () => false;
    this.stats.clientBuffers = () => this.#clientBuffers();
    this.stats.keys = () => this.#ks.keyCount;
    this.stats.expires = () => this.#ks.expiresCount;
    this.stats.rowCache = () => this.#store.cache;
  }

  /** Opens the data dir and starts listening; resolves once both ports accept connections. */
  static async start(config: ServerOptions, logger: Logger): Promise<TdekvServer> {
    await checkListenAddresses(config);
    const dataDir = config.storage.dataDir;
    // The engine checks its manifest and logs before anything is written (invariant 11).
    const managed = await openEnvFromConfig(config, { logger, deferOpenWrites: true }).catch(async (err: unknown) => {
      throw await startupIoError(err, dataDir);
    });
    let engine: Engine;
    try {
      engine = await Engine.open({ env: managed.env, logger, walRecoveryMode: config.storage.walRecoveryMode, ...config.engine, walSync: config.engine.walSync ?? SERVER_WAL_SYNC });
    } catch (err) {
      await managed.close().catch(() => undefined);
      throw await startupIoError(err, dataDir);
    }
    let lifecycle: EncryptionLifecycle;
    try {
      lifecycle = await EncryptionLifecycle.open({ engine, managed, config: config.security.encryption, logger });
    } catch (err) {
      await engine.close().catch(() => undefined);
      await managed.close().catch(() => undefined);
      throw await startupIoError(err, dataDir);
    }
    // A server runs long: its background thread starts now and compiles its flush code on
    // made-up data before the first real flush (background/flush-warm-up.ts). Not awaited: the
    // thread loads while the server starts listening; a failure to start is the engine's
    // background error, reported there.
    engine.startBackgroundThread({ warmUpFlush: true }).catch((err: unknown) => logger.debug({ err }, 'the background thread did not start'));
    const server = new TdekvServer(config, logger, managed, engine, lifecycle);
    try {
      await server.#listen();
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /** The online encryption lifecycle (ENCRYPTION commands, /status, INFO encryption, metrics). */
  get encryption(): EncryptionLifecycle {
    return this.#lifecycle;
  }

  /** Where ENCRYPTION RELOAD and SIGHUP re-read `[security.encryption]` from. */
  setEncryptionConfigSource(source: () => Promise<EncryptionConfig>): void {
    this.#encryptionConfigSource = source;
  }

  /** ENCRYPTION RELOAD / SIGHUP: re-reads the config file's `[security.encryption]` and applies it (src/lifecycle/). */
  async reloadEncryption(): Promise<ReloadReport> {
    if (!this.#encryptionConfigSource) {
      throw new TdekvError('INVALID_ARGUMENT', 'this server was started without a config file, so there is nothing to reload: change the method with ENCRYPTION commands, or start it with `tdekv serve --config FILE`');
    }
    return this.#lifecycle.reload(await this.#encryptionConfigSource());
  }

  get commands(): ReadonlyMap<string, CommandSpec> {
    return this.#dispatcher.table;
  }

  addresses(): ServerAddresses {
    return { addr: this.#listener!.address() as AddressInfo, statusAddr: { address: this.#status!.host, port: this.#status!.port, family: 'IPv4' } };
  }

  // ------------------------------------------------------------------ listening

  async #listen(): Promise<void> {
    const { addr, statusAddr } = this.config.server;
    const tls = this.config.security.tls;
    const onSocket = (socket: Socket): void => this.#accept(socket);
    const server = tls
      ? createTlsServer(
          // With a CA, clients must present a certificate it signed (mutual TLS, as TiKV does).
          { ...readTlsMaterial(tls), ...(tls.caPath !== undefined ? { requestCert: true, rejectUnauthorized: true } : {}) },
          onSocket,
        )
      : createNetServer(onSocket);
    server.on('tlsClientError', (err: Error) => this.logger.info({ err: err.message }, 'TLS handshake failed'));
    this.#listener = server;
    await listenOn(server, addr.host, addr.port, 'server.addr');
    if (this.config.security.adminPassword === undefined && !isLoopback(addr.host)) {
      this.logger.warn(
        { addr: `${addr.host}:${addr.port}`, setting: 'security.admin-password' },
        'security.admin-password is not set and server.addr is not a loopback address: every client that can connect (and knows requirepass, if set) may run ENCRYPTION, FLUSHALL, FLUSHDB and CONFIG. Set [security] admin-password to reserve them for AUTH admin <password>.',
      );
    }
    const registry = createMetricsRegistry({ env: this.#managed.env, engine: this.#engine, server: this.stats, lifecycle: this.#lifecycle });
    this.#status = await startStatusServer({
      host: statusAddr.host,
      port: statusAddr.port,
      registry,
      status: () => statusReport(this.#managed.env, this.#engine, this.stats, Date.now(), this.#lifecycle.status()),
      healthy: () => this.#health(),
      logger: this.logger,
    });
    this.#timers.push(setInterval(() => this.#expireCycle(), EXPIRE_INTERVAL_MS));
    this.#timers.push(setInterval(() => this.#clientsCron(), CLIENTS_CRON_MS));
    if (this.config.storage.syncWrites === 'everysec') this.#timers.push(setInterval(() => this.#syncEverySecond(), 1000));
    for (const t of this.#timers) t.unref();
    const a = this.addresses();
    this.logger.info(
      { addr: `${a.addr.address}:${a.addr.port}`, statusAddr: `${a.statusAddr.address}:${a.statusAddr.port}`, tls: tls !== undefined, syncWrites: this.config.storage.syncWrites, method: this.#managed.env.method, keyCount: this.#ks.keyCount },
      'ready',
    );
  }

  #health(): { ok: boolean; reason?: string } {
    const f = this.#engine.writeFailure();
    if (f !== undefined) {
      const dir = this.config.storage.dataDir;
      if (!f.recoverable) return { ok: false, reason: `writes are refused: ${failureReason(f.error)} in ${dir}; fix the disk, then restart the server (${errorMessage(f.error)})` };
      const next = this.#engine.stats().noSpaceNextRetryMs;
      const retry = next === undefined ? 'retrying now' : `next retry in ${(next / 1000).toFixed(1)} s`;
      return { ok: false, reason: `writes are refused: ${failureReason(f.error)} in ${dir}; they resume by themselves once space is freed (${retry}; no restart needed) (${errorMessage(f.error)})` };
    }
    if (this.#stopping !== undefined) return { ok: false, reason: 'shutting down' };
    return { ok: true };
  }

  #accept(socket: Socket): void {
    if (this.#stopping !== undefined) {
      socket.destroy();
      return;
    }
    if (this.#connections.size >= this.config.server.maxClients) {
      this.stats.rejectedConnections++;
      // Closed fully once written, and read meanwhile, so a client that keeps writing cannot hold the fd.
      socket.resume();
      socket.end('-ERR max number of clients reached\r\n', () => socket.destroy());
      return;
    }
    const conn = new Connection(socket, this.#nextClientId++, this.config.security.requirepass === undefined, this);
    this.#connections.add(conn);
    this.stats.connectedClients = this.#connections.size;
    this.stats.totalConnections++;
    this.logger.debug({ client: conn.client.id, addr: conn.client.addr }, 'client connected');
  }

  // ------------------------------------------------------------------ ConnectionHost

  execute(ctx: CommandContext, args: Buffer[]): void {
    this.#dispatcher.execute(ctx, args);
  }

  context(): Omit<CommandContext, 'out' | 'client' | 'defer'> {
    return { ks: this.#ks, server: this };
  }

  scheduleCommit(): void {
    if (this.#commitScheduled || this.#store.pendingOps === 0) return;
    this.#commitScheduled = true;
    this.#scheduleTurnEnd();
  }

  flushLater(conn: Connection): void {
    this.#flushQueue.push(conn);
    this.#scheduleTurnEnd();
  }

  /** After every socket read of this loop turn: one batch, one WAL record, for all of them, then the replies. */
  #scheduleTurnEnd(): void {
    if (this.#turnScheduled) return;
    this.#turnScheduled = true;
    setImmediate(this.#endTurn);
  }

  readonly #endTurn = (): void => {
    this.#turnScheduled = false;
    if (this.#commitScheduled) {
      this.#commitScheduled = false;
      this.#commit();
    }
    const queue = this.#flushQueue;
    if (queue.length === 0) return;
    this.#flushQueue = [];
    for (const conn of queue) {
      conn.flushQueued = false;
      conn.flush();
    }
  };

  #commit(): void {
    if (this.#store.pendingOps === 0) return;
    this.#ks.beforeCommit();
    this.#store.commit();
    this.stats.writeBatches++;
    this.#writesSinceSync = true;
  }

  dependency(): number {
    return this.#store.dependency;
  }

  holding(conn: Connection): void {
    this.#holding.add(conn);
  }

  closed(conn: Connection): void {
    this.#clientMemory -= conn.reportedMemory;
    conn.reportedMemory = 0;
    this.#connections.delete(conn);
    this.#holding.delete(conn);
    this.unwatch(conn.client);
    this.backups.endAllOf(conn.client.id);
    this.stats.connectedClients = this.#connections.size;
    this.logger.debug({ client: conn.client.id }, 'client disconnected');
  }

  countInput(bytes: number): void {
    this.stats.netInputBytes += bytes;
  }

  countOutput(bytes: number): void {
    this.stats.netOutputBytes += bytes;
  }

  memoryChanged(conn: Connection): void {
    const now = conn.destroyed ? 0 : conn.memory;
    this.#clientMemory += now - conn.reportedMemory;
    conn.reportedMemory = now;
    if (this.#clientMemoryLimit > 0 && this.#clientMemory > this.#clientMemoryLimit) this.#evictClients();
  }

  limitReached(conn: Connection, limit: 'client-query-buffer-limit' | 'client-output-buffer-limit', bytes: number): void {
    if (limit === 'client-query-buffer-limit') this.stats.queryBufferLimitDisconnections++;
    else this.stats.outputBufferLimitDisconnections++;
    this.logger.warn({ client: conn.client.id, addr: conn.client.addr, limit, bytes, setting: `server.${limit}` }, `closing a client over ${limit}`);
  }

  /**
   * maxmemory-clients: all clients together hold too much, so the ones holding the most are
   * disconnected until the rest fits, as Redis's client eviction does; the server itself
   * never runs out of memory because of its clients.
   */
  #evictClients(): void {
    let total = 0;
    const sized: Array<[Connection, number]> = [];
    for (const c of this.#connections) {
      if (c.destroyed) continue;
      const m = c.memory;
      c.reportedMemory = m;
      total += m;
      sized.push([c, m]);
    }
    this.#clientMemory = total;
    if (total <= this.#clientMemoryLimit) return;
    sized.sort((a, b) => b[1] - a[1]);
    for (const [c, m] of sized) {
      if (this.#clientMemory <= this.#clientMemoryLimit) break;
      this.stats.evictedClients++;
      this.logger.warn({ client: c.client.id, addr: c.client.addr, bytes: m, total: this.#clientMemory, limit: this.#clientMemoryLimit, setting: 'server.maxmemory-clients' }, 'evicting a client: all clients together hold more than maxmemory-clients');
      this.#clientMemory -= m;
      c.reportedMemory = 0;
      c.destroy();
    }
  }

  /** Once a second: soft output limits (they depend on time) and an exact memory total. */
  #clientsCron(): void {
    const now = Date.now();
    for (const c of this.#connections) if (!c.destroyed) c.checkOutputLimit(now);
    let total = 0;
    for (const c of this.#connections) {
      c.reportedMemory = c.destroyed ? 0 : c.memory;
      total += c.reportedMemory;
    }
    this.#clientMemory = total;
    if (this.#clientMemoryLimit > 0 && total > this.#clientMemoryLimit) this.#evictClients();
  }

  #clientBuffers(): { memory: number; maxQueryBuffer: number; maxOutput: number } {
    let memory = 0;
    let maxQueryBuffer = 0;
    let maxOutput = 0;
    for (const c of this.#connections) {
      if (c.destroyed) continue;
      memory += c.memory;
      maxQueryBuffer = Math.max(maxQueryBuffer, c.queryBufferBytes);
      maxOutput = Math.max(maxOutput, c.outputBytes);
    }
    return { memory, maxQueryBuffer, maxOutput };
  }

  protocolError(conn: Connection, message: string): void {
    this.stats.protocolErrors++;
    // The message is one of the parser's fixed texts: it carries no request bytes.
    this.logger.info({ client: conn.client.id, addr: conn.client.addr, error: message }, 'protocol error; closing the connection');
  }

  #onBatchSettled(id: number, err: unknown): void {
    let refusal: string | undefined;
    if (err !== undefined) {
      // No engine failure left means nothing sticky: the next write is tried again.
      const recoverable = this.#engine.writeFailure()?.recoverable ?? true;
      if (!this.#failureLogged) {
        this.#failureLogged = true;
        const until = recoverable ? 'until space is freed (retried in the background)' : 'until restart';
        this.logger.error({ err: errorMessage(err), dataDir: this.config.storage.dataDir }, `a write batch failed; its clients get an error reply and writes are refused ${until}`);
      }
      refusal = refusalReply(err, this.config.storage.dataDir, recoverable);
    } else if (this.#failureLogged) {
      this.#failureLogged = false;
      this.logger.warn({ dataDir: this.config.storage.dataDir }, 'writes are accepted again');
    }
    for (const conn of this.#holding) {
      const still = refusal === undefined ? conn.release(id) : conn.failHeld(refusal);
      if (!still) this.#holding.delete(conn);
    }
  }

  // ------------------------------------------------------------------ ServerContext

  checkWritable(): void {
    const failure = this.#store.failure;
    if (failure !== undefined) {
      const now = this.#engine.writeFailure();
      throw new ReplyError(refusalReply(now?.error ?? failure, this.config.storage.dataDir, now?.recoverable ?? true));
    }
  }

  run(ctx: CommandContext, args: Buffer[]): void {
    this.#dispatcher.run(ctx, args);
  }

  touch(key: Buffer): void {
    if (this.#watchers.size === 0) return;
    const set = this.#watchers.get(key.toString('latin1'));
    if (set !== undefined) for (const c of set) c.dirty = true;
  }

  touchAllExisting(): void {
    for (const [k, set] of this.#watchers) {
      if (this.#ks.lookup(Buffer.from(k, 'latin1')) !== undefined) for (const c of set) c.dirty = true;
    }
  }

  watch(client: ClientState, key: Buffer): void {
    const k = key.toString('latin1');
    if (client.watched.has(k)) return;
    client.watched.set(k, Buffer.from(key));
    let set = this.#watchers.get(k);
    if (set === undefined) {
      set = new Set();
      this.#watchers.set(k, set);
    }
    set.add(client);
    // Redis also fails EXEC when a watched key expires before it: check now, in case it is already due.
    this.#ks.lookup(key);
  }

  unwatch(client: ClientState): void {
    for (const k of client.watched.keys()) {
      const set = this.#watchers.get(k);
      set?.delete(client);
      if (set?.size === 0) this.#watchers.delete(k);
    }
    client.watched.clear();
    client.dirty = false;
  }

  *clients(): Iterable<ClientState> {
    for (const c of this.#connections) yield c.client;
  }

  info(sections: string[]): string {
    const env = this.#managed.env;
    return infoText(
      {
        config: this.config,
        stats: this.stats,
        engine: this.#engine,
        env,
        runId: this.runId,
        version: this.version,
        redisVersion: REDIS_COMPAT_VERSION,
        port: (this.#listener?.address() as AddressInfo | null)?.port ?? 0,
        maxmemoryClients: this.#clientMemoryLimit,
        encryption: () => encryptionInfo(env, this.config, Date.now(), this.#lifecycle.status()),
      },
      sections,
    );
  }

  // ------------------------------------------------------------------ background

  #expireCycle(): void {
    if (this.#expiring !== undefined || this.#stopping !== undefined || this.#store.failure !== undefined) return;
    this.#expiring = this.#expireSteps().finally(() => {
      this.#expiring = undefined;
      this.scheduleCommit();
    });
  }

  /** The active expiry cycle running now (stop() waits for it). */
  #expiring: Promise<void> | undefined;

  /**
   * Steps of EXPIRE_STEP keys while they are full and the budget lasts. With the read-ahead on,
   * each step first reads what it will walk on the thread pool (a cold expiry index or record
   * is then not a read on the event loop); the step itself runs synchronously, as a command.
   */
  async #expireSteps(): Promise<void> {
    const deadline = performance.now() + EXPIRE_BUDGET_MS;
    try {
      for (;;) {
        if (this.#dispatcher.readAhead()) await this.#ks.readAheadExpiry(EXPIRE_STEP);
        if (this.#stopping !== undefined || this.#store.failure !== undefined) return;
        if (this.#ks.expireCycle(EXPIRE_STEP) !== EXPIRE_STEP || performance.now() >= deadline) return;
      }
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'active expiry failed');
    }
  }

  #syncEverySecond(): void {
    if (!this.#writesSinceSync || this.#stopping !== undefined) return;
    this.#writesSinceSync = false;
    // Beside the write queue: writes go on during the fsync, as with Redis's everysec.
    this.#engine.syncAppendedWal().catch((err: unknown) => this.logger.error({ err: errorMessage(err) }, 'fsync of the write-ahead log failed'));
  }

  // ------------------------------------------------------------------ shutdown

  /**
   * Stops accepting, stops reading requests, lets every write already received reach the
   * WAL and its reply reach the client, flushes the memtable, and closes the data dir.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    const listener = this.#listener;
    const closedListener = listener ? new Promise<void>((resolve) => listener.close(() => resolve())) : Promise.resolve();
    for (const conn of this.#connections) conn.stopReading();
    // Commands received that wait for a read from disk run before the last writes are drained.
    await this.#dispatcher.idle();
    await this.#expiring;
    this.#endTurn();
    this.#commit();
    await this.#store.drain();
    for (const conn of this.#connections) conn.end();
    const grace = setTimeout(() => {
      for (const conn of this.#connections) conn.destroy();
    }, CLOSE_GRACE_MS);
    await closedListener;
    clearTimeout(grace);
    await this.#status?.close();
    try {
      if (this.#store.failure === undefined) await this.#engine.flush();
    } finally {
      this.backups.endAll();
      await this.#lifecycle.close();
      await this.#engine.close();
      await this.#managed.close();
    }
    this.logger.info('stopped');
  }
}

/**
 * Binds and releases both ports before the data dir is opened or created: a port in use is the
 * likelier mistake, and it should not leave a fresh, empty data dir behind. Port 0 is always
 * free. The real listen later still reports a port taken in between.
 */
export async function checkListenAddresses(config: ServerOptions): Promise<void> {
  const { addr, statusAddr } = config.server;
  for (const [a, setting] of [[addr, 'server.addr'], [statusAddr, 'server.status-addr']] as const) {
    if (a.port === 0) continue;
    const probe = createNetServer();
    await listenOn(probe, a.host, a.port, setting);
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}

function listenOn(server: NetServer, host: string, port: number, setting: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(new TdekvError('CONFIG_INVALID', `cannot listen on ${setting} = "${host}:${port}" (${errnoCode(err) ?? err.message}); pick a free port or another address`));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** 127.0.0.0/8, ::1 and localhost: only this machine can connect. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\./.test(h);
}

/** maxmemory-clients in bytes: a percentage is of the machine's memory, or of the cgroup's limit when that is lower. */
export function clientMemoryLimitBytes(limit: ClientMemoryLimit): number {
  if ('bytes' in limit) return limit.bytes;
  const total = os.totalmem();
  const constrained = process.constrainedMemory?.() ?? 0;
  const memory = constrained > 0 && constrained < total ? constrained : total;
  return Math.floor((memory * limit.percent) / 100);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
