import { EventEmitter } from 'node:events';
import type { EncryptionMethod } from '../crypto/method.js';
import { TdekvError, isTdekvError } from '../errors.js';
import type { Engine } from '../engine/engine.js';
import { parseFileName } from '../engine/file-names.js';
import type { EncryptionConfig } from '../env/encryption-config.js';
import { DEFAULT_ENCRYPTION } from '../env/encryption-config.js';
import type { ManagedEnv } from '../env/open-env.js';
import type { Logger } from '../log/logger.js';
import { createMasterKey } from '../masterkey/create.js';
import type { MasterKey, MasterKeyPublicInfo } from '../masterkey/master-key.js';
import { Mutex } from '../util/mutex.js';
import { emptyRecord, pushHistory, readLifecycleRecord, writeLifecycleRecord, type LifecycleRecord, type TransitionKind } from './lifecycle-state-file.js';
import { ENCRYPTION_STATES, SCAN_STATES, type EncryptionControl, type LifecycleStatus } from './lifecycle-status.js';
import { ScanThrottle } from './scan-throttle.js';

export const SCAN_NONE = 0;
export const SCAN_RUNNING = 1;
export const SCAN_SUSPENDED = 2;
export const SCAN_ABORTED = 3;
export const SCAN_COMPLETED = 4;

const STATE_OF: Record<TransitionKind, number> = { encrypt: 2, 'key-change': 4, decrypt: 5, protection: 6 };
/** A running scan saves its progress at most this often (and at every state change). */
const SAVE_EVERY_MS = 1000;
/** While old files are still held open (iterators, snapshots), the scan looks again this often. */
const HELD_FILES_RETRY_MS = 200;
/**
 * Within a step, progress is saved and then shown at most this often: each save is an atomic
 * file replacement (written, fsynced, renamed).
 */
const STEP_EMIT_MS = 250;

/** What `ENCRYPTION RELOAD` (and SIGHUP) did with the re-read `[security.encryption]` section. */
export interface ReloadReport {
  /** Settings applied online, by their TOML names. */
  applied: string[];
  /** Settings that changed but take effect only at the next start, by their TOML names. */
  needsRestart: string[];
  status: LifecycleStatus;
}

export interface LifecycleOptions {
  engine: Engine;
  managed: ManagedEnv;
  /** The `[security.encryption]` section the env was opened with. */
  config: EncryptionConfig;
  logger: Logger;
}

export interface EncryptionLifecycleEvents {
  /** After each scan step and each state change. */
  progress: [LifecycleStatus];
}

/**
 * SQL Server's online encryption lifecycle (ALTER DATABASE … SET ENCRYPTION ON|OFF, ALTER
 * DATABASE ENCRYPTION KEY REGENERATE, SET ENCRYPTION SUSPEND|RESUME) on a running tdekv:
 * changes of method, data key and master key with no restart, a background encryption scan
 * that moves every file to the current key (the engine's compaction with reason "encryption",
 * on the background thread when there is one), and SQL Server's encryption_state and
 * encryption_scan_state, persisted in `encryption-meta/lifecycle.json` so a SIGKILL at any
 * moment resumes where it was.
 *
 * What is off the current key is always read from the file dictionary (authenticated), never
 * from the lifecycle's own record: state 3 (ENCRYPTED) is reached only when no file is left.
 */
export class EncryptionLifecycle extends EventEmitter<EncryptionLifecycleEvents> implements EncryptionControl {
  readonly #engine: Engine;
  readonly #managed: ManagedEnv;
  readonly #logger: Logger;
  #config: EncryptionConfig;
  #record: LifecycleRecord;
  /** State changes one at a time; the scan loop runs outside it. */
  readonly #mutex = new Mutex();
  #scan: Promise<void> | undefined;
  #stopScan: (() => void) | undefined;
  #closed = false;
  #lastSave = 0;
  #rate = 0;
  readonly #throttle = new ScanThrottle();
  /** Backups in progress (issue 14): a state change waits for none. */
  #backups = 0;

  private constructor(options: LifecycleOptions, record: LifecycleRecord) {
    super();
    this.#engine = options.engine;
    this.#managed = options.managed;
    this.#logger = options.logger;
    this.#config = options.config;
    this.#record = record;
    this.#savedPercent = record.percent;
    this.#throttle.limit = this.#settings.scanRateLimit;
  }

  /**
   * The percentage in the last saved record. The status shows no more than this: a restart
   * re-measures progress from installed steps, so a percentage reached within a step that a
   * crash then discarded would otherwise be shown, and after the restart be lower (the
   * documented promise is "never backwards, also across a restart").
   */
  #savedPercent: number;

  /**
   * Reads the persisted state, reconciles it with the configuration (a method changed while
   * stopped starts a change here) and resumes an interrupted scan. A suspended scan stays
   * suspended, and says so in the log, as SQL Server does at startup.
   */
  static async open(options: LifecycleOptions): Promise<EncryptionLifecycle> {
    const { managed, logger } = options;
    const method = managed.keyAdmin.method;
    const read = await readLifecycleRecord(managed.env.metaDir, (label, ...parts) => managed.keyAdmin.metadataMac(label, ...parts));
    if (read.problem) logger.warn({ file: 'encryption-meta/lifecycle.json', problem: read.problem }, `the encryption lifecycle state is not usable (${read.problem}); it is rebuilt from the file dictionary: a suspended scan resumes and its progress restarts at the files left`);
    const lifecycle = new EncryptionLifecycle(options, read.record ?? emptyRecord(method));
    await lifecycle.#mutex.run(() => lifecycle.#reconcileAtOpen(read.record !== undefined));
    return lifecycle;
  }

  get #settings(): { scanRateLimit: number; scanAuto: boolean; scanRetireKeys: boolean } {
    return {
      scanRateLimit: this.#config.scanRateLimit ?? DEFAULT_ENCRYPTION.scanRateLimit,
      scanAuto: this.#config.scanAuto ?? DEFAULT_ENCRYPTION.scanAuto,
      scanRetireKeys: this.#config.scanRetireKeys ?? DEFAULT_ENCRYPTION.scanRetireKeys,
    };
  }

  async #reconcileAtOpen(hadRecord: boolean): Promise<void> {
    const r = this.#record;
    const method = this.#managed.keyAdmin.method;
    const now = new Date().toISOString();
    if (r.firstKeyDate === null) {
      const oldest = this.#managed.keyAdmin.dataKeys().sort((a, b) => a.createdAtMs - b.createdAtMs)[0];
      if (oldest) r.firstKeyDate = new Date(oldest.createdAtMs).toISOString();
    }
    if (r.transition?.kind === 'protection') {
      // The re-seal is one atomic replacement of key.dict: the env opened it, so it is done either way.
      pushHistory(r, { at: now, from: 6, to: this.#restingState(), reason: 'master key change finished (the process had stopped during it)' });
      r.transition = null;
    }
    if (r.method !== method) {
      // The configuration is the source of truth: a method changed while stopped is a change now.
      const from = hadRecord ? r.method : this.#formOfFiles();
      this.#logger.info({ from, to: method }, `data-encryption-method changed while stopped (${from} -> ${method}): the encryption scan moves existing files`);
      this.#beginTransition(this.#kindOfChangeTo(method), from, method, `data-encryption-method ${from} -> ${method} (configuration, at start)`);
    } else if (!hadRecord && this.#filesInOtherForm() > 0) {
      this.#beginTransition(this.#kindOfChangeTo(method), this.#formOfFiles(), method, 'files in another form found at start');
    }
    r.method = method;
    if (r.transition && r.transition.kind !== 'protection') {
      // Progress saved up to a second before a crash is re-measured from the files: never lower than shown.
      const remaining = this.#bytesRemaining();
      r.bytesTotal = Math.max(r.bytesTotal, r.bytesDone + remaining);
      if (r.bytesTotal > 0) r.percent = Math.min(100, Math.max(r.percent, (100 * (r.bytesTotal - remaining)) / r.bytesTotal));
    }
    if (r.transition) {
      if (r.scanState === SCAN_SUSPENDED) {
        this.#logger.warn({ state: this.#stateName(), percentComplete: r.percent }, `the encryption scan is suspended at ${r.percent.toFixed(2)}% (${this.#stateName()}); ENCRYPTION RESUME (or \`tdekv encryption resume\`) continues it`);
      } else if (this.#settings.scanAuto || r.scanState === SCAN_RUNNING) {
        if (r.scanState === SCAN_RUNNING) this.#logger.info({ state: this.#stateName(), percentComplete: r.percent }, `resuming the encryption scan at ${r.percent.toFixed(2)}%`);
        if (r.scanState === SCAN_ABORTED) this.#logger.info({ error: r.scanError }, 'retrying the encryption scan that was aborted before the restart');
        this.#startScan();
      } else {
        this.#logger.warn({ state: this.#stateName() }, 'files are not all on the current key and scan-auto = false: ENCRYPTION RESUME starts the encryption scan');
      }
    }
    await this.#save();
  }

  // ------------------------------------------------------------------ status

  status(): LifecycleStatus {
    const r = this.#record;
    const keyAdmin = this.#managed.keyAdmin;
    const method = keyAdmin.method;
    const current = keyAdmin.currentDataKey();
    const remaining = this.#bytesRemaining();
    const running = r.scanState === SCAN_RUNNING;
    const mk = keyAdmin.masterKey.publicInfo();
    const state = this.#state();
    return {
      encryptionState: state,
      encryptionStateDesc: ENCRYPTION_STATES[state]!,
      scanState: r.scanState,
      scanStateDesc: SCAN_STATES[r.scanState]!,
      // Completed means every file is on the current key, which a restart measures as 100 % too;
      // the completion's own save may still be running (and the last saved percentage be lower).
      percentComplete: r.scanState === SCAN_COMPLETED ? 100 : Math.round(Math.min(r.percent, this.#savedPercent) * 100) / 100,
      scanModifyDate: r.scanModifyDate,
      scanBytesDone: r.bytesDone,
      scanBytesTotal: r.bytesTotal,
      scanBytesRemaining: remaining,
      scanRateBytesPerSec: running ? Math.round(this.#rate) : 0,
      etaSeconds: running && this.#rate > 0 ? Math.ceil(remaining / this.#rate) : null,
      scanRateLimit: this.#settings.scanRateLimit,
      scanAuto: this.#settings.scanAuto,
      scanError: r.scanState === SCAN_ABORTED ? r.scanError : null,
      filesOffCurrentKey: this.#filesOffCurrentKey().length,
      method,
      keyAlgorithm: method === 'plaintext' ? null : method.startsWith('sm4') ? 'SM4' : 'AES',
      keyLength: method === 'plaintext' ? null : keyBits(method),
      dataKeyId: current?.id ?? null,
      dataKeyCreateDate: r.firstKeyDate,
      dataKeyRegenerateDate: current ? new Date(current.createdAtMs).toISOString() : null,
      masterKeyType: mk.type,
      masterKeyIdentity: identityOf(mk),
      lastRetiredKeyIds: [...r.lastRetiredKeyIds],
      backupsInProgress: this.#backups,
      history: r.history.map((h) => ({ ...h })),
    };
  }

  #state(): number {
    const t = this.#record.transition;
    return t ? STATE_OF[t.kind] : this.#restingState();
  }

  /** The state with no change in progress: 3 when encrypting; 1, or 0 when no data key exists, for plaintext. */
  #restingState(): number {
    if (this.#managed.keyAdmin.method !== 'plaintext') return 3;
    return this.#managed.keyAdmin.dataKeys().length === 0 ? 0 : 1;
  }

  #stateName(): string {
    const s = this.#state();
    return `${s} ${ENCRYPTION_STATES[s]}`;
  }

  /** Files the scan must rewrite: not under the current method and data key, or without tags. */
  #filesOffCurrentKey(): string[] {
    const env = this.#managed.env;
    return env
      .files()
      .map(([p]) => p)
      .filter((p) => env.needsRewrite(p));
  }

  /** Files whose method is not the current one (another form: plaintext among encrypted, or the reverse, or another cipher). */
  #filesInOtherForm(): number {
    const method = this.#managed.keyAdmin.method;
    return this.#managed.env.files().filter(([, i]) => i.method !== method).length;
  }

  #hasPlaintextFiles(): boolean {
    return this.#managed.env.files().some(([, i]) => i.method === 'plaintext');
  }

  /** The method most files are in, for messages: "plaintext" when any file is. */
  #formOfFiles(): string {
    const files = this.#managed.env.files();
    if (files.some(([, i]) => i.method === 'plaintext')) return 'plaintext';
    return files.find(([, i]) => i.method !== this.#managed.keyAdmin.method)?.[1].method ?? this.#managed.keyAdmin.method;
  }

  #bytesRemaining(): number {
    return this.#engine.offKeyTables().bytes;
  }

  // ------------------------------------------------------------------ changes

  setMethod(method: EncryptionMethod): Promise<LifecycleStatus> {
    return this.#change(() => this.#setMethodNow(method));
  }

  /** setMethod's work, under the mutex (reload runs it there too). */
  async #setMethodNow(method: EncryptionMethod): Promise<void> {
    const from = this.#managed.keyAdmin.method;
    if (from === method) return;
    this.#refuseWhileChanging(`change data-encryption-method to ${method}`);
    await this.#managed.keyAdmin.setMethod(method);
    this.#config = { ...this.#config, dataEncryptionMethod: method };
    this.#record.method = method;
    this.#beginTransition(this.#kindOfChangeTo(method), from, method, `data-encryption-method ${from} -> ${method}`);
    await this.#afterChange();
  }

  regenerate(): Promise<LifecycleStatus> {
    return this.#change(async () => {
      const method = this.#managed.keyAdmin.method;
      if (method === 'plaintext') throw new TdekvError('INVALID_ARGUMENT', 'ENCRYPTION REGENERATE needs encryption on: data-encryption-method is "plaintext", so there is no data key to regenerate');
      this.#refuseWhileChanging('regenerate the data key');
      const before = this.#managed.keyAdmin.currentDataKey()?.id;
      const k = await this.#managed.keyAdmin.rotateDataKey();
      this.#beginTransition(this.#kindOfChangeTo(method), `data key ${before ?? 'none'}`, `data key ${k.id}`, `data key regenerated (${before ?? 'none'} -> ${k.id})`);
      await this.#afterChange();
    });
  }

  /** Re-seals the key dictionary under `next` (state 6; no file is rewritten). Takes ownership of `next`. */
  changeMasterKey(next: MasterKey): Promise<LifecycleStatus> {
    return this.#change(() => this.#changeMasterKeyNow(next));
  }

  /** changeMasterKey's work, under the mutex (reload runs it there too). */
  async #changeMasterKeyNow(next: MasterKey): Promise<void> {
    try {
      this.#refuseWhileChanging('change the master key');
    } catch (err) {
      next.close();
      throw err;
    }
    const from = this.#managed.keyAdmin.masterKey.description;
    const resting = this.#state();
    // A change whose scan is suspended or aborted stays, and is the state again afterwards.
    const previous = this.#record.transition;
    this.#record.transition = { kind: 'protection', from, to: next.description, startedAt: new Date().toISOString() };
    pushHistory(this.#record, { at: new Date().toISOString(), from: resting, to: 6, reason: `master key change: ${from} -> ${next.description}` });
    await this.#save();
    this.#emitProgress();
    try {
      await this.#managed.rotateMasterKey(next);
    } finally {
      this.#record.transition = previous;
      pushHistory(this.#record, { at: new Date().toISOString(), from: 6, to: this.#state(), reason: 'master key change done: the key dictionary is re-sealed' });
      await this.#save();
    }
  }

  suspend(): Promise<LifecycleStatus> {
    return this.#change(async () => {
      if (this.#record.scanState !== SCAN_RUNNING) {
        throw new TdekvError('INVALID_ARGUMENT', `no encryption scan is running to suspend (scan state ${this.#record.scanState} ${SCAN_STATES[this.#record.scanState]})`);
      }
      await this.#stopScanLoop();
      // The scan may have completed (or failed) while it was being stopped.
      if (this.#record.scanState !== SCAN_RUNNING) return;
      this.#setScanState(SCAN_SUSPENDED, null);
      this.#logger.info({ percentComplete: this.#record.percent }, 'encryption scan suspended');
      await this.#save();
    });
  }

  resume(): Promise<LifecycleStatus> {
    return this.#change(async () => {
      if (this.#record.scanState === SCAN_RUNNING) return;
      if (this.#backups > 0) throw new TdekvError('ENCRYPTION_CHANGE_REFUSED', 'cannot resume the encryption scan while a backup runs: wait for the backup to finish');
      if (!this.#record.transition && this.#filesOffCurrentKey().length === 0) {
        throw new TdekvError('INVALID_ARGUMENT', `nothing to resume: every file is on the current key (state ${this.#stateName()})`);
      }
      if (!this.#record.transition) this.#resetProgress();
      this.#startScan();
      await this.#save();
    });
  }

  retire(): Promise<number[]> {
    return this.#mutex.run(async () => {
      this.#checkOpen();
      const ids = await this.#managed.keyAdmin.retireUnusedKeys();
      if (ids.length > 0) {
        this.#record.lastRetiredKeyIds = ids;
        await this.#save();
      }
      this.#emitProgress();
      return ids;
    });
  }

  /**
   * Applies a re-read `[security.encryption]` section: a new method starts the scan, a new
   * master key re-seals the key dictionary, scan settings and the rotation period apply at
   * once; the rest is reported as needing a restart. Everything is checked before anything
   * is applied, so a refused reload changes nothing.
   */
  reload(next: EncryptionConfig): Promise<ReloadReport> {
    // One reload at a time, and no other change in between its checks and its changes.
    return this.#mutex.run(async () => {
      this.#checkOpen();
      const applied: string[] = [];
      const needsRestart: string[] = [];
      const cur = this.#config;
      const methodChanges = next.dataEncryptionMethod !== this.#managed.keyAdmin.method;
      const masterChanges = !sameJson(next.masterKey, cur.masterKey);
      if (methodChanges || masterChanges) this.#refuseWhileChanging(methodChanges ? `change data-encryption-method to ${next.dataEncryptionMethod}` : 'change the master key');
      if (next.enableFileDictionaryLog !== cur.enableFileDictionaryLog) needsRestart.push('enable-file-dictionary-log');
      if (next.fileDictionaryRewriteThreshold !== cur.fileDictionaryRewriteThreshold) needsRestart.push('file-dictionary-rewrite-threshold');
      if (masterChanges) {
        await this.#changeMasterKeyNow(await createMasterKey(next.masterKey, { dataDir: this.#managed.env.dataDir }));
        applied.push('master-key');
      }
      this.#config = { ...next, dataEncryptionMethod: this.#managed.keyAdmin.method };
      for (const [name, changed] of [
        ['scan-rate-limit', next.scanRateLimit !== cur.scanRateLimit],
        ['scan-auto', next.scanAuto !== cur.scanAuto],
        ['scan-retire-keys', next.scanRetireKeys !== cur.scanRetireKeys],
      ] as const) {
        if (changed) applied.push(name);
      }
      this.#throttle.limit = this.#settings.scanRateLimit;
      if (next.dataKeyRotationPeriodMs !== cur.dataKeyRotationPeriodMs) {
        this.#managed.keyAdmin.setRotationPeriodMs(next.dataKeyRotationPeriodMs);
        applied.push('data-key-rotation-period');
      }
      if (methodChanges) {
        await this.#setMethodNow(next.dataEncryptionMethod);
        applied.push('data-encryption-method');
      }
      this.#logger.info({ applied, needsRestart }, 'encryption configuration reloaded');
      this.#emitProgress();
      return { applied, needsRestart, status: this.status() };
    });
  }

  /**
   * For a backup (issue 14): refused while a change's scan runs, and a change is refused while
   * it is held. Returns the release.
   */
  beginBackup(): () => void {
    this.#checkOpen();
    if (this.#record.scanState === SCAN_RUNNING) {
      throw new TdekvError('ENCRYPTION_CHANGE_REFUSED', `cannot start a backup: an encryption scan is running (state ${this.#stateName()}, ${this.#record.percent.toFixed(2)}% complete); wait for it to complete or suspend it first (ENCRYPTION SUSPEND)`);
    }
    this.#backups++;
    let held = true;
    return () => {
      if (held) this.#backups--;
      held = false;
    };
  }

  #change(fn: () => Promise<void>): Promise<LifecycleStatus> {
    return this.#mutex.run(async () => {
      this.#checkOpen();
      await fn();
      this.#emitProgress();
      return this.status();
    });
  }

  #checkOpen(): void {
    if (this.#closed) throw new TdekvError('CLOSED', 'the encryption lifecycle is closed (the database is closing)');
  }

  /** A change whose scan runs (suspended or aborted ones may be replaced by a new change). */
  #changeRunning(): boolean {
    return this.#record.transition !== null && this.#record.scanState === SCAN_RUNNING;
  }

  #refuseWhileChanging(what: string): void {
    if (this.#backups > 0) {
      throw new TdekvError('ENCRYPTION_CHANGE_REFUSED', `cannot ${what} while a backup runs: wait for the backup to finish`);
    }
    if (!this.#changeRunning()) return;
    throw new TdekvError(
      'ENCRYPTION_CHANGE_REFUSED',
      `cannot ${what}: an encryption scan is running (state ${this.#stateName()}, ${this.#record.percent.toFixed(2)}% complete); wait for it to complete or suspend it first (ENCRYPTION SUSPEND)`,
    );
  }

  /** 5 when decrypting; 2 while any file is still plaintext (even after a suspended encryption was replaced); else 4. */
  #kindOfChangeTo(method: EncryptionMethod): TransitionKind {
    if (method === 'plaintext') return 'decrypt';
    return this.#hasPlaintextFiles() ? 'encrypt' : 'key-change';
  }

  #beginTransition(kind: TransitionKind, from: string, to: string, reason: string): void {
    const now = new Date().toISOString();
    const before = this.#state();
    this.#record.transition = { kind, from, to, startedAt: now };
    this.#resetProgress();
    this.#setScanState(SCAN_NONE, null);
    pushHistory(this.#record, { at: now, from: before, to: STATE_OF[kind], reason });
  }

  #resetProgress(): void {
    this.#record.bytesDone = 0;
    this.#record.bytesTotal = this.#bytesRemaining();
    this.#record.percent = 0;
  }

  /** After a method change or regeneration: the logs move at once; the scan starts when scan-auto. */
  async #afterChange(): Promise<void> {
    // "Log zeroing": nothing new is written in the old form from here on.
    await this.#engine.rollLogsToCurrentKey();
    if (this.#settings.scanAuto) this.#startScan();
    await this.#save();
  }

  #setScanState(state: number, error: string | null): void {
    if (this.#record.scanState !== state) this.#record.scanModifyDate = new Date().toISOString();
    this.#record.scanState = state;
    this.#record.scanError = error;
  }

  // ------------------------------------------------------------------ the scan loop

  #startScan(): void {
    if (this.#scan) return;
    this.#setScanState(SCAN_RUNNING, null);
    let stop = false;
    const stopped = new Promise<void>((resolve) => {
      this.#stopScan = () => {
        stop = true;
        resolve();
      };
    });
    this.#scan = this.#scanLoop(() => stop, stopped)
      // The loop handles its own errors; anything escaping it is logged, never an unhandled rejection.
      .catch((err: unknown) => this.#logger.error({ err: err instanceof Error ? err.message : String(err) }, 'encryption scan loop failed'))
      .finally(() => {
        this.#scan = undefined;
        this.#stopScan = undefined;
      });
  }

  async #stopScanLoop(): Promise<void> {
    this.#stopScan?.();
    await this.#scan;
  }

  async #scanLoop(stopping: () => boolean, stopped: Promise<void>): Promise<void> {
    try {
      await this.#engine.rollLogsToCurrentKey();
      let heldNoticed = false;
      for (;;) {
        if (stopping()) return;
        const started = performance.now();
        // Unlimited, the step's tables are copied on worker threads (no pacing within a table,
        // and progress once per step); limited, here, paced every 256 KiB.
        const step = await this.#engine.rewriteNextOffKeyTable(
          this.#throttle.limit === 0
            ? undefined
            : (n) => {
                this.#progressWithinStep(n);
                return this.#throttle.take(n, stopped);
              },
        );
        const counted = this.#inStep;
        this.#inStep = 0;
        let bytes = step?.offKeyBytes ?? 0;
        if (!step) {
          const other = this.#nextOtherFile();
          if (other) {
            await this.#managed.env.reencrypt(other, (n) => (bytes += n));
          } else {
            await this.#engine.rollLogsToCurrentKey();
            const left = this.#filesOffCurrentKey();
            if (left.length === 0) break;
            // Old tables still read by an open iterator or snapshot are removed when released.
            if (!heldNoticed) this.#logger.info({ files: left.length }, 'encryption scan: waiting for old files still held by open iterators or snapshots');
            heldNoticed = true;
            await Promise.race([stopped, new Promise((r) => setTimeout(r, HELD_FILES_RETRY_MS))]);
            continue;
          }
        }
        const elapsed = (performance.now() - started) / 1000;
        const remaining = this.#progress(bytes, elapsed, counted);
        // The limit is on what the disk does (a merge of level 0 also rewrites on-key tables);
        // what the block copy paced as it went is paid already.
        const unpaced = Math.max(bytes, step?.outputBytes ?? 0) - (step?.pacedBytes ?? 0);
        // Nothing left: the completion is not held back by the last step's pause.
        if (remaining === 0 && this.#filesOffCurrentKey().length === 0) continue;
        await this.#throttle.take(unpaced, stopped);
      }
      // Not under the mutex: suspend() and close() hold it while they wait for this loop.
      await this.#complete();
    } catch (err) {
      if (this.#closed && isTdekvError(err, 'CLOSED')) return;
      const message = err instanceof Error ? err.message : String(err);
      this.#logger.error({ err: message, percentComplete: this.#record.percent }, `encryption scan aborted: ${message}; ENCRYPTION RESUME retries it once the cause is fixed`);
      this.#setScanState(SCAN_ABORTED, message);
      await this.#save().catch(() => undefined);
      this.#emitProgress();
    }
  }

  /** A tracked file that is not the engine's (the engine rewrites its own) and is off the current key. */
  #nextOtherFile(): string | undefined {
    const env = this.#managed.env;
    return env.filesNotOnCurrentKey().find((p) => parseFileName(p) === undefined && p !== 'CURRENT' && !env.fileInfo(p)?.authenticated);
  }

  /** After a step: `bytes` rewritten by it, `counted` of them already added to the counter as the step went. Returns the bytes still off the current key. */
  #progress(bytes: number, elapsedSec: number, counted = 0): number {
    const r = this.#record;
    r.bytesDone += bytes;
    const remaining = this.#bytesRemaining();
    r.bytesTotal = Math.max(r.bytesTotal, r.bytesDone + remaining);
    const pct = r.bytesTotal === 0 ? 100 : (100 * (r.bytesTotal - remaining)) / r.bytesTotal;
    // Never backwards: natural compaction may move off-key bytes too, and a restart re-measures.
    r.percent = Math.min(100, Math.max(r.percent, pct));
    if (bytes > 0 && elapsedSec > 0) {
      const inst = bytes / Math.max(elapsedSec, this.#throttle.limit > 0 ? bytes / this.#throttle.limit : 0);
      this.#rate = this.#rate === 0 ? inst : this.#rate * 0.7 + inst * 0.3;
    }
    this.#scanBytesTotal += Math.max(0, bytes - counted);
    if (performance.now() - this.#lastSave >= SAVE_EVERY_MS) void this.#save().catch((err: unknown) => this.#logger.warn({ err: String(err) }, 'could not save the encryption scan progress'));
    this.#emitProgress();
    return remaining;
  }

  /** Bytes a step in progress has copied so far (a step may be several tables, or all of level 0). */
  #inStep = 0;

  /** Progress inside a long step, from the bytes it has copied: the percentage moves before the step is installed (never to 100). */
  #progressWithinStep(bytes: number): void {
    this.#inStep += bytes;
    this.#scanBytesTotal += bytes;
    const r = this.#record;
    if (r.bytesTotal <= 0) return;
    const pct = Math.min(99.9, (100 * (r.bytesDone + this.#inStep)) / r.bytesTotal);
    if (pct <= r.percent) return;
    r.percent = pct;
    // A status reads every file's entry: listeners hear of it four times a second at most, not
    // every 256 KiB. The percentage is shown once saved (see #savedPercent), so it is saved first.
    const now = performance.now();
    if (now - this.#lastStepEmit < STEP_EMIT_MS) return;
    this.#lastStepEmit = now;
    this.#save().then(
      () => this.#emitProgress(),
      (err: unknown) => this.#logger.warn({ err: String(err) }, 'could not save the encryption scan progress'),
    );
  }

  #lastStepEmit = 0;

  /** Bytes rewritten by scans since this process started (the tdekv_encryption_scan_bytes_total counter). */
  #scanBytesTotal = 0;
  get scanBytesTotal(): number {
    return this.#scanBytesTotal;
  }

  async #complete(): Promise<void> {
    const r = this.#record;
    const before = this.#state();
    r.percent = 100;
    this.#setScanState(SCAN_COMPLETED, null);
    const transition = r.transition;
    r.transition = null;
    this.#rate = 0;
    if (this.#settings.scanRetireKeys) {
      r.lastRetiredKeyIds = await this.#managed.keyAdmin.retireUnusedKeys();
      if (r.lastRetiredKeyIds.length > 0) this.#logger.info({ ids: r.lastRetiredKeyIds }, `retired ${r.lastRetiredKeyIds.length} data key(s) no file uses any more`);
    }
    pushHistory(r, { at: new Date().toISOString(), from: before, to: this.#state(), reason: `encryption scan completed${transition ? ` (${transition.from} -> ${transition.to})` : ''}` });
    this.#logger.info({ state: this.#stateName(), bytes: r.bytesDone }, 'encryption scan completed: every file is on the current key');
    await this.#save();
    this.#emitProgress();
  }

  /**
   * Saves the record. Saves run one after another (a progress save in the background and a
   * state change's save share one temporary file name), each writing the record as it is then.
   */
  #save(): Promise<void> {
    this.#lastSave = performance.now();
    const keyAdmin = this.#managed.keyAdmin;
    const write = async (): Promise<void> => {
      const percent = this.#record.percent;
      await writeLifecycleRecord(this.#managed.env.metaDir, this.#record, (label, ...parts) => keyAdmin.metadataMac(label, ...parts));
      this.#savedPercent = percent;
    };
    const saved = this.#saving.then(write, write);
    this.#saving = saved.catch(() => undefined);
    return saved;
  }

  #saving: Promise<void> = Promise.resolve();

  #emitProgress(): void {
    if (this.listenerCount('progress') === 0) return;
    try {
      this.emit('progress', this.status());
    } catch (err) {
      // A listener's error (or a status read while closing) must not stop the scan.
      this.#logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'an encryption progress listener failed');
    }
  }

  /** Stops the scan (it resumes at the next open) and saves the state. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#mutex.run(async () => {
      this.#closed = true;
      await this.#stopScanLoop();
      await this.#save().catch((err: unknown) => this.#logger.warn({ err: String(err) }, 'could not save the encryption lifecycle state at close'));
    });
  }
}

function keyBits(method: EncryptionMethod): number {
  const m = /(\d+)/.exec(method);
  return method.startsWith('sm4') ? 128 : Number(m?.[1] ?? 0);
}

/** The master key's public identity: kms key id, file path, token and key label, certificate name. */
function identityOf(info: MasterKeyPublicInfo): string {
  switch (info.type) {
    case 'plaintext':
      return 'none (plaintext: data keys are stored unprotected)';
    case 'file':
      return info.path;
    case 'kms':
      return info.keyId;
    case 'pkcs11':
      return `${info.tokenLabel !== undefined ? `token ${info.tokenLabel}` : `slot ${info.slot}`} key ${info.keyLabel}`;
    case 'certificate':
      return `certificate ${info.certificate}`;
  }
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
