import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { tempDir } from './support/fs-helpers.js';

const REPO = resolve(import.meta.dirname, '..', '..');
const SCRIPT = join(REPO, 'scripts', 'build-if-changed.mjs');

function build(cwd: string): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [SCRIPT], { cwd, encoding: 'utf8' });
  return { code: r.status, stderr: r.stderr };
}

test('npm start builds only when a source changed, was added or was removed; a removed source leaves no output behind', async (t) => {
  const dir = await tempDir('tdekv-build-');
  t.after(() => rm(dir, { recursive: true, force: true }));
  await symlink(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  await mkdir(join(dir, 'src'));
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', outDir: 'dist', rootDir: '.', strict: true }, include: ['src/**/*.ts'] }));
  await writeFile(join(dir, 'src', 'a.ts'), 'export const a = 1;\n');

  let r = build(dir);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(join(dir, 'dist', 'src', 'a.js')));
  r = build(dir);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /up to date/, 'nothing changed: no build');

  await rm(join(dir, 'src', 'a.ts'));
  await writeFile(join(dir, 'src', 'b.ts'), 'export const b = 2;\n');
  r = build(dir);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /up to date/);
  assert.ok(existsSync(join(dir, 'dist', 'src', 'b.js')), 'the new source is built');
  assert.ok(!existsSync(join(dir, 'dist', 'src', 'a.js')), 'the removed source left no output');

  // A type error fails the build and records nothing, so the next start tries again.
  await writeFile(join(dir, 'src', 'b.ts'), 'export const b: number = "two";\n');
  assert.notEqual(build(dir).code, 0);
  assert.notEqual(build(dir).code, 0, 'still refused: a failed build is never taken as up to date');
});
