import type { EngineSettings, WalRecoveryMode } from '../engine/options.js';
import type { EncryptionConfig } from '../env/encryption-config.js';
import type { HostPort } from '../util/host-port.js';

/** `[server]`: the Redis-protocol server and its HTTP status endpoint. */
export interface ServerConfig {
  /** `addr`, "host:port" (default 127.0.0.1:6380). Port 0 picks a free port. */
  addr: HostPort;
  /** `status-addr`: HTTP /metrics, /status, /healthz (default 127.0.0.1:20180). Port 0 picks a free port. */
  statusAddr: HostPort;
  /** `max-clients` (default 10000): connections beyond it get an error and are closed. */
  maxClients: number;
  /** `max-request-size` in bytes (default 512 MiB): the largest bulk string (Redis's proto-max-bulk-len). */
  maxRequestSize: number;
  /**
   * `client-query-buffer-limit` in bytes (default 1 GiB, as Redis): a client whose unfinished
   * request (or input waiting behind its unread replies) holds more is disconnected.
   */
  clientQueryBufferLimit: number;
  /**
   * `maxmemory-clients` (default "10%"): the memory all clients together may hold in requests
   * and replies; past it the clients holding the most are disconnected. Bytes, or a percentage
   * of the machine's memory (its cgroup limit when lower); 0 turns it off.
   */
  maxmemoryClients: ClientMemoryLimit;
  /** `client-output-buffer-limit` (default "normal 0 0 0", as Redis): when a client's unsent replies get it disconnected. */
  clientOutputBufferLimit: OutputBufferLimit;
  /**
   * `read-ahead` (default "auto"): whether a command whose keys are only on disk waits for
   * their read on the thread pool ("always"), reads them itself on the event loop ("never"),
   * or the first while the engine's reads are slow, the second while the page cache serves
   * them ("auto"). docs/server.md, "Keys that are only on disk".
   */
  readAhead: ReadAheadMode;
}

export type ReadAheadMode = 'auto' | 'always' | 'never';

export type ClientMemoryLimit = { readonly bytes: number } | { readonly percent: number };

/** Redis's class `normal`: over `hard` bytes, or over `soft` bytes for `softSeconds` in a row; 0 turns a limit off. */
export interface OutputBufferLimit {
  readonly hard: number;
  readonly soft: number;
  readonly softSeconds: number;
}

/** `[storage] sync-writes`: when the server fsyncs the write-ahead log. */
export type SyncWrites = 'always' | 'everysec' | 'no';

export interface TlsConfig {
  /** Absolute paths. With `caPath`, clients must present a certificate signed by that CA (mutual TLS). */
  caPath?: string;
  certPath: string;
  keyPath: string;
}

/**
 * Everything the server reads, section by section as the TOML file holds it. The server owns
 * this shape; config/ builds a TdekvConfig, which is one (the settings are documented there).
 */
export interface ServerOptions {
  storage: { dataDir: string; syncWrites: SyncWrites; rowCacheSize: number; walRecoveryMode: WalRecoveryMode };
  security: { encryption: EncryptionConfig; requirepass?: string; adminPassword?: string; redactInfoLog: boolean; tls?: TlsConfig };
  engine: EngineSettings;
  server: ServerConfig;
}
