import type { EncryptionMethod } from '../crypto/method.js';

/**
 * SQL Server's `sys.dm_database_encryption_keys.encryption_state`, same numbers and names
 * (shared seed 003): what the whole database is doing about encryption.
 */
export const ENCRYPTION_STATES = [
  'NONE',
  'UNENCRYPTED',
  'ENCRYPTION_IN_PROGRESS',
  'ENCRYPTED',
  'KEY_CHANGE_IN_PROGRESS',
  'DECRYPTION_IN_PROGRESS',
  'PROTECTION_CHANGE_IN_PROGRESS',
] as const;
export type EncryptionStateName = (typeof ENCRYPTION_STATES)[number];

/** SQL Server 2019's `encryption_scan_state`, same numbers and names. */
export const SCAN_STATES = ['NONE', 'RUNNING', 'SUSPENDED', 'ABORTED', 'COMPLETED'] as const;
export type ScanStateName = (typeof SCAN_STATES)[number];

/** One change of `encryption_state`, kept (the last few) for the status page and `ENCRYPTION STATUS`. */
export interface StateChange {
  /** ISO 8601. */
  at: string;
  from: number;
  to: number;
  /** Why, in words ("data-encryption-method plaintext -> aes256-ctr", "scan completed", …). */
  reason: string;
}

/**
 * The lifecycle's public status: every field of issue 12 part 2, and nothing secret (no key
 * bytes, no credentials). `ENCRYPTION STATUS`, `/status` (`lifecycle`), `INFO encryption`,
 * the `tdekv_encryption_*state*`/`scan` metrics and the status page all read it.
 */
export interface LifecycleStatus {
  encryptionState: number;
  encryptionStateDesc: EncryptionStateName;
  scanState: number;
  scanStateDesc: ScanStateName;
  /** 0–100, never goes backwards during one scan (also across restarts). */
  percentComplete: number;
  /** Last change of the scan state (ISO 8601), null before any scan. */
  scanModifyDate: string | null;
  /** Bytes the scan has rewritten since the current change began. */
  scanBytesDone: number;
  /** Bytes off the current key when the change began (plus what arrived off-key since). */
  scanBytesTotal: number;
  /** Bytes still off the current key now. */
  scanBytesRemaining: number;
  /** Recent scan rate, bytes/s (0 when not running). */
  scanRateBytesPerSec: number;
  /** Seconds until done at the recent rate; null when unknown or not running. */
  etaSeconds: number | null;
  /** `[security.encryption] scan-rate-limit`, bytes/s; 0 = unlimited. */
  scanRateLimit: number;
  /** `[security.encryption] scan-auto`. */
  scanAuto: boolean;
  /** Why the scan was aborted (ABORTED), else null. */
  scanError: string | null;
  /** Files not under the current method and data key (tables, logs, manifest, other files). */
  filesOffCurrentKey: number;
  /** Method for new files (the desired method). */
  method: EncryptionMethod;
  /** 'AES' | 'SM4', null for plaintext. */
  keyAlgorithm: string | null;
  /** Bits, null for plaintext. */
  keyLength: number | null;
  /** The current data key (the DEK), null for plaintext. */
  dataKeyId: number | null;
  /** ISO 8601: when the first data key of this database was made. */
  dataKeyCreateDate: string | null;
  /** ISO 8601: when the current data key was made (regenerated), null for plaintext. */
  dataKeyRegenerateDate: string | null;
  /** file | kms | pkcs11 | certificate | plaintext. */
  masterKeyType: string;
  /** For kms the key id, for a file its path, for pkcs11 token/key label, for a certificate its name; never key bytes. */
  masterKeyIdentity: string;
  /** Data keys retired automatically after the last completed scan. */
  lastRetiredKeyIds: number[];
  /** Backups running now (online BACKUP sessions): while any runs, a change that would start the scan is refused. */
  backupsInProgress: number;
  /** The last state changes, oldest first. */
  history: StateChange[];
}

/** The operations of `ENCRYPTION …`, `tdekv encryption …` and `db.encryption`. */
export interface EncryptionControl {
  status(): LifecycleStatus;
  /** Changes the method for new files now and starts the scan (state 2, 4 or 5). Refused with ENCRYPTION_CHANGE_REFUSED while another change runs. */
  setMethod(method: EncryptionMethod): Promise<LifecycleStatus>;
  /** A new data key now, then the scan rewrites everything under it (state 4). */
  regenerate(): Promise<LifecycleStatus>;
  suspend(): Promise<LifecycleStatus>;
  resume(): Promise<LifecycleStatus>;
  /** Drops data keys no file uses; the ids dropped. */
  retire(): Promise<number[]>;
}
