import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { freePort } from './support/server-process.js';

/*
 * The server bench's node-floor stand-in (bench/node-floor-server.ts) must answer what
 * redis-benchmark sends with what redis-benchmark expects, one reply per command, or its
 * figures mean nothing.
 */

const FLOOR = fileURLToPath(new URL('../bench/node-floor-server.js', import.meta.url));

function command(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/** Sends `request` and collects replies until `expected` bytes arrived. */
async function exchange(socket: Socket, request: string, expected: number): Promise<string> {
  let got = '';
  const done = new Promise<void>((resolve) => {
    const onData = (d: Buffer): void => {
      got += d.toString('latin1');
      if (got.length >= expected) {
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
  });
  socket.write(request);
  await done;
  return got;
}

test('the node-floor stand-in answers PING, SET and GET, one reply per command, pipelined too', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const child = spawn(process.execPath, [FLOOR, String(port)], { stdio: 'ignore' });
  try {
    let socket: Socket | undefined;
    for (let tries = 0; socket === undefined && tries < 100; tries++) {
      const s = connect({ host: '127.0.0.1', port });
      try {
        await once(s, 'connect');
        socket = s;
      } catch {
        s.destroy();
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.ok(socket, 'the stand-in listens');
    assert.equal(await exchange(socket, command('PING'), 7), '+PONG\r\n');
    assert.equal(await exchange(socket, command('SET', 'key:000000000042', 'xxx'), 5), '+OK\r\n');
    assert.equal(await exchange(socket, command('GET', 'key:000000000042'), 9), '$3\r\nxxx\r\n');
    const sets = Array.from({ length: 16 }, (_, i) => command('SET', `key:${String(i).padStart(12, '0')}`, 'xxx')).join('');
    assert.equal(await exchange(socket, sets, 16 * 5), '+OK\r\n'.repeat(16));
    const gets = Array.from({ length: 16 }, (_, i) => command('GET', `key:${String(i).padStart(12, '0')}`)).join('');
    assert.equal(await exchange(socket, gets, 16 * 9), '$3\r\nxxx\r\n'.repeat(16));
    socket.destroy();
  } finally {
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0, 'SIGTERM ends it cleanly');
  }
});
