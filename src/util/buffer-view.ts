/**
 * The class Buffer.prototype.subarray ends up constructing (Node's FastBuffer, exposed as
 * Buffer[Symbol.species]). Constructing it directly skips subarray's species lookup and
 * argument checks, which were a third of the request parser's time for small arguments and
 * showed in every command's record decoding; the result is an ordinary Buffer view either way.
 */
type ViewConstructor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => Buffer;
const species = (Buffer as unknown as { [Symbol.species]?: unknown })[Symbol.species];
const FastBuffer = typeof species === 'function' && species !== Buffer ? (species as ViewConstructor) : undefined;

/** `buf.subarray(start, end)` for 0 <= start <= end <= buf.length, without subarray's checks. */
export function bufferView(buf: Buffer, start: number, end: number): Buffer {
  return FastBuffer !== undefined ? new FastBuffer(buf.buffer, buf.byteOffset + start, end - start) : buf.subarray(start, end);
}
