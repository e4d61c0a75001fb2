import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { toml } from '../bench/server-disk-bench.js';
import { loadConfig } from '../src/config/config.js';
import { cleanup, tempDir } from './support/fs-helpers.js';

describe('bench server-disk', () => {
  test('its server config is valid and sets what the bench claims: read-ahead mode, no row cache, a 4 MiB block cache', async () => {
    const dir = await tempDir('tdekv-bench-disk-');
    try {
      for (const mode of ['never', 'auto', 'always'] as const) {
        await writeFile(join(dir, 'tdekv.toml'), toml(dir, 1234, 1235, mode));
        const config = await loadConfig(join(dir, 'tdekv.toml'));
        assert.equal(config.server.readAhead, mode);
        assert.equal(config.server.addr.port, 1234);
        assert.equal(config.storage.rowCacheSize, 0);
        assert.equal(config.engine.blockCacheSize, 4 * 2 ** 20);
      }
    } finally {
      await cleanup(dir);
    }
  });
});
