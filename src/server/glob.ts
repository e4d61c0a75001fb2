/**
 * Redis's glob patterns (KEYS, SCAN MATCH, HSCAN MATCH): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`
 * and `\x` escapes, over bytes. Compiled once per command into a matcher.
 */
export function globMatcher(pattern: Buffer): (s: Buffer) => boolean {
  if (pattern.length === 1 && pattern[0] === 0x2a) return () => true;
  return (s) => matchAt(pattern, 0, s, 0, 0, { giveUp: false });
}

/** The literal bytes every match starts with (lets KEYS/SCAN seek instead of walking everything). */
export function globPrefix(pattern: Buffer): Buffer {
  let i = 0;
  const out: number[] = [];
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === 0x2a || c === 0x3f || c === 0x5b) break;
    if (c === 0x5c) {
      if (i + 1 >= pattern.length) break;
      out.push(pattern[i + 1]!);
      i += 2;
      continue;
    }
    out.push(c);
    i++;
  }
  return Buffer.from(out);
}

/**
 * Recursion only for `*`, with Redis 7.0's two guards against pathological patterns
 * (CVE-2022-36021): a nesting limit, and `giveUp`. When the rest of the pattern after a `*`
 * has been tried at every remaining position and failed, an earlier `*` taking a longer
 * match only starts that same rest later in the string, so it cannot succeed either: the
 * whole match fails at once. Each `*` therefore scans the string at most once, which keeps
 * a match O(pattern × string) instead of exponential in the number of stars.
 */
function matchAt(p: Buffer, pi: number, s: Buffer, si: number, depth: number, state: { giveUp: boolean }): boolean {
  if (depth > 1000) return false;
  while (pi < p.length) {
    const c = p[pi]!;
    switch (c) {
      case 0x2a: {
        while (pi + 1 < p.length && p[pi + 1] === 0x2a) pi++;
        if (pi + 1 === p.length) return true;
        for (let k = si; k <= s.length; k++) {
          if (matchAt(p, pi + 1, s, k, depth + 1, state)) return true;
          if (state.giveUp) return false;
        }
        state.giveUp = true;
        return false;
      }
      case 0x3f:
        if (si >= s.length) return false;
        si++;
        pi++;
        break;
      case 0x5b: {
        if (si >= s.length) return false;
        const ch = s[si]!;
        pi++;
        const not = p[pi] === 0x5e;
        if (not) pi++;
        let matched = false;
        for (;;) {
          if (pi >= p.length) {
            pi--; // like Redis: an unterminated class ends at the pattern's end
            break;
          }
          const pc = p[pi]!;
          if (pc === 0x5d) break;
          if (pc === 0x5c && pi + 2 < p.length) {
            pi++;
            if (p[pi] === ch) matched = true;
          } else if (pi + 2 < p.length && p[pi + 1] === 0x2d) {
            let lo = pc;
            let hi = p[pi + 2]!;
            if (lo > hi) [lo, hi] = [hi, lo];
            pi += 2;
            if (ch >= lo && ch <= hi) matched = true;
          } else if (pc === ch) {
            matched = true;
          }
          pi++;
        }
        if (not) matched = !matched;
        if (!matched) return false;
        si++;
        pi++;
        break;
      }
      case 0x5c:
        // The escaped byte is a literal.
        if (pi + 1 < p.length) pi++;
        if (si >= s.length || p[pi] !== s[si]) return false;
        si++;
        pi++;
        break;
      default:
        if (si >= s.length || p[pi] !== s[si]) return false;
        si++;
        pi++;
    }
  }
  return si === s.length;
}
