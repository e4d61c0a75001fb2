import { Counter, Gauge, type Registry } from 'prom-client';
import type { Engine, EngineStats } from '../engine/engine.js';
import { setCounter, setGauges } from './scrape-values.js';

/** Registers the storage engine's metrics, read from `engine.stats()` at scrape time. */
export function registerEngineMetrics(registry: Registry, engine: Engine): void {
  const registers = [registry];
  const stats = (): EngineStats => engine.stats();

  const gauge = (name: string, help: string, value: (s: EngineStats) => number): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value(stats()));
      },
    });
  };
  const counter = (name: string, help: string, value: (s: EngineStats) => number): void => {
    new Counter({
      name,
      help,
      registers,
      collect() {
        setCounter(this, value(stats()));
      },
    });
  };

  new Gauge({
    name: 'tdekv_engine_level_files',
    help: 'Table files per LSM level',
    labelNames: ['level'],
    registers,
    collect() {
      setGauges(this, stats().levels.map((l) => [{ level: String(l.level) }, l.files]));
    },
  });
  new Gauge({
    name: 'tdekv_engine_level_bytes',
    help: 'Bytes of table files per LSM level',
    labelNames: ['level'],
    registers,
    collect() {
      setGauges(this, stats().levels.map((l) => [{ level: String(l.level) }, l.bytes]));
    },
  });

  gauge('tdekv_engine_memtable_bytes', 'Approximate bytes in the memtables (active and the one being flushed)', (s) => s.memtableBytes);
  gauge('tdekv_engine_immutable_memtable', 'Whether a full memtable is waiting to be flushed: 1 or 0', (s) => (s.immutableMemtable ? 1 : 0));
  gauge('tdekv_engine_last_sequence', 'Sequence number of the last write', (s) => s.lastSequence);
  gauge('tdekv_engine_live_snapshots', 'Open snapshots (each pins old versions of keys until released)', (s) => s.liveSnapshots);
  gauge('tdekv_engine_block_cache_usage_bytes', 'Decrypted blocks held in the block cache', (s) => s.blockCache.usage);
  gauge('tdekv_engine_block_cache_capacity_bytes', 'Block cache capacity (engine block-cache-size)', (s) => s.blockCache.capacity);
  gauge('tdekv_engine_background_error', 'Whether writes are refused after a failed write, flush or compaction: 1 or 0 (until reopen, or until space is freed when tdekv_engine_no_space is 1)', (s) => (s.backgroundError !== undefined ? 1 : 0));
  gauge('tdekv_engine_no_space', 'Whether writes are refused because the data dir is full: 1 or 0; retried with backoff, they resume by themselves once space is freed', (s) => (s.backgroundErrorRecoverable === true ? 1 : 0));
  gauge('tdekv_engine_compaction_paused', 'Whether a compaction is not started for lack of free space: 1 or 0 (writes go on)', (s) => (s.compactionPaused !== undefined ? 1 : 0));

  counter('tdekv_engine_flushes_total', 'Memtables flushed to level-0 tables', (s) => s.flushes);
  counter('tdekv_engine_compactions_total', 'Compactions completed', (s) => s.compactions);
  counter('tdekv_engine_compaction_read_bytes_total', 'Bytes of table files read by compactions', (s) => s.compactionBytesRead);
  counter('tdekv_engine_compaction_written_bytes_total', 'Bytes of table files written by compactions', (s) => s.compactionBytesWritten);
  counter('tdekv_engine_no_space_retries_total', 'Retries after a full disk that found it still full', (s) => s.noSpaceRetries);
  counter('tdekv_engine_no_space_recoveries_total', 'Times writes resumed by themselves after a full disk', (s) => s.noSpaceRecoveries);
  counter('tdekv_engine_compactions_paused_total', 'Compactions not started because their output and a margin would not fit in the free space', (s) => s.compactionsPaused);
  counter('tdekv_engine_write_slowdowns_total', 'Writes delayed: 1 ms with level 0 at level0-slowdown-writes-trigger, or paced by their bytes while the memtable is full and the previous one is still being flushed', (s) => s.writeSlowdowns);
  counter('tdekv_engine_write_stops_total', 'Times writes stopped to wait for the background: the memtable was full while another was being flushed, or level 0 reached level0-stop-writes-trigger', (s) => s.writeStops);
}
