import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli, type CliResult } from './support/cli.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { prepareTdekv, startTdekv, tdekvOnly, type ServerHandle } from './support/server-process.js';

// `tdekv backup full` of a running server (BACKUP BEGIN/EXPORT/READ/END over its admin
// connection) while a client writes: the restore equals the server's state at one point of
// the write sequence, at or after every write acknowledged before the backup started (issue 14).

const ADMIN = 'admin-pw';
const KEYS = 40;

function ok(r: CliResult, what: string): void {
  assert.equal(r.code, 0, `${what} failed (${String(r.code)}): ${r.stderr}`);
}

/** The model: key → value after the first `n` operations of the writer (op i: DEL every 7th, else SET). */
function stateAfter(n: number): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const k = `k${i % KEYS}`;
    if (i % 7 === 6) m.delete(k);
    else m.set(k, `v${i}`);
  }
  return m;
}

describe('online backup of a running server under a write load', tdekvOnly(), () => {
  let root: string;
  let server: ServerHandle | undefined;
  before(async () => {
    root = await tempDir('backup-online-');
    server = await startTdekv({ settings: { security: { 'admin-password': ADMIN } } });
  });
  after(async () => {
    await server?.stop();
    await cleanup(root);
  });

  test('the restore equals the state after some prefix of the writes, never before the backup began; no plaintext in any object', async () => {
    const srv = server!;
    const client = srv.client();
    let acked = 0;
    let stop = false;
    // One writer, one operation at a time: its acknowledged operations are a prefix of its sequence.
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const k = `k${i % KEYS}`;
        if (i % 7 === 6) await client.del(k);
        else await client.set(k, `v${i}`);
        acked = i + 1;
      }
    })();
    while (acked < 2000) await new Promise((r) => setTimeout(r, 5));
    const before = acked;
    const store = join(root, 'store');
    // A key file protects the backup key: the target machine has it, not the source's master key.
    const crypter = (await writeKeyFile(root, 'crypter.key')).path;
    const protector = ['--crypter.method', 'aes256-ctr', '--crypter.key-file', crypter];
    const b = await runCli(['backup', 'full', '--config', srv.configPath!, '--addr', `127.0.0.1:${srv.port}`, '--storage', store, ...protector, '--json']);
    const afterBackup = acked;
    stop = true;
    await writer;
    ok(b, 'backup full (online)');
    const result = JSON.parse(b.stdout) as { id: string; files: number; sequence: number | null };
    assert.ok(result.files >= 3 && typeof result.sequence === 'number');
    // Every object is ciphertext: no value the writer wrote appears in clear.
    const objects = await readdir(join(store, 'objects'), { recursive: true });
    for (const o of objects) {
      const bytes = await readFile(join(store, 'objects', o)).catch(() => undefined);
      if (bytes !== undefined) assert.ok(!/v\d{3,}/.test(bytes.toString('latin1')), `objects/${o} holds a value in clear`);
    }

    // Restore on another "machine": its own dir, its own master key.
    const target = await prepareTdekv({ dir: join(root, 'target') });
    ok(await runCli(['restore', 'full', '--config', target.configPath, '--storage', store, ...protector]), 'restore full');
    const restored = await startTdekv({ dir: target.dir });
    try {
      const c = restored.client();
      const got = new Map<string, string>();
      for (let k = 0; k < KEYS; k++) {
        const v = await c.get(`k${k}`);
        if (v !== null) got.set(`k${k}`, v);
      }
      let match = -1;
      for (let n = before; n <= afterBackup && match < 0; n++) {
        const want = stateAfter(n);
        if (want.size === got.size && [...want].every(([k, v]) => got.get(k) === v)) match = n;
      }
      assert.ok(match >= before, `the restored keys match no prefix of the writes between ${before} (acknowledged before the backup) and ${afterBackup}`);
    } finally {
      await restored.stop();
    }
  });

  test('--incremental online uploads only the tables that changed, and restores the later state', async () => {
    const srv = server!;
    const c = srv.client();
    for (let i = 0; i < 3000; i += 100) await c.mset(Object.fromEntries(Array.from({ length: 100 }, (_, j) => [`inc:${i + j}`, `first-${i + j}`])));
    const crypter = (await writeKeyFile(root, 'crypter-inc.key')).path;
    const args = ['backup', 'full', '--config', srv.configPath!, '--addr', `127.0.0.1:${srv.port}`, '--storage', join(root, 'store-inc'), '--crypter.method', 'aes256-ctr', '--crypter.key-file', crypter, '--json'];
    const full = await runCli(args);
    ok(full, 'full backup (online)');
    await c.set('inc:7', 'second');
    const incr = await runCli([...args, '--incremental']);
    ok(incr, 'incremental backup (online)');
    const f = JSON.parse(full.stdout) as { addedBytes: number };
    const i = JSON.parse(incr.stdout) as { addedFiles: number; files: number; addedBytes: number; parent: string | null };
    assert.ok(i.parent !== null, 'the incremental names its parent');
    // The tables of the full backup's version are referenced; only the new flush's table (and the manifest, CURRENT) go up.
    assert.ok(i.addedFiles < i.files, `${i.addedFiles} of ${i.files} files uploaded`);
    assert.ok(i.addedBytes < f.addedBytes / 2, `${i.addedBytes} bytes uploaded against ${f.addedBytes} for the full backup`);
    const target = await prepareTdekv({ dir: join(root, 'target-inc') });
    ok(await runCli(['restore', 'full', '--config', target.configPath, '--storage', join(root, 'store-inc'), '--crypter.method', 'aes256-ctr', '--crypter.key-file', crypter]), 'restore of the incremental');
    const restored = await startTdekv({ dir: target.dir });
    try {
      const r = restored.client();
      assert.equal(await r.get('inc:7'), 'second');
      assert.equal(await r.get('inc:2999'), 'first-2999');
    } finally {
      await restored.stop();
    }
  });

  test('refused while an encryption scan runs, naming it, and allowed once the scan is suspended; the server keeps serving', async () => {
    // Its own server: a scan limited to 4 KiB/s stays RUNNING for the whole test.
    const settings = { security: { 'admin-password': ADMIN, encryption: { 'scan-rate-limit': '4KiB' } } };
    const dir = join(root, 'slow');
    // 2 MB in tables (a stop flushes the memtable): far more than the throttle lets through in a burst.
    const first = await startTdekv({ dir, settings });
    for (let i = 0; i < 2000; i += 100) await first.client().mset(Object.fromEntries(Array.from({ length: 100 }, (_, j) => [`key:${i + j}`, 'x'.repeat(1000)])));
    await first.stop();
    const slow = await startTdekv({ dir, settings });
    try {
      const data = slow.client();
      const admin = slow.client({ username: 'admin', password: ADMIN });
      await admin.call('ENCRYPTION', 'REGENERATE');
      const args = ['backup', 'full', '--config', slow.configPath!, '--addr', `127.0.0.1:${slow.port}`, '--storage', join(root, 'store-scan')];
      const refused = await runCli(args);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /encryption scan is running.*ENCRYPTION SUSPEND/);
      assert.equal(await data.set('still', 'serving'), 'OK');
      await admin.call('ENCRYPTION', 'SUSPEND');
      ok(await runCli(args), 'backup full while the scan is suspended');
    } finally {
      await slow.stop();
    }
  });
});
