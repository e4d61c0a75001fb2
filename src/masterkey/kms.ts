import { DecryptCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { KmsMasterKeyConfig } from './master-key-config.js';
import { TdekvError, errnoCode } from '../errors.js';
import { zeroize } from '../crypto/random.js';
import { insecureKmsEndpoint, publicEndpoint } from './kms-endpoint.js';
import type { MasterKey, MasterKeyPublicInfo, WrappingKey } from './master-key.js';
import { secretCopy } from './secret-copy.js';

const WRAPPING_KEY_BYTES = 32;
const SETTING = '[security.encryption.master-key]';
const UNCHANGED = 'nothing on disk was changed';

type KmsOperation = 'GenerateDataKey' | 'Decrypt';

/**
 * Bound to the envelope as KMS additional authenticated data: a ciphertext blob made for
 * something else under the same KMS key does not decrypt here, and CloudTrail shows what
 * each call was for.
 */
export const KMS_ENCRYPTION_CONTEXT: Readonly<Record<string, string>> = { purpose: 'tdekv-key-dictionary' };

/** Decrypt answers these when the ciphertext belongs to another key (or is not a KMS ciphertext at all). */
const WRONG_KEY_ERRORS = new Set(['IncorrectKeyException', 'InvalidCiphertextException']);

const CREDENTIAL_ERRORS = new Set([
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'IncompleteSignature',
  'InvalidClientTokenId',
  'MissingAuthenticationToken',
  'ExpiredTokenException',
]);

const NETWORK_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * Worst-case SDK backoff between attempts (throttling base 1 s, doubling, capped at 20 s)
 * plus a second for signing and credential lookup. Generous on purpose: the deadline only
 * has to guarantee that open() cannot hang, the per-attempt timeouts do the real work.
 */
export function kmsCallDeadlineMs(timeoutMs: number, maxAttempts: number): number {
  let backoff = 0;
  for (let retry = 0; retry < maxAttempts - 1; retry++) backoff += Math.min(1000 * 2 ** retry, 20_000);
  return timeoutMs * maxAttempts + backoff + 1000;
}

class DeadlineExceeded extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
    this.name = 'DeadlineExceeded';
  }
}

/**
 * Envelope encryption under an AWS KMS (or API-compatible) key: the 32-byte wrapping key
 * is a KMS data key, and its KMS ciphertext is the envelope, so the root key never leaves
 * KMS and opening a database costs exactly one Decrypt.
 */
export class KmsMasterKey implements MasterKey {
  readonly type = 'kms' as const;
  readonly protectsKeys = true;
  readonly description: string;
  readonly #keyId: string;
  readonly #region: string;
  /** The endpoint as shown (credentials cut out), or 'default'. */
  readonly #endpointLabel: string;
  readonly #timeoutMs: number;
  readonly #maxAttempts: number;
  readonly #deadlineMs: number;
  readonly #client: KMSClient;

  constructor(config: KmsMasterKeyConfig) {
    if (!config.keyId || !config.region) {
      throw new TdekvError('CONFIG_INVALID', `${SETTING} type = "kms" needs both key-id and region.`);
    }
    if (!(config.timeoutMs > 0) || !Number.isInteger(config.maxAttempts) || config.maxAttempts < 1) {
      throw new TdekvError(
        'CONFIG_INVALID',
        `${SETTING} timeout must be positive and max-attempts a whole number of at least 1 (found timeout=${config.timeoutMs} ms, max-attempts=${config.maxAttempts}).`,
      );
    }
    // Also checked when the config is read; repeated for callers that build the config themselves.
    const insecure = insecureKmsEndpoint(config.endpoint, config.allowInsecureEndpoint);
    if (insecure !== undefined) {
      throw new TdekvError('CONFIG_INVALID', `${SETTING} endpoint = ${JSON.stringify(config.endpoint)} is refused: ${insecure}.`);
    }
    this.#keyId = config.keyId;
    this.#region = config.region;
    this.#endpointLabel = config.endpoint === undefined ? 'default' : publicEndpoint(config.endpoint);
    this.#timeoutMs = config.timeoutMs;
    this.#maxAttempts = config.maxAttempts;
    this.#deadlineMs = kmsCallDeadlineMs(config.timeoutMs, config.maxAttempts);
    this.description = `kms key-id=${config.keyId} region=${config.region} endpoint=${this.#endpointLabel}`;
    this.#client = new KMSClient({
      region: config.region,
      endpoint: config.endpoint,
      maxAttempts: config.maxAttempts,
      requestHandler: new NodeHttpHandler({
        connectionTimeout: config.timeoutMs,
        requestTimeout: config.timeoutMs,
        // Without this the handler only logs a warning when requestTimeout passes, and a
        // server that accepts the connection but never answers would stall every attempt.
        throwOnRequestTimeout: true,
      }),
    });
  }

  publicInfo(): MasterKeyPublicInfo {
    return { type: 'kms', keyId: this.#keyId, region: this.#region, ...(this.#endpointLabel === 'default' ? {} : { endpoint: this.#endpointLabel }) };
  }

  async newWrappingKey(): Promise<WrappingKey> {
    const out = await this.#call('GenerateDataKey', (abortSignal) =>
      this.#client.send(new GenerateDataKeyCommand({ KeyId: this.#keyId, KeySpec: 'AES_256', EncryptionContext: { ...KMS_ENCRYPTION_CONTEXT } }), { abortSignal }),
    );
    const key = this.#takeKey('GenerateDataKey', out.Plaintext);
    if (!out.CiphertextBlob || out.CiphertextBlob.length === 0) {
      zeroize(key);
      throw this.#malformed('GenerateDataKey', 'returned no CiphertextBlob');
    }
    return { key, envelope: Buffer.from(out.CiphertextBlob) };
  }

  async recoverWrappingKey(envelope: Buffer): Promise<Buffer> {
    if (envelope.length === 0) {
      throw new TdekvError(
        'KEY_DICTIONARY_DAMAGED',
        `the sealed key dictionary carries no KMS envelope, so ${this.description} cannot unwrap it: ` +
          `restore the key dictionary from a backup or configure the master key it was sealed with.`,
      );
    }
    const out = await this.#call('Decrypt', (abortSignal) =>
      this.#client.send(new DecryptCommand({ KeyId: this.#keyId, CiphertextBlob: envelope, EncryptionContext: { ...KMS_ENCRYPTION_CONTEXT } }), { abortSignal }),
    );
    return this.#takeKey('Decrypt', out.Plaintext);
  }

  close(): void {
    this.#client.destroy();
  }

  /** Copies the data key out of the SDK's buffer and wipes that buffer, so only the caller's copy remains. */
  #takeKey(op: KmsOperation, plaintext: Uint8Array | undefined): Buffer {
    if (!plaintext || plaintext.length !== WRAPPING_KEY_BYTES) {
      const found = plaintext?.length ?? 0;
      zeroize(plaintext);
      throw this.#malformed(op, `returned a ${found}-byte data key where ${WRAPPING_KEY_BYTES} bytes were expected`);
    }
    const key = secretCopy(plaintext);
    zeroize(plaintext);
    return key;
  }

  async #call<T>(op: KmsOperation, send: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    // Racing as well as aborting: credential lookup and retry sleeps do not all honour the
    // signal, and open() must not outlive the deadline whatever the SDK is waiting on.
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new DeadlineExceeded(this.#deadlineMs);
        controller.abort(err);
        reject(err);
      }, this.#deadlineMs);
    });
    const sent = send(controller.signal);
    sent.catch(() => {});
    try {
      return await Promise.race([sent, deadline]);
    } catch (err) {
      throw this.#translate(op, err, controller.signal.aborted);
    } finally {
      clearTimeout(timer);
    }
  }

  #where(): string {
    return `key-id=${this.#keyId} region=${this.#region} endpoint=${this.#endpointLabel}`;
  }

  #at(): string {
    return this.#endpointLabel === 'default' ? `the default KMS endpoint for region ${this.#region}` : `KMS at ${this.#endpointLabel}`;
  }

  #malformed(op: KmsOperation, what: string): TdekvError {
    return new TdekvError(
      'MASTER_KEY_UNAVAILABLE',
      `${op} on ${this.#where()} ${what}: check that ${SETTING} endpoint is an AWS KMS-compatible service; ${UNCHANGED}.`,
    );
  }

  #translate(op: KmsOperation, err: unknown, deadlinePassed: boolean): TdekvError {
    const name = errorName(err);
    const status = httpStatus(err);
    const errno = errnoCode(err) ?? errnoCode(causeOf(err));
    const budget = `${this.#timeoutMs} ms per attempt, ${this.#maxAttempts} attempt(s)`;
    const fixNetwork = `check ${SETTING} endpoint/region and the network; ${UNCHANGED}.`;

    const key = `key-id=${this.#keyId} region=${this.#region}`;

    if (deadlinePassed || name === 'DeadlineExceeded' || name === 'AbortError' || name === 'TimeoutError') {
      return new TdekvError(
        'MASTER_KEY_UNAVAILABLE',
        `${this.#at()} did not answer ${op} for ${key} within ${budget} (${name}): ${fixNetwork}`,
        { cause: err },
      );
    }
    if (errno !== undefined && NETWORK_ERRNOS.has(errno)) {
      return new TdekvError(
        'MASTER_KEY_UNAVAILABLE',
        `${this.#at()} could not be reached for ${op} on ${key} (${errno}, ${budget}): ${fixNetwork}`,
        { cause: err },
      );
    }
    if (status !== undefined && status >= 500) {
      return new TdekvError(
        'MASTER_KEY_UNAVAILABLE',
        `${this.#at()} kept failing ${op} for ${key} (HTTP ${status} ${name}: ${messageOf(err)}) after ${this.#maxAttempts} attempt(s): ` +
          `retry later, or ${fixNetwork}`,
        { cause: err },
      );
    }
    if (name === 'CredentialsProviderError') {
      return new TdekvError(
        'MASTER_KEY_UNAVAILABLE',
        `no AWS credentials were found to call ${op} on ${this.#where()} (${messageOf(err)}): ` +
          `provide them through the environment, a shared config profile or an instance role; ${UNCHANGED}.`,
        { cause: err },
      );
    }
    if (op === 'Decrypt' && WRONG_KEY_ERRORS.has(name)) {
      return new TdekvError(
        'MASTER_KEY_WRONG',
        `KMS refused Decrypt with ${name} (${messageOf(err)}): the key dictionary was sealed under a different KMS key than ${this.#where()}` +
          `${name === 'InvalidCiphertextException' ? ', or its envelope is damaged' : ''}. ` +
          `Configure that key as previous-master-key to rotate; ${UNCHANGED}.`,
        { cause: err },
      );
    }
    return new TdekvError(
      'MASTER_KEY_UNAVAILABLE',
      `KMS refused ${op} for ${this.#where()}: ${name}: ${messageOf(err)}. ${remedy(name, op)}; ${UNCHANGED}.`,
      { cause: err },
    );
  }
}

function remedy(name: string, op: KmsOperation): string {
  if (CREDENTIAL_ERRORS.has(name)) {
    return 'Fix the AWS credentials (environment, shared config profile or instance role) used by this process';
  }
  switch (name) {
    case 'AccessDeniedException':
      return `Grant these credentials kms:${op} on the key in its key policy or IAM policy, or fix ${SETTING} key-id`;
    case 'NotFoundException':
      return `Fix ${SETTING} key-id: no such key exists in that region and account`;
    case 'DisabledException':
      return 'Enable the key in KMS, or point key-id at an enabled key';
    case 'KMSInvalidStateException':
      return 'The key is not usable (pending deletion, pending import or unavailable): restore it in KMS or point key-id at a usable key';
    default:
      return `Fix ${SETTING} key-id, the key's permissions or the AWS credentials`;
  }
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}

function messageOf(err: unknown): string {
  const raw = err instanceof Error ? err.message : String(err);
  // A server's message is untrusted text headed for logs and terminals.
  const flat = raw.replace(/\s+/g, ' ').trim();
  return flat.length > 300 ? `${flat.slice(0, 300)}…` : flat || '(no message)';
}

function httpStatus(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && '$metadata' in err) {
    const status = (err as { $metadata?: { httpStatusCode?: unknown } }).$metadata?.httpStatusCode;
    return typeof status === 'number' ? status : undefined;
  }
  return undefined;
}

function causeOf(err: unknown): unknown {
  return err instanceof Error ? err.cause : undefined;
}
