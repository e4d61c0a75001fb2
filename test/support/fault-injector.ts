import { SYNC_OPS, WRITE_OPS, setFileFaults, type FileFault, type FileOp } from '../../src/util/file-io.js';

/**
 * The faults the fault-injection tests run, as a disk shows them:
 * - ENOSPC: the disk fills up at the n-th call that needs space; that write stores half its
 *   bytes, and every later call needing space fails, until the fault is cleared.
 * - EIO: the n-th call of any kind fails once.
 * - short: the n-th write stores half its bytes and says so; the caller must go on.
 * - fsync: the n-th fsync/fdatasync fails once with EIO.
 */
export type FaultKind = 'ENOSPC' | 'EIO' | 'short' | 'fsync';
export const FAULT_KINDS: readonly FaultKind[] = ['ENOSPC', 'EIO', 'short', 'fsync'];

/** Calls that need free space (a rename or link may need a new directory block). */
const SPACE_OPS: ReadonlySet<FileOp> = new Set<FileOp>([...WRITE_OPS, 'mkdir', 'link', 'rename']);

/** Which calls each kind counts when it looks for its n-th one. */
function counts(kind: FaultKind, op: FileOp): boolean {
  switch (kind) {
    case 'ENOSPC':
      return SPACE_OPS.has(op);
    case 'EIO':
      return true;
    case 'short':
      return WRITE_OPS.has(op);
    case 'fsync':
      return SYNC_OPS.has(op);
  }
}

export interface OpCounts {
  all: number;
  byKind: Record<FaultKind, number>;
  /** For each kind, the index it counts of the first call of each operation: so every operation gets hit. */
  firsts: Record<FaultKind, number[]>;
}

/** Counts the calls `fn` makes, per fault kind, with no fault injected. */
export async function countOps(fn: () => Promise<void>): Promise<OpCounts> {
  const c: OpCounts = { all: 0, byKind: { ENOSPC: 0, EIO: 0, short: 0, fsync: 0 }, firsts: { ENOSPC: [], EIO: [], short: [], fsync: [] } };
  const seen = new Set<string>();
  setFileFaults((op) => {
    c.all++;
    for (const k of FAULT_KINDS) {
      if (!counts(k, op)) continue;
      c.byKind[k]++;
      if (!seen.has(`${k} ${op}`)) {
        seen.add(`${k} ${op}`);
        c.firsts[k].push(c.byKind[k]);
      }
    }
    return undefined;
  });
  try {
    await fn();
  } finally {
    setFileFaults(undefined);
  }
  return c;
}

/** Installs fault `kind` at the `at`-th (1-based) call it counts; returns what was hit. */
export function injectAt(kind: FaultKind, at: number): { hit: () => string | undefined } {
  let seen = 0;
  let hit: string | undefined;
  let diskFull = false;
  setFileFaults((op, path): FileFault => {
    if (diskFull) return SPACE_OPS.has(op) ? 'ENOSPC' : undefined;
    if (!counts(kind, op) || ++seen !== at) return undefined;
    hit = `${op} ${path}`;
    switch (kind) {
      case 'ENOSPC':
        diskFull = true;
        return WRITE_OPS.has(op) ? 'short' : 'ENOSPC';
      case 'EIO':
      case 'fsync':
        return 'EIO';
      case 'short':
        return 'short';
    }
  });
  return { hit: () => hit };
}

export function clearFaults(): void {
  setFileFaults(undefined);
}

/**
 * About `runs` call indexes for `kind`, spread over all its calls (the first and the last
 * included), plus the first call of each operation, so every kind of call gets a fault.
 */
export function targets(c: OpCounts, kind: FaultKind, runs: number): number[] {
  const total = c.byKind[kind];
  if (total <= 0) return [];
  const step = Math.max(1, Math.ceil(total / runs));
  const out = new Set<number>(c.firsts[kind]);
  for (let n = 1; n <= total; n += step) out.add(n);
  out.add(total);
  return [...out].sort((a, b) => a - b);
}
