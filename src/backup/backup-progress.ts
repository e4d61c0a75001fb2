/** One progress event of a backup, restore or verify: what the CLI shows as a bar or a JSON line. */
export interface BackupProgress {
  phase: 'backup' | 'restore' | 'verify';
  files: number;
  filesTotal: number;
  /** Bytes done: exported (or referenced) by a backup, written by a restore, read by verify. */
  bytes: number;
  /** The expected total (a backup knows only the live files' sizes, which an export can change a little). */
  bytesTotal: number;
  /** Bytes a second since the start. */
  rate: number;
  /** Seconds left at that rate; undefined before any byte. */
  etaSeconds?: number;
  /** The file being worked on. */
  file?: string;
  done: boolean;
}

/** Counts work and emits events, at most one every `intervalMs` except at file ends and the end. */
export class ProgressCounter {
  readonly #phase: BackupProgress['phase'];
  readonly #filesTotal: number;
  readonly #bytesTotal: number;
  readonly #emit: ((p: BackupProgress) => void) | undefined;
  readonly #start = performance.now();
  readonly #intervalMs: number;
  #last = -Infinity;
  files = 0;
  bytes = 0;

  constructor(phase: BackupProgress['phase'], filesTotal: number, bytesTotal: number, emit?: (p: BackupProgress) => void, intervalMs = 200) {
    this.#phase = phase;
    this.#filesTotal = filesTotal;
    this.#bytesTotal = bytesTotal;
    this.#emit = emit;
    this.#intervalMs = intervalMs;
  }

  add(bytes: number, file: string): void {
    this.bytes += bytes;
    if (performance.now() - this.#last >= this.#intervalMs) this.#send(file, false);
  }

  fileDone(file: string): void {
    this.files += 1;
    this.#send(file, false);
  }

  finish(): void {
    this.#send(undefined, true);
  }

  #send(file: string | undefined, done: boolean): void {
    if (!this.#emit) return;
    this.#last = performance.now();
    const seconds = Math.max((this.#last - this.#start) / 1000, 1e-3);
    const rate = this.bytes / seconds;
    const left = Math.max(this.#bytesTotal - this.bytes, 0);
    this.#emit({
      phase: this.#phase,
      files: this.files,
      filesTotal: this.#filesTotal,
      bytes: this.bytes,
      bytesTotal: Math.max(this.#bytesTotal, this.bytes),
      rate: Math.round(rate),
      ...(this.bytes > 0 ? { etaSeconds: done ? 0 : Math.round(left / rate) } : {}),
      ...(file !== undefined ? { file } : {}),
      done,
    });
  }
}
