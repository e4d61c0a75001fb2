import type { CommandCounters, RowCacheCounters, ServerCounters } from '../metrics/server-metrics.js';

/**
 * Plain counters the server bumps on its hot path. Metrics (`src/metrics/`) and INFO read
 * them when asked, so a command costs a few integer additions rather than metric-library calls.
 */
export interface CommandStat extends CommandCounters {
  calls: number;
  /** Calls that replied with an error. */
  failed: number;
  /** Total microseconds spent executing (not waiting for the disk). */
  usec: number;
}

export class ServerStats implements ServerCounters {
  readonly startedAt = Date.now();
  connectedClients = 0;
  totalConnections = 0;
  rejectedConnections = 0;
  totalCommands = 0;
  /** Lower-case command name → counters. */
  readonly commands = new Map<string, CommandStat>();
  /** Commands that waited for a read from disk before they ran (the dispatcher's read-ahead). */
  commandsWaitedForDisk = 0;
  keyspaceHits = 0;
  keyspaceMisses = 0;
  expiredKeys = 0;
  netInputBytes = 0;
  netOutputBytes = 0;
  /** Write batches committed to the engine, and the user operations in them. */
  writeBatches = 0;
  protocolErrors = 0;
  /** AUTH and HELLO AUTH attempts refused with WRONGPASS (Redis's acl_access_denied_auth). */
  authFailures = 0;
  /** Clients closed by maxmemory-clients (Redis's evicted_clients). */
  evictedClients = 0;
  /** Clients closed by client-query-buffer-limit and client-output-buffer-limit. */
  queryBufferLimitDisconnections = 0;
  outputBufferLimitDisconnections = 0;
  /** Set by the server: what all clients hold in buffers, and the largest query and output buffer of one. */
  clientBuffers: () => { memory: number; maxQueryBuffer: number; maxOutput: number } = () => ({ memory: 0, maxQueryBuffer: 0, maxOutput: 0 });
  /** Set by the server: current key and expiring-key counts (DBSIZE, INFO keyspace). */
  keys: () => number = () => 0;
  expires: () => number = () => 0;
  /** Set by the server: its row cache (the RowCache itself has these fields). */
  rowCache: () => RowCacheCounters = () => ({ hits: 0, misses: 0, overflows: 0, entries: 0 });

  command(name: string): CommandStat {
    let s = this.commands.get(name);
    if (s === undefined) {
      s = { calls: 0, failed: 0, usec: 0 };
      this.commands.set(name, s);
    }
    return s;
  }
}
