import { loadConfig } from '../config/config.js';
import type { TdekvConfig } from '../config/types.js';
import { Engine } from '../engine/engine.js';
import { CURRENT } from '../engine/file-names.js';
import { openEnvFromConfig, type ManagedEnv } from '../env/open-env.js';
import type { Logger } from '../log/logger.js';
import type { Output } from './ctl.js';

/**
 * Key maintenance on a stopped database: these take the data dir lock, so they refuse to
 * run while a tdekv process has the data dir open.
 */
async function withWritableEnv<T>(configPath: string, logger: Logger, fn: (m: ManagedEnv, config: TdekvConfig) => Promise<T>): Promise<T> {
  const config = await loadConfig(configPath);
  // Nothing is written until the first change: an engine that refuses to open changes nothing.
  const managed = await openEnvFromConfig(config, { logger, deferOpenWrites: true });
  try {
    return await fn(managed, config);
  } finally {
    await managed.close();
  }
}

/** A new current data key; existing files keep theirs until compaction rewrites them. */
export async function rotateDataKey(opts: { config: string }, io: Output, logger: Logger): Promise<void> {
  await withWritableEnv(opts.config, logger, async ({ keyAdmin }) => {
    const before = keyAdmin.currentDataKey();
    const k = await keyAdmin.rotateDataKey();
    io.out(`data key rotated: ${before ? `${before.id} -> ` : ''}${k.id} (${k.method}); files written before keep their key until rewritten`);
  });
}

/** Drops data keys that no file uses and that are not current. */
export async function retireDataKeys(opts: { config: string }, io: Output, logger: Logger): Promise<void> {
  await withWritableEnv(opts.config, logger, async ({ keyAdmin }) => {
    const retired = await keyAdmin.retireUnusedKeys();
    io.out(retired.length === 0 ? 'no data key to retire: every key is current or used by a file' : `retired data keys: ${retired.join(', ')}`);
  });
}

/**
 * Rewrites every file that is not under the current method and data key (the offline
 * counterpart of SQL Server's encryption scan), then optionally retires freed keys.
 */
export async function reencryptAll(opts: { config: string; retire?: boolean }, io: Output, logger: Logger): Promise<void> {
  await withWritableEnv(opts.config, logger, async ({ env, keyAdmin }, config) => {
    // The database's tables and logs carry tags bound to their own key, so they are rewritten
    // by the engine, not copied: opening replays the logs into new files, a full compaction
    // rewrites every table (legacy, unauthenticated ones too) and starts a new manifest.
    let rewritten = 0;
    if (await env.exists(CURRENT)) {
      const engineTodo = env.files().filter(([p]) => env.needsRewrite(p)).length;
      const engine = await Engine.open({ env, logger, walRecoveryMode: config.storage.walRecoveryMode, ...config.engine });
      try {
        await engine.compactRange();
      } finally {
        await engine.close();
      }
      rewritten += engineTodo;
      io.err(`rewrote the database's tables and logs under the current key (${engineTodo} file(s) were on another key or unauthenticated)`);
    }
    const todo = env.filesNotOnCurrentKey();
    let bytes = 0;
    for (const [i, path] of todo.entries()) {
      await env.reencrypt(path, (n) => (bytes += n));
      io.err(`re-encrypted ${i + 1}/${todo.length} files (${(bytes / 1048576).toFixed(1)} MiB): ${path}`);
    }
    rewritten += todo.length;
    const target = keyAdmin.currentDataKey();
    io.out(`${rewritten} file(s) re-encrypted; every file now uses ${target ? `${target.method} with data key ${target.id}` : 'plaintext'}`);
    if (opts.retire) {
      const retired = await keyAdmin.retireUnusedKeys();
      io.out(retired.length === 0 ? 'no data key to retire' : `retired data keys: ${retired.join(', ')}`);
    }
  });
}
