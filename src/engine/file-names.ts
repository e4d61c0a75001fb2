/**
 * Names of the engine's files in the data dir, LevelDB style. Every one is created, read and
 * removed through the encrypted env, so every one (CURRENT included) is encrypted.
 */

export const CURRENT = 'CURRENT';
export const CURRENT_TMP = 'CURRENT.tmp';

export type EngineFileKind = 'wal' | 'table' | 'manifest';

function pad(n: number): string {
  return String(n).padStart(6, '0');
}

export function walName(n: number): string {
  return `${pad(n)}.log`;
}

export function tableName(n: number): string {
  return `${pad(n)}.sst`;
}

export function manifestName(n: number): string {
  return `MANIFEST-${pad(n)}`;
}

/** The kind and number of an engine file name, or undefined for anything else. */
export function parseFileName(name: string): { kind: EngineFileKind; number: number } | undefined {
  let m = /^(\d+)\.log$/.exec(name);
  if (m) return { kind: 'wal', number: Number(m[1]) };
  m = /^(\d+)\.sst$/.exec(name);
  if (m) return { kind: 'table', number: Number(m[1]) };
  m = /^MANIFEST-(\d+)$/.exec(name);
  if (m) return { kind: 'manifest', number: Number(m[1]) };
  return undefined;
}
