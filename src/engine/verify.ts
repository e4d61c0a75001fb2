import { join } from 'node:path';
import type { EncryptionMethod } from '../crypto/method.js';
import type { EncryptedEnv } from '../env/encrypted-env.js';
import { META_DIR } from '../env/paths.js';
import { TdekvError } from '../errors.js';
import type { FileInfo } from '../keys/file-dictionary-format.js';
import { BlockCache } from './block-cache.js';
import { readCurrentFile } from './current-file.js';
import { CURRENT, parseFileName, tableName } from './file-names.js';
import { readLog } from './log-reader.js';
import { DEFAULT_ENGINE_TUNING } from './options.js';
import { TableReader } from './table-reader.js';
import type { FileMeta } from './version-edit.js';
import { replayManifest } from './version-set.js';
import { decodeBatch } from './write-batch.js';
import { fileIo } from '../util/file-io.js';

export type VerifiedKind = 'table' | 'wal' | 'manifest' | 'current' | 'other';

export interface FileVerdict {
  path: string;
  kind: VerifiedKind;
  /** Undefined when the file dictionary does not know the file. */
  method?: EncryptionMethod;
  keyId?: number;
  /**
   * Whether the file's blocks and records carry tags (see FileInfo.authenticated); false for
   * legacy (format 1) files, checked with CRCs only, and for plaintext files. Undefined when
   * the file dictionary does not know the file.
   */
  authenticated?: boolean;
  /** Bytes on disk; undefined when the file is missing. */
  size?: number;
  ok: boolean;
  /** Why the file is damaged, or (when ok) what was checked. */
  detail: string;
}

export interface VerifyReport {
  dataDir: string;
  files: FileVerdict[];
  /** Problems that belong to no single file (e.g. table files a manifest names but that are missing). */
  problems: string[];
  byMethod: Partial<Record<EncryptionMethod, number>>;
  byKeyId: Record<number, number>;
  damaged: number;
  /**
   * About the dictionaries: what startup accepts but someone should know (a torn last append,
   * a damaged copy of key.dict, legacy unauthenticated state, plaintext entries). Damage in
   * the dictionaries never gets here: the read-only open runs the same check as startup and
   * refuses, so verify and startup cannot disagree.
   */
  notes: string[];
  keyDictGeneration: number;
  /**
   * Encrypted database files (tables, logs, manifests, CURRENT) on disk without tags, by
   * kind: an attacker could alter them undetected until they are rewritten.
   */
  unauthenticated: { total: number; byKind: Partial<Record<VerifiedKind, number>> };
}

export interface VerifyOptions {
  /** The engine's `num-levels`: a manifest placing a table deeper is refused, as open refuses it. */
  numLevels?: number;
}

/**
 * Reads every file of a data dir through a read-only env and checks it end to end: every
 * table block against its checksum (and key order, index, filter and properties), every
 * log record of write-ahead logs and manifests (torn tails are reported, not failed: they
 * are what a crash leaves and what the next open drops), CURRENT against the manifests on
 * disk, the live tables of the current manifest against the disk, and the file dictionary
 * against the disk in both directions. Nothing is written.
 */
export async function verifyDataDir(env: EncryptedEnv, options: VerifyOptions = {}): Promise<VerifyReport> {
  const numLevels = options.numLevels ?? DEFAULT_ENGINE_TUNING.numLevels;
  const onDisk = await filesOnDisk(env.dataDir);
  const tracked = new Map(env.files());
  const paths = [...new Set([...onDisk.keys(), ...tracked.keys()])].sort();
  const state = env.dictionaryState();
  const report: VerifyReport = { dataDir: env.dataDir, files: [], problems: [], byMethod: {}, byKeyId: {}, damaged: 0, notes: dictionaryNotes(env), keyDictGeneration: state.keyDictGeneration, unauthenticated: { total: 0, byKind: {} } };
  const manifests = new Map<string, ManifestState>();
  const wals: FileVerdict[] = [];

  for (const path of paths) {
    const info = tracked.get(path);
    const size = onDisk.get(path);
    const verdict: FileVerdict = { path, kind: kindOf(path), ...(info ? { method: info.method, keyId: info.keyId, authenticated: info.authenticated } : {}), ...(size !== undefined ? { size } : {}), ok: true, detail: '' };
    report.files.push(verdict);
    if (info && size !== undefined) {
      report.byMethod[info.method] = (report.byMethod[info.method] ?? 0) + 1;
      report.byKeyId[info.keyId] = (report.byKeyId[info.keyId] ?? 0) + 1;
      if (info.method !== 'plaintext' && !info.authenticated && verdict.kind !== 'other') {
        report.unauthenticated.total++;
        report.unauthenticated.byKind[verdict.kind] = (report.unauthenticated.byKind[verdict.kind] ?? 0) + 1;
      }
    }
    if (size === undefined) {
      fail(verdict, 'in the file dictionary but not on disk (removed behind tdekv\'s back, or restored from a different backup than encryption-meta/)');
      continue;
    }
    if (!info) {
      fail(verdict, 'not in the file dictionary: its encryption is unknown and tdekv will never read it. Remove it if it is not yours; if it is a tdekv file, restore encryption-meta/ from the same backup as the data files');
      continue;
    }
    try {
      verdict.detail = checkFile(env, verdict, info, manifests, numLevels);
      if (verdict.kind === 'wal') wals.push(verdict);
    } catch (err) {
      fail(verdict, err instanceof Error ? err.message : String(err));
    }
  }

  checkCurrent(report, onDisk, manifests, wals);
  report.damaged = report.files.filter((f) => !f.ok).length + report.problems.length;
  return report;
}

function dictionaryNotes(env: EncryptedEnv): string[] {
  const s = env.dictionaryState();
  const notes: string[] = [];
  if (s.tornTail) notes.push(`${s.tornTail.file} ends with an incomplete append at offset ${s.tornTail.offset} (${s.tornTail.droppedBytes} bytes: ${s.tornTail.reason}); a crash during an append, dropped at the next writable open`);
  for (const p of s.keyDictCopyProblems) notes.push(`key dictionary copy: ${p}; the good copy is used and the other is rewritten at the next writable open`);
  if (s.legacy) notes.push('the dictionaries are in the legacy, unauthenticated format (version 1): the next writable open migrates them');
  if (s.plaintextEntries.length > 0 && env.method !== 'plaintext') {
    notes.push(`${s.plaintextEntries.length} plaintext file(s) while encryption is on (${s.plaintextEntries.slice(0, 3).join(', ')}${s.plaintextEntries.length > 3 ? ', …' : ''}): adopted or written under plaintext; rewritten encrypted by compaction or \`tdekv data-key reencrypt\``);
  }
  notes.push(`key dictionary generation ${s.keyDictGeneration} (record it outside the data dir to detect a rollback of the whole data dir)`);
  return notes;
}

/** Per-file check by kind; returns what was verified, throws what is wrong. */
function checkFile(env: EncryptedEnv, verdict: FileVerdict, info: FileInfo, manifests: Map<string, ManifestState>, numLevels: number): string {
  const parsed = parseFileName(verdict.path);
  switch (verdict.kind) {
    case 'table': {
      const reader = TableReader.open(env.openReadSync(verdict.path), parsed!.number, new BlockCache(0));
      try {
        const { blocks, entries } = reader.verifyAll();
        return `${blocks} blocks, ${entries} entries`;
      } finally {
        reader.close();
      }
    }
    case 'wal': {
      const { records, tornTailAt, tornTailZeros } = readLogFile(env, verdict.path);
      let ops = 0;
      for (const r of records) {
        try {
          ops += decodeBatch(r.payload, () => undefined).count;
        } catch (err) {
          throw new TdekvError('DATA_CORRUPTED', `${verdict.path}: the record at offset ${r.offset} passes its checksum but is not a valid write batch (${(err as Error).message})`);
        }
      }
      return `${records.length} records, ${ops} writes${tornTail(tornTailAt, verdict.size!, tornTailZeros)}`;
    }
    case 'manifest': {
      const { records, tornTailAt, tornTailZeros } = readLogFile(env, verdict.path);
      manifests.set(verdict.path, replayedState(verdict.path, records, numLevels));
      return `${records.length} edits${tornTail(tornTailAt, verdict.size!, tornTailZeros)}`;
    }
    case 'current': {
      return `names ${readCurrentFile(env, verdict.path)}`;
    }
    default: {
      // Not an engine file: check that it can be opened with its dictionary entry.
      env.openReadSync(verdict.path).close();
      return info.method === 'plaintext' ? 'readable' : 'readable (content not checked: not an engine file)';
    }
  }
}

interface ManifestState {
  /** Live tables after replaying every edit. */
  tables: Map<number, FileMeta>;
  logNumber: number;
}

/** Every manifest is replayed as open replays the current one (version-set.ts), so verify refuses what open would. */
function replayedState(path: string, records: ReturnType<typeof readLog>['records'], numLevels: number): ManifestState {
  const { levels, logNumber } = replayManifest(records, path, numLevels);
  return { tables: new Map(levels.flat().map((f) => [f.number, f])), logNumber };
}

/** CURRENT names an existing, intact manifest, and that manifest's live tables are all on disk at their recorded size. */
function checkCurrent(report: VerifyReport, onDisk: Map<string, number>, manifests: Map<string, ManifestState>, wals: FileVerdict[]): void {
  const current = report.files.find((f) => f.path === CURRENT);
  const engineFiles = report.files.filter((f) => f.kind === 'table' || f.kind === 'wal');
  if (!current || current.size === undefined) {
    if (engineFiles.length > 0) report.problems.push(`${CURRENT} is missing, but the data dir holds database files (${engineFiles.slice(0, 3).map((f) => f.path).join(', ')}): the database cannot open`);
    return;
  }
  if (!current.ok) return;
  const name = current.detail.replace(/^names /, '');
  const manifest = report.files.find((f) => f.path === name);
  if (!manifest || manifest.size === undefined) {
    fail(current, `names ${name}, which does not exist`);
    return;
  }
  if (!manifest.ok) {
    fail(current, `names ${name}, which is damaged`);
    return;
  }
  const state = manifests.get(name);
  if (!state) return;
  let live = 0;
  for (const [number, meta] of state.tables) {
    const table = tableName(number);
    const size = onDisk.get(table);
    if (size === undefined) report.problems.push(`${name} lists table ${table}, which is missing: its data is lost`);
    else if (size !== meta.size) report.problems.push(`${name} lists table ${table} with ${meta.size} bytes, but the file has ${size}`);
    else live++;
  }
  manifest.detail += `, current: ${live} live table(s)`;
  for (const wal of wals) {
    const n = parseFileName(wal.path)!.number;
    if (n < state.logNumber) wal.detail += ' (obsolete: already in tables; removed at the next open)';
  }
  for (const f of report.files) {
    if (f.kind !== 'table' || !f.ok || f.size === undefined) continue;
    if (!state.tables.has(parseFileName(f.path)!.number)) f.detail += ' (not in the current manifest: left over, removed at the next open)';
  }
}

function readLogFile(env: EncryptedEnv, path: string): ReturnType<typeof readLog> {
  const file = env.openReadSync(path);
  try {
    return readLog(file);
  } finally {
    file.close();
  }
}

function tornTail(at: number | undefined, size: number, zeros = false): string {
  if (at === undefined) return '';
  // A WAL that is open, or was when the process stopped, ends in the space reserved ahead of its appends.
  if (zeros) return `; ends at offset ${at}, then ${size - at} bytes of zeros (space reserved ahead of appends, or left by a crash)`;
  return `; ends with a torn record at offset ${at} (${size - at} bytes, a crash during an append: the next open drops it)`;
}

function kindOf(path: string): VerifiedKind {
  if (path === CURRENT) return 'current';
  const p = parseFileName(path);
  return p ? p.kind : 'other';
}

function fail(v: FileVerdict, why: string): void {
  v.ok = false;
  v.detail = why;
}

/** Regular files under the data dir, outside encryption-meta/: relative path → size. */
async function filesOnDisk(dataDir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  async function walk(dir: string): Promise<void> {
    for (const d of await fileIo.readdir(dir === '' ? dataDir : join(dataDir, dir), { withFileTypes: true })) {
      const rel = dir === '' ? d.name : `${dir}/${d.name}`;
      if (rel === META_DIR) continue;
      if (d.isDirectory()) await walk(rel);
      else if (d.isFile()) out.set(rel, (await fileIo.stat(join(dataDir, rel))).size);
    }
  }
  await walk('');
  return out;
}
