import { formatDuration } from '../config/duration.js';
import type { EncryptionStatus } from '../env/encryption-status.js';

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
  return lines;
}
