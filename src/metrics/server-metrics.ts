import { Counter, Gauge, type Registry } from 'prom-client';
import { setCounter, setCounters } from './scrape-values.js';

/** One command's counters. */
export interface CommandCounters {
  readonly calls: number;
  /** Calls that replied with an error. */
  readonly failed: number;
  /** Total microseconds spent executing (not waiting for the disk). */
  readonly usec: number;
}

/**
 * The counters the server bumps on its hot path (its ServerStats is one). Metrics sit below the
 * server, so they name what they read here instead of importing the server.
 */
export interface ServerCounters {
  readonly startedAt: number;
  readonly connectedClients: number;
  readonly totalConnections: number;
  readonly rejectedConnections: number;
  readonly totalCommands: number;
  /** Lower-case command name → counters. */
  readonly commands: ReadonlyMap<string, CommandCounters>;
  readonly keyspaceHits: number;
  readonly keyspaceMisses: number;
  readonly expiredKeys: number;
  readonly netInputBytes: number;
  readonly netOutputBytes: number;
  readonly writeBatches: number;
  readonly protocolErrors: number;
  readonly authFailures: number;
  readonly evictedClients: number;
  /** Commands that waited for a read from disk on the thread pool before they ran. */
  readonly commandsWaitedForDisk: number;
  readonly queryBufferLimitDisconnections: number;
  readonly outputBufferLimitDisconnections: number;
  clientBuffers(): { memory: number };
  keys(): number;
  expires(): number;
  /** The row cache's counters (`[storage] row-cache-size`). */
  rowCache(): RowCacheCounters;
}

export interface RowCacheCounters {
  readonly hits: number;
  readonly misses: number;
  /** Times keys crowding one slot run (crafted to collide) made the cache empty itself. */
  readonly overflows: number;
  readonly entries: number;
}

/** Registers the Redis-protocol server's metrics, read from the counters it bumps. */
export function registerServerMetrics(registry: Registry, stats: ServerCounters, now: () => number = Date.now): void {
  const registers = [registry];
  const gauge = (name: string, help: string, value: () => number): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value());
      },
    });
  };
  const counter = (name: string, help: string, value: () => number): void => {
    new Counter({
      name,
      help,
      registers,
      collect() {
        setCounter(this, value());
      },
    });
  };
  const perCommand = (name: string, help: string, value: (s: CommandCounters) => number): void => {
    new Counter({
      name,
      help,
      labelNames: ['command'],
      registers,
      collect() {
        setCounters(this, [...stats.commands].map(([command, s]) => [{ command }, value(s)]));
      },
    });
  };

  gauge('tdekv_server_uptime_seconds', 'Seconds since the server started', () => Math.max(0, now() - stats.startedAt) / 1000);
  gauge('tdekv_server_connected_clients', 'Open client connections', () => stats.connectedClients);
  gauge('tdekv_server_keys', 'Keys in the database (DBSIZE)', () => stats.keys());
  gauge('tdekv_server_expiring_keys', 'Keys with a time to live', () => stats.expires());

  counter('tdekv_server_connections_total', 'Client connections accepted', () => stats.totalConnections);
  counter('tdekv_server_rejected_connections_total', 'Client connections refused because of max-clients', () => stats.rejectedConnections);
  counter('tdekv_server_commands_processed_total', 'Commands processed, known or not', () => stats.totalCommands);
  perCommand('tdekv_server_commands_total', 'Calls per command', (s) => s.calls);
  perCommand('tdekv_server_command_errors_total', 'Calls per command that replied with an error', (s) => s.failed);
  perCommand('tdekv_server_command_duration_seconds_total', 'Seconds spent executing each command (not waiting for the disk)', (s) => s.usec / 1e6);
  counter('tdekv_server_keyspace_hits_total', 'Lookups that found their key', () => stats.keyspaceHits);
  counter('tdekv_server_keyspace_misses_total', 'Lookups that did not find their key', () => stats.keyspaceMisses);
  counter('tdekv_server_expired_keys_total', 'Keys removed because their time to live ran out', () => stats.expiredKeys);
  counter('tdekv_server_net_input_bytes_total', 'Bytes read from clients', () => stats.netInputBytes);
  counter('tdekv_server_net_output_bytes_total', 'Bytes written to clients', () => stats.netOutputBytes);
  counter('tdekv_server_write_batches_total', 'Write batches committed to the engine', () => stats.writeBatches);
  counter('tdekv_server_auth_failures_total', 'AUTH and HELLO AUTH attempts refused for a wrong user name or password', () => stats.authFailures);
  gauge('tdekv_server_client_memory_bytes', 'Bytes all clients hold in unfinished requests, queued transactions and unsent replies (maxmemory-clients applies to it)', () => stats.clientBuffers().memory);
  counter('tdekv_server_evicted_clients_total', 'Clients disconnected because all clients together went over maxmemory-clients', () => stats.evictedClients);
  counter('tdekv_server_query_buffer_limit_disconnections_total', 'Clients disconnected for going over client-query-buffer-limit', () => stats.queryBufferLimitDisconnections);
  counter('tdekv_server_output_buffer_limit_disconnections_total', 'Clients disconnected for going over client-output-buffer-limit', () => stats.outputBufferLimitDisconnections);
  counter('tdekv_server_protocol_errors_total', 'Malformed requests (the connection is closed)', () => stats.protocolErrors);
  counter('tdekv_server_row_cache_hits_total', 'Record lookups the row cache answered', () => stats.rowCache().hits);
  counter('tdekv_server_row_cache_misses_total', 'Record lookups the row cache sent to the engine', () => stats.rowCache().misses);
  counter('tdekv_server_commands_waited_for_disk_total', 'Commands that waited for a table block read on the thread pool before they ran (their keys were only on disk)', () => stats.commandsWaitedForDisk);
  counter('tdekv_server_row_cache_overflows_total', 'Times the row cache emptied itself because keys crowded one slot run (keys crafted to collide)', () => stats.rowCache().overflows);
  gauge('tdekv_server_row_cache_entries', 'Keys (present or known absent) the row cache holds', () => stats.rowCache().entries);
}
