import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openEnv } from '../src/env/open-env.js';
import { newKeyId } from '../src/keys/data-key.js';
import { encryptionConfig } from './support/engine-helpers.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { encodeCommand, startTdekv, tdekvOnly, waitUntil, type RawConnection, type RespValue, type ServerHandle } from './support/server-process.js';

// BACKUP against a real server process: a session pins a version while writes go on, files
// leave only under the backup's key, and what they hold restores elsewhere under another
// master key; the session and the encryption scan exclude each other (issue 14).

const ADMIN = 'admin-pw';

async function reply(raw: RawConnection, ...args: (string | Buffer)[]): Promise<RespValue> {
  raw.send(encodeCommand(...args));
  return (await raw.reply(60_000)).value;
}

const text = (v: RespValue | undefined): string => {
  assert.ok(v?.t === 'bulk' || v?.t === 'simple' || v?.t === 'verbatim', `got ${String(v?.t)}`);
  return (v as { v: Buffer | string }).v.toString();
};
const int = (v: RespValue | undefined): number => {
  assert.equal(v?.t, 'int', `got ${String(v?.t)}`);
  return Number((v as { v: bigint }).v);
};
const errorText = (v: RespValue): string => {
  assert.equal(v.t, 'error', `expected an error, got ${v.t}`);
  return String((v as { v: string }).v);
};

async function admin(server: ServerHandle): Promise<RawConnection> {
  const raw = await server.raw();
  raw.send(encodeCommand('HELLO', '3', 'AUTH', 'admin', ADMIN));
  assert.equal((await raw.reply()).value.t, 'map');
  return raw;
}

interface Begun {
  session: string;
  sequence: number;
  files: Array<{ name: string; kind: string; size: number }>;
}

async function begin(raw: RawConnection): Promise<Begun> {
  const v = await reply(raw, 'BACKUP', 'BEGIN');
  assert.equal(v.t, "map", v.t === "error" ? String((v as { v: string }).v) : v.t);
  const m = new Map((v as { v: [RespValue, RespValue][] }).v.map(([k, x]) => [text(k), x]));
  const files = (m.get('files') as { v: RespValue[] }).v.map((f) => {
    const [name, kind, size, identity] = (f as { v: RespValue[] }).v;
    // A table's identity (incremental backups) is its name, IV and size; other files have none.
    if (text(kind) === 'table') assert.match(text(identity), new RegExp(`^${text(name)}:[0-9a-f]{32}:${int(size)}$`));
    else assert.equal(identity?.t, 'null');
    return { name: text(name), kind: text(kind), size: int(size) };
  });
  assert.equal(text(m.get('method')), 'aes256-ctr');
  assert.match(text(m.get('master_key')), /^file .*master\.key$/);
  return { session: text(m.get('session')), sequence: int(m.get('sequence')), files };
}

/** Every file of the session, exported under `key` (all queued first, as the CLI pipelines them) and read back in slices of `slice` bytes. */
async function exportAll(raw: RawConnection, b: Begun, key: Buffer, keyId: number, slice: number): Promise<Array<{ name: string; iv: Buffer; bytes: Buffer }>> {
  const out = [];
  for (let i = 0; i < b.files.length; i += 3) {
    const group = b.files.slice(i, i + 3).map((f) => ({ name: f.name, iv: randomBytes(16) }));
    for (const f of group) assert.equal(text(await reply(raw, 'BACKUP', 'EXPORT', b.session, f.name, key.toString('hex'), String(keyId), f.iv.toString('hex'))), 'QUEUED');
    for (const f of group) {
      const size = int(await reply(raw, 'BACKUP', 'SIZE', b.session, f.name));
      const parts: Buffer[] = [];
      for (let off = 0; off < size; off += slice) {
        const v = await reply(raw, 'BACKUP', 'READ', b.session, f.name, String(off), String(slice));
        assert.equal(v.t, 'bulk');
        parts.push((v as { v: Buffer }).v);
      }
      const bytes = Buffer.concat(parts);
      assert.equal(bytes.length, size);
      out.push({ name: f.name, iv: f.iv, bytes });
    }
  }
  return out;
}

describe('BACKUP on a running server', tdekvOnly(), () => {
  let server: ServerHandle | undefined;
  let root: string;
  before(async () => {
    root = await tempDir('backup-cmd-');
    server = await startTdekv({ settings: { security: { 'admin-password': ADMIN, encryption: { 'scan-rate-limit': '0' } } } });
  });
  after(async () => {
    await server?.stop();
    await cleanup(root);
  });
  const srv = (): ServerHandle => {
    assert.ok(server, 'server did not start');
    return server;
  };

  test('a session holds exactly the writes received before BEGIN, and its files restore under another master key', async () => {
    const data = srv().client();
    for (let i = 0; i < 400; i++) await data.set(`key:${i}`, `value-${i}-${'v'.repeat(i % 40)}`);
    await data.hset('h', { a: '1', b: '2' });
    const raw = await admin(srv());
    const b = await begin(raw);
    assert.ok(b.files.some((f) => f.kind === 'table') && b.files.some((f) => f.kind === 'manifest') && b.files.some((f) => f.kind === 'current'));
    // Writes after BEGIN are not in the backup; data commands keep working during it.
    await data.set('key:0', 'changed after begin');
    await data.set('late', 'x');
    const key = randomBytes(32);
    const keyId = newKeyId(new Set());
    const files = await exportAll(raw, b, key, keyId, 4096);
    for (const f of files) assert.ok(!f.bytes.includes(Buffer.from('vvvvvvvvvvvvvvvvvvvv')), `${f.name} leaves the server encrypted`);
    assert.equal(text(await reply(raw, 'BACKUP', 'END', b.session)), 'OK');
    assert.match(errorText(await reply(raw, 'BACKUP', 'READ', b.session, 'CURRENT', '0', '10')), /^ERR no backup session/);

    // Restore: another dir, another master key; the backup's key imported, the files put in place unchanged.
    const target = join(root, 'restored');
    await mkdir(target, { recursive: true });
    const targetKey = await writeKeyFile(target);
    const managed = await openEnv(join(target, 'data'), encryptionConfig(targetKey.path));
    await managed.keyAdmin.importDataKey({ id: keyId, method: 'aes256-ctr', key, createdAtMs: Date.now(), exposed: false });
    for (const f of files) {
      await managed.env.importFile(f.name, { method: 'aes256-ctr', keyId, iv: f.iv, authenticated: true }, (async function* () {
        yield f.bytes;
      })());
    }
    await managed.close();
    const restored = await startTdekv({ dir: target });
    try {
      const c = restored.client();
      assert.equal(await c.get('key:0'), 'value-0-');
      assert.equal(await c.get('key:399'), `value-399-${'v'.repeat(399 % 40)}`);
      assert.equal(await c.get('late'), null);
      assert.deepEqual(await c.hgetall('h'), { a: '1', b: '2' });
      assert.equal(await c.dbsize(), 401);
    } finally {
      await restored.stop();
    }
  });

  test('bad arguments get one -ERR line naming what is wrong; without AUTH admin, NOPERM', async () => {
    const raw = await admin(srv());
    const b = await begin(raw);
    assert.match(errorText(await reply(raw, 'BACKUP', 'EXPORT', b.session, 'CURRENT', 'zz', '1', '00'.repeat(16))), /the key must be 64 hexadecimal characters/);
    assert.match(errorText(await reply(raw, 'BACKUP', 'EXPORT', b.session, 'CURRENT', '00'.repeat(32), '0', '00'.repeat(16))), /key id must not be 0/);
    assert.match(errorText(await reply(raw, 'BACKUP', 'EXPORT', b.session, '../../etc/passwd', '00'.repeat(32), '7', '00'.repeat(16))), /is not a file of this checkpoint/);
    assert.match(errorText(await reply(raw, 'BACKUP', 'READ', b.session, 'CURRENT', '0', '10')), /CURRENT is not exported in this session .*BACKUP EXPORT it first/);
    // A file read to its end is let go (the cap of three is in backup-sessions.test.ts).
    const tables = b.files.map((f) => f.name);
    for (const name of tables.slice(0, 3)) assert.equal(text(await reply(raw, 'BACKUP', 'EXPORT', b.session, name, '11'.repeat(32), '7', '00'.repeat(16))), 'QUEUED');
    assert.match(errorText(await reply(raw, 'BACKUP', 'EXPORT', b.session, tables[0]!, '11'.repeat(32), '7', '00'.repeat(16))), /being exported already/);
    const size = int(await reply(raw, 'BACKUP', 'SIZE', b.session, tables[0]!));
    assert.equal((await reply(raw, 'BACKUP', 'READ', b.session, tables[0]!, '0', String(size))).t, 'bulk');
    assert.match(errorText(await reply(raw, 'BACKUP', 'SIZE', b.session, tables[0]!)), /is not exported in this session \(or was read to its end\)/);
    assert.match(errorText(await reply(raw, 'BACKUP', 'NOPE')), /unknown subcommand 'NOPE'. Try BACKUP HELP/);
    assert.match(errorText(await reply(raw, 'BACKUP', 'END')), /wrong number of arguments for 'backup\|end'/);
    assert.equal(text(await reply(raw, 'BACKUP', 'END', b.session)), 'OK');
    const plain = await srv().raw();
    assert.equal(errorText(await reply(plain, 'BACKUP', 'BEGIN')), "NOPERM this user has no permissions to run the 'backup|begin' command");
  });
  test('a session and the encryption scan exclude each other; closing the connection ends the session', async () => {
    const raw = await admin(srv());
    const b = await begin(raw);
    const other = await admin(srv());
    assert.match(text(await reply(other, 'INFO', 'encryption')), /\r\nbackups_in_progress:1\r\n/);
    assert.match(errorText(await reply(other, 'ENCRYPTION', 'REGENERATE')), /backup/i);
    // A session belongs to its connection.
    assert.match(errorText(await reply(other, 'BACKUP', 'END', b.session)), /^ERR no backup session .* on this connection/);
    raw.destroy();
    await waitUntil(async () => (await reply(other, 'ENCRYPTION', 'REGENERATE')).t === 'map', 'the session to end with its connection', 10_000, 50);
    // While the regenerate's scan runs (or once it is done) a new session is refused or allowed; never both running.
    const second = await reply(other, 'BACKUP', 'BEGIN');
    if (second.t === 'error') assert.match(errorText(second), /encryption scan is running/);
    else {
      const m = new Map((second as { v: [RespValue, RespValue][] }).v.map(([k, x]) => [text(k), x]));
      assert.equal(text(await reply(other, 'BACKUP', 'END', text(m.get('session')))), 'OK');
    }
  });

});
