/**
 * What a Node server costs before it does any work: the server bench's stand-in
 * `TDEKV_BENCH_SERVER_STANDIN=node-floor` (docs/benchmarks.md, "Node's floor"). It answers
 * PING, and every SET with +OK and every GET with one fixed 3-byte value, storing nothing and
 * parsing only enough to count commands: redis-benchmark's SET and GET requests hold one `*`
 * byte each (keys `key:…`, values `xxx`). Not a Redis server, and never one to point a client
 * at: it is here so that tdekv's ratios to redis-server can be read against the ratio that
 * Node's sockets and event loop allow on the same machine.
 *
 * Usage: node dist/bench/node-floor-server.js PORT
 */
import { createServer } from 'node:net';

const STAR = 0x2a;
const OK = Buffer.from('+OK\r\n');
const VALUE = Buffer.from('$3\r\nxxx\r\n');
const PONG = Buffer.from('+PONG\r\n');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write(`usage: node-floor-server.js PORT (got ${String(process.argv[2])})\n`);
  process.exit(2);
}

/** `n` copies of `reply`: with -P16 one chunk carries 16 commands and gets one write. */
function replies(reply: Buffer, n: number): Buffer {
  if (n === 1) return reply;
  const out = Buffer.allocUnsafe(reply.length * n);
  for (let i = 0; i < n; i++) reply.copy(out, i * reply.length);
  return out;
}

const server = createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    let commands = 0;
    for (let i = 0; i < chunk.length; i++) if (chunk[i] === STAR) commands++;
    if (commands === 0) return;
    // One kind of command per run (redis-benchmark -t set or -t get); PING only at start-up.
    const reply = chunk.includes('GET') ? VALUE : chunk.includes('PING') ? PONG : OK;
    socket.write(replies(reply, commands));
  });
});
server.listen(port, '127.0.0.1');
// Nothing to drain or save.
process.on('SIGTERM', () => process.exit(0));
