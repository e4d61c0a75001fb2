/**
 * Every failure a user can act on carries a stable `code` and a message that names the
 * file or setting at fault and says what to do. Layers throw these; the CLI prints them.
 */
export type TdekvErrorCode =
  | 'CONFIG_INVALID'
  | 'MASTER_KEY_INVALID'
  | 'MASTER_KEY_WRONG'
  | 'MASTER_KEY_UNAVAILABLE'
  | 'KEY_DICTIONARY_DAMAGED'
  | 'FILE_DICTIONARY_DAMAGED'
  | 'FORMAT_TOO_NEW'
  | 'DATA_KEY_MISSING'
  | 'FILE_NOT_TRACKED'
  | 'FILE_EXISTS'
  | 'FILE_NOT_FOUND'
  | 'INVALID_PATH'
  | 'INVALID_ARGUMENT'
  | 'DATA_DIR_LOCKED'
  | 'IO_FAILED'
  | 'DATA_CORRUPTED'
  | 'CLOSED'
  /** The password does not open the key store's database master key (DMK). */
  | 'DMK_PASSWORD_WRONG'
  /** No protection of the DMK opens with this machine's service master key: open it by password. */
  | 'DMK_UNAVAILABLE'
  /** The certificate a DEK is wrapped by is not in the key store. */
  | 'CERTIFICATE_MISSING'
  /** A certificate backup's password does not decrypt its private key (or the file is damaged). */
  | 'CERTIFICATE_PASSWORD_WRONG'
  /** Dropping a certificate that still protects a DEK. */
  | 'CERTIFICATE_IN_USE'
  /** An encryption state change (or a backup) asked for while another change's scan runs. */
  | 'ENCRYPTION_CHANGE_REFUSED'
  /** `tdekv encryption …`: no server answers at the configured address. */
  | 'SERVER_UNREACHABLE'
  /** `tdekv encryption …`: the server answered with an error (a refused change, NOPERM, a wrong password). */
  | 'SERVER_REFUSED'
  /** A backup object (manifest, table) is not in the backup storage. */
  | 'BACKUP_OBJECT_MISSING'
  /** The backup storage refused or failed a request (credentials, missing bucket, network). */
  | 'BACKUP_STORAGE_FAILED'
  /** The backup's blobs are encrypted with an Azure customer-provided key that was not given, or a different one. */
  | 'BACKUP_STORAGE_KEY_NEEDED'
  /** A backup's manifest or object fails its check (changed, swapped, cut short): names the object. */
  | 'BACKUP_DAMAGED'
  /** The protector that wraps a backup's key is not available here (certificate, key file, master key). */
  | 'BACKUP_KEY_UNAVAILABLE'
  /** No (complete) backup with that id at the storage. */
  | 'BACKUP_NOT_FOUND'
  /** A backup or restore refused before it started (a running server with --offline, a non-empty target). */
  | 'BACKUP_REFUSED';

export class TdekvError extends Error {
  readonly code: TdekvErrorCode;

  constructor(code: TdekvErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TdekvError';
    this.code = code;
  }
}

export function isTdekvError(err: unknown, code?: TdekvErrorCode): err is TdekvError {
  return err instanceof TdekvError && (code === undefined || err.code === code);
}

/** Node's fs errors carry `code`; this narrows them without `any`. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
