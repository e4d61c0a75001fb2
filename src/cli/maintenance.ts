import { loadConfig } from '../config/config.js';
import { openEnvFromConfig, type ManagedEnv } from '../env/open-env.js';
import type { Logger } from '../log/logger.js';
import type { Output } from './ctl.js';

/**
 * Key maintenance on a stopped database: these take the data dir lock, so they refuse to
 * run while a tdekv process has the data dir open.
 */
async function withWritableEnv<T>(configPath: string, logger: Logger, fn: (m: ManagedEnv) => Promise<T>): Promise<T> {
  const managed = await openEnvFromConfig(await loadConfig(configPath), { logger });
  try {
    return await fn(managed);
  } finally {
    await managed.close();
  }
}

/** A new current data key; existing files keep theirs until compaction rewrites them. */
export async function rotateDataKey(opts: { config: string }, io: Output, logger: Logger): Promise<void> {
  await withWritableEnv(opts.config, logger, async ({ env }) => {
    const before = env.currentDataKey();
    const k = await env.rotateDataKey();
    io.out(`data key rotated: ${before ? `${before.id} -> ` : ''}${k.id} (${k.method}); files written before keep their key until rewritten`);
  });
}

/** Drops data keys that no file uses and that are not current. */
export async function retireDataKeys(opts: { config: string }, io: Output, logger: Logger): Promise<void> {
  await withWritableEnv(opts.config, logger, async ({ env }) => {
    const retired = await env.retireUnusedKeys();
    io.out(retired.length === 0 ? 'no data key to retire: every key is current or used by a file' : `retired data keys: ${retired.join(', ')}`);
  });
}
