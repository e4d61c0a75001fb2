import os from 'node:os';
import type { TdekvConfig } from '../config/types.js';
import type { Engine } from '../engine/engine.js';
import type { EncryptedEnv } from '../env/encrypted-env.js';
import type { ServerStats } from './server-stats.js';

export interface InfoSources {
  config: TdekvConfig;
  stats: ServerStats;
  engine: Engine;
  env: EncryptedEnv;
  runId: string;
  version: string;
  redisVersion: string;
  port: number;
  /** Encryption lines computed by the server (method, current key id, file counts). */
  encryption: () => Array<[string, string | number]>;
}

const DEFAULT_SECTIONS = ['server', 'clients', 'memory', 'persistence', 'stats', 'replication', 'cpu', 'keyspace', 'encryption'];
const ALL_SECTIONS = [...DEFAULT_SECTIONS, 'commandstats', 'engine'];

/** INFO's text: `# Section` headers and `name:value` lines, as Redis formats them. */
export function infoText(src: InfoSources, asked: string[]): string {
  let sections = asked.length === 0 || asked.includes('default') ? DEFAULT_SECTIONS : asked;
  if (asked.includes('all') || asked.includes('everything')) sections = ALL_SECTIONS;
  const parts: string[] = [];
  for (const name of sections) {
    const lines = section(src, name);
    if (lines === undefined) continue;
    parts.push(`# ${name[0]!.toUpperCase()}${name.slice(1)}\r\n` + lines.map(([k, v]) => `${k}:${v}\r\n`).join(''));
  }
  return parts.join('\r\n');
}

function section(src: InfoSources, name: string): Array<[string, string | number]> | undefined {
  const s = src.stats;
  const uptime = Math.floor((Date.now() - s.startedAt) / 1000);
  const mem = process.memoryUsage();
  switch (name) {
    case 'server':
      return [
        ['redis_version', src.redisVersion],
        ['tdekv_version', src.version],
        ['redis_mode', 'standalone'],
        ['os', `${os.type()} ${os.release()} ${os.arch()}`],
        ['arch_bits', 64],
        ['process_id', process.pid],
        ['run_id', src.runId],
        ['tcp_port', src.port],
        ['uptime_in_seconds', uptime],
        ['uptime_in_days', Math.floor(uptime / 86400)],
        ['executable', process.argv[1] ?? ''],
        ['node_version', process.version],
      ];
    case 'clients':
      return [
        ['connected_clients', s.connectedClients],
        ['maxclients', src.config.server.maxClients],
        ['blocked_clients', 0],
      ];
    case 'memory':
      return [
        ['used_memory', mem.heapUsed + mem.external],
        ['used_memory_rss', mem.rss],
        ['used_memory_peak', mem.rss],
        ['maxmemory', 0],
        ['maxmemory_policy', 'noeviction'],
        ['engine_memtable_bytes', src.engine.stats().memtableBytes],
        ['engine_block_cache_bytes', src.engine.stats().blockCache.usage],
      ];
    case 'persistence':
      return [
        ['loading', 0],
        ['aof_enabled', 1],
        ['aof_rewrite_in_progress', 0],
        ['rdb_bgsave_in_progress', 0],
        ['sync_writes', src.config.storage.syncWrites],
        ['engine_flushes', src.engine.stats().flushes],
        ['engine_compactions', src.engine.stats().compactions],
      ];
    case 'stats':
      return [
        ['total_connections_received', s.totalConnections],
        ['total_commands_processed', s.totalCommands],
        ['rejected_connections', s.rejectedConnections],
        ['expired_keys', s.expiredKeys],
        ['keyspace_hits', s.keyspaceHits],
        ['keyspace_misses', s.keyspaceMisses],
        ['total_net_input_bytes', s.netInputBytes],
        ['total_net_output_bytes', s.netOutputBytes],
        ['total_error_replies', [...s.commands.values()].reduce((n, c) => n + c.failed, 0)],
      ];
    case 'replication':
      return [
        ['role', 'master'],
        ['connected_slaves', 0],
      ];
    case 'cpu': {
      const u = process.cpuUsage();
      return [
        ['used_cpu_sys', (u.system / 1e6).toFixed(6)],
        ['used_cpu_user', (u.user / 1e6).toFixed(6)],
      ];
    }
    case 'keyspace':
      return s.keys() > 0 ? [['db0', `keys=${s.keys()},expires=${s.expires()},avg_ttl=0`]] : [];
    case 'encryption':
      return src.encryption();
    case 'commandstats':
      return [...s.commands].filter(([, c]) => c.calls > 0).map(([cmd, c]) => [`cmdstat_${cmd}`, `calls=${c.calls},usec=${c.usec},usec_per_call=${c.calls === 0 ? 0 : (c.usec / c.calls).toFixed(2)},rejected_calls=0,failed_calls=${c.failed}`]);
    case 'engine': {
      const e = src.engine.stats();
      return [...e.levels.map((l): [string, string] => [`level${l.level}`, `files=${l.files},bytes=${l.bytes}`]), ['write_slowdowns', e.writeSlowdowns], ['write_stops', e.writeStops]];
    }
    default:
      return undefined;
  }
}
