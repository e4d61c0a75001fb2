import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../src/config/config.js';
import { Engine } from '../src/engine/engine.js';
import { readCurrentFile, writeCurrentFile } from '../src/engine/current-file.js';
import { manifestName } from '../src/engine/file-names.js';
import { readLog } from '../src/engine/log-reader.js';
import { LogWriter } from '../src/engine/log-writer.js';
import { decodeEdit, encodeEdit, type FileMeta, type VersionEdit } from '../src/engine/version-edit.js';
import { applyEdit } from '../src/engine/version-set.js';
import { isTdekvError } from '../src/errors.js';
import { openEnvFromConfig } from '../src/env/open-env.js';
import { runCli } from './support/cli.js';
import { assertSameTree, cleanup, snapshotTree, tempDir } from './support/fs-helpers.js';

interface Db {
  dir: string;
  dataDir: string;
  config: string;
}

async function newDb(t: { after: (fn: () => Promise<void>) => void }): Promise<Db> {
  const dir = await tempDir('tdekv-verify-');
  t.after(() => cleanup(dir));
  const gen = await runCli(['keygen', '--out', join(dir, 'master.key')]);
  assert.equal(gen.code, 0, gen.stderr);
  const config = join(dir, 'tdekv.toml');
  await writeFile(
    config,
    `[storage]\ndata-dir = "data"\n[security.encryption]\ndata-encryption-method = "aes256-ctr"\n[security.encryption.master-key]\ntype = "file"\npath = "master.key"\n`,
  );
  return { dir, dataDir: join(dir, 'data'), config };
}

/** Opens the database through the library, runs `fn`, closes it. */
async function withEngine(db: Db, fn: (engine: Engine) => Promise<void>): Promise<void> {
  const managed = await openEnvFromConfig(await loadConfig(db.config));
  try {
    const engine = await Engine.open({ env: managed.env, writeBufferSize: 16 * 1024, blockSize: 1024 });
    try {
      await fn(engine);
    } finally {
      await engine.close();
    }
  } finally {
    await managed.close();
  }
}

async function fill(engine: Engine, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i += 25) {
    await engine.write(Array.from({ length: 25 }, (_, j) => ({ type: 'put' as const, key: Buffer.from(`key-${String(i + j).padStart(6, '0')}`), value: Buffer.from(`value-${i + j}-${'v'.repeat((i + j) % 60)}`) })));
  }
}

/** Method and key id of every tracked file, as the dictionary has them. */
async function dictionary(db: Db): Promise<Array<{ path: string; method: string; keyId: number }>> {
  const r = await runCli(['ctl', '--config', db.config, 'encryption-meta', 'dump-file', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Array<{ path: string; method: string; keyId: number }>;
}

function verify(db: Db, ...extra: string[]): ReturnType<typeof runCli> {
  return runCli(['ctl', '--config', db.config, 'verify', ...extra]);
}

/** A database with tables under two data keys, a WAL with unflushed writes, a manifest and CURRENT. */
async function populated(t: { after: (fn: () => Promise<void>) => void }): Promise<Db> {
  const db = await newDb(t);
  await withEngine(db, async (engine) => {
    await fill(engine, 0, 1000);
    await engine.compactRange();
  });
  const rotated = await runCli(['data-key', 'rotate', '--config', db.config]);
  assert.equal(rotated.code, 0, rotated.stderr);
  await withEngine(db, async (engine) => {
    await fill(engine, 1000, 300);
    await engine.flush();
  });
  return db;
}

test('verify: a clean database passes, one line per file, counts per method and per data key', async (t) => {
  const db = await populated(t);
  const files = await dictionary(db);
  const before = await snapshotTree(db.dataDir);
  const r = await verify(db);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assertSameTree(await snapshotTree(db.dataDir), before, 'verify is read-only');

  const lines = r.stdout.trim().split('\n');
  const fileLines = lines.filter((l) => /\t(ok|DAMAGED)\t/.test(l));
  assert.equal(fileLines.length, files.length, r.stdout);
  for (const f of files) {
    const line = fileLines.find((l) => l.startsWith(f.path + '\t'));
    assert.ok(line, `no line for ${f.path}`);
    assert.match(line, new RegExp(`^${f.path}\\t(table|wal|manifest|current)\\tmethod=${f.method}\\tkey-id=${f.keyId}\\tsize=\\d+\\tauthenticated\\tok\\t`));
  }
  // Every kind of engine file was checked, tables block by block.
  assert.match(r.stdout, /^\d{6}\.sst\ttable\t.*\tok\t\d+ blocks, \d+ entries/m);
  assert.match(r.stdout, /^\d{6}\.log\twal\t.*\tok\t\d+ records, \d+ writes/m);
  assert.match(r.stdout, /^MANIFEST-\d{6}\tmanifest\t.*\tok\t\d+ edits, current: \d+ live table\(s\)/m);
  assert.match(r.stdout, /^CURRENT\tcurrent\t.*\tok\tnames MANIFEST-\d{6}$/m);

  const keyIds = [...new Set(files.map((f) => f.keyId))];
  assert.equal(keyIds.length, 2, 'tables under the old and the new data key');
  const perKey = keyIds.map((id) => `${id}: ${files.filter((f) => f.keyId === id).length}`);
  const keyLine = lines.find((l) => l.startsWith('files per data key id: '));
  assert.ok(keyLine, r.stdout);
  assert.deepEqual(keyLine.slice('files per data key id: '.length).split(', ').sort(), perKey.sort());
  assert.ok(lines.includes(`files per method: aes256-ctr: ${files.length}`), r.stdout);
  assert.ok(lines.includes('damaged: 0'), r.stdout);
  assert.ok(lines.includes('unauthenticated: 0'), r.stdout);

  const json = await verify(db, '--json');
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as { files: Array<{ path: string; ok: boolean }>; damaged: number; byMethod: Record<string, number> };
  assert.equal(report.damaged, 0);
  assert.equal(report.files.length, files.length);
  assert.deepEqual(report.byMethod, { 'aes256-ctr': files.length });
});

test('verify: runs without the lock while the database is open', async (t) => {
  const db = await newDb(t);
  await withEngine(db, async (engine) => {
    await fill(engine, 0, 200);
    await engine.flush();
    await engine.put(Buffer.from('late'), Buffer.from('in the WAL'), { sync: true });
    const r = await verify(db);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^damaged: 0$/m);
    // The open WAL ends in the space reserved ahead of its appends: named as such, not as a torn record.
    const wal = r.stdout.split('\n').find((l) => /^\d+\.log\t/.test(l));
    assert.ok(wal, r.stdout);
    assert.match(wal, /\tok\t.*1 records, 1 writes; ends at offset \d+, then \d+ bytes of zeros \(space reserved ahead of appends/);
  });
});

test('verify: a flipped byte in a table fails, naming the file and the damage', async (t) => {
  const db = await populated(t);
  const table = (await readdir(db.dataDir)).filter((n) => n.endsWith('.sst')).sort()[0]!;
  const fh = await open(join(db.dataDir, table), 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 100);
    b[0]! ^= 0x04;
    await fh.write(b, 0, 1, 100);
  } finally {
    await fh.close();
  }
  const r = await verify(db);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`^${table}\\ttable\\tmethod=aes256-ctr\\tkey-id=\\d+\\tsize=\\d+\\tauthenticated\\tDAMAGED\\t.*${table} is damaged: block at offset 0 .* fails its authentication tag`, 'm'));
  // Only that file.
  assert.equal(r.stdout.split('\n').filter((l) => l.includes('\tDAMAGED\t')).length, 1, r.stdout);
  assert.match(r.stdout, /^damaged: 1$/m);
  assert.match(r.stderr, new RegExp(`verify found 1 problem\\(s\\) .*${table}.*\\[DATA_CORRUPTED\\]`));
});

test('verify: an untracked file, or a tracked file gone from disk, fails', async (t) => {
  const db = await populated(t);
  await writeFile(join(db.dataDir, 'stray.bin'), 'not written by tdekv');
  const r = await verify(db);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /^stray\.bin\tother\tmethod=-\tkey-id=-\tsize=20\t-\tDAMAGED\tnot in the file dictionary/m);
  assert.match(r.stderr, /stray\.bin/);
  await rm(join(db.dataDir, 'stray.bin'));
  assert.equal((await verify(db)).code, 0);

  // A live table removed behind tdekv's back: missing on disk, and the manifest's table is gone.
  const table = (await readdir(db.dataDir)).filter((n) => n.endsWith('.sst')).sort()[0]!;
  await rm(join(db.dataDir, table));
  const gone = await verify(db);
  assert.equal(gone.code, 1, gone.stdout + gone.stderr);
  assert.match(gone.stdout, new RegExp(`^${table}\\ttable\\tmethod=aes256-ctr\\tkey-id=\\d+\\tsize=-\\tauthenticated\\tDAMAGED\\tin the file dictionary but not on disk`, 'm'));
  assert.match(gone.stdout, new RegExp(`^PROBLEM\\tMANIFEST-\\d+ lists table ${table}, which is missing`, 'm'));
  assert.match(gone.stdout, /^damaged: 2$/m);
});

test('verify: damage in the middle of the write-ahead log or manifest fails, and so does the CURRENT naming it', async (t) => {
  const db = await newDb(t);
  await withEngine(db, async (engine) => {
    await fill(engine, 0, 300);
    await engine.flush();
    for (let i = 0; i < 5; i++) await engine.put(Buffer.from(`wal-${i}`), Buffer.from(`value ${i}`), { sync: true });
    // The database is "crashed" here: verify runs while the WAL holds the last writes.
    const wal = (await readdir(db.dataDir)).find((n) => n.endsWith('.log'))!;
    const flip = async (name: string, at: number): Promise<void> => {
      const fh = await open(join(db.dataDir, name), 'r+');
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, at);
      b[0]! ^= 0x01;
      await fh.write(b, 0, 1, at);
      await fh.close();
    };
    await flip(wal, 12); // inside the first record
    const r = await verify(db);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^${wal}\\twal\\t.*\\tDAMAGED\\t${wal} is damaged at offset 0`, 'm'));
    await flip(wal, 12);
    assert.equal((await verify(db)).code, 0);

    const manifest = (await readdir(db.dataDir)).find((n) => n.startsWith('MANIFEST-'))!;
    await flip(manifest, 12);
    const m = await verify(db);
    assert.equal(m.code, 1, m.stdout + m.stderr);
    assert.match(m.stdout, new RegExp(`^${manifest}\\tmanifest\\t.*\\tDAMAGED\\t${manifest} is damaged at offset 0`, 'm'));
    assert.match(m.stdout, new RegExp(`^CURRENT\\tcurrent\\t.*\\tDAMAGED\\tnames ${manifest}, which is damaged`, 'm'));
    await flip(manifest, 12);
    assert.equal((await verify(db)).code, 0);
  });
});

test('verify replays every manifest as open does: a table deleted from a level that does not hold it, or added below the last level, fails verify and open alike', async (t) => {
  const db = await populated(t);
  const managed = await openEnvFromConfig(await loadConfig(db.config));
  try {
    const env = managed.env;
    const current = readCurrentFile(env);
    const file = env.openReadSync(current);
    const { records } = readLog(file);
    file.close();
    const levels = records.reduce((l, r) => applyEdit(l, decodeEdit(r.payload, current), 7, current), [] as FileMeta[][]);
    const level = levels.findIndex((files) => files.length > 0);
    const victim = levels[level]![0]!;
    const cases: Array<{ edit: VersionEdit; why: string }> = [
      // Deleting by number alone would find the table; open deletes it from the edit's level only.
      { edit: { deletedFiles: [{ level: level === 0 ? 1 : 0, number: victim.number }], newFiles: [] }, why: `deletes table ${victim.number} from level ${level === 0 ? 1 : 0}, which does not hold it` },
      { edit: { deletedFiles: [], newFiles: [{ level: 7, file: victim }] }, why: `adds table ${victim.number} at level 7, but the engine has 7 levels` },
    ];
    for (const [i, { edit, why }] of cases.entries()) {
      // The current manifest's edits, then the bad one, in a new manifest that CURRENT names.
      const name = manifestName(900_000 + i);
      const writer = new LogWriter(await env.create(name));
      for (const r of records) await writer.addRecord(r.payload);
      await writer.addRecord(encodeEdit(edit));
      await writer.sync();
      await writer.close();
      await writeCurrentFile(env, name);

      const r = await verify(db);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const detail = `${name} at offset \\d+ ${why}`;
      assert.match(r.stdout, new RegExp(`^${name}\\tmanifest\\t.*\\tDAMAGED\\t${detail}`, 'm'));
      assert.match(r.stdout, new RegExp(`^CURRENT\\tcurrent\\t.*\\tDAMAGED\\tnames ${name}, which is damaged`, 'm'));
      await assert.rejects(Engine.open({ env }), (err: unknown) => isTdekvError(err, 'DATA_CORRUPTED') && new RegExp(detail).test(err.message));
    }
  } finally {
    await managed.close();
  }
});
