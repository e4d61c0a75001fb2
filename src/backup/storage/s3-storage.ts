import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
  type PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { TdekvError } from '../../errors.js';
import type { BackupStorage } from './backup-storage.js';
import { ExactLength, lengthError } from './exact-length.js';
import { checkObjectName, underPrefix } from './object-name.js';
import type { S3StorageSpec } from './storage-url.js';

/** S3's own minimum for every part but the last. */
export const S3_MIN_PART_SIZE = 5 * 1024 * 1024;

export interface S3StorageOptions {
  /** Bytes per multipart part (at least 5 MiB); objects up to this size go in one PutObject. */
  partSize?: number;
  /** Parts uploaded at once (memory: partSize × queueSize). */
  queueSize?: number;
}

/**
 * Backups in an S3 bucket under a prefix, through the official SDK. Objects larger than a part
 * go up as multipart uploads (lib-storage's Upload), which S3 makes visible only on completion
 * and which Upload aborts on failure; smaller ones are buffered whole and sent in one PutObject.
 * Server-side encryption and the storage class go on every PutObject and on every
 * CreateMultipartUpload (S3 refuses them on UploadPart: the parts inherit them from the
 * initiate). Reads need no SSE settings: S3 decrypts by itself.
 */
export class S3Storage implements BackupStorage {
  readonly displayUrl: string;
  private readonly client: S3Client;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(
    private readonly spec: S3StorageSpec,
    options: S3StorageOptions = {},
  ) {
    this.displayUrl = spec.displayUrl;
    this.partSize = options.partSize ?? 16 * 1024 * 1024;
    if (this.partSize < S3_MIN_PART_SIZE) throw new RangeError(`S3 part size ${this.partSize} is below S3's minimum of 5 MiB`);
    this.queueSize = options.queueSize ?? 4;
    this.client = new S3Client({
      region: spec.region ?? process.env['AWS_REGION'] ?? process.env['AWS_DEFAULT_REGION'] ?? 'us-east-1',
      ...(spec.endpoint === undefined ? {} : { endpoint: spec.endpoint }),
      forcePathStyle: spec.forcePathStyle,
      // The SDK's default flexible checksums (aws-chunked bodies with trailers) are not understood
      // by many S3-compatible services and emulators; integrity is the backup manifest's job.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  private key(name: string): string {
    checkObjectName(name, this.displayUrl);
    return underPrefix(this.spec.prefix, name);
  }

  private encryptionParams(): Pick<PutObjectCommandInput, 'ServerSideEncryption' | 'SSEKMSKeyId' | 'StorageClass'> {
    const p: Pick<PutObjectCommandInput, 'ServerSideEncryption' | 'SSEKMSKeyId' | 'StorageClass'> = {};
    if (this.spec.sse !== undefined) p.ServerSideEncryption = this.spec.sse;
    if (this.spec.sseKmsKeyId !== undefined) p.SSEKMSKeyId = this.spec.sseKmsKeyId;
    if (this.spec.storageClass !== undefined) p.StorageClass = this.spec.storageClass as PutObjectCommandInput['StorageClass'];
    return p;
  }

  async put(name: string, body: Readable | Buffer, size: number): Promise<void> {
    const key = this.key(name);
    if (Buffer.isBuffer(body) && body.length !== size) throw lengthError(name, size, String(body.length));
    let checked: Buffer | Readable = body;
    if (!Buffer.isBuffer(body)) {
      const exact = new ExactLength(size, name);
      // pipe() does not pass a source's failure on: without this the upload would wait forever.
      body.once('error', (err) => exact.destroy(err));
      checked = body.pipe(exact);
    }
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.spec.bucket, Key: key, Body: checked, ...this.encryptionParams() },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      if (!Buffer.isBuffer(body)) body.destroy();
      throw this.failure('writing', name, err);
    }
  }

  async get(name: string): Promise<Readable> {
    const key = this.key(name);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.spec.bucket, Key: key }));
      if (!(out.Body instanceof Readable)) throw new TypeError('the S3 SDK returned a body that is not a Node stream');
      return out.Body;
    } catch (err) {
      throw this.failure('reading', name, err);
    }
  }

  async getBuffer(name: string): Promise<Buffer> {
    const key = this.key(name);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.spec.bucket, Key: key }));
      if (out.Body === undefined) throw new TypeError('the S3 SDK returned no body');
      return Buffer.from(await out.Body.transformToByteArray());
    } catch (err) {
      throw this.failure('reading', name, err);
    }
  }

  async stat(name: string): Promise<{ size: number } | undefined> {
    const key = this.key(name);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.spec.bucket, Key: key }));
      return { size: out.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err) && errorName(err) !== 'NoSuchBucket') {
        await this.checkBucket(name);
        return undefined;
      }
      throw this.failure('reading', name, err);
    }
  }

  private bucketSeen = false;

  /**
   * HEAD answers a bare 404 for a missing bucket too: before calling an object absent (a backup
   * would then upload it, a verify report it missing), make sure the bucket is there, once.
   */
  private async checkBucket(name: string): Promise<void> {
    if (this.bucketSeen) return;
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.spec.bucket }));
      this.bucketSeen = true;
    } catch (err) {
      const e = isNotFound(err) ? Object.assign(new Error('the bucket does not exist'), { name: 'NoSuchBucket' }) : err;
      throw this.failure('reading', name, e);
    }
  }

  async *list(prefix: string): AsyncIterable<{ name: string; size: number }> {
    const base = this.spec.prefix === '' ? '' : `${this.spec.prefix}/`;
    let token: string | undefined;
    do {
      let out;
      try {
        out = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.spec.bucket, Prefix: base + prefix, ...(token === undefined ? {} : { ContinuationToken: token }) }),
        );
      } catch (err) {
        throw this.failure('listing', prefix === '' ? '/' : prefix, err);
      }
      for (const obj of out.Contents ?? []) {
        if (obj.Key === undefined || !obj.Key.startsWith(base)) continue;
        const name = obj.Key.slice(base.length);
        // Folder markers and keys another tool wrote that no backup names.
        if (name === '' || name.endsWith('/') || name.split('/').some((s) => s === '' || s === '.' || s === '..')) continue;
        yield { name, size: obj.Size ?? 0 };
      }
      token = out.IsTruncated === true ? out.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async remove(name: string): Promise<void> {
    const key = this.key(name);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.spec.bucket, Key: key }));
    } catch (err) {
      if (isNotFound(err) && errorName(err) !== 'NoSuchBucket') return;
      throw this.failure('removing', name, err);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private failure(op: string, name: string, err: unknown): TdekvError {
    if (err instanceof TdekvError) return err;
    const where = `s3://${this.spec.bucket}/${underPrefix(this.spec.prefix, name)}`;
    const errName = errorName(err);
    if (op === 'reading' && (errName === 'NoSuchKey' || (errName === 'NotFound' && isNotFound(err)))) {
      return new TdekvError(
        'BACKUP_OBJECT_MISSING',
        `backup object ${name} is not in ${this.displayUrl} (${where}): the backup is incomplete or was pruned; check the --storage URL`,
        { cause: err },
      );
    }
    const status = err instanceof S3ServiceException ? ` HTTP ${err.$metadata.httpStatusCode ?? '?'}` : '';
    const detail = err instanceof Error && err.message !== '' && err.message !== errName ? `: ${err.message.slice(0, 200)}` : '';
    return new TdekvError(
      'BACKUP_STORAGE_FAILED',
      `backup storage ${this.displayUrl}: ${op} ${where} failed (${errName}${status}${detail}): ${s3Hint(errName)}`,
      { cause: err },
    );
  }
}

function errorName(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return err.name !== 'Error' ? err.name : typeof code === 'string' ? code : 'Error';
  }
  return String(err);
}

function isNotFound(err: unknown): boolean {
  if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode === 404;
  const name = errorName(err);
  return name === 'NotFound' || name === 'NoSuchKey';
}

function s3Hint(name: string): string {
  switch (name) {
    case 'AccessDenied':
    case 'InvalidAccessKeyId':
    case 'SignatureDoesNotMatch':
    case 'ExpiredToken':
    case 'InvalidToken':
    case 'Forbidden':
      return 'check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the instance role) and the bucket policy';
    case 'CredentialsProviderError':
      return 'no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an instance role';
    case 'NoSuchBucket':
      return 'create the bucket, or correct the bucket in --storage';
    case 'PermanentRedirect':
    case 'AuthorizationHeaderMalformed':
    case 'IllegalLocationConstraintException':
      return 'the bucket is in another region: pass --s3.region';
    case 'KMS.NotFoundException':
    case 'KMS.DisabledException':
    case 'KMSKeyNotAccessibleFault':
    case 'KMS.KMSInvalidStateException':
      return 'check --s3.sse-kms-key-id and that this identity may use that KMS key';
    case 'InvalidArgument':
    case 'InvalidStorageClass':
      return 'check --s3.sse, --s3.sse-kms-key-id and --s3.storage-class';
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'ETIMEDOUT':
    case 'TimeoutError':
      return 'S3 is not reachable: check --s3.endpoint and the network';
    default:
      return 'check the bucket, the credentials and --s3.* flags; retry if the service was unavailable';
  }
}
