import type { EngineTuning } from '../options.js';
import { compareUserParts, type Version } from '../version.js';
import { TRAILER_BYTES } from '../internal-key.js';
import type { FileMeta } from '../version-edit.js';

/** Files to merge: `inputs[0]` from `level`, `inputs[1]` from `outputLevel`. */
export interface CompactionPlan {
  level: number;
  outputLevel: number;
  inputs: [FileMeta[], FileMeta[]];
  reason: 'size' | 'manual' | 'encryption';
  /**
   * Output table numbers taken when the plan was made, one per input, ascending: a rewrite of
   * level 0 in place keeps its tables' order (level 0 ranks tables by number) only if no table
   * flushed meanwhile can come between them.
   */
  outputNumbers?: number[];
}

export function maxBytesForLevel(tuning: EngineTuning, level: number): number {
  return tuning.maxBytesForLevelBase * tuning.maxBytesForLevelMultiplier ** Math.max(0, level - 1);
}

/** How far over its budget each level is; level 0 counts files, deeper levels bytes. */
export function levelScores(version: Version, tuning: EngineTuning): number[] {
  const scores: number[] = [];
  for (let level = 0; level < tuning.numLevels - 1; level++) {
    scores.push(level === 0 ? version.fileCount(0) / tuning.level0FileNumCompactionTrigger : version.levelBytes(level) / maxBytesForLevel(tuning, level));
  }
  return scores;
}

/**
 * LevelDB's size-triggered choice: the level most over budget; at level 0 every file (they
 * overlap), deeper one file after the last one compacted there (round robin over the key
 * space), plus whatever overlaps it one level down.
 */
export function pickSizeCompaction(version: Version, tuning: EngineTuning, pointers: Map<number, Buffer>): CompactionPlan | undefined {
  const scores = levelScores(version, tuning);
  let level = -1;
  let best = 1;
  scores.forEach((s, l) => {
    if (s >= best) ((best = s), (level = l));
  });
  if (level < 0) return undefined;
  let first: FileMeta[];
  if (level === 0) {
    first = [...version.levels[0]!];
  } else {
    const files = version.levels[level]!;
    const after = pointers.get(level);
    const next = after ? files.find((f) => compareUserParts(f.largest, after) > 0) : undefined;
    first = [next ?? files[0]!];
  }
  return planFor(version, level, level + 1, first, 'size');
}

/** The plan that merges `first` (from `level`) with everything overlapping it in `outputLevel`. */
export function planFor(version: Version, level: number, outputLevel: number, first: FileMeta[], reason: CompactionPlan['reason']): CompactionPlan {
  const [lo, hi] = userRange(first);
  const second = outputLevel === level ? [] : version.overlapping(outputLevel, lo, hi);
  return { level, outputLevel, inputs: [first, second], reason };
}

/** Smallest and largest user keys over a set of files. */
export function userRange(files: readonly FileMeta[]): [Buffer, Buffer] {
  let lo = files[0]!.smallest;
  let hi = files[0]!.largest;
  for (const f of files) {
    if (compareUserParts(f.smallest, lo) < 0) lo = f.smallest;
    if (compareUserParts(f.largest, hi) > 0) hi = f.largest;
  }
  return [lo.subarray(0, lo.length - TRAILER_BYTES), hi.subarray(0, hi.length - TRAILER_BYTES)];
}
