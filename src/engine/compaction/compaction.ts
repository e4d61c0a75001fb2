import type { FileMeta, VersionEdit } from '../version-edit.js';
import { emptyEdit } from '../version-edit.js';
import { Version } from '../version.js';
import type { CompactionPlan } from './picker.js';

/**
 * What a compaction runner needs, as plain metadata: the input tables, the levels below the
 * output (for the bottommost rule) and the snapshot boundary. Nothing in it refers to the
 * engine, so it can be handed to another thread as it is.
 */
export interface CompactionJob {
  level: number;
  outputLevel: number;
  /** `inputs[0]` from `level` (at level 0 they may overlap each other), `inputs[1]` from `outputLevel`. */
  inputs: [readonly FileMeta[], readonly FileMeta[]];
  /** The files of every level below `outputLevel`, deepest last. */
  levelsBelow: ReadonlyArray<readonly FileMeta[]>;
  /** The oldest sequence a snapshot may read at: versions hidden from it can go. */
  smallestSnapshot: number;
  /**
   * The encryption scan's rewrite of tables where they lie (same level, same entries): their
   * blocks are copied under the new key without decoding entries (table-rewrite.ts), one
   * output per input, in input order.
   */
  rewriteInPlace: boolean;
}

/**
 * One compaction chosen by the picker, and the rules that belong to it: whether it is a
 * trivial move, what it needs to run, the job its runner gets, and the version edit that
 * installs its result. Running it (compaction/runner.ts) and installing it are apart.
 */
export class Compaction {
  readonly plan: CompactionPlan;
  readonly #needsRewrite: (tableNumber: number) => boolean;

  /** `needsRewrite`: whether a table is under an old data key or method (then it is never moved as it is). */
  constructor(plan: CompactionPlan, needsRewrite: (tableNumber: number) => boolean) {
    this.plan = plan;
    this.#needsRewrite = needsRewrite;
  }

  get level(): number {
    return this.plan.level;
  }

  get outputLevel(): number {
    return this.plan.outputLevel;
  }

  /** The input files, both levels. */
  get inputFiles(): FileMeta[] {
    return [...this.plan.inputs[0], ...this.plan.inputs[1]];
  }

  /** Sum of the inputs' sizes: also the most the output can take (it only drops entries). */
  get inputBytes(): number {
    return this.inputFiles.reduce((n, f) => n + f.size, 0);
  }

  /**
   * One file with nothing to merge with below moves down without being rewritten — unless it
   * is under an old key, as compaction is also what moves data to the current key. Asked
   * anew each time: a rotation may happen while the compaction waits for room.
   */
  isTrivialMove(): boolean {
    const [first, second] = this.plan.inputs;
    return this.plan.reason === 'size' && first.length === 1 && second.length === 0 && this.plan.level > 0 && !this.#needsRewrite(first[0]!.number);
  }

  /** Where the next size compaction of this level starts (round robin over the key space). */
  get pointer(): Buffer {
    const first = this.plan.inputs[0];
    return first[first.length - 1]!.largest;
  }

  /** The runner's input, against the version current when it starts. */
  job(version: Version, smallestSnapshot: number): CompactionJob {
    return {
      level: this.plan.level,
      outputLevel: this.plan.outputLevel,
      inputs: this.plan.inputs,
      levelsBelow: version.levels.slice(this.plan.outputLevel + 1),
      smallestSnapshot,
      rewriteInPlace: this.plan.reason === 'encryption' && this.plan.level === this.plan.outputLevel && this.plan.inputs[1].length === 0,
    };
  }

  /** The edit that installs `outputs` (for a trivial move: the moved file) in place of the inputs. */
  edit(outputs: readonly FileMeta[]): VersionEdit {
    const [first, second] = this.plan.inputs;
    const edit = emptyEdit();
    for (const f of first) edit.deletedFiles.push({ level: this.plan.level, number: f.number });
    for (const f of second) edit.deletedFiles.push({ level: this.plan.outputLevel, number: f.number });
    for (const file of outputs) edit.newFiles.push({ level: this.plan.outputLevel, file });
    return edit;
  }
}

/** Whether no level below the output may hold a user key: a tombstone there has nothing left to hide. */
export function bottommostRule(levelsBelow: ReadonlyArray<readonly FileMeta[]>): (userKey: Buffer) => boolean {
  // Levels below level 0 are sorted and disjoint: Version's binary search applies to each.
  const below = new Version(levelsBelow);
  return (userKey) => {
    for (let l = 0; l < levelsBelow.length; l++) {
      if (below.fileFor(l, userKey)) return false;
    }
    return true;
  };
}
