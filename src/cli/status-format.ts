import { formatDuration } from '../config/duration.js';
import type { EncryptionStatus, IntegrityStatus } from '../env/encryption-status.js';

/** The status as aligned lines for a terminal. */
export function formatStatus(s: EncryptionStatus): string[] {
  const cur = s.currentDataKey;
  const lines = [
    `data dir        ${s.dataDir}`,
    `method          ${s.method}`,
    `master key      ${s.masterKey.description}`,
    `data key        ${cur ? `id ${cur.id}, age ${formatDuration(cur.ageMs)}${cur.exposed ? ', EXPOSED' : ''}` : 'none (plaintext)'}`,
    `data keys       ${s.dataKeys.length}`,
    `files           ${s.files.total} (${Object.entries(s.files.byMethod).map(([m, n]) => `${m}: ${n}`).join(', ') || 'none yet'})`,
  ];
  for (const k of s.dataKeys) {
    lines.push(`  key ${k.id}\t${k.method}\tcreated ${k.createdAt}\t${k.files} file(s)${k.exposed ? '\texposed' : ''}${cur?.id === k.id ? '\tcurrent' : ''}`);
  }
  lines.push(...formatIntegrity(s.integrity));
  return lines;
}

/** The tamper-evidence lines; each problem says what fixes it. */
export function formatIntegrity(i: IntegrityStatus): string[] {
  const u = i.unauthenticatedFiles;
  const perMethod = Object.entries(u.byMethod).map(([m, n]) => `${m}: ${n}`).join(', ');
  const lines = [
    `key.dict gen    ${i.keyDictGeneration} (record it outside the data dir: a lower one later is a rollback)`,
    `file.dict gen   ${i.fileDictGeneration}`,
    `dictionaries    ${i.legacyDictionaries ? 'LEGACY (version 1, unauthenticated): migrated at the next writable open' : 'authenticated'}`,
    `unauthenticated ${u.total === 0 ? '0' : `${u.total} (${perMethod}): encrypted without tags (CRC only); rewritten as compaction reaches them, or all at once by \`tdekv data-key reencrypt\``}`,
    `plaintext files ${i.plaintextFiles}`,
    `key.dict copy   ${i.keyDictCopyOk ? 'ok' : 'PROBLEM: the good copy is used; the other is rewritten at the next writable open'}`,
  ];
  for (const p of i.keyDictCopyProblems) lines.push(`  ${p}`);
  return lines;
}
