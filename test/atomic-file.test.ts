import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mkdirDurable, removeStrayTmpFiles, writeFileAtomic } from '../src/keys/atomic-file.js';
import { cleanup, tempDir } from './support/fs-helpers.js';

test('writeFileAtomic replaces content whole, mode 0600, leaving no tmp file', async (t) => {
  const dir = await tempDir();
  t.after(() => cleanup(dir));
  const path = join(dir, 'meta');
  await writeFileAtomic(path, Buffer.from('one'));
  await writeFileAtomic(path, Buffer.from('two, longer'));
  assert.equal(await readFile(path, 'utf8'), 'two, longer');
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(dir), ['meta']);
});

test('removeStrayTmpFiles removes only leftovers of interrupted atomic writes', async (t) => {
  const dir = await tempDir();
  t.after(() => cleanup(dir));
  await writeFile(join(dir, 'file.dict'), 'keep');
  await writeFile(join(dir, 'file.dict.tmp'), 'half');
  await writeFile(join(dir, 'key.dict.tmp'), 'half');
  assert.deepEqual((await removeStrayTmpFiles(dir)).sort(), ['file.dict.tmp', 'key.dict.tmp']);
  assert.deepEqual(await readdir(dir), ['file.dict']);
});

test('mkdirDurable creates nested directories once and reports the first one it created', async (t) => {
  const dir = await tempDir();
  t.after(() => cleanup(dir));
  const deep = join(dir, 'a', 'b', 'c');
  assert.equal(await mkdirDurable(deep), join(dir, 'a'));
  assert.ok((await stat(deep)).isDirectory());
  assert.equal((await stat(join(dir, 'a', 'b'))).mode & 0o777, 0o700);
  assert.equal(await mkdirDurable(deep), undefined);
  assert.equal(await mkdirDurable(join(dir, 'a', 'b', 'd'), 0o755), join(dir, 'a', 'b', 'd'));
});
