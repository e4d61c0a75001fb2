import { join } from 'node:path';
import type { EncryptionMethod } from '../crypto/method.js';
import { isEncryptionMethod } from '../crypto/method.js';
import { errnoCode } from '../errors.js';
import { writeFileAtomic } from '../keys/atomic-file.js';
import { dictMacEquals } from '../keys/dict-mac.js';
import { fileIo } from '../util/file-io.js';
import type { StateChange } from './lifecycle-status.js';

/** In the data dir's `encryption-meta/`, beside the dictionaries it describes the progress of. */
export const LIFECYCLE_STATE_NAME = 'lifecycle.json';
const MAC_LABEL = 'lifecycle state';
const HISTORY_KEPT = 20;

/** What a change is doing, SQL Server's states 2, 4, 5 and 6. */
export type TransitionKind = 'encrypt' | 'key-change' | 'decrypt' | 'protection';

export interface Transition {
  kind: TransitionKind;
  /** Method (or master key description, for protection) before and after. */
  from: string;
  to: string;
  /** ISO 8601. */
  startedAt: string;
}

/**
 * The lifecycle's durable state: what a SIGKILL must not lose. The method itself is not
 * taken from here (the configuration is the single source of truth; this records the method
 * last seen, so a change made while stopped is noticed). A record that fails its MAC is
 * ignored with a warning and rebuilt from the files themselves: nothing in it can make the
 * database decrypt or skip a file, since what is off the current key is read from the
 * authenticated file dictionary, never from here.
 */
export interface LifecycleRecord {
  version: 1;
  method: EncryptionMethod;
  transition: Transition | null;
  scanState: number;
  scanError: string | null;
  scanModifyDate: string | null;
  bytesDone: number;
  bytesTotal: number;
  percent: number;
  /** Current data key id when the database first had one, and when (SQL Server's create_date). */
  firstKeyDate: string | null;
  history: StateChange[];
  lastRetiredKeyIds: number[];
}

export function emptyRecord(method: EncryptionMethod): LifecycleRecord {
  return { version: 1, method, transition: null, scanState: 0, scanError: null, scanModifyDate: null, bytesDone: 0, bytesTotal: 0, percent: 0, firstKeyDate: null, history: [], lastRetiredKeyIds: [] };
}

export function pushHistory(record: LifecycleRecord, change: StateChange): void {
  record.history.push(change);
  if (record.history.length > HISTORY_KEPT) record.history.splice(0, record.history.length - HISTORY_KEPT);
}

type Mac = (label: string, ...parts: Uint8Array[]) => Buffer | undefined;

/** Reads the record; `problem` says why none was usable (missing is not a problem). */
export async function readLifecycleRecord(metaDir: string, mac: Mac): Promise<{ record?: LifecycleRecord; problem?: string }> {
  let raw: Buffer;
  try {
    raw = await fileIo.readFile(join(metaDir, LIFECYCLE_STATE_NAME));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return {};
    return { problem: `cannot read it (${String(err)})` };
  }
  let outer: unknown;
  try {
    outer = JSON.parse(raw.toString('utf8'));
  } catch {
    return { problem: 'it is not valid JSON' };
  }
  if (!isObject(outer) || typeof outer.record !== 'string') return { problem: 'it has no record' };
  const expected = mac(MAC_LABEL, Buffer.from(outer.record, 'utf8'));
  if (expected) {
    const given = typeof outer.mac === 'string' && /^[0-9a-f]{64}$/.test(outer.mac) ? Buffer.from(outer.mac, 'hex') : Buffer.alloc(0);
    if (!dictMacEquals(expected, given)) return { problem: 'its MAC does not verify (changed without the master key, or damaged)' };
  }
  let record: unknown;
  try {
    record = JSON.parse(outer.record);
  } catch {
    return { problem: 'its record is not valid JSON' };
  }
  const checked = checkRecord(record);
  return checked ? { record: checked } : { problem: 'its record has fields out of range' };
}

export async function writeLifecycleRecord(metaDir: string, record: LifecycleRecord, mac: Mac): Promise<void> {
  const body = JSON.stringify(record);
  const m = mac(MAC_LABEL, Buffer.from(body, 'utf8'));
  const text = `${JSON.stringify({ record: body, ...(m ? { mac: m.toString('hex') } : {}) })}\n`;
  await writeFileAtomic(join(metaDir, LIFECYCLE_STATE_NAME), Buffer.from(text, 'utf8'));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const KINDS: readonly string[] = ['encrypt', 'key-change', 'decrypt', 'protection'];

function checkRecord(v: unknown): LifecycleRecord | undefined {
  if (!isObject(v) || v.version !== 1 || !isEncryptionMethod(v.method)) return undefined;
  const num = (x: unknown, max = Number.MAX_SAFE_INTEGER): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0 && x <= max;
  const strOrNull = (x: unknown): x is string | null => x === null || typeof x === 'string';
  if (!num(v.scanState, 4) || !Number.isInteger(v.scanState) || !num(v.bytesDone) || !num(v.bytesTotal) || !num(v.percent, 100)) return undefined;
  if (!strOrNull(v.scanError) || !strOrNull(v.scanModifyDate) || !strOrNull(v.firstKeyDate)) return undefined;
  let transition: Transition | null = null;
  if (v.transition !== null) {
    const t = v.transition;
    if (!isObject(t) || typeof t.kind !== 'string' || !KINDS.includes(t.kind) || typeof t.from !== 'string' || typeof t.to !== 'string' || typeof t.startedAt !== 'string') return undefined;
    transition = { kind: t.kind as TransitionKind, from: t.from, to: t.to, startedAt: t.startedAt };
  }
  if (!Array.isArray(v.history) || !Array.isArray(v.lastRetiredKeyIds)) return undefined;
  const history: StateChange[] = [];
  for (const h of v.history) {
    if (!isObject(h) || typeof h.at !== 'string' || !num(h.from, 6) || !num(h.to, 6) || typeof h.reason !== 'string') return undefined;
    history.push({ at: h.at, from: h.from, to: h.to, reason: h.reason });
  }
  if (!v.lastRetiredKeyIds.every((x) => num(x))) return undefined;
  return {
    version: 1,
    method: v.method,
    transition,
    scanState: v.scanState,
    scanError: v.scanError,
    scanModifyDate: v.scanModifyDate,
    bytesDone: v.bytesDone,
    bytesTotal: v.bytesTotal,
    percent: v.percent,
    firstKeyDate: v.firstKeyDate,
    history,
    lastRetiredKeyIds: v.lastRetiredKeyIds as number[],
  };
}
