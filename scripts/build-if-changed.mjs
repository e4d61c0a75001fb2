// `npm start` and `npm test` build first; this skips the build when nothing it reads has
// changed since the last one (a full build takes seconds, every start). The stamp records
// each input's path, size and mtime, so an edit, a new file and a deleted file all count as
// changes; a deleted source must not leave its old output in dist/ (tests run dist/test/*).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const STAMP = join('dist', '.build-inputs.json');
const ROOTS = ['src', 'test', 'bench'];
const FILES = ['tsconfig.json', 'package.json', 'package-lock.json'];

function inputs() {
  const out = {};
  const add = (path) => {
    const s = statSync(path);
    out[path] = `${s.size}:${s.mtimeMs}`;
  };
  const walk = (dir) => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, d.name);
      if (d.isDirectory()) walk(path);
      else if (d.isFile()) add(path);
    }
  };
  for (const root of ROOTS) if (existsSync(root)) walk(root);
  for (const file of FILES) if (existsSync(file)) add(file);
  return out;
}

const now = JSON.stringify(inputs());
const force = process.argv.includes('--force');
if (!force && existsSync(STAMP) && readFileSync(STAMP, 'utf8') === now) {
  console.error('tdekv: build is up to date (dist/)');
} else {
  rmSync('dist', { recursive: true, force: true });
  execFileSync(process.execPath, [join('node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { stdio: 'inherit' });
  writeFileSync(STAMP, now);
}
