import { Gauge, Histogram, exponentialBuckets, type Registry } from 'prom-client';
import type { EncryptedEnv } from '../env/encrypted-env.js';
import { encryptionStatus, type EncryptionStatus, type IntegrityStatus } from '../env/encryption-status.js';
import { observeMetaFiles } from '../keys/meta-file-timing.js';
import { setGauges } from './scrape-values.js';

/*
 * Encryption at rest, with TiKV's metric names (tikv_ → tdekv_) so its dashboards and
 * alerts carry over. Values are read at scrape time from the one encryption status
 * projection (src/env/encryption-status.ts), made once per scrape and shared by every
 * gauge. Key ids appear as labels; key bytes never leave the env.
 */

/** Registers the encryption metrics of `env` in `registry`. */
export function registerEncryptionMetrics(registry: Registry, env: EncryptedEnv, now: () => number = Date.now): void {
  const registers = [registry];
  // A scrape collects every gauge at once (Promise.all): they share the one status made for it.
  let pending: Promise<EncryptionStatus> | undefined;
  const status = (): Promise<EncryptionStatus> => {
    pending ??= encryptionStatus(env, now()).finally(() => {
      pending = undefined;
    });
    return pending;
  };

  new Gauge({
    name: 'tdekv_encryption_is_initialized',
    help: 'Whether encryption is on: 1 when new files are encrypted under a current data key, else 0',
    registers,
    async collect() {
      this.set((await status()).initialized ? 1 : 0);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_data_key_storage_total',
    help: 'Data keys in the key dictionary (current and older ones still used by files)',
    registers,
    async collect() {
      this.set((await status()).dataKeyCount);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_file_num',
    help: 'Files in the file dictionary (every file the env tracks, encrypted or plaintext)',
    registers,
    async collect() {
      this.set((await status()).files.total);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_files',
    help: 'Files in the file dictionary by method and data key id (key_id 0: plaintext)',
    labelNames: ['method', 'key_id'],
    registers,
    async collect() {
      const s = await status();
      const methods = new Map<number, string>(s.dataKeys.map((k) => [k.id, k.method]));
      const byKeyId = s.files.byKeyId;
      setGauges(
        this,
        Object.entries(byKeyId).map(([id, n]) => [{ method: id === '0' ? 'plaintext' : (methods.get(Number(id)) ?? 'unknown'), key_id: id }, n]),
      );
    },
  });

  new Gauge({
    name: 'tdekv_encryption_meta_file_size_bytes',
    help: 'Size of the encryption metadata files (key dictionary, file dictionary and its log), by file name',
    labelNames: ['name'],
    registers,
    async collect() {
      setGauges(this, Object.entries((await status()).metaFileSizes).map(([name, bytes]) => [{ name }, bytes]));
    },
  });

  new Gauge({
    name: 'tdekv_encryption_current_data_key_age_seconds',
    help: 'Age of the data key that encrypts new files (0 when none); compare with data-key-rotation-period',
    registers,
    async collect() {
      this.set((await status()).currentDataKey?.ageSeconds ?? 0);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_current_data_key_exposed',
    help: 'Whether the current data key has been exposed (stored under a plaintext master key or dumped): 1 or 0',
    registers,
    async collect() {
      this.set((await status()).currentDataKey?.exposed === true ? 1 : 0);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_info',
    help: 'Always 1; the labels say the method for new files and the master key backend',
    labelNames: ['method', 'master_key_type'],
    registers,
    async collect() {
      const s = await status();
      setGauges(this, [[{ method: s.method, master_key_type: s.masterKey.type }, 1]]);
    },
  });

  registerIntegrityMetrics(registers, async () => (await status()).integrity);
  registerMetaFileDuration(registry);
}

/**
 * Tamper evidence, beyond TiKV's set. The key.dict generation is the hook for an outside
 * anchor: Prometheus keeps its history, so a generation lower than an earlier scrape's is a
 * rollback of key.dict (with or without the rest of the data dir) that no check inside the
 * data dir can see.
 */
function registerIntegrityMetrics(registers: Registry[], integrity: () => Promise<IntegrityStatus>): void {
  new Gauge({
    name: 'tdekv_encryption_key_dictionary_generation',
    help: 'Generation of key.dict (grows with every key.dict write); lower than at an earlier scrape means key.dict was rolled back',
    registers,
    async collect() {
      this.set((await integrity()).keyDictGeneration);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_file_dictionary_generation',
    help: 'Generation of the file dictionary (file.dict and its log)',
    registers,
    async collect() {
      this.set((await integrity()).fileDictGeneration);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_unauthenticated_files',
    help: 'Encrypted files without authentication tags (written before tags existed): rewritten by compaction or tdekv data-key reencrypt',
    registers,
    async collect() {
      this.set((await integrity()).unauthenticatedFiles.total);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_dictionary_legacy',
    help: 'Whether key.dict or the file dictionary is still in the legacy, unauthenticated format: 1 or 0',
    registers,
    async collect() {
      this.set((await integrity()).legacyDictionaries ? 1 : 0);
    },
  });

  new Gauge({
    name: 'tdekv_encryption_key_dictionary_copy_ok',
    help: 'Whether both copies of key.dict were good and equal when read (0: one was damaged, missing or out of date; repaired at the next writable open)',
    registers,
    async collect() {
      this.set((await integrity()).keyDictCopyOk ? 1 : 0);
    },
  });
}

/**
 * Observed as the metadata code reports (rare: file creations and removals, key rotations),
 * so it is the one metric updated outside a scrape. The subscription holds the histogram
 * only weakly: a registry that is dropped unsubscribes itself at the next report.
 */
function registerMetaFileDuration(registry: Registry): void {
  const histogram = new Histogram({
    name: 'tdekv_encryption_write_read_file_duration_seconds',
    help: 'Duration of reading or writing an encryption metadata file (write includes fsync); type = file name, operation = read | write',
    labelNames: ['type', 'operation'],
    // 100 µs to ~52 s: a page-cache read to a stalled disk.
    buckets: exponentialBuckets(0.0001, 2, 20),
    registers: [registry],
  });
  const ref = new WeakRef(histogram);
  const unsubscribe = observeMetaFiles((operation, file, seconds) => {
    const h = ref.deref();
    if (h === undefined) unsubscribe();
    else h.observe({ type: file, operation }, seconds);
  });
}
