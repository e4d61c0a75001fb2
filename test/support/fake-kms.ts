import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';

/**
 * Just enough of the AWS KMS JSON protocol for tests: the real SDK talks to it, so the
 * production client code (signing, retries, timeouts, error parsing) is what gets tested.
 * Signatures are not checked.
 */
// Importing the fake KMS means testing against it: the SDK's default credential chain must
// find these first and never wait on an instance metadata service that does not exist here.
process.env.AWS_ACCESS_KEY_ID = 'AKIDTDEKVTEST';
process.env.AWS_SECRET_ACCESS_KEY = 'tdekv-test-secret';
process.env.AWS_EC2_METADATA_DISABLED = 'true';
delete process.env.AWS_SESSION_TOKEN;
delete process.env.AWS_PROFILE;

/** A loopback port that was just free and is now closed: connecting to it is refused. */
export async function closedPort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export type FakeKmsOperation = 'GenerateDataKey' | 'Decrypt' | 'Encrypt';

const OPERATIONS: readonly FakeKmsOperation[] = ['GenerateDataKey', 'Decrypt', 'Encrypt'];
const BLOB_VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

class KmsFault extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export class FakeKms {
  /** Requests received per operation, including those answered with an error. */
  readonly calls: Record<FakeKmsOperation, number> = { GenerateDataKey: 0, Decrypt: 0, Encrypt: 0 };
  /** Answer every request with AccessDeniedException. */
  deny = false;
  /** Accept requests and never answer them. */
  hang = false;
  readonly #keys = new Map<string, Buffer>();
  readonly #server: Server;
  #failures: { remaining: number; status: number } = { remaining: 0, status: 500 };
  #port = 0;

  constructor(keyIds: readonly string[] = []) {
    for (const id of keyIds) this.addKey(id);
    this.#server = createServer((req, res) => this.#handle(req, res));
  }

  get url(): string {
    if (this.#port === 0) throw new Error('FakeKms not started');
    return `http://127.0.0.1:${this.#port}`;
  }

  addKey(keyId: string): void {
    this.#keys.set(keyId, randomBytes(32));
  }

  /** The next `n` requests get HTTP `status` with a KMSInternalException, as a struggling KMS would. */
  failNext(n: number, status = 500): void {
    this.#failures = { remaining: n, status };
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    // Hanging requests and client keep-alive sockets would otherwise hold close() open.
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = req.headers['x-amz-target'];
      const op = typeof target === 'string' ? target.replace(/^TrentService\./, '') : '';
      if (isOperation(op)) this.calls[op]++;
      if (this.hang) return;
      try {
        if (req.method !== 'POST' || req.url !== '/') throw new KmsFault('UnknownOperationException', `${req.method} ${req.url}`);
        if (this.#failures.remaining > 0) {
          this.#failures.remaining--;
          throw new KmsFault('KMSInternalException', 'injected failure', this.#failures.status);
        }
        if (this.deny) {
          throw new KmsFault('AccessDeniedException', `User is not authorized to perform: kms:${op} because no identity-based policy allows it`);
        }
        if (!isOperation(op)) throw new KmsFault('UnknownOperationException', `unsupported target ${String(target)}`);
        const body = parseBody(Buffer.concat(chunks));
        reply(res, 200, this.#perform(op, body));
      } catch (err) {
        const fault = err instanceof KmsFault ? err : new KmsFault('KMSInternalException', String(err), 500);
        reply(res, fault.status, { __type: fault.type, message: fault.message });
      }
    });
  }

  #perform(op: FakeKmsOperation, body: Record<string, unknown>): Record<string, unknown> {
    switch (op) {
      case 'GenerateDataKey': {
        const keyId = this.#knownKey(body.KeyId);
        const size = body.KeySpec === 'AES_256' ? 32 : body.KeySpec === 'AES_128' ? 16 : body.NumberOfBytes;
        if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > 1024) {
          throw new KmsFault('ValidationException', 'KeySpec or NumberOfBytes is required');
        }
        const plaintext = randomBytes(size);
        return { KeyId: keyId, Plaintext: plaintext.toString('base64'), CiphertextBlob: this.#seal(keyId, plaintext, body.EncryptionContext).toString('base64') };
      }
      case 'Encrypt': {
        const keyId = this.#knownKey(body.KeyId);
        const plaintext = base64Field(body, 'Plaintext');
        return { KeyId: keyId, CiphertextBlob: this.#seal(keyId, plaintext, body.EncryptionContext).toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
      case 'Decrypt': {
        const { keyId, plaintext } = this.#open(base64Field(body, 'CiphertextBlob'), body.KeyId, body.EncryptionContext);
        return { KeyId: keyId, Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
      }
    }
  }

  #knownKey(keyId: unknown): string {
    if (typeof keyId !== 'string' || keyId === '') throw new KmsFault('ValidationException', 'KeyId is required');
    if (!this.#keys.has(keyId)) throw new KmsFault('NotFoundException', `Key '${keyId}' does not exist`);
    return keyId;
  }

  /**
   * version | key id length | key id | nonce | tag | ciphertext. The AAD is the key id plus
   * the encryption context, which (as in KMS) is not stored: Decrypt must present it again.
   */
  #seal(keyId: string, plaintext: Buffer, context: unknown): Buffer {
    const id = Buffer.from(keyId, 'utf8');
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(keyId)!, nonce);
    cipher.setAAD(Buffer.concat([id, contextBytes(context)]));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.from([BLOB_VERSION, id.length]), id, nonce, cipher.getAuthTag(), body]);
  }

  #open(blob: Buffer, requestedKeyId: unknown, context: unknown): { keyId: string; plaintext: Buffer } {
    const invalid = new KmsFault('InvalidCiphertextException', 'The ciphertext is invalid');
    if (blob.length < 2 || blob[0] !== BLOB_VERSION) throw invalid;
    const idEnd = 2 + blob[1]!;
    if (blob.length < idEnd + NONCE_BYTES + TAG_BYTES) throw invalid;
    const id = blob.subarray(2, idEnd);
    const keyId = id.toString('utf8');
    if (requestedKeyId !== undefined && requestedKeyId !== keyId) {
      throw new KmsFault('IncorrectKeyException', 'The key ID in the request does not identify a CMK that can perform this operation.');
    }
    const secret = this.#keys.get(keyId);
    if (!secret) throw invalid;
    const nonce = blob.subarray(idEnd, idEnd + NONCE_BYTES);
    const tag = blob.subarray(idEnd + NONCE_BYTES, idEnd + NONCE_BYTES + TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', secret, nonce);
    decipher.setAAD(Buffer.concat([id, contextBytes(context)]));
    decipher.setAuthTag(tag);
    try {
      const plaintext = Buffer.concat([decipher.update(blob.subarray(idEnd + NONCE_BYTES + TAG_BYTES)), decipher.final()]);
      return { keyId, plaintext };
    } catch {
      throw invalid;
    }
  }
}

/** Canonical bytes of an EncryptionContext (a string map; key order does not matter). */
function contextBytes(context: unknown): Buffer {
  if (context === undefined) return Buffer.alloc(0);
  if (typeof context !== 'object' || context === null) throw new KmsFault('ValidationException', 'EncryptionContext must be a map');
  const entries = Object.entries(context as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
  return Buffer.from(JSON.stringify(entries), 'utf8');
}

function isOperation(op: string): op is FakeKmsOperation {
  return (OPERATIONS as readonly string[]).includes(op);
}

function parseBody(raw: Buffer): Record<string, unknown> {
  try {
    const body: unknown = JSON.parse(raw.toString('utf8') || '{}');
    if (typeof body === 'object' && body !== null && !Array.isArray(body)) return body as Record<string, unknown>;
  } catch {
    // fall through to the same answer as a non-object body
  }
  throw new KmsFault('SerializationException', 'request body is not a JSON object');
}

function base64Field(body: Record<string, unknown>, field: string): Buffer {
  const value = body[field];
  if (typeof value !== 'string' || value === '') throw new KmsFault('ValidationException', `${field} is required`);
  return Buffer.from(value, 'base64');
}

function reply(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
