import { EventEmitter } from 'node:events';
import type { EncryptionMethod } from '../crypto/method.js';
import { TdekvError } from '../errors.js';
import type { EncryptionConfig } from '../env/encryption-config.js';
import type { EncryptionLifecycle, ReloadReport } from '../lifecycle/encryption-lifecycle.js';
import type { EncryptionControl, LifecycleStatus } from '../lifecycle/lifecycle-status.js';

export interface LevelEncryptionEvents {
  /** After each step of the encryption scan and each state change. */
  progress: [LifecycleStatus];
}

/**
 * `db.encryption` of a TdekvLevel: the server's ENCRYPTION commands for an embedded database
 * (SQL Server's ALTER DATABASE … SET ENCRYPTION, … ENCRYPTION KEY REGENERATE, SUSPEND/RESUME).
 * The same object across reopenings; its operations reject with CLOSED while the database is
 * not open, and `progress` events come from whichever open it is.
 */
export class LevelEncryption extends EventEmitter<LevelEncryptionEvents> implements EncryptionControl {
  #lifecycle: EncryptionLifecycle | undefined;
  readonly #location: string;
  /** Reads embedded options (as the constructor does) into an encryption config, for reload(). */
  readonly #configOf: (options: Readonly<Record<string, unknown>>) => EncryptionConfig;
  readonly #forward = (s: LifecycleStatus): void => {
    this.emit('progress', s);
  };

  /** @internal */
  constructor(location: string, configOf: (options: Readonly<Record<string, unknown>>) => EncryptionConfig) {
    super();
    this.#location = location;
    this.#configOf = configOf;
  }

  /** @internal TdekvLevel attaches the open database's lifecycle, and detaches it at close. */
  attach(lifecycle: EncryptionLifecycle | undefined): void {
    this.#lifecycle?.off('progress', this.#forward);
    this.#lifecycle = lifecycle;
    lifecycle?.on('progress', this.#forward);
  }

  #open(): EncryptionLifecycle {
    if (!this.#lifecycle) throw new TdekvError('CLOSED', `TdekvLevel ${this.#location} is not open: open it before using db.encryption`);
    return this.#lifecycle;
  }

  status(): LifecycleStatus {
    return this.#open().status();
  }

  /** A new method for new files now, and the scan that moves the existing ones (state 2, 4 or 5). */
  setMethod(method: EncryptionMethod): Promise<LifecycleStatus> {
    return this.#call((l) => l.setMethod(method));
  }

  regenerate(): Promise<LifecycleStatus> {
    return this.#call((l) => l.regenerate());
  }

  suspend(): Promise<LifecycleStatus> {
    return this.#call((l) => l.suspend());
  }

  resume(): Promise<LifecycleStatus> {
    return this.#call((l) => l.resume());
  }

  retire(): Promise<number[]> {
    return this.#call((l) => l.retire());
  }

  /**
   * Applies encryption options as the constructor takes them (dataEncryptionMethod, masterKey,
   * scanRateLimit, …; those not given keep their defaults, as at construction): a new method
   * starts the scan, a new master key re-seals the key dictionary (state 6).
   */
  reload(options: Readonly<Record<string, unknown>>): Promise<ReloadReport> {
    return this.#call((l) => l.reload(this.#configOf(options)));
  }

  #call<T>(fn: (l: EncryptionLifecycle) => Promise<T>): Promise<T> {
    try {
      return fn(this.#open());
    } catch (err) {
      return Promise.reject(err);
    }
  }
}
