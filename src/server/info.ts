import os from 'node:os';
import type { ServerOptions } from './server-options.js';
import type { Engine } from '../engine/engine.js';
import type { EncryptedEnv } from '../env/encrypted-env.js';
import { encryptionFacts } from '../env/encryption-status.js';
import type { LifecycleStatus } from '../lifecycle/lifecycle-status.js';
import type { ServerStats } from './server-stats.js';
import { failureReason } from './write-refusal.js';

export interface InfoSources {
  config: ServerOptions;
  stats: ServerStats;
  engine: Engine;
  env: EncryptedEnv;
  runId: string;
  version: string;
  redisVersion: string;
  port: number;
  /** maxmemory-clients in bytes (0: none). */
  maxmemoryClients: number;
  /** Encryption lines computed by the server (method, current key id, file counts). */
  encryption: () => Array<[string, string | number]>;
}

/** Every section in the order Redis prints them (whatever order they were asked in); tdekv's own ones last. */
const ALL_SECTIONS = ['server', 'clients', 'memory', 'persistence', 'stats', 'replication', 'cpu', 'commandstats', 'keyspace', 'encryption', 'engine'];
const DEFAULT_SECTIONS = new Set(ALL_SECTIONS.filter((s) => s !== 'commandstats' && s !== 'engine'));
const TITLES: Record<string, string> = { cpu: 'CPU' };

/**
 * INFO's text: `# Section` headers and `name:value` lines, as Redis formats them. As in Redis, the arguments
 * (lower-cased) add up: "all"/"everything" and "default" add their groups, any other word its own section, an
 * unknown one nothing; no argument is "default".
 */
export function infoText(src: InfoSources, asked: string[]): string {
  const wanted = new Set<string>();
  for (const a of asked.length === 0 ? ['default'] : asked) {
    if (a === 'all' || a === 'everything') for (const s of ALL_SECTIONS) wanted.add(s);
    else if (a === 'default') for (const s of DEFAULT_SECTIONS) wanted.add(s);
    else wanted.add(a);
  }
  const parts: string[] = [];
  for (const name of ALL_SECTIONS) {
    if (!wanted.has(name)) continue;
    const lines = section(src, name);
    if (lines === undefined) continue;
    const title = TITLES[name] ?? `${name[0]!.toUpperCase()}${name.slice(1)}`;
    parts.push(`# ${title}\r\n` + lines.map(([k, v]) => `${k}:${v}\r\n`).join(''));
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
        // The largest now (Redis: of the last few seconds).
        ['client_recent_max_input_buffer', s.clientBuffers().maxQueryBuffer],
        ['client_recent_max_output_buffer', s.clientBuffers().maxOutput],
        ['blocked_clients', 0],
      ];
    case 'memory':
      return [
        ['used_memory', mem.heapUsed + mem.external],
        ['used_memory_rss', mem.rss],
        ['used_memory_peak', mem.rss],
        ['mem_clients_normal', s.clientBuffers().memory],
        ['maxmemory', 0],
        ['maxmemory_policy', 'noeviction'],
        ['maxmemory_clients', src.maxmemoryClients],
        ['engine_memtable_bytes', src.engine.stats().memtableBytes],
        ['engine_block_cache_bytes', src.engine.stats().blockCache.usage],
      ];
    case 'persistence':
      return [
        ['loading', 0],
        ['aof_enabled', 1],
        ['aof_rewrite_in_progress', 0],
        ['rdb_bgsave_in_progress', 0],
        // Redis's field for "the last AOF write failed, writes are refused": the WAL is our AOF.
        ['aof_last_write_status', src.engine.writeFailure() === undefined ? 'ok' : 'err'],
        ['sync_writes', src.config.storage.syncWrites],
        // Where an fsynced write's fsync runs, and where flushes and compactions run ([engine]).
        ['wal_sync', src.engine.walSync],
        ['background_thread', src.engine.backgroundThread() === undefined ? 'no' : 'yes'],
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
        ['evicted_clients', s.evictedClients],
        ['client_query_buffer_limit_disconnections', s.queryBufferLimitDisconnections],
        ['client_output_buffer_limit_disconnections', s.outputBufferLimitDisconnections],
        ['acl_access_denied_auth', s.authFailures],
        // Not Redis's: the row cache in front of the engine ([storage] row-cache-size).
        ['row_cache_hits', s.rowCache().hits],
        ['row_cache_misses', s.rowCache().misses],
        ['row_cache_overflows', s.rowCache().overflows],
        // Not Redis's: commands that waited for a block read on the thread pool before they ran.
        ['commands_waited_for_disk', s.commandsWaitedForDisk],
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
      const f = src.engine.writeFailure();
      const p = e.compactionPaused;
      return [
        ...e.levels.map((l): [string, string] => [`level${l.level}`, `files=${l.files},bytes=${l.bytes}`]),
        ['write_slowdowns', e.writeSlowdowns],
        ['write_stops', e.writeStops],
        ['writes_refused', f === undefined ? 0 : 1],
        // The OS error in a few words (never a key, value or file name), as the MISCONF reply says it.
        ['writes_refused_reason', f === undefined ? '' : failureReason(f.error)],
        ['writes_refused_recoverable', f?.recoverable === true ? 1 : 0],
        ['writes_refused_next_retry_ms', e.noSpaceNextRetryMs ?? 0],
        ['no_space_retries', e.noSpaceRetries],
        ['no_space_recoveries', e.noSpaceRecoveries],
        ['compaction_paused', p === undefined ? 0 : 1],
        ['compaction_paused_need_bytes', p?.needBytes ?? 0],
        ['compaction_paused_free_bytes', p?.freeBytes ?? 0],
        ['compactions_paused', e.compactionsPaused],
      ];
    }
    default:
      return undefined;
  }
}

/**
 * The `# Encryption` section: the same facts as /status and the metrics (one projection,
 * see encryption-status.ts), as INFO's snake_case lines. Ids, counts and generations only.
 */
export function encryptionInfo(env: EncryptedEnv, config: ServerOptions, nowMs = Date.now(), lifecycle?: LifecycleStatus): Array<[string, string | number]> {
  const s = encryptionFacts(env, nowMs);
  const integrity = s.integrity;
  const snake = (m: string) => m.replace(/-/g, '_');
  return [
    ['encryption_method', s.method],
    ['encryption_enabled', s.encrypted ? 1 : 0],
    ['master_key_type', s.masterKey.type],
    ['current_data_key_id', s.currentDataKey?.id ?? 0],
    ['current_data_key_age_seconds', Math.floor(s.currentDataKey?.ageSeconds ?? 0)],
    ['data_keys', s.dataKeyCount],
    ['encrypted_files', s.files.total - (s.files.byMethod.plaintext ?? 0)],
    ['files', s.files.total],
    ...Object.entries(s.files.byMethod).map(([m, n]): [string, number] => [`files_${snake(m)}`, n ?? 0]),
    ['key_dictionary_generation', integrity.keyDictGeneration],
    ['file_dictionary_generation', integrity.fileDictGeneration],
    ['dictionaries_legacy', integrity.legacyDictionaries ? 1 : 0],
    ['unauthenticated_files', integrity.unauthenticatedFiles.total],
    ...Object.entries(integrity.unauthenticatedFiles.byMethod).map(([m, n]): [string, number] => [`unauthenticated_files_${snake(m)}`, n ?? 0]),
    ['plaintext_files', integrity.plaintextFiles],
    ['key_dictionary_copy_ok', integrity.keyDictCopyOk ? 1 : 0],
    ['sync_writes', config.storage.syncWrites],
    ['redact_info_log', config.security.redactInfoLog ? 'yes' : 'no'],
    ...(lifecycle === undefined ? [] : lifecycleInfo(lifecycle)),
  ];
}

/**
 * The online lifecycle's fields (ENCRYPTION STATUS, /status `lifecycle`, the
 * tdekv_encryption_*state* metrics), named as SQL Server names them where it has a name.
 * Unknown values are empty (Redis's convention), not "null".
 */
export function lifecycleInfo(s: LifecycleStatus): Array<[string, string | number]> {
  return [
    ['encryption_state', s.encryptionState],
    ['encryption_state_desc', s.encryptionStateDesc],
    ['encryption_scan_state', s.scanState],
    ['encryption_scan_state_desc', s.scanStateDesc],
    ['percent_complete', s.percentComplete.toFixed(2)],
    ['scan_modify_date', s.scanModifyDate ?? ''],
    ['scan_bytes_done', s.scanBytesDone],
    ['scan_bytes_total', s.scanBytesTotal],
    ['scan_bytes_remaining', s.scanBytesRemaining],
    ['scan_rate_bytes_per_sec', Math.round(s.scanRateBytesPerSec)],
    ['scan_eta_seconds', s.etaSeconds === null ? '' : Math.ceil(s.etaSeconds)],
    ['scan_rate_limit', s.scanRateLimit],
    ['scan_auto', s.scanAuto ? 'yes' : 'no'],
    // One line whatever the error says: a line break would end the field early.
    ['scan_error', (s.scanError ?? '').replace(/[\r\n]+/g, ' ')],
    ['files_off_current_key', s.filesOffCurrentKey],
    ['key_algorithm', s.keyAlgorithm ?? ''],
    ['key_length', s.keyLength ?? 0],
    ['data_key_create_date', s.dataKeyCreateDate ?? ''],
    ['data_key_regenerate_date', s.dataKeyRegenerateDate ?? ''],
    ['master_key_identity', s.masterKeyIdentity.replace(/[\r\n]+/g, ' ')],
    ['last_retired_data_keys', s.lastRetiredKeyIds.join(',')],
    ['backups_in_progress', s.backupsInProgress],
    ['state_changes', s.history.length],
  ];
}
