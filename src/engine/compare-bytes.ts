/** Bytes compared in JS before handing the rest to the native compare. */
const JS_COMPARE_BYTES = 32;

/**
 * Bytewise order of buf[start, end) against target[targetStart, targetEnd), without allocating. Buffer#compare
 * costs ~150 ns of call overhead, several times a JS loop over a typical key's first
 * differing bytes, and a get makes ~25 comparisons; long equal prefixes still go native.
 */
export function compareBytes(buf: Buffer, start: number, end: number, target: Uint8Array, targetStart = 0, targetEnd = target.length): number {
  const n1 = end - start;
  const n2 = targetEnd - targetStart;
  const n = n1 < n2 ? n1 : n2;
  const m = n < JS_COMPARE_BYTES ? n : JS_COMPARE_BYTES;
  for (let i = 0; i < m; i++) {
    const a = buf[start + i]!;
    const b = target[targetStart + i]!;
    if (a !== b) return a < b ? -1 : 1;
  }
  if (n > JS_COMPARE_BYTES) return buf.compare(target, targetStart + JS_COMPARE_BYTES, targetEnd, start + JS_COMPARE_BYTES, end);
  return n1 < n2 ? -1 : n1 > n2 ? 1 : 0;
}

/** Bytes below which a JS loop beats Buffer#copy's native call. */
const JS_COPY_BYTES = 64;

/** src[start, end) into dst at `at`; returns the bytes copied. For the small keys of hot loops. */
export function copyBytes(src: Uint8Array, start: number, end: number, dst: Uint8Array, at: number): number {
  const n = end - start;
  if (n <= JS_COPY_BYTES) {
    for (let i = 0; i < n; i++) dst[at + i] = src[start + i]!;
  } else {
    dst.set(src.subarray(start, end), at);
  }
  return n;
}
