import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect as netConnect, type Socket } from 'node:net';
import type { Redis } from 'ioredis';
import { encodeCommand, parseInfo, sharedServer, startTarget, waitUntil, type ServerHandle } from './support/server-process.js';

let c: Redis;
const shared = sharedServer((_, client) => {
  c = client;
});

const srv = (): ServerHandle => shared.server;

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

test('errors inside a pipeline stay in their place', async () => {
  await c.call('HSET', 'h', 'f', 'v');
  const p = c.pipeline();
  for (let i = 0; i < 1_000; i++) {
    if (i % 3 === 0) p.incr('h');
    else if (i % 3 === 1) p.incr('n');
    else p.call('NOSUCHCMD');
  }
  const r = await p.exec();
  assert.ok(r);
  let n = 0;
  r.forEach(([err, v], i) => {
    if (i % 3 === 0) assert.equal(err?.message, 'WRONGTYPE Operation against a key holding the wrong kind of value', `#${i}`);
    else if (i % 3 === 1) assert.deepEqual([err, v], [null, ++n], `#${i}`);
    else assert.match(String(err?.message), /^ERR unknown command/, `#${i}`);
  });
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

async function connectedClients(c: Redis): Promise<number> {
  return Number(parseInfo((await c.call('INFO', 'clients')) as string).get('clients')?.get('connected_clients'));
}

/**
 * Writes 64 KiB chunks, honouring backpressure, until the server closes the socket; a server that
 * stops reading without closing leaves the writer waiting for 'drain' until the deadline.
 */
async function writeUntilClosedByServer(socket: Socket, firstBytes: Buffer, deadlineMs = 15_000): Promise<{ closedByServer: boolean; received: string }> {
  let received = '';
  let closed = false;
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  socket.on('error', () => {
    // A reset from the server's close arrives as ECONNRESET/EPIPE; 'close' follows.
  });
  const closedP = new Promise<void>((resolve) => socket.once('close', () => ((closed = true), resolve())));
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)));
  let timedOut = false;
  void deadline.then(() => (timedOut = true));
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let sent = 0;
  let next = firstBytes;
  while (!closed && !timedOut && sent < 256 * 1024 * 1024) {
    sent += next.length;
    if (!socket.write(next)) await Promise.race([new Promise<void>((resolve) => socket.once('drain', resolve)), closedP, deadline]);
    next = chunk;
  }
  clearTimeout(timer);
  const closedByServer = closed;
  socket.destroy();
  return { closedByServer, received };
}

test('after a protocol error the server closes the connection fully while the client keeps writing', async () => {
  const before = await connectedClients(c);
  const sockets: Socket[] = [];
  for (let i = 0; i < 5; i++) {
    const socket = netConnect({ host: '127.0.0.1', port: srv().port });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    sockets.push(socket);
  }
  await waitUntil(async () => (await connectedClients(c)) === before + sockets.length, 'the raw connections to be counted');
  // An inline line longer than 64 KiB: "too big inline request", then an endless stream of more.
  const results = await Promise.all(sockets.map((s) => writeUntilClosedByServer(s, Buffer.alloc(70 * 1024, 0x61))));
  for (const r of results) {
    assert.ok(r.closedByServer, 'the server closed the socket instead of leaving the writer blocked');
    // The server's close may reset the connection before the error is read; if it arrived, it is the error.
    if (r.received !== '') assert.match(r.received, /^-ERR Protocol error: too big inline request\r\n$/);
  }
  await waitUntil(async () => (await connectedClients(c)) === before, 'connected_clients back to where it started');
  assert.equal(await srv().client().call('PING'), 'PONG');
});

test('many clients at once: every increment counted, every write readable', async () => {
  const clients = Array.from({ length: 20 }, () => srv().client());
  await Promise.all(
    clients.map(async (k, i) => {
      for (let j = 0; j < 100; j++) {
        await k.call('INCR', 'shared');
        await k.call('HINCRBY', 'per-client', `c${i}`, '1');
      }
      await k.call('SET', `own:${i}`, String(i));
    }),
  );
  assert.equal(await c.call('GET', 'shared'), '2000');
  const per = (await c.call('HGETALL', 'per-client')) as string[];
  assert.equal(per.length, 40);
  for (let i = 1; i < per.length; i += 2) assert.equal(per[i], '100');
  assert.deepEqual(await c.call('MGET', ...clients.map((_, i) => `own:${i}`)), clients.map((_, i) => String(i)));
});

test('a client that disconnects inside MULTI leaves no trace', async () => {
  const before = await connectedClients(c);
  const raw = await srv().raw();
  await raw.command('MULTI');
  assert.equal(await raw.command('SET', 'tx', 'never'), '+QUEUED\r\n');
  await waitUntil(async () => (await connectedClients(c)) === before + 1, 'the raw connection to be counted');
  raw.destroy();
  await waitUntil(async () => (await connectedClients(c)) === before, 'the server to notice the disconnect');
  assert.equal(await c.call('EXISTS', 'tx'), 0);
});

describe('limits', () => {
  let limited: ServerHandle | undefined;
  before(async () => {
    // Redis accepts no smaller bulk limit than 1 MiB.
    limited = await startTarget({ maxClients: 4, maxBulkBytes: 1024 * 1024 });
  });
  after(async () => {
    await limited?.stop();
  });

  test('a bulk string above the limit is a protocol error; one below it is fine', async () => {
    const k = limited!.client();
    const fits = Buffer.alloc(1024 * 1024 - 100, 0x61);
    assert.equal(String(await k.callBuffer('SET', 'fits', fits)), 'OK');
    assert.equal(await k.call('STRLEN', 'fits'), fits.length);
    const raw = await limited!.raw();
    raw.send(`*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$${2 * 1024 * 1024}\r\n`);
    assert.match(await raw.readUntilClosed(), /^-ERR Protocol error[^\r\n]*\r\n$/);
    assert.equal(await k.call('EXISTS', 'big'), 0);
    await k.quit();
  });

  test('connections beyond max clients are refused with an error', async () => {
    const held = [limited!.client(), limited!.client(), limited!.client(), limited!.client()];
    for (const h of held) assert.equal(await h.call('PING'), 'PONG');
    const extra = await limited!.raw();
    assert.equal(await extra.readUntilClosed(), '-ERR max number of clients reached\r\n');
    // A refused client that keeps writing is closed too, not left blocked holding a descriptor.
    const refused = netConnect({ host: '127.0.0.1', port: limited!.port });
    await new Promise<void>((resolve, reject) => refused.once('connect', resolve).once('error', reject));
    const r = await writeUntilClosedByServer(refused, Buffer.alloc(64 * 1024, 0x61));
    assert.ok(r.closedByServer, 'the server closed the refused socket');
    if (r.received !== '') assert.equal(r.received, '-ERR max number of clients reached\r\n');
    const freed = held.pop()!;
    await freed.quit();
    await waitUntil(async () => (await connectedClients(held[0]!)) === 3, 'the freed slot');
    assert.equal(await limited!.client().call('PING'), 'PONG', 'a freed slot can be used again');
  });
});
