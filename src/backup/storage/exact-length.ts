import { Transform, type TransformCallback } from 'node:stream';
import { TdekvError } from '../../errors.js';

/**
 * Passes a body through and fails it when it is longer or shorter than announced: a backend
 * must not store a truncated object under the name the manifest gives it (S3 and Azure would
 * store whatever arrived when the length is not sent up front).
 */
export class ExactLength extends Transform {
  private seen = 0;

  constructor(
    private readonly expected: number,
    private readonly what: string,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.expected) {
      cb(lengthError(this.what, this.expected, `more than ${this.expected}`));
      return;
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.seen !== this.expected) cb(lengthError(this.what, this.expected, String(this.seen)));
    else cb();
  }
}

export function lengthError(what: string, expected: number, got: string): TdekvError {
  return new TdekvError('IO_FAILED', `upload of ${what}: the body had ${got} bytes, ${expected} were announced: nothing was stored; this is a bug in the caller`);
}
