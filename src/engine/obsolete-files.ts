import type { Logger } from '../log/logger.js';
import { parseFileName } from './file-names.js';
import type { VersionSet } from './version-set.js';
import type { WalManager } from './wal.js';

export interface ObsoleteFilesContext {
  /** The data dir's file names, and removal of one. */
  list(dir: string): Promise<string[]>;
  remove(name: string): Promise<void>;
  versions: VersionSet;
  wal: WalManager;
  /** Tables being written (flush and compaction outputs not installed yet). */
  pendingOutputs: ReadonlySet<number>;
  /** Drops a table from the table cache before it is removed. */
  evictTable(tableNumber: number): void;
  logger: Logger;
}

/** Removes WALs, manifests and tables no live version needs, and leftovers of interrupted writes. */
export async function deleteObsoleteFiles(ctx: ObsoleteFilesContext): Promise<void> {
  const names = await ctx.list('');
  // Live set taken after the listing: a table listed was registered as a pending output before it was created.
  const live = ctx.versions.liveTableNumbers();
  for (const n of ctx.pendingOutputs) live.add(n);
  for (const name of names) {
    const p = parseFileName(name);
    let obsolete = false;
    if (p?.kind === 'wal') obsolete = ctx.wal.isObsolete(p.number, ctx.versions.logNumber);
    else if (p?.kind === 'table') obsolete = !live.has(p.number);
    // A newer manifest may be being written by a concurrent edit, before CURRENT names it.
    else if (p?.kind === 'manifest') obsolete = p.number < ctx.versions.manifestNumber;
    if (!obsolete) continue;
    if (p?.kind === 'table') ctx.evictTable(p.number);
    await ctx.remove(name).catch((err: unknown) => ctx.logger.warn({ err, file: name }, 'could not remove an obsolete file; it will be retried'));
  }
}
