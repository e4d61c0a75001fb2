import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import type { Redis } from 'ioredis';
import { encodeCommand, startTarget, type ServerHandle } from './support/server-process.js';

let server: ServerHandle | undefined;
let c: Redis;

before(async () => {
  server = await startTarget();
  c = server.client();
});
after(async () => {
  await server?.stop();
});
beforeEach(async () => {
  await c.flushall();
});

function srv(): ServerHandle {
  assert.ok(server, 'server did not start');
  return server;
}

test('10,000 commands in one pipeline come back in order', async () => {
  const p = c.pipeline();
  for (let i = 0; i < 5_000; i++) {
    p.incr('counter');
    p.echo(`e${i}`);
  }
  const r = await p.exec();
  assert.ok(r);
  assert.equal(r.length, 10_000);
  for (let i = 0; i < 5_000; i++) {
    assert.deepEqual(r[2 * i], [null, i + 1]);
    assert.deepEqual(r[2 * i + 1], [null, `e${i}`]);
  }
});

test('in a pipeline each read sees the write before it', async () => {
  const p = c.pipeline();
  for (let i = 0; i < 2_000; i++) {
    p.set('k', `v${i}`);
    p.get('k');
    p.hset('h', `f${i % 10}`, String(i));
    p.hget('h', `f${i % 10}`);
    if (i % 100 === 99) p.del('k');
    p.exists('k');
  }
  const r = await p.exec();
  assert.ok(r);
  let j = 0;
  for (let i = 0; i < 2_000; i++) {
    assert.deepEqual(r[j++], [null, 'OK']);
    assert.deepEqual(r[j++], [null, `v${i}`], `GET after SET #${i}`);
    assert.equal(r[j++]![0], null);
    assert.deepEqual(r[j++], [null, String(i)], `HGET after HSET #${i}`);
    if (i % 100 === 99) assert.deepEqual(r[j++], [null, 1]);
    assert.deepEqual(r[j++], [null, i % 100 === 99 ? 0 : 1], `EXISTS #${i}`);
  }
  assert.equal(j, r.length);
});

test('many commands in one TCP write, and one command split across many writes', async () => {
  const raw = await srv().raw();
  const batch = Buffer.concat(Array.from({ length: 500 }, (_, i) => encodeCommand('SET', `k${i}`, `v${i}`)));
  raw.send(Buffer.concat([batch, encodeCommand('DBSIZE')]));
  for (let i = 0; i < 500; i++) assert.equal((await raw.reply()).raw.toString(), '+OK\r\n');
  assert.equal((await raw.reply()).raw.toString(), ':500\r\n');

  const split = encodeCommand('SET', 'split', 'x'.repeat(100));
  for (const byte of split) raw.send(Buffer.from([byte]));
  assert.equal((await raw.reply()).raw.toString(), '+OK\r\n');
  assert.equal(await c.call('STRLEN', 'split'), 100);
});

test('inline commands', async () => {
  const raw = await srv().raw();
  raw.send('PING\r\n');
  assert.equal((await raw.reply()).raw.toString(), '+PONG\r\n');
  raw.send('SET inline "hello world"\r\n');
  assert.equal((await raw.reply()).raw.toString(), '+OK\r\n');
  assert.equal(await c.call('GET', 'inline'), 'hello world');
  raw.send('\r\n');
  raw.send('EXISTS inline\n');
  assert.equal((await raw.reply()).raw.toString(), ':1\r\n', 'empty lines are skipped; a bare LF ends a line');
});

async function expectProtocolError(bytes: string): Promise<string> {
  const bystander = srv().client();
  await bystander.call('SET', 'bystander', 'ok');
  const raw = await srv().raw();
  raw.send(bytes);
  const got = await raw.readUntilClosed();
  assert.match(got, /^-ERR Protocol error[^\r\n]*\r\n$/, `reply to ${JSON.stringify(bytes)}`);
  assert.equal(await bystander.call('GET', 'bystander'), 'ok', 'other clients keep working');
  assert.equal(await srv().client().call('PING'), 'PONG', 'new clients are accepted');
  return got;
}

test('a malformed bulk length is a protocol error that closes the connection', async () => {
  await expectProtocolError('*1\r\n$abc\r\n');
});

test('other malformed requests are protocol errors too', async () => {
  await expectProtocolError('*abc\r\n');
  await expectProtocolError('*1\r\nfoo\r\n');
  await expectProtocolError('*1\r\n$-5\r\n');
  await expectProtocolError('*1\r\n$99999999999\r\n');
  await expectProtocolError('SET "unbalanced\r\n');
});

test('replies queued before the protocol error are still delivered', async () => {
  const raw = await srv().raw();
  raw.send(encodeCommand('SET', 'before', '1'));
  raw.send(encodeCommand('GET', 'before'));
  raw.send('*1\r\n$x\r\n');
  const got = await raw.readUntilClosed();
  assert.match(got, /^\+OK\r\n\$1\r\n1\r\n-ERR Protocol error[^\r\n]*\r\n$/);
  assert.equal(await c.call('GET', 'before'), '1');
});
