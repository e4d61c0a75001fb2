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
 * The scan rewrites one table at a time where it lies — a table deeper than level 0 becomes
 * new tables at the same level with the same keys, so the tree keeps its shape and each byte
 * is written once — except at level 0, whose tables overlap each other: there a rewrite of
 * one table alone could put an older value above a newer one, so the whole level is merged
 * into level 1, as every level-0 compaction is.
 */
export function pickEncryptionCompaction(version: Version, tuning: EngineTuning, offKey: (table: FileMeta) => boolean): CompactionPlan | undefined {
  const level0 = version.levels[0]!;
  if (level0.some(offKey)) return planFor(version, 0, Math.min(1, tuning.numLevels - 1), [...level0], 'encryption');
  for (let level = 1; level < version.levels.length; level++) {
    const table = version.levels[level]!.find(offKey);
    if (table) return planFor(version, level, level, [table], 'encryption');
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
