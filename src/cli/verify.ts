import type { FileVerdict, VerifyReport } from '../engine/verify.js';

// `ctl verify`'s output; the checking is the engine's (src/engine/verify.ts).
export { verifyDataDir, type FileVerdict, type VerifiedKind, type VerifyOptions, type VerifyReport } from '../engine/verify.js';

/** What rewrites unauthenticated files with tags; shown wherever they are counted. */
export const UNAUTHENTICATED_FIX =
  'a writable open (server start) rewrites write-ahead logs and the manifest; tables are rewritten as compaction reaches them, or all at once by `tdekv data-key reencrypt --config FILE` on the stopped database';

/** The report as lines: one per file, then the summary. */
export function formatVerifyReport(r: VerifyReport): string[] {
  const lines = r.files.map(
    (f) =>
      `${f.path}\t${f.kind}\tmethod=${f.method ?? '-'}\tkey-id=${f.keyId ?? '-'}\tsize=${f.size ?? '-'}\t${authLabel(f)}\t${f.ok ? `ok\t${f.detail}` : `DAMAGED\t${f.detail}`}`,
  );
  for (const p of r.problems) lines.push(`PROBLEM\t${p}`);
  for (const n of r.notes ?? []) lines.push(`NOTE\t${n}`);
  const count = (o: Record<string, number | undefined>): string => Object.entries(o).map(([k, n]) => `${k}: ${n}`).join(', ') || 'none';
  lines.push(
    `verified ${r.files.length} file(s) in ${r.dataDir}`,
    `files per method: ${count(r.byMethod)}`,
    `files per data key id: ${count(r.byKeyId)}`,
    `unauthenticated: ${r.unauthenticated.total}${r.unauthenticated.total === 0 ? '' : ` (${count(r.unauthenticated.byKind)}) encrypted file(s) without tags, checked with CRCs only: ${UNAUTHENTICATED_FIX}`}`,
    `damaged: ${r.damaged}`,
  );
  return lines;
}

/**
 * "authenticated": tags checked (a change without the key is detected); "unauthenticated":
 * CRCs only (legacy format 1, or plaintext); "-": not in the file dictionary.
 */
function authLabel(f: FileVerdict): string {
  if (f.authenticated === undefined) return '-';
  return f.authenticated ? 'authenticated' : 'unauthenticated';
}
