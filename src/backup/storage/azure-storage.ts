import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AnonymousCredential,
  BlobServiceClient,
  RestError,
  StorageSharedKeyCredential,
  type ContainerClient,
  type CpkInfo,
  type StoragePipelineOptions,
} from '@azure/storage-blob';
import { TdekvError } from '../../errors.js';
import type { BackupStorage } from './backup-storage.js';
import { ExactLength, lengthError } from './exact-length.js';
import { checkObjectName, underPrefix } from './object-name.js';
import type { AzureStorageSpec } from './storage-url.js';

export interface AzureStorageOptions {
  /** Bytes per staged block (and buffered per concurrent block). */
  blockSize?: number;
  /** Blocks staged at once. */
  concurrency?: number;
  /** Extra trusted CA certificates (PEM) for the endpoint: a private CA, or the tests' emulator. */
  ca?: string | Buffer;
}

/**
 * Backups in an Azure Blob container under a prefix, through the official SDK. Writes are block
 * blobs: uploadData / uploadStream stage blocks and commit the list last, so a failed upload
 * leaves no blob (uncommitted blocks are invisible and expire). An encryption scope or a
 * customer-provided key (CPK) goes on every write; the CPK goes on every read too, since Azure
 * cannot decrypt a CPK blob without it. The SDK sends CPK only over https.
 */
export class AzureStorage implements BackupStorage {
  readonly displayUrl: string;
  private readonly container: ContainerClient;
  private readonly cpk: CpkInfo | undefined;
  private readonly blockSize: number;
  private readonly concurrency: number;

  constructor(
    private readonly spec: AzureStorageSpec,
    options: AzureStorageOptions = {},
  ) {
    this.displayUrl = spec.displayUrl;
    this.blockSize = options.blockSize ?? 8 * 1024 * 1024;
    this.concurrency = options.concurrency ?? 4;
    const endpoint = spec.endpoint ?? `https://${spec.accountName ?? ''}.blob.core.windows.net`;
    let credential: StorageSharedKeyCredential | AnonymousCredential;
    let url = endpoint;
    if (spec.accountKey !== undefined) {
      if (spec.accountName === undefined) {
        throw new TdekvError('INVALID_ARGUMENT', `--storage ${this.displayUrl}: an account key needs the account's name: pass --azblob.account-name or AZURE_STORAGE_ACCOUNT`);
      }
      credential = new StorageSharedKeyCredential(spec.accountName, spec.accountKey);
    } else if (spec.sasToken !== undefined) {
      credential = new AnonymousCredential();
      url = `${endpoint}?${spec.sasToken}`;
    } else {
      throw new TdekvError(
        'INVALID_ARGUMENT',
        `--storage ${this.displayUrl}: no Azure credentials: pass --azblob.account-key (or AZURE_STORAGE_KEY) with the account name, or --azblob.sas-token`,
      );
    }
    if (spec.encryptionKey !== undefined && !endpoint.toLowerCase().startsWith('https:')) {
      throw new TdekvError(
        'INVALID_ARGUMENT',
        `--storage ${this.displayUrl}: a customer-provided key (--azblob.encryption-key) is sent only over https, and the endpoint is http: use an https endpoint`,
      );
    }
    const pipelineOptions: StoragePipelineOptions & { tlsOptions?: { ca: string | Buffer } } = {
      retryOptions: { maxTries: 3 },
    };
    if (options.ca !== undefined) pipelineOptions.tlsOptions = { ca: options.ca };
    this.container = new BlobServiceClient(url, credential, pipelineOptions).getContainerClient(spec.container);
    if (spec.encryptionKey !== undefined) {
      this.cpk = {
        encryptionKey: spec.encryptionKey,
        encryptionKeySha256: createHash('sha256').update(Buffer.from(spec.encryptionKey, 'base64')).digest('base64'),
        encryptionAlgorithm: 'AES256',
      };
    }
  }

  private blobName(name: string): string {
    checkObjectName(name, this.displayUrl);
    return underPrefix(this.spec.prefix, name);
  }

  private writeOptions(): { customerProvidedKey?: CpkInfo; encryptionScope?: string } {
    if (this.cpk !== undefined) return { customerProvidedKey: { ...this.cpk } };
    if (this.spec.encryptionScope !== undefined) return { encryptionScope: this.spec.encryptionScope };
    return {};
  }

  private readOptions(): { customerProvidedKey?: CpkInfo } {
    return this.cpk === undefined ? {} : { customerProvidedKey: { ...this.cpk } };
  }

  async put(name: string, body: Readable | Buffer, size: number): Promise<void> {
    const blob = this.container.getBlockBlobClient(this.blobName(name));
    try {
      if (Buffer.isBuffer(body)) {
        if (body.length !== size) throw lengthError(name, size, String(body.length));
        await blob.uploadData(body, { ...this.writeOptions(), blockSize: this.blockSize, concurrency: this.concurrency, maxSingleShotSize: this.blockSize });
      } else {
        const exact = new ExactLength(size, name);
        // pipe() does not pass a source's failure on: without this the upload would wait forever.
        body.once('error', (err) => exact.destroy(err));
        await blob.uploadStream(body.pipe(exact), this.blockSize, this.concurrency, this.writeOptions());
      }
    } catch (err) {
      if (!Buffer.isBuffer(body)) body.destroy();
      throw this.failure('writing', name, err);
    }
  }

  async get(name: string): Promise<Readable> {
    const blob = this.container.getBlobClient(this.blobName(name));
    try {
      const res = await blob.download(0, undefined, this.readOptions());
      const stream = res.readableStreamBody;
      if (stream === undefined) throw new TypeError('the Azure SDK returned no body');
      return stream instanceof Readable ? stream : Readable.from(stream as AsyncIterable<Buffer>);
    } catch (err) {
      throw this.failure('reading', name, err);
    }
  }

  async getBuffer(name: string): Promise<Buffer> {
    const blob = this.container.getBlobClient(this.blobName(name));
    try {
      return await blob.downloadToBuffer(0, undefined, { ...this.readOptions(), blockSize: this.blockSize, concurrency: this.concurrency });
    } catch (err) {
      throw this.failure('reading', name, err);
    }
  }

  async stat(name: string): Promise<{ size: number } | undefined> {
    const blob = this.container.getBlobClient(this.blobName(name));
    try {
      const props = await blob.getProperties(this.readOptions());
      return { size: props.contentLength ?? 0 };
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404 && restCode(err) !== 'ContainerNotFound') return undefined;
      throw this.failure('reading', name, err);
    }
  }

  async *list(prefix: string): AsyncIterable<{ name: string; size: number }> {
    const base = this.spec.prefix === '' ? '' : `${this.spec.prefix}/`;
    try {
      for await (const item of this.container.listBlobsFlat({ prefix: base + prefix })) {
        if (!item.name.startsWith(base)) continue;
        const name = item.name.slice(base.length);
        if (name === '' || name.split('/').some((s) => s === '' || s === '.' || s === '..')) continue;
        yield { name, size: item.properties.contentLength ?? 0 };
      }
    } catch (err) {
      throw this.failure('listing', prefix === '' ? '/' : prefix, err);
    }
  }

  async remove(name: string): Promise<void> {
    const blob = this.container.getBlobClient(this.blobName(name));
    try {
      await blob.deleteIfExists({ deleteSnapshots: 'include' });
    } catch (err) {
      throw this.failure('removing', name, err);
    }
  }

  async close(): Promise<void> {}

  /**
   * The SDK's error is not kept as the cause: its request holds the x-ms-encryption-key header,
   * and a logger that walks causes would print it.
   */
  private failure(op: string, name: string, err: unknown): TdekvError {
    if (err instanceof TdekvError) return err;
    const where = `azure://${this.spec.container}/${underPrefix(this.spec.prefix, name)}`;
    const code = restCode(err);
    const status = err instanceof RestError ? err.statusCode : undefined;
    if (op === 'reading' && status === 404 && code !== 'ContainerNotFound') {
      return new TdekvError(
        'BACKUP_OBJECT_MISSING',
        `backup object ${name} is not in ${this.displayUrl} (${where}): the backup is incomplete or was pruned; check the --storage URL`,
      );
    }
    if (code !== undefined && /CustomerProvidedKey|EncryptionKey|Cpk/i.test(code)) {
      return new TdekvError(
        'BACKUP_STORAGE_KEY_NEEDED',
        this.cpk === undefined
          ? `backup storage ${this.displayUrl}: ${where} is encrypted with a customer-provided key (${code}): pass --azblob.encryption-key or AZURE_ENCRYPTION_KEY, the key the backup was written with`
          : `backup storage ${this.displayUrl}: ${where} is encrypted with a different customer-provided key than the one given (${code}): pass the key the backup was written with`,
      );
    }
    const detail = err instanceof Error && err.message !== '' ? `: ${firstLine(err.message)}` : '';
    return new TdekvError(
      'BACKUP_STORAGE_FAILED',
      `backup storage ${this.displayUrl}: ${op} ${where} failed (${code ?? 'error'}${status === undefined ? '' : ` HTTP ${status}`}${detail}): ${azureHint(code)}`,
    );
  }
}

function restCode(err: unknown): string | undefined {
  if (err instanceof RestError) {
    const fromHeader = err.response?.headers.get('x-ms-error-code');
    return err.code ?? fromHeader ?? undefined;
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? code : err.name;
  }
  return undefined;
}

function firstLine(message: string): string {
  return (message.split('\n')[0] ?? '').slice(0, 200);
}

function azureHint(code: string | undefined): string {
  switch (code) {
    case 'AuthenticationFailed':
    case 'AuthorizationFailure':
    case 'AuthorizationPermissionMismatch':
    case 'InvalidAuthenticationInfo':
      return 'check --azblob.account-name and --azblob.account-key (AZURE_STORAGE_ACCOUNT, AZURE_STORAGE_KEY) or the SAS token';
    case 'ContainerNotFound':
      return 'create the container, or correct the container in --storage';
    case 'EncryptionScopeNotFound':
    case 'EncryptionScopeDisabled':
      return 'check --azblob.encryption-scope: the scope must exist on the storage account and be enabled';
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'REQUEST_SEND_ERROR':
      return 'Azure Blob is not reachable: check --azblob.endpoint and the network';
    default:
      return 'check the container, the credentials and the --azblob.* flags; retry if the service was unavailable';
  }
}
