/**
 * Runs abstract-level's shared test suite (tape, including its re-run on a sublevel)
 * against TdekvLevel: real directories, aes256-ctr under a file master key, small
 * memtables so the suite's data also reaches tables.
 *
 *   node dist/test/support/level-tape-runner.js [ROOT]
 *
 * Databases go under ROOT (or a fresh temp dir, removed at the end). TAP goes to stdout;
 * the exit status is tape's: 0 only if every assertion passed.
 * test/level-abstract-suite.test.ts runs this as a child process under `node --test`.
 */
import { createRequire } from 'node:module';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import tape from 'tape';
import { TdekvLevel, type LevelEngine, type TdekvLevelOptions } from '../../src/level/tdekv-level.js';
import { MemoryEngine, type MemoryState } from './level-memory-engine.js';
import { tempDir, writeKeyFile } from './fs-helpers.js';

type Suite = (options: { test: typeof tape; factory: (options?: TdekvLevelOptions<unknown, unknown>) => object }) => void;

const require = createRequire(import.meta.url);
const suite = require('abstract-level/test') as Suite;

const given = process.argv[2];
const root = given ?? (await tempDir('tdekv-level-suite-'));
await mkdir(root, { recursive: true });
const keyDir = join(root, 'keys');
await mkdir(keyDir, { recursive: true });
const { path: keyPath } = await writeKeyFile(keyDir);

/** TDEKV_LEVEL_ENGINE=memory runs the suite over the reference model instead of the engine. */
const memoryStates = new Map<string, MemoryState>();
class MemoryEngineLevel<K, V> extends TdekvLevel<K, V> {
  protected override async openEngine(): Promise<LevelEngine> {
    let state = memoryStates.get(this.location);
    if (state === undefined) memoryStates.set(this.location, (state = { versions: new Map(), seq: 0 }));
    return new MemoryEngine(state);
  }
}
const Level = process.env['TDEKV_LEVEL_ENGINE'] === 'memory' ? MemoryEngineLevel : TdekvLevel;

// The suite leaves some databases open (a factory() database opens itself). Closing them at
// the end would fire the suite's event listeners after their tests; they are left alone,
// and the process exits once tape is done even if their background work is still pending.
let made = 0;

/*
 * TdekvLevel refuses unknown options (a misplaced setting must not be silently ignored); the
 * suite's made-up application options (`userland`) go where the application's own belong,
 * hookOptions, and still reach the open hooks as top-level options.
 */
const LEVEL_OPTIONS = new Set(['keyEncoding', 'valueEncoding', 'createIfMissing', 'errorIfExists', 'passive']);
function withHookOptions(options: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (options === undefined || typeof options !== 'object' || options === null) return options;
  const own = Object.entries(options).filter(([k]) => !LEVEL_OPTIONS.has(k));
  if (own.length === 0) return options;
  return { ...Object.fromEntries(Object.entries(options).filter(([k]) => LEVEL_OPTIONS.has(k))), hookOptions: Object.fromEntries(own) };
}

suite({
  test: tape,
  factory: (options) => {
    const db = new Level<unknown, unknown>(join(root, `db-${++made}`), {
      ...withHookOptions(options as Record<string, unknown> | undefined),
      dataEncryptionMethod: 'aes256-ctr',
      masterKey: { type: 'file', path: keyPath },
      writeBufferSize: 16 * 1024,
    });
    const open = db.open.bind(db) as (options?: Record<string, unknown>) => Promise<void>;
    (db as unknown as { open: typeof open }).open = (o) => open(withHookOptions(o));
    return db;
  },
});

tape.onFinish(() => {
  process.stdout.write(`# databases ${made}\n`);
  void (async () => {
    if (given === undefined) await rm(root, { recursive: true, force: true, maxRetries: 5 }).catch(() => undefined);
    // tape sets the exit status in its own 'exit' handler.
    setTimeout(() => process.exit(), 1000).unref();
  })();
});
