import { readFile } from 'node:fs/promises';
import type { Logger } from '../log/logger.js';

/*
 * A core dump of the server holds everything in its memory: the master key (file backend),
 * every data key, and plaintext keys and values in the memtables, block cache and row
 * cache. Node cannot call setrlimit(RLIMIT_CORE) or prctl(PR_SET_DUMPABLE), so the server
 * cannot turn dumps off itself; it reads its limits (Linux) and says how to.
 */

export type LimitValue = number | 'unlimited';

export interface CoreFileLimit {
  soft: LimitValue;
  hard: LimitValue;
}

const LIMITS_FILE = '/proc/self/limits';
const CORE_LINE = 'Max core file size';

/** The "Max core file size" line of /proc/PID/limits, or undefined when absent or unreadable. */
export function parseCoreFileLimit(limits: string): CoreFileLimit | undefined {
  for (const line of limits.split('\n')) {
    if (!line.startsWith(CORE_LINE)) continue;
    const [soft, hard] = line.slice(CORE_LINE.length).trim().split(/\s+/);
    const value = (v: string | undefined): LimitValue | undefined =>
      v === 'unlimited' ? 'unlimited' : v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
    const s = value(soft);
    const h = value(hard);
    return s === undefined || h === undefined ? undefined : { soft: s, hard: h };
  }
  return undefined;
}

export const CORE_DUMP_FIX =
  'Disable core dumps for the server: `ulimit -c 0` in the shell or script that starts it, `LimitCORE=0` in its systemd unit, ' +
  '`--ulimit core=0` for docker run (`ulimits: core: 0` in compose); see docs/operations.md, "Memory, swap and core dumps".';

/**
 * Logs one warning when this process may write a core dump (soft RLIMIT_CORE not 0). Returns
 * the limit read, or undefined where the platform has no /proc/self/limits.
 */
export async function warnIfCoreDumpsEnabled(
  logger: Logger,
  readLimits: () => Promise<string> = () => readFile(LIMITS_FILE, 'utf8'),
): Promise<CoreFileLimit | undefined> {
  let text: string;
  try {
    text = await readLimits();
  } catch {
    logger.debug(`${LIMITS_FILE} is not readable here: core dump settings not checked. ${CORE_DUMP_FIX}`);
    return undefined;
  }
  const limit = parseCoreFileLimit(text);
  if (limit === undefined) {
    logger.debug(`no "${CORE_LINE}" line in ${LIMITS_FILE}: core dump settings not checked`);
    return undefined;
  }
  if (limit.soft !== 0) {
    logger.warn(
      { coreFileSizeSoftLimit: String(limit.soft), coreFileSizeHardLimit: String(limit.hard) },
      `core dumps are enabled for this process (core file size soft limit ${limit.soft}): a crash would write the master key, ` +
        `the data keys and cached plaintext to disk, unencrypted. ${CORE_DUMP_FIX}`,
    );
  }
  return limit;
}
