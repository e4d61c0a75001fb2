import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProtocolError, RequestParser, type RequestParserOptions } from '../src/server/resp/request-parser.js';

const defaults: RequestParserOptions = { maxBulkLength: 512 * 1024 * 1024 };

function encode(args: ReadonlyArray<Uint8Array | string>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.from(a);
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** `input` cut at the positions the seeds pick (modulo its length), in order. */
function splitAt(input: Buffer, cutSeeds: readonly number[]): Buffer[] {
  const cuts = [...new Set(cutSeeds.map((s) => (input.length === 0 ? 0 : s % input.length)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const c of cuts) {
    chunks.push(input.subarray(from, c));
    from = c;
  }
  chunks.push(input.subarray(from));
  return chunks;
}

/** Feeds the chunks and returns the commands as latin1 strings (binary-exact). */
function parse(chunks: ReadonlyArray<Buffer | string>, options = defaults, parser = new RequestParser(options)): string[][] {
  const out: string[][] = [];
  for (const c of chunks) parser.push(Buffer.from(c as string, 'latin1'), (args) => out.push(args.map((a) => a.toString('latin1'))));
  return out;
}

/** Parses input, expecting the commands before the error and then the error text. */
function expectError(input: Buffer | string, message: string, before: string[][] = [], options = defaults): void {
  const parser = new RequestParser(options);
  const got: string[][] = [];
  assert.throws(
    () => parser.push(Buffer.from(input as string, 'latin1'), (args) => got.push(args.map((a) => a.toString('latin1')))),
    (e: unknown) => e instanceof ProtocolError && e.message === message,
  );
  assert.deepEqual(got, before);
}

describe('RequestParser: RESP arrays', () => {
  test('one command, and pipelined commands in one chunk, in order', () => {
    assert.deepEqual(parse(['*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n']), [['SET', 'k', 'hello']]);
    const pipelined = Buffer.concat([encode(['PING']), encode(['GET', 'a']), encode(['ECHO', '']), encode(['DEL', 'a', 'b'])]);
    assert.deepEqual(parse([pipelined.toString('latin1')]), [['PING'], ['GET', 'a'], ['ECHO', ''], ['DEL', 'a', 'b']]);
  });

  test('arguments are views of the chunk, not copies', () => {
    const chunk = encode(['SET', 'key', 'value']);
    let seen: Buffer[] = [];
    new RequestParser(defaults).push(chunk, (args) => (seen = args));
    assert.equal(seen.length, 3);
    for (const a of seen) assert.equal(a.buffer, chunk.buffer);
  });

  test('*0 and *-1 (and any negative count) are skipped', () => {
    assert.deepEqual(parse(['*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n*-5\r\n']), [['PING']]);
  });

  test('binary arguments with \\r\\n inside, and a command cut at every byte', () => {
    const input = Buffer.concat([encode(['SET', 'a\r\nb', Buffer.from([0, 13, 10, 255])]), encode(['GET', 'a\r\nb'])]);
    const want = [['SET', 'a\r\nb', '\x00\r\n\xff'], ['GET', 'a\r\nb']];
    for (let i = 0; i <= input.length; i++) {
      const parser = new RequestParser(defaults);
      assert.deepEqual(parse([input.subarray(0, i).toString('latin1'), input.subarray(i).toString('latin1')], defaults, parser), want);
      assert.equal(parser.pendingBytes, 0);
    }
    // And one byte at a time.
    assert.deepEqual(parse([...input.toString('latin1')]), want);
  });

  test('pendingBytes counts what waits for the rest of a command', () => {
    const parser = new RequestParser(defaults);
    const got = parse(['*2\r\n$3\r\nGET\r\n$5\r\nhe'], defaults, parser);
    assert.deepEqual(got, []);
    assert.equal(parser.pendingBytes, 2);
    // The argument "GET" is kept compactly: its 3 bytes and an 8-byte offset.
    assert.equal(parser.argvBytes, 3 + 8);
    assert.deepEqual(parse(['llo\r\n'], defaults, parser), [['GET', 'hello']]);
    assert.equal(parser.pendingBytes, 0);
  });

  test('like Redis, the two bytes after a bulk and after a count are skipped unchecked', () => {
    assert.deepEqual(parse(['*1\rX$4\rYPINGZZ']), [['PING']]);
  });

  test('property: random commands, concatenated and split anywhere, come back exactly', () => {
    const arg = fc.oneof(
      fc.uint8Array({ maxLength: 40 }),
      fc.constantFrom(new Uint8Array(0), Buffer.from('\r\n'), Buffer.from('\r'), Buffer.from('*2\r\n$1\r\n')),
    );
    // Up to 16 arguments a command's array is sized to its count, above it grows: both, cut anywhere.
    const command = fc.oneof(fc.array(arg, { minLength: 1, maxLength: 6 }), fc.array(arg, { minLength: 15, maxLength: 20 }));
    fc.assert(
      fc.property(fc.array(command, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 10 }), (commands, cutSeeds) => {
        const input = Buffer.concat(commands.map(encode));
        const chunks = splitAt(input, cutSeeds);
        const parser = new RequestParser(defaults);
        const got: Buffer[][] = [];
        for (const c of chunks) parser.push(c, (args) => got.push(args.map((a) => Buffer.from(a))));
        assert.deepEqual(got, commands.map((cmd) => cmd.map((a) => Buffer.from(a))));
        assert.equal(parser.pendingBytes, 0);
      }),
      { numRuns: 500 },
    );
  });

  test('property: a callback that stops the parser loses, reorders and repeats nothing after resume()', () => {
    const arg = fc.uint8Array({ maxLength: 20 });
    const command = fc.array(arg, { minLength: 1, maxLength: 5 });
    fc.assert(
      fc.property(fc.array(command, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 8 }), fc.array(fc.boolean(), { maxLength: 12 }), (commands, cutSeeds, stops) => {
        const input = Buffer.concat(commands.map(encode));
        const chunks = splitAt(input, cutSeeds);
        const parser = new RequestParser(defaults);
        const got: Buffer[][] = [];
        const onCommand = (args: Buffer[]): boolean => {
          got.push(args.map((a) => Buffer.from(a)));
          return stops[got.length - 1] !== true;
        };
        for (const c of chunks) {
          const before = got.length;
          const wasStopped = parser.stopped;
          parser.push(c, onCommand);
          // While stopped, input is kept, not parsed.
          if (wasStopped) assert.equal(got.length, before);
        }
        for (let guard = 0; parser.stopped && guard <= commands.length; guard++) parser.resume(onCommand);
        assert.equal(parser.stopped, false);
        assert.deepEqual(got, commands.map((cmd) => cmd.map((a) => Buffer.from(a))));
        assert.equal(parser.pendingBytes + parser.argvBytes, 0);
      }),
      { numRuns: 500 },
    );
  });

  test('stopped: later input waits, counted in pendingBytes, and inline commands stop too', () => {
    const parser = new RequestParser(defaults);
    const got: string[] = [];
    const stopAfterEach = (args: Buffer[]): boolean => {
      got.push(args.map((a) => a.toString('latin1')).join(' '));
      return false;
    };
    parser.push(Buffer.from('PING\r\nECHO a\r\n*1\r\n$4\r\nPI'), stopAfterEach);
    assert.deepEqual(got, ['PING']);
    assert.equal(parser.stopped, true);
    assert.equal(parser.pendingBytes, 'ECHO a\r\n*1\r\n$4\r\nPI'.length);
    parser.push(Buffer.from('NG\r\n'), stopAfterEach);
    assert.deepEqual(got, ['PING'], 'nothing is parsed while stopped');
    parser.resume(stopAfterEach);
    assert.deepEqual(got, ['PING', 'ECHO a']);
    parser.resume(() => got.push('rest'));
    assert.deepEqual(got, ['PING', 'ECHO a', 'rest']);
    assert.equal(parser.pendingBytes, 0);
    assert.equal(parser.stopped, false);
  });

  test('an unfinished command keeps its arguments compactly, copied out of the chunks', () => {
    // A hostile client's unfinished array: a view per element cost ~110 bytes of server memory per byte sent.
    const parser = new RequestParser(defaults);
    const n = 100_000;
    const chunk = Buffer.from(`*${n + 1}\r\n` + '$1\r\na\r\n'.repeat(n));
    const got: Buffer[][] = [];
    for (let off = 0; off < chunk.length; off += 65536) parser.push(chunk.subarray(off, off + 65536), (args) => got.push(args));
    assert.equal(got.length, 0);
    // One byte and one 8-byte offset per element, at most doubled by geometric growth.
    assert.ok(parser.argvBytes >= n * 9, `argvBytes ${parser.argvBytes}`);
    assert.ok(parser.argvBytes <= n * 9 * 2, `argvBytes ${parser.argvBytes}`);
    // The arguments no longer depend on the chunks they came in.
    chunk.fill(0x7a);
    parser.push(Buffer.from('$3\r\nend\r\n'), (args) => got.push(args));
    assert.equal(got.length, 1);
    assert.equal(got[0]!.length, n + 1);
    assert.ok(got[0]!.slice(0, n).every((a) => a.length === 1 && a[0] === 0x61));
    assert.equal(got[0]![n]!.toString(), 'end');
    assert.equal(parser.pendingBytes, 0);
    assert.equal(parser.argvBytes, 0);
  });

  test('a large argument of an unfinished command is kept, not copied again', () => {
    const parser = new RequestParser(defaults);
    const big = Buffer.alloc(100_000, 0x62);
    const got: Buffer[][] = [];
    parser.push(Buffer.concat([Buffer.from('*3\r\n$4\r\nHSET\r\n$100000\r\n'), big, Buffer.from('\r\n')]), (args) => got.push(args));
    assert.ok(parser.argvBytes >= 100_000 && parser.argvBytes < 100_100, `argvBytes ${parser.argvBytes}`);
    parser.push(Buffer.from('$1\r\nv\r\n'), (args) => got.push(args));
    assert.deepEqual(got.map((c) => c.map((a) => a.length)), [[4, 100_000, 1]]);
    assert.ok(got[0]![1]!.equals(big));
  });

  test('a 5 MB bulk in 64 KiB chunks parses in linear time, followed by more commands', () => {
    const big = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    const input = Buffer.concat([encode(['SET', 'big', big]), encode(['PING'])]);
    const parser = new RequestParser(defaults);
    const got: Buffer[][] = [];
    // Count the bytes copied by joins: re-joining the buffered data on every chunk would copy ~200 MB.
    const concat = Buffer.concat;
    let copied = 0;
    Buffer.concat = (list: readonly Uint8Array[], totalLength?: number) => {
      const out = concat(list, totalLength);
      copied += out.length;
      return out;
    };
    const started = performance.now();
    try {
      for (let i = 0; i < input.length; i += 64 * 1024) parser.push(input.subarray(i, i + 64 * 1024), (args) => got.push(args));
    } finally {
      Buffer.concat = concat;
    }
    const elapsed = performance.now() - started;
    assert.equal(got.length, 2);
    assert.ok(got[0]![2]!.equals(big));
    assert.deepEqual(got[1]!.map(String), ['PING']);
    assert.ok(copied <= big.length + 1024, `copied ${copied} bytes`);
    assert.ok(elapsed < 1000, `took ${elapsed.toFixed(1)} ms`);
  });

  test('maxBulkLength is enforced on the announced length, before the data arrives', () => {
    const options = { maxBulkLength: 10 };
    assert.deepEqual(parse(['*1\r\n$10\r\n0123456789\r\n'], options), [['0123456789']]);
    expectError('*1\r\n$11\r\n', 'Protocol error: invalid bulk length', [], options);
  });
});

describe('RequestParser: errors, with Redis 7 texts', () => {
  test('invalid multibulk length', () => {
    for (const bad of ['*\r\n', '*x\r\n', '*01\r\n', '*+1\r\n', '*1 \r\n', '*-0\r\n', '*99999999999999999999\r\n']) {
      expectError(bad, 'Protocol error: invalid multibulk length');
    }
    expectError('*1048577\r\n', 'Protocol error: invalid multibulk length');
    expectError('*3\r\n', 'Protocol error: invalid multibulk length', [], { ...defaults, maxMultibulkLength: 2 });
    // A negative count past int64 is not a skip but an error, as string2ll fails.
    expectError('*-9223372036854775809\r\n', 'Protocol error: invalid multibulk length');
    assert.deepEqual(parse(['*-9223372036854775808\r\n']), []);
  });

  test('invalid bulk length', () => {
    for (const bad of ['$\r\n', '$-1\r\n', '$x\r\n', '$01\r\n', '$1x\r\n', '$99999999999999999999999\r\n']) {
      expectError(`*1\r\n${bad}`, 'Protocol error: invalid bulk length');
    }
  });

  test("expected '$', got 'X' — only once the line is complete", () => {
    expectError('*1\r\n:5\r\n', "Protocol error: expected '$', got ':'");
    expectError('*2\r\n$3\r\nGET\r\n+x\r\n', "Protocol error: expected '$', got '+'");
    const parser = new RequestParser(defaults);
    parser.push(Buffer.from('*1\r\n:5'), () => assert.fail());
    parser.push(Buffer.from('\r'), () => assert.fail());
    assert.throws(() => parser.push(Buffer.from('\n'), () => assert.fail()), /expected '\$', got ':'/);
  });

  test('too big mbulk / bulk count strings: more than 64 KiB without a \\r', () => {
    for (const [prefix, message] of [
      ['*', 'Protocol error: too big mbulk count string'],
      ['*1\r\n$', 'Protocol error: too big bulk count string'],
    ] as const) {
      // Redis counts from the '*' or '$' and fails past PROTO_INLINE_MAX_SIZE (64 KiB).
      const parser = new RequestParser(defaults);
      parser.push(Buffer.from(prefix), () => assert.fail());
      parser.push(Buffer.alloc(64 * 1024 - 1, '1'), () => assert.fail());
      assert.throws(() => parser.push(Buffer.from('1'), () => assert.fail()), (e: unknown) => e instanceof ProtocolError && e.message === message);
      // Once the line has its \r, it is an ordinary (invalid) count instead.
      const long = prefix + '1'.repeat(64 * 1024);
      expectError(long + '\r\n', message.includes('mbulk') ? 'Protocol error: invalid multibulk length' : 'Protocol error: invalid bulk length');
    }
  });

  test('too big inline request, however the line arrives', () => {
    const line = 'x'.repeat(64 * 1024);
    assert.deepEqual(parse([line + '\r\n']), [[line]]);
    expectError(line + 'x\r\n', 'Protocol error: too big inline request');
    const parser = new RequestParser(defaults);
    parser.push(Buffer.from(line + '\r'), () => assert.fail());
    assert.throws(() => parser.push(Buffer.from('x'), () => assert.fail()), /too big inline request/);
    expectError('ab', 'Protocol error: too big inline request', [], { ...defaults, maxInlineLength: 1 });
  });

  test('unbalanced quotes', () => {
    for (const bad of ['ECHO "a\r\n', "ECHO 'a\n", 'ECHO "a"x\n', "ECHO 'a'x\n", 'ECHO "a\\"\n', "ECHO 'a\\'\n", 'ECHO "a\\\n']) {
      expectError(bad, 'Protocol error: unbalanced quotes in request');
    }
  });

  test('commands before the error are delivered; the parser then refuses everything', () => {
    const parser = new RequestParser(defaults);
    const got: string[] = [];
    assert.throws(() => parser.push(Buffer.from('PING\r\n*1\r\n$4\r\nECHO\r\n*x\r\nPING\r\n'), (a) => got.push(a.join(' '))), ProtocolError);
    assert.deepEqual(got, ['PING', 'ECHO']);
    assert.throws(() => parser.push(Buffer.from('PING\r\n'), () => assert.fail()), /invalid multibulk length/);
  });
});

describe('RequestParser: inline commands', () => {
  test('split on blanks; \\n or \\r\\n ends the line; empty lines are skipped', () => {
    assert.deepEqual(parse(['PING\r\n', 'PING\n', ' SET  a\tb \t\r\n', '\r\n', '\n', '  \t \r\n', 'GET a\n']), [
      ['PING'],
      ['PING'],
      ['SET', 'a', 'b'],
      ['GET', 'a'],
    ]);
  });

  test('inline and RESP mixed, and an inline line cut anywhere', () => {
    const input = 'SET k "a b"\r\n*1\r\n$4\r\nPING\r\nGET k\n';
    for (let i = 0; i <= input.length; i++) {
      assert.deepEqual(parse([input.slice(0, i), input.slice(i)]), [['SET', 'k', 'a b'], ['PING'], ['GET', 'k']]);
    }
  });

  test('unquoted arguments are views of the chunk', () => {
    const chunk = Buffer.from('SET key value\r\n');
    let seen: Buffer[] = [];
    new RequestParser(defaults).push(chunk, (args) => (seen = args));
    for (const a of seen) assert.equal(a.buffer, chunk.buffer);
  });

  test('quoting as in sdssplitargs', () => {
    const cases: Array<[string, string[]]> = [
      ['SET "a b" \'c d\'', ['SET', 'a b', 'c d']],
      ['ECHO "\\x41\\x7a\\n\\r\\t\\b\\a\\\\\\"\\q"', ['ECHO', 'Az\n\r\t\b\x07\\"q']],
      ['ECHO "\\xZZ" "\\x4"', ['ECHO', 'xZZ', 'x4']],
      ["ECHO 'it\\'s' 'a\\nb'", ['ECHO', "it's", 'a\\nb']],
      ['ECHO "" \'\'', ['ECHO', '', '']],
      ['ECHO ab"cd e"', ['ECHO', 'abcd e']],
      ['ECHO "a"\t"b"', ['ECHO', 'a', 'b']],
      ['ECHO a\x0bb \x0c c', ['ECHO', 'a\x0bb', 'c']],
      ['ECHO "\\xff"', ['ECHO', '\xff']],
    ];
    for (const [line, want] of cases) assert.deepEqual(parse([line + '\r\n']), [want], line);
  });
});
