import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './support/fs-helpers.js';

// The layer rules of docs/design.md, as .dependency-cruiser.cjs states them, checked on the
// TypeScript sources so that type-only imports count too.
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
  cycle?: Array<{ name: string }>;
}

interface CruiseOutput {
  summary: { violations: Violation[]; totalCruised: number };
}

function depcruiseBin(): string {
  // The package exports only its API; its CLI sits two folders above the API's entry.
  const main = fileURLToPath(import.meta.resolve('dependency-cruiser'));
  return join(dirname(main), '..', '..', 'bin', 'dependency-cruise.mjs');
}

function cruise(cwd: string): CruiseOutput {
  const run = spawnSync(process.execPath, [depcruiseBin(), '--config', join(cwd, '.dependency-cruiser.cjs'), '--output-type', 'json', 'src'], {
    cwd,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (run.error) throw run.error;
  // Exit code = number of violations; anything unparsable is the tool failing.
  try {
    return JSON.parse(run.stdout) as CruiseOutput;
  } catch {
    throw new Error(`dependency-cruiser failed (exit ${run.status}): ${run.stderr}`);
  }
}

function describe(v: Violation): string {
  const path = v.cycle ? [v.from, ...v.cycle.map((c) => c.name)].join(' → ') : `${v.from} → ${v.to}`;
  return `${v.rule.name}: ${path}`;
}

/** A temporary tree with the real rules, and a way to add source files to it. */
async function tinyTree(prefix: string): Promise<{ dir: string; write: (path: string, text: string) => void }> {
  const dir = await tempDir(prefix);
  copyFileSync(CONFIG, join(dir, '.dependency-cruiser.cjs'));
  const write = (path: string, text: string): void => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  };
  return { dir, write };
}

test('src/ keeps the layer rules: imports go only downward, no cycles (type-only imports included)', () => {
  const out = cruise(ROOT);
  assert.ok(out.summary.totalCruised > 100, `only ${out.summary.totalCruised} modules were read: is the checker looking at src/?`);
  assert.deepEqual(out.summary.violations.map(describe), [], 'see docs/design.md, "Layers", for where each module may import from');
});

test('the checker sees a type-only import that goes upward or closes a cycle', async () => {
  // A tiny tree with the real rules: if the parser dropped `import type` or `export type … from`,
  // the check above would pass while the rules were broken.
  const { dir, write } = await tinyTree('deprules-');
  write('src/log/logger.ts', "import type { LogLevel } from '../config/types.js';\nexport const level: LogLevel = 'info';\n");
  write('src/config/types.ts', "export type LogLevel = 'info';\nexport type { Shape } from './shape.js';\n");
  write('src/config/shape.ts', "import type { LogLevel } from './types.js';\nexport interface Shape { level: LogLevel }\n");
  const found = cruise(dir).summary.violations.map(describe);
  assert.ok(found.includes('layer-log-imports-upward: src/log/logger.ts → src/config/types.ts'), found.join('\n'));
  // The cycle runs through `export type … from` one way and `import type` the other.
  const cycles = found.filter((f) => f.startsWith('no-circular:'));
  assert.equal(cycles.length, 1, found.join('\n'));
  assert.match(cycles[0]!, /src\/config\/(shape|types)\.ts → src\/config\/(shape|types)\.ts → /);
  assert.equal(found.length, 2, found.join('\n'));
});

test('node:fs is refused outside the modules allowed to touch files, so user data cannot bypass the encrypted env', async () => {
  const { dir, write } = await tinyTree('deprules-fs-');
  write('src/server/dump.ts', "import { writeFile } from 'node:fs/promises';\nexport const dump = (b: Uint8Array): Promise<void> => writeFile('dump', b);\n");
  write('src/engine/peek.ts', "import { readFileSync } from 'fs';\nexport const peek = (): Buffer => readFileSync('x');\n");
  write('src/env/file.ts', "import { open } from 'node:fs/promises';\nexport const o = open;\n");
  write('src/server/tls-material.ts', "import { readFileSync } from 'node:fs';\nexport const r = readFileSync;\n");
  const found = cruise(dir).summary.violations.map(describe).sort();
  assert.deepEqual(found, ['files-only-through-env: src/engine/peek.ts → fs', 'files-only-through-env: src/server/dump.ts → fs/promises']);
});
