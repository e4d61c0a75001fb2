/*
 * tdekv used from another project, as the README says: `npm pack`, install the tarball,
 * `npx tdekv`, `import { TdekvLevel } from 'tdekv'`. The tarball is packed from the current
 * build (--ignore-scripts: prepack would rebuild dist/ under the running tests).
 */
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmod, mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from './support/fs-helpers.js';

const REPO = resolve(import.meta.dirname, '..', '..');

interface PackageJson {
  name: string;
  bin: Record<string, string>;
  exports: Record<string, string>;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
}

function run(cmd: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } });
  if (r.error) throw r.error;
  return r;
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.equal(r.status, 0, `${what} failed (${String(r.status)}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Packs the repository into `dir`; returns the tarball's path and the files it holds. */
function pack(dir: string): { tarball: string; files: string[] } {
  const out = ok(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], REPO), 'npm pack');
  const [info] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
  return { tarball: join(dir, info!.filename), files: info!.files.map((f) => f.path) };
}

/** A project with a main script that opens a store, and one whose key file is missing. */
async function writeProject(dir: string): Promise<void> {
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'uses-tdekv', version: '1.0.0', private: true, type: 'module' }));
  await writeFile(
    join(dir, 'embed.mjs'),
    `import { TdekvLevel } from 'tdekv';
const [keyPath] = process.argv.slice(2);
const db = new TdekvLevel('./data', { dataEncryptionMethod: 'aes256-ctr', masterKey: { type: 'file', path: keyPath } });
try {
  await db.put('user:1', 'Ada');
  console.log('got', await db.get('user:1'));
  await db.close();
} catch (err) {
  console.log('failed', err.code, err.cause?.code);
}
`,
  );
}

const embedded = (dir: string, keyPath: string): string => ok(run(process.execPath, ['embed.mjs', keyPath], dir), 'the embedded script');

describe('tdekv from another project', () => {
  it('the package ships the build, its bin and a prepack that builds', async () => {
    const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as PackageJson;
    assert.match(pkg.scripts['prepack'] ?? '', /build-if-changed/, 'npm pack must build dist/ first');
    const dir = await tempDir('tdekv-pack-');
    try {
      const { files } = pack(dir);
      for (const f of [pkg.bin['tdekv']!, pkg.exports['.']!.replace(/^\.\//, ''), 'package.json', 'README.md']) {
        assert.ok(files.includes(f), `${f} is not in the tarball: ${files.join(', ')}`);
      }
      assert.deepEqual(files.filter((f) => f.startsWith('dist/test/') || f.startsWith('src/') || f.startsWith('dist/bench/')), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an installed tarball runs `tdekv --help`, `tdekv keygen` and an embedded script from the other project', async () => {
    const dir = await tempDir('tdekv-user-');
    try {
      const { tarball } = pack(dir);
      const project = join(dir, 'project');
      const modules = join(project, 'node_modules');
      await mkdir(modules, { recursive: true });
      await writeProject(project);
      // What npm install does with the tarball, without the network: unpack it, link its
      // dependencies (from this repository's node_modules) and its bin.
      ok(run('tar', ['-xzf', tarball, '-C', modules], dir), 'tar');
      await rename(join(modules, 'package'), join(modules, 'tdekv'));
      const pkg = JSON.parse(await readFile(join(modules, 'tdekv', 'package.json'), 'utf8')) as PackageJson;
      for (const dep of Object.keys(pkg.dependencies)) {
        await mkdir(dirname(join(modules, dep)), { recursive: true });
        await symlink(join(REPO, 'node_modules', dep), join(modules, dep));
      }
      const bin = join(modules, 'tdekv', pkg.bin['tdekv']!);
      await chmod(bin, 0o755);
      await mkdir(join(modules, '.bin'));
      await symlink(join('..', 'tdekv', pkg.bin['tdekv']!), join(modules, '.bin', 'tdekv'));

      const help = ok(run(join(modules, '.bin', 'tdekv'), ['--help'], project), 'tdekv --help');
      assert.match(help, /Usage: tdekv/);
      ok(run(join(modules, '.bin', 'tdekv'), ['keygen', '--out', 'master.key'], project), 'tdekv keygen');
      assert.equal(embedded(project, 'master.key').trim(), 'got Ada');
      assert.equal(embedded(project, 'missing.key').trim(), 'failed LEVEL_DATABASE_NOT_OPEN MASTER_KEY_UNAVAILABLE');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  // 15–30 s of npm on a loaded machine, for what the test above already checks: opt-in.
  const npmInstall = process.env['TDEKV_TEST_NPM_INSTALL'] === '1' ? {} : { skip: 'set TDEKV_TEST_NPM_INSTALL=1 to run it' };
  it('`npm install <tarball>` and `npx tdekv` work for real (offline, from the npm cache)', npmInstall, async (t) => {
    const dir = await tempDir('tdekv-npm-');
    try {
      const { tarball } = pack(dir);
      const project = join(dir, 'project');
      await mkdir(project);
      await writeProject(project);
      const install = run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], project);
      if (install.status !== 0 && /ENOTCACHED/.test(install.stderr)) {
        t.skip('the npm cache lacks some of tdekv’s dependencies, and this test stays off the network');
        return;
      }
      ok(install, 'npm install');
      assert.match(ok(run('npx', ['--offline', 'tdekv', '--help'], project), 'npx tdekv --help'), /Usage: tdekv/);
      ok(run('npx', ['--offline', 'tdekv', 'keygen', '--out', 'master.key'], project), 'npx tdekv keygen');
      assert.equal(embedded(project, 'master.key').trim(), 'got Ada');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
