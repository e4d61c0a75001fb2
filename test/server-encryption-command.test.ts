import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { STATUS_FIELDS } from '../src/server/commands/encryption.js';
import { encodeCommand, startTdekv, tdekvOnly, waitUntil, type RawConnection, type RespValue, type ServerHandle } from './support/server-process.js';

// ENCRYPTION against a real server process: the reply shapes (RESP2 flat array, RESP3 map),
// a change made online, the lifecycle's refusals as one -ERR line, SIGHUP (issue 12, part 3).

const ADMIN = 'admin-pw';

function resp2Map(v: RespValue): Map<string, RespValue> {
  assert.equal(v.t, 'array');
  const items = (v as { v: RespValue[] }).v;
  assert.equal(items.length % 2, 0);
  const m = new Map<string, RespValue>();
  for (let i = 0; i < items.length; i += 2) m.set((items[i] as { v: Buffer }).v.toString(), items[i + 1]!);
  return m;
}

function resp3Map(v: RespValue): Map<string, RespValue> {
  assert.equal(v.t, 'map');
  return new Map((v as { v: [RespValue, RespValue][] }).v.map(([k, x]) => [(k as { v: Buffer }).v.toString(), x]));
}

async function reply(raw: RawConnection, ...args: string[]): Promise<RespValue> {
  raw.send(encodeCommand(...args));
  return (await raw.reply(60_000)).value;
}

const bulk = (v: RespValue | undefined): string => {
  assert.equal(v?.t, 'bulk', `got ${String(v?.t)}`);
  return (v as { v: Buffer }).v.toString();
};
const int = (v: RespValue | undefined): number => {
  assert.equal(v?.t, 'int', `got ${String(v?.t)}`);
  return Number((v as { v: bigint }).v);
};

async function admin(server: ServerHandle, proto: 2 | 3 = 2): Promise<RawConnection> {
  const raw = await server.raw();
  raw.send(encodeCommand('HELLO', String(proto), 'AUTH', 'admin', ADMIN));
  assert.equal((await raw.reply()).value.t, proto === 3 ? 'map' : 'array');
  return raw;
}

describe('ENCRYPTION on a running server', tdekvOnly(), () => {
  let server: ServerHandle | undefined;
  before(async () => {
    server = await startTdekv({ settings: { security: { 'admin-password': ADMIN, encryption: { 'scan-rate-limit': '0' } } } });
  });
  after(async () => {
    await server?.stop();
  });
  const srv = (): ServerHandle => {
    assert.ok(server, 'server did not start');
    return server;
  };

  test('STATUS in RESP2: a flat array of every field, snake_case, numbers as integers, percent with 2 decimals', async () => {
    const raw = await admin(srv(), 2);
    const m = resp2Map(await reply(raw, 'ENCRYPTION', 'STATUS'));
    assert.deepEqual([...m.keys()], STATUS_FIELDS.map(([n]) => n));
    assert.equal(int(m.get('encryption_state')), 3);
    assert.equal(bulk(m.get('encryption_state_desc')), 'ENCRYPTED');
    assert.ok([0, 4].includes(int(m.get('encryption_scan_state'))));
    assert.match(bulk(m.get('percent_complete')), /^\d{1,3}\.\d\d$/);
    assert.equal(bulk(m.get('encryption_method')), 'aes256-ctr');
    assert.equal(bulk(m.get('key_algorithm')), 'AES');
    assert.equal(int(m.get('key_length')), 256);
    assert.equal(typeof int(m.get('data_key_id')), 'number');
    assert.equal(bulk(m.get('master_key_type')), 'file');
    assert.match(bulk(m.get('master_key_identity')), /master\.key$/);
    assert.equal(int(m.get('scan_rate_limit')), 0);
    assert.equal(int(m.get('scan_auto')), 1);
    assert.equal(m.get('history')?.t, 'array');
  });

  test('STATUS in RESP3: a map, percent a double, booleans and nulls typed', async () => {
    const raw = await admin(srv(), 3);
    const m = resp3Map(await reply(raw, 'ENCRYPTION', 'STATUS'));
    assert.deepEqual([...m.keys()], STATUS_FIELDS.map(([n]) => n));
    assert.equal(m.get('percent_complete')?.t, 'double');
    assert.equal(m.get('scan_auto')?.t, 'bool');
    assert.equal(m.get('scan_error')?.t, 'null');
    assert.equal(int(m.get('encryption_state')), 3);
  });

  test('REGENERATE is state 4 and completes; the history has the change as a nested map; RETIRE returns ids', async () => {
    const raw = await admin(srv(), 3);
    for (let i = 0; i < 200; i++) raw.send(encodeCommand('SET', `key:${i}`, 'v'.repeat(200)));
    for (let i = 0; i < 200; i++) await raw.reply();
    const before = resp3Map(await reply(raw, 'ENCRYPTION', 'STATUS'));
    const started = resp3Map(await reply(raw, 'ENCRYPTION', 'REGENERATE'));
    // 4 while the scan runs; with nothing but the memtable and no rate limit it may be done already.
    assert.ok([3, 4].includes(int(started.get('encryption_state'))));
    assert.notEqual(int(started.get('data_key_id')), int(before.get('data_key_id')));
    let last = started;
    await waitUntil(
      async () => {
        last = resp3Map(await reply(raw, 'ENCRYPTION', 'STATUS'));
        return bulk(last.get('encryption_scan_state_desc')) !== 'RUNNING';
      },
      'the scan to end',
      60_000,
      50,
    );
    assert.equal(bulk(last.get('encryption_scan_state_desc')), 'COMPLETED');
    assert.equal(int(last.get('encryption_state')), 3);
    const history = last.get('history') as { t: 'array'; v: RespValue[] };
    const change = history.v.map(resp3Map).find((h) => int(h.get('to')) === 4);
    assert.ok(change, 'a change to state 4 is in the history');
    assert.equal(bulk(change.get('to_desc')), 'KEY_CHANGE_IN_PROGRESS');
    const retired = await reply(raw, 'ENCRYPTION', 'RETIRE');
    assert.equal(retired.t, 'array');
    // Data commands answer while the lifecycle works and after.
    assert.equal(bulk(await reply(raw, 'GET', 'key:7')), 'v'.repeat(200));
  });

  test('a refused change is one -ERR line; replies of a pipeline stay in order around deferred ones', async () => {
    const raw = await admin(srv(), 2);
    // SUSPEND with no scan running: the lifecycle refuses it (or accepts it as a no-op); either way one reply, in order.
    raw.send(Buffer.concat([encodeCommand('PING', 'a'), encodeCommand('ENCRYPTION', 'SUSPEND'), encodeCommand('PING', 'b')]));
    const first = await raw.reply();
    const middle = await raw.reply(60_000);
    const last = await raw.reply();
    assert.equal(first.raw.toString(), '$1\r\na\r\n');
    assert.equal(last.raw.toString(), '$1\r\nb\r\n');
    if (middle.value.t === 'error') assert.match(middle.raw.toString(), /^-ERR [^\r\n]+\r\n$/);
    else assert.equal(middle.value.t, 'array');
  });

  test('RELOAD re-reads the config file: a new method starts the scan; a broken file changes nothing', async () => {
    const raw = await admin(srv(), 2);
    const configPath = srv().configPath!;
    const original = await readFile(configPath, 'utf8');
    try {
      await writeFile(configPath, original.replace('data-encryption-method = "aes256-ctr"', 'data-encryption-method = "nonsense"'));
      raw.send(encodeCommand('ENCRYPTION', 'RELOAD'));
      const bad = await raw.reply(60_000);
      assert.equal(bad.value.t, 'error');
      assert.match(bad.raw.toString(), /^-ERR [^\r\n]*data-encryption-method[^\r\n]*\r\n$/);
      assert.equal(bulk(resp2Map(await reply(raw, 'ENCRYPTION', 'STATUS')).get('encryption_method')), 'aes256-ctr');

      await writeFile(configPath, original.replace('data-encryption-method = "aes256-ctr"', 'data-encryption-method = "aes128-ctr"'));
      const report = resp2Map(await reply(raw, 'ENCRYPTION', 'RELOAD'));
      const applied = (report.get('applied') as { v: RespValue[] }).v.map((v) => bulk(v));
      assert.ok(applied.some((a) => a.includes('data-encryption-method')), applied.join(', '));
      const status = resp2Map(report.get('status')!);
      assert.equal(bulk(status.get('encryption_method')), 'aes128-ctr');
      assert.ok([3, 4].includes(int(status.get('encryption_state'))));
      await waitUntil(async () => bulk(resp2Map(await reply(raw, 'ENCRYPTION', 'STATUS')).get('encryption_scan_state_desc')) !== 'RUNNING', 'the scan to end', 60_000, 50);

      // SIGHUP does the same as RELOAD, and logs the report.
      await writeFile(configPath, original);
      process.kill(srv().pid, 'SIGHUP');
      await waitUntil(() => /reload applied/.test(srv().stderr()), 'the SIGHUP reload to be logged', 20_000, 50);
      await waitUntil(async () => bulk(resp2Map(await reply(raw, 'ENCRYPTION', 'STATUS')).get('encryption_method')) === 'aes256-ctr', 'aes256-ctr after SIGHUP', 20_000, 50);
    } finally {
      await writeFile(configPath, original);
    }
  });
});
