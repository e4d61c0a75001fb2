import { Counter, Gauge, type Registry } from 'prom-client';
import type { LifecycleStatus } from '../lifecycle/lifecycle-status.js';
import { setCounter } from './scrape-values.js';

/*
 * The online encryption lifecycle (issue 12), with SQL Server's numbers: what
 * `sys.dm_database_encryption_keys` shows, as gauges an alert can watch ("state 2 for more
 * than a day", "scan state 3"). Read at scrape time from the lifecycle's synchronous status,
 * once per scrape.
 */

/** What the metrics read from the lifecycle (src/lifecycle/encryption-lifecycle.ts has both). */
export interface LifecycleMetricsSource {
  /** Cheap and synchronous. */
  status(): LifecycleStatus;
  /** Bytes the scan rewrote since this process started: only grows, unlike the per-change `scanBytesDone`. */
  readonly scanBytesTotal: number;
}

export function registerLifecycleMetrics(registry: Registry, lifecycle: LifecycleMetricsSource): void {
  const registers = [registry];
  // Every collect() of one scrape runs in the same turn (prom-client awaits them together),
  // so one status read serves them all; the next turn reads afresh.
  let cached: LifecycleStatus | undefined;
  const read = (): LifecycleStatus => {
    if (cached === undefined) {
      cached = lifecycle.status();
      queueMicrotask(() => {
        cached = undefined;
      });
    }
    return cached;
  };

  new Gauge({
    name: 'tdekv_encryption_state',
    help: 'SQL Server encryption_state: 0 none, 1 unencrypted, 2 encryption in progress, 3 encrypted, 4 key change in progress, 5 decryption in progress, 6 protection (master key) change in progress',
    registers,
    collect() {
      this.set(read().encryptionState);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_scan_state',
    help: 'SQL Server encryption_scan_state: 0 none, 1 running, 2 suspended, 3 aborted (see ENCRYPTION STATUS for the error), 4 completed',
    registers,
    collect() {
      this.set(read().scanState);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_scan_percent_complete',
    help: 'Progress of the current encryption change, 0-100: bytes rewritten / bytes that were off the current key (never goes down during one change)',
    registers,
    collect() {
      this.set(read().percentComplete);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_scan_rate_bytes',
    help: 'Recent rate of the encryption scan in bytes per second (0 when it is not running); capped by scan-rate-limit',
    registers,
    collect() {
      this.set(read().scanRateBytesPerSec);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_scan_remaining_bytes',
    help: 'Bytes still off the current method and data key, which the scan has yet to rewrite',
    registers,
    collect() {
      this.set(read().scanBytesRemaining);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_files_off_current_key',
    help: 'Files not under the current method and data key (tables, logs, manifest); 0 once a change is complete',
    registers,
    collect() {
      this.set(read().filesOffCurrentKey);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_retired_data_keys',
    help: 'Data keys retired (dropped as unused by any file) after the last completed scan',
    registers,
    collect() {
      this.set(read().lastRetiredKeyIds.length);
    },
  });

  new Counter({
    name: 'tdekv_encryption_scan_bytes_total',
    help: 'Bytes the encryption scan has rewritten (read and written again under the current method and key) since the server started',
    registers,
    collect() {
      setCounter(this, lifecycle.scanBytesTotal);
    },
  });
}
