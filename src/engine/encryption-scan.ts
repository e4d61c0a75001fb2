import type { EngineTuning } from './options.js';
import type { Version } from './version.js';
import type { FileMeta } from './version-edit.js';
import { planFor, type CompactionPlan } from './compaction/picker.js';

/**
 * The engine's half of SQL Server's encryption scan: which compaction moves the next table
 * that is not under the current method and data key to it. The lifecycle above the engine
 * (src/lifecycle/) decides when to scan, how fast, and what that means for the database's
 * state; here is only "which files, merged how".
 *
 * The scan rewrites tables where they lie, by block copy (table-rewrite.ts): a table deeper
 * than level 0 becomes one new table at the same level with the same entries, so the tree
 * keeps its shape and each byte is written once. Level 0 ranks its overlapping tables by file
 * number (newest first), so a table copied there alone would rank above newer ones: the whole
 * level is copied at once, under numbers taken in one go in the same order — which only the
 * engine can promise (no flush may be in flight, and none on another thread). When it cannot
 * (`level0InPlace` gives no numbers), level 0 is merged into level 1 as every level-0
 * compaction is.
 */
/** At most this many tables, and about this many bytes, per scan step below level 0. */
const STEP_TABLES = 4;
const STEP_BYTES = 64 * 1024 * 1024;

export function pickEncryptionCompaction(
  version: Version,
  tuning: EngineTuning,
  offKey: (table: FileMeta) => boolean,
  level0InPlace?: () => number[] | undefined,
): CompactionPlan | undefined {
  const level0 = version.levels[0]!;
  if (level0.some(offKey)) {
    // Every level-0 table, oldest first, each copied under a number taken now in the same
    // order: the level keeps its ranking, and a flush that starts later ranks above them all.
    const oldestFirst = [...level0].sort((a, b) => a.number - b.number);
    const numbers = level0InPlace?.();
    if (numbers) return { level: 0, outputLevel: 0, inputs: [oldestFirst, []], reason: 'encryption', outputNumbers: numbers.slice(0, oldestFirst.length) };
    return planFor(version, 0, Math.min(1, tuning.numLevels - 1), [...level0], 'encryption');
  }
  for (let level = 1; level < version.levels.length; level++) {
    // A few tables of one level per step (each copied to its own output): fewer manifest
    // edits, and two copies can overlap one another's I/O.
    const tables: FileMeta[] = [];
    let bytes = 0;
    for (const f of version.levels[level]!) {
      if (!offKey(f)) continue;
      if (tables.length > 0 && (tables.length >= STEP_TABLES || bytes + f.size > STEP_BYTES)) break;
      tables.push(f);
      bytes += f.size;
    }
    if (tables.length > 0) return planFor(version, level, level, tables, 'encryption');
  }
  return undefined;
}

/** Tables not under the current method and data key, and their bytes: what the scan has left. */
export function offKeyTables(version: Version, offKey: (table: FileMeta) => boolean): { count: number; bytes: number } {
  let count = 0;
  let bytes = 0;
  for (const level of version.levels) {
    for (const f of level) {
      if (!offKey(f)) continue;
      count++;
      bytes += f.size;
    }
  }
  return { count, bytes };
}
