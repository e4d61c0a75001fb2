import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { silentLogger } from '../src/log/logger.js';
import type { CommandContext } from '../src/server/commands/command.js';
import { Connection, type ConnectionHost } from '../src/server/connection.js';

/**
 * What Connection uses of a socket, recording each write: the number of socket writes per
 * burst of input is what these tests pin, and a real socket cannot show it deterministically.
 */
class FakeSocket extends EventEmitter {
  readonly writes: Buffer[] = [];
  remoteAddress = '127.0.0.1';
  remotePort = 1;
  writableLength = 0;
  ended = false;
  write(data: Buffer): boolean {
    this.writes.push(Buffer.from(data));
    return true;
  }
  setNoDelay(): this {
    return this;
  }
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  end(cb?: () => void): this {
    this.ended = true;
    cb?.();
    return this;
  }
  destroy(): this {
    this.emit('close');
    return this;
  }
}

/** A host whose commands reply `+<name>` and which runs deferred flushes when the test says. */
function stubHost(options: { dependency?: () => number } = {}) {
  const deferred: Connection[] = [];
  const host: ConnectionHost = {
    maxRequestSize: 1024 * 1024,
    logger: silentLogger(),
    clientLimits: { queryBuffer: 1024 * 1024 * 1024, output: { hard: 0, soft: 0, softSeconds: 0 } },
    execute(ctx: CommandContext, args: Buffer[]) {
      ctx.out.simple(args[0]!.toString('latin1'));
    },
    scheduleCommit() {},
    flushLater(conn) {
      deferred.push(conn);
    },
    dependency: options.dependency ?? (() => 0),
    holding() {},
    closed() {},
    context: () => ({}) as Omit<CommandContext, 'out' | 'client'>,
    countOutput() {},
    countInput() {},
    protocolError() {},
    memoryChanged() {},
    limitReached() {},
  };
  const endOfTurn = (): void => {
    for (const conn of deferred.splice(0)) {
      conn.flushQueued = false;
      conn.flush();
    }
  };
  return { host, endOfTurn, deferred };
}

const command = (name: string): Buffer => Buffer.from(`*1\r\n$${name.length}\r\n${name}\r\n`);

describe('Connection: replies of one event-loop turn go out in one socket write', () => {
  test('two reads in the same turn: no write between them, one write of both replies at the end of the turn', () => {
    const { host, endOfTurn, deferred } = stubHost();
    const socket = new FakeSocket();
    const conn = new Connection(socket as unknown as Socket, 1, true, host);
    socket.emit('data', Buffer.concat([command('A'), command('B')]));
    socket.emit('data', command('C'));
    assert.equal(socket.writes.length, 0, 'replies wait for the end of the turn');
    assert.equal(deferred.length, 1, 'the connection asks once per turn, not once per read');
    endOfTurn();
    assert.deepEqual(socket.writes.map((w) => w.toString()), ['+A\r\n+B\r\n+C\r\n']);
    assert.equal(conn.outputBytes, 0);
    // A later turn asks again.
    socket.emit('data', command('D'));
    endOfTurn();
    assert.deepEqual(socket.writes.map((w) => w.toString()), ['+A\r\n+B\r\n+C\r\n', '+D\r\n']);
  });

  test('a command split across reads is answered once it is complete, still in one write', () => {
    const { host, endOfTurn } = stubHost();
    const socket = new FakeSocket();
    new Connection(socket as unknown as Socket, 1, true, host);
    const whole = Buffer.concat([command('PING'), command('ECHO')]);
    socket.emit('data', whole.subarray(0, 20));
    socket.emit('data', whole.subarray(20));
    endOfTurn();
    assert.deepEqual(socket.writes.map((w) => w.toString()), ['+PING\r\n+ECHO\r\n']);
  });

  test('replies held for a write batch are still released in one write', () => {
    let pending = 1;
    const { host, endOfTurn } = stubHost({ dependency: () => pending });
    const socket = new FakeSocket();
    const conn = new Connection(socket as unknown as Socket, 1, true, host);
    socket.emit('data', command('SET'));
    socket.emit('data', command('GET'));
    endOfTurn();
    assert.equal(socket.writes.length, 0, 'held until batch 1 is applied');
    pending = 0;
    assert.equal(conn.release(1), false);
    assert.deepEqual(socket.writes.map((w) => w.toString()), ['+SET\r\n+GET\r\n']);
  });

  test('QUIT-like close and protocol errors are not deferred: the reply goes out and the socket ends at once', () => {
    const { host } = stubHost();
    const socket = new FakeSocket();
    new Connection(socket as unknown as Socket, 1, true, host);
    socket.emit('data', Buffer.from('*1\r\n$x\r\n'));
    assert.equal(socket.writes.length, 1);
    assert.match(socket.writes[0]!.toString(), /^-ERR Protocol error/);
    assert.equal(socket.ended, true);
  });
});
