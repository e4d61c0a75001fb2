import type { LifecycleStatus } from '../../src/lifecycle/lifecycle-status.js';

/**
 * A lifecycle status in the middle of an encryption scan (plaintext → aes256-ctr, 42.5 %),
 * for the metrics, INFO and status page tests that need fixed numbers; `patch` overrides fields.
 */
export function scanningStatus(patch: Partial<LifecycleStatus> = {}): LifecycleStatus {
  return {
    encryptionState: 2,
    encryptionStateDesc: 'ENCRYPTION_IN_PROGRESS',
    scanState: 1,
    scanStateDesc: 'RUNNING',
    percentComplete: 42.5,
    scanModifyDate: '2026-12-03T16:00:00.000Z',
    scanBytesDone: 425 * 1024 * 1024,
    scanBytesTotal: 1000 * 1024 * 1024,
    scanBytesRemaining: 575 * 1024 * 1024,
    scanRateBytesPerSec: 64 * 1024 * 1024,
    etaSeconds: 9,
    scanRateLimit: 64 * 1024 * 1024,
    scanAuto: true,
    scanError: null,
    filesOffCurrentKey: 17,
    method: 'aes256-ctr',
    keyAlgorithm: 'AES',
    keyLength: 256,
    dataKeyId: 7,
    dataKeyCreateDate: '2026-12-01T10:00:00.000Z',
    dataKeyRegenerateDate: '2026-12-03T15:59:59.000Z',
    masterKeyType: 'file',
    masterKeyIdentity: '/etc/tdekv/master.key',
    lastRetiredKeyIds: [3, 4],
    backupsInProgress: 0,
    history: [
      { at: '2026-12-01T10:00:00.000Z', from: 0, to: 1, reason: 'database created (plaintext)' },
      { at: '2026-12-03T16:00:00.000Z', from: 1, to: 2, reason: 'data-encryption-method plaintext -> aes256-ctr' },
    ],
    ...patch,
  };
}
