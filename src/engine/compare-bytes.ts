/** Bytes compared in JS before handing the rest to the native compare. */
const JS_COMPARE_BYTES = 32;

/**
 * Bytewise order of buf[start, end) against target, without allocating. Buffer#compare
 * costs ~150 ns of call overhead, several times a JS loop over a typical key's first
 * differing bytes, and a get makes ~25 comparisons; long equal prefixes still go native.
 */
export function compareBytes(buf: Buffer, start: number, end: number, target: Uint8Array): number {
  const n1 = end - start;
  const n2 = target.length;
  const n = n1 < n2 ? n1 : n2;
  const m = n < JS_COMPARE_BYTES ? n : JS_COMPARE_BYTES;
  for (let i = 0; i < m; i++) {
    const a = buf[start + i]!;
    const b = target[i]!;
    if (a !== b) return a < b ? -1 : 1;
  }
  if (n > JS_COMPARE_BYTES) return buf.compare(target, JS_COMPARE_BYTES, n2, start + JS_COMPARE_BYTES, end);
  return n1 < n2 ? -1 : n1 > n2 ? 1 : 0;
}
