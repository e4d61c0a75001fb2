import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ReplyWriter } from '../src/server/resp/reply-writer.js';
import { formatDouble, parseRedisDouble, parseRedisInteger } from '../src/server/resp/format-number.js';

function written(proto: 2 | 3, write: (w: ReplyWriter) => void): string {
  const w = new ReplyWriter();
  w.proto = proto;
  write(w);
  return w.take().toString('latin1');
}

/** The same reply in both protocols. */
function both(write: (w: ReplyWriter) => void): [string, string] {
  return [written(2, write), written(3, write)];
}

describe('ReplyWriter', () => {
  test('simple strings, errors (CR/LF become spaces) and integers', () => {
    assert.equal(written(2, (w) => w.simple('OK')), '+OK\r\n');
    assert.equal(written(2, (w) => w.simple('QUEUED')), '+QUEUED\r\n');
    assert.equal(written(2, (w) => w.simple('a\r\nb')), '+a  b\r\n');
    assert.equal(written(2, (w) => w.error('ERR unknown command')), '-ERR unknown command\r\n');
    assert.equal(written(3, (w) => w.error('ERR bad\r\nthing\n')), '-ERR bad  thing \r\n');
    const ints: Array<[number | bigint, string]> = [
      [0, '0'], [7, '7'], [-1, '-1'], [10, '10'], [99, '99'], [100, '100'], [-12345, '-12345'],
      [999_999, '999999'], [1_000_000, '1000000'], [Number.MAX_SAFE_INTEGER, '9007199254740991'],
      [-Number.MAX_SAFE_INTEGER, '-9007199254740991'], [1e20, '100000000000000000000'],
      [2n ** 63n - 1n, '9223372036854775807'], [-(2n ** 63n), '-9223372036854775808'],
    ];
    for (const [n, text] of ints) assert.equal(written(2, (w) => w.integer(n)), `:${text}\r\n`);
    assert.throws(() => new ReplyWriter().integer(1.5), RangeError);
  });

  test('bulk strings: UTF-8 strings, buffers, empty, and nulls in each protocol', () => {
    assert.equal(written(2, (w) => w.bulk('hello')), '$5\r\nhello\r\n');
    assert.equal(written(2, (w) => w.bulk('')), '$0\r\n\r\n');
    assert.deepEqual(
      new Uint8Array(Buffer.from(written(2, (w) => w.bulk('héllo €')), 'latin1')),
      new Uint8Array(Buffer.concat([Buffer.from('$10\r\n'), Buffer.from('héllo €'), Buffer.from('\r\n')])),
    );
    assert.equal(written(2, (w) => w.bulk(Buffer.from([0, 13, 10, 255]))), '$4\r\n\x00\r\n\xff\r\n');
    assert.deepEqual(both((w) => w.nullBulk()), ['$-1\r\n', '_\r\n']);
    assert.deepEqual(both((w) => w.nullArray()), ['*-1\r\n', '_\r\n']);
    assert.deepEqual(both((w) => w.bulkArray(['a', null, Buffer.from('bc')])), [
      '*3\r\n$1\r\na\r\n$-1\r\n$2\r\nbc\r\n',
      '*3\r\n$1\r\na\r\n_\r\n$2\r\nbc\r\n',
    ]);
    assert.equal(written(2, (w) => w.arrayHeader(0)), '*0\r\n');
  });

  test('RESP3 types, and their RESP2 stand-ins', () => {
    assert.deepEqual(both((w) => w.mapHeader(2)), ['*4\r\n', '%2\r\n']);
    assert.deepEqual(both((w) => w.setHeader(3)), ['*3\r\n', '~3\r\n']);
    assert.deepEqual(both((w) => w.bool(true)), [':1\r\n', '#t\r\n']);
    assert.deepEqual(both((w) => w.bool(false)), [':0\r\n', '#f\r\n']);
    assert.deepEqual(both((w) => w.double(10.5)), ['$4\r\n10.5\r\n', ',10.5\r\n']);
    assert.deepEqual(both((w) => w.double(3)), ['$1\r\n3\r\n', ',3\r\n']);
    assert.deepEqual(both((w) => w.double(Infinity)), ['$3\r\ninf\r\n', ',inf\r\n']);
    assert.deepEqual(both((w) => w.double(-Infinity)), ['$4\r\n-inf\r\n', ',-inf\r\n']);
    assert.deepEqual(both((w) => w.double(NaN)), ['$3\r\nnan\r\n', ',nan\r\n']);
    assert.deepEqual(both((w) => w.verbatim('a\r\nb')), ['$4\r\na\r\nb\r\n', '=8\r\ntxt:a\r\nb\r\n']);
    assert.equal(written(3, (w) => w.verbatim('# x', 'mkd')), '=7\r\nmkd:# x\r\n');
    assert.throws(() => {
      const w = new ReplyWriter();
      w.proto = 3;
      w.verbatim('x', 'text');
    }, RangeError);
  });

  test('length counts pending bytes; take() drains and may return an empty buffer', () => {
    const w = new ReplyWriter();
    assert.equal(w.length, 0);
    assert.equal(w.take().length, 0);
    w.simple('OK');
    w.integer(12);
    assert.equal(w.length, 10);
    assert.equal(w.take().toString(), '+OK\r\n:12\r\n');
    assert.equal(w.length, 0);
    w.bulk(Buffer.alloc(100_000, 'x'));
    assert.equal(w.length, 100_000 + 11);
  });

  test('a buffer returned by take() is never overwritten by later replies', () => {
    for (const size of [10, 9_000, 20_000, 100_000, 3_000_000]) {
      const w = new ReplyWriter();
      w.bulk('a'.repeat(size));
      const first = w.take();
      const copy = Buffer.from(first);
      for (let i = 0; i < 2000; i++) w.bulk('zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz');
      w.take();
      assert.ok(first.equals(copy), `size ${size}`);
    }
  });

  test('rewind drops a partial reply, big bulks included', () => {
    const w = new ReplyWriter();
    w.simple('OK');
    const mark = w.mark();
    w.arrayHeader(3);
    w.bulk('x');
    w.bulk(Buffer.alloc(100_000));
    w.integer(5);
    w.rewind(mark);
    w.error('ERR failed');
    assert.equal(w.take().toString(), '+OK\r\n-ERR failed\r\n');
  });

  test('rewind to before a big bulk drops every part, and take() then returns only what was written after', () => {
    // Found by the property below (fast-check seed -1518323768): take() returned the dropped
    // bytes, because it read the buffer from 0 rather than from where the dropped parts ended.
    const w = new ReplyWriter();
    const mark = w.mark();
    w.bool(true);
    w.arrayHeader(2);
    w.bulk(Buffer.alloc(70_005, 7));
    w.rewind(mark);
    assert.equal(w.length, 0);
    assert.equal(w.take().length, 0);
    const again = w.mark();
    w.integer(1);
    w.bulk(Buffer.alloc(70_005, 8));
    w.rewind(again);
    w.simple('OK');
    assert.equal(w.take().toString(), '+OK\r\n');
  });

  test('big bulks keep their place among small replies, and the buffer grows as needed', () => {
    const w = new ReplyWriter();
    const big = Buffer.alloc(200_000, 'b');
    const expected: Buffer[] = [];
    for (let i = 0; i < 3000; i++) {
      w.integer(i);
      expected.push(Buffer.from(`:${i}\r\n`));
      if (i % 1000 === 500) {
        w.bulk(big);
        w.bulk('é'.repeat(30_000));
        expected.push(Buffer.from('$200000\r\n'), big, Buffer.from('\r\n'));
        expected.push(Buffer.from('$60000\r\n'), Buffer.from('é'.repeat(30_000)), Buffer.from('\r\n'));
      }
    }
    const want = Buffer.concat(expected);
    assert.equal(w.length, want.length);
    assert.ok(w.take().equals(want));
  });

  test('property: any sequence of replies, drained and rewound at any points, equals a reference encoding', () => {
    type Op =
      | { k: 'simple' | 'error'; s: string }
      | { k: 'integer'; n: number | bigint }
      | { k: 'bulk'; b: string | Uint8Array }
      | { k: 'nullBulk' | 'nullArray' | 'take' | 'mark' | 'rewind' }
      | { k: 'arrayHeader' | 'mapHeader' | 'setHeader'; n: number }
      | { k: 'double'; d: number }
      | { k: 'bool'; v: boolean }
      | { k: 'bulkArray'; items: Array<string | null> };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ k: fc.constantFrom('simple' as const, 'error' as const), s: fc.string({ maxLength: 80 }) }),
      fc.record({ k: fc.constant('integer' as const), n: fc.oneof(fc.maxSafeInteger(), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })) }),
      fc.record({ k: fc.constant('bulk' as const), b: fc.oneof(fc.string({ unit: 'binary', maxLength: 100 }), fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ minLength: 70_000, maxLength: 70_010 })) }),
      fc.record({ k: fc.constantFrom('nullBulk' as const, 'nullArray' as const, 'take' as const, 'mark' as const, 'rewind' as const) }),
      fc.record({ k: fc.constantFrom('arrayHeader' as const, 'mapHeader' as const, 'setHeader' as const), n: fc.nat(100_000) }),
      fc.record({ k: fc.constant('double' as const), d: fc.double() }),
      fc.record({ k: fc.constant('bool' as const), v: fc.boolean() }),
      fc.record({ k: fc.constant('bulkArray' as const), items: fc.array(fc.option(fc.string({ maxLength: 10 }), { nil: null }), { maxLength: 5 }) }),
    );
    const refBulk = (b: string | Uint8Array): Buffer => {
      const data = Buffer.from(b as string);
      return Buffer.concat([Buffer.from(`$${data.length}\r\n`), data, Buffer.from('\r\n')]);
    };
    const reference = (o: Op, proto: 2 | 3): Buffer => {
      switch (o.k) {
        case 'simple':
          return Buffer.from(`+${o.s.replace(/[\r\n]/g, ' ')}\r\n`);
        case 'error':
          return Buffer.from(`-${o.s.replace(/[\r\n]/g, ' ')}\r\n`);
        case 'integer':
          return Buffer.from(`:${o.n}\r\n`);
        case 'bulk':
          return refBulk(o.b);
        case 'nullBulk':
          return Buffer.from(proto === 3 ? '_\r\n' : '$-1\r\n');
        case 'nullArray':
          return Buffer.from(proto === 3 ? '_\r\n' : '*-1\r\n');
        case 'take':
        case 'mark':
        case 'rewind':
          return Buffer.alloc(0);
        case 'arrayHeader':
          return Buffer.from(`*${o.n}\r\n`);
        case 'mapHeader':
          return Buffer.from(proto === 3 ? `%${o.n}\r\n` : `*${o.n * 2}\r\n`);
        case 'setHeader':
          return Buffer.from(proto === 3 ? `~${o.n}\r\n` : `*${o.n}\r\n`);
        case 'double':
          return proto === 3 ? Buffer.from(`,${formatDouble(o.d)}\r\n`) : refBulk(formatDouble(o.d));
        case 'bool':
          return Buffer.from(proto === 3 ? `#${o.v ? 't' : 'f'}\r\n` : `:${o.v ? 1 : 0}\r\n`);
        case 'bulkArray':
          return Buffer.concat([
            Buffer.from(`*${o.items.length}\r\n`),
            ...o.items.map((i) => (i === null ? Buffer.from(proto === 3 ? '_\r\n' : '$-1\r\n') : refBulk(i))),
          ]);
      }
    };
    fc.assert(
      fc.property(fc.constantFrom(2 as const, 3 as const), fc.array(op, { maxLength: 60 }), (proto, ops) => {
        const w = new ReplyWriter();
        w.proto = proto;
        const taken: Buffer[] = [];
        const expected: Buffer[] = [];
        let pending = Buffer.alloc(0);
        let mark: { writer: number; model: number } | undefined;
        for (const o of ops) {
          switch (o.k) {
            case 'simple': w.simple(o.s); break;
            case 'error': w.error(o.s); break;
            case 'integer': w.integer(o.n); break;
            case 'bulk': w.bulk(typeof o.b === 'string' ? o.b : Buffer.from(o.b)); break;
            case 'nullBulk': w.nullBulk(); break;
            case 'nullArray': w.nullArray(); break;
            case 'arrayHeader': w.arrayHeader(o.n); break;
            case 'mapHeader': w.mapHeader(o.n); break;
            case 'setHeader': w.setHeader(o.n); break;
            case 'double': w.double(o.d); break;
            case 'bool': w.bool(o.v); break;
            case 'bulkArray': w.bulkArray(o.items); break;
            case 'take':
              taken.push(w.take());
              expected.push(pending);
              pending = Buffer.alloc(0);
              // A mark is a position in the pending bytes, so it does not survive a take.
              mark = undefined;
              break;
            case 'mark':
              mark = { writer: w.mark(), model: pending.length };
              break;
            case 'rewind':
              if (mark !== undefined) {
                w.rewind(mark.writer);
                pending = pending.subarray(0, mark.model);
              }
              break;
          }
          pending = Buffer.concat([pending, reference(o, proto)]);
          assert.equal(w.length, pending.length);
        }
        taken.push(w.take());
        expected.push(pending);
        assert.ok(Buffer.concat(taken).equals(Buffer.concat(expected)));
      }),
      { numRuns: 300 },
    );
  });
});

describe('formatDouble', () => {
  test('integers without a fraction, others the shortest round-trip decimal, never an exponent', () => {
    const cases: Array<[number, string]> = [
      [10.5, '10.5'], [3.0e3, '3000'], [3, '3'], [-3, '-3'], [0, '0'], [-0, '0'], [5.0e-3, '0.005'],
      [0.1, '0.1'], [0.1 + 0.2, '0.30000000000000004'], [1e-7, '0.0000001'], [-2.5e-7, '-0.00000025'],
      [1e-20, '0.00000000000000000001'], [1.5e-20, '0.000000000000000000015'], [1e21, '1000000000000000000000'],
      [1.25e22, '12500000000000000000000'], [2 ** 53, '9007199254740992'], [123456789.125, '123456789.125'],
      [Infinity, 'inf'], [-Infinity, '-inf'], [NaN, 'nan'],
    ];
    for (const [n, text] of cases) assert.equal(formatDouble(n), text, String(n));
    assert.equal(formatDouble(Number.MAX_VALUE), '17976931348623157' + '0'.repeat(292));
    assert.equal(formatDouble(5e-324), '0.' + '0'.repeat(323) + '5');
  });

  test('property: reads back as the same double, through Number and parseRedisDouble', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (d) => {
        const s = formatDouble(d);
        assert.ok(!/e/i.test(s), s);
        assert.equal(Number(s), d === 0 ? 0 : d);
        assert.equal(parseRedisDouble(Buffer.from(s)), d === 0 ? 0 : d);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('parseRedisDouble (string2ld)', () => {
  test('accepts what strtod reads in full', () => {
    const cases: Array<[string, number]> = [
      ['10.5', 10.5], ['-3', -3], ['+3', 3], ['5.0e3', 5000], ['5E3', 5000], ['1e-3', 0.001], ['1.e2', 100],
      ['.5', 0.5], ['-.5', -0.5], ['007', 7], ['1e+2', 100], ['0', 0], ['1e-310', 1e-310],
      ['inf', Infinity], ['+inf', Infinity], ['-inf', -Infinity], ['INF', Infinity], ['-Infinity', -Infinity], ['iNfInItY', Infinity],
    ];
    for (const [s, n] of cases) assert.equal(parseRedisDouble(Buffer.from(s)), n, s);
    assert.ok(Object.is(parseRedisDouble(Buffer.from('-0')), -0));
  });

  test('refuses empty, spaces, junk, nan, hex and out-of-range values', () => {
    for (const s of ['', ' 1', '1 ', '1x', 'nan', 'NaN', '-nan', '.', '-', '+', 'e5', '1e', '1e+', '1.2.3', '--1', '+-1',
      'infi', 'in', 'infinit', 'infinityy', '0x10', '1,5', '1e400', '-1e400', '1e-400', '1_000', '\t1', '1\0']) {
      assert.equal(parseRedisDouble(Buffer.from(s)), undefined, JSON.stringify(s));
    }
    assert.equal(parseRedisDouble(Buffer.from('1'.repeat(6000))), undefined);
    assert.equal(parseRedisDouble(Buffer.from('0e999999')), 0);
  });
});

describe('parseRedisInteger (string2ll)', () => {
  test('accepts strict base-10 signed 64-bit integers', () => {
    const cases: Array<[string, number | bigint]> = [
      ['0', 0], ['1', 1], ['-1', -1], ['123456789012345', 123456789012345], ['9007199254740991', 9007199254740991],
      ['-9007199254740991', -9007199254740991], ['9007199254740992', 9007199254740992n],
      ['9223372036854775807', 9223372036854775807n], ['-9223372036854775808', -9223372036854775808n],
    ];
    for (const [s, n] of cases) assert.equal(parseRedisInteger(Buffer.from(s)), n, s);
  });

  test('refuses signs, zeros, spaces and overflow that string2ll refuses', () => {
    for (const s of ['', '-', '+1', '01', '-0', '00', ' 1', '1 ', '1.0', '1e3', 'abc', '12a', '9223372036854775808',
      '-9223372036854775809', '99999999999999999999', '-99999999999999999999', '123456789012345678901']) {
      assert.equal(parseRedisInteger(Buffer.from(s)), undefined, s);
    }
  });

  test('property: agrees with a BigInt reference on digit strings and on every int64', () => {
    const reference = (s: string): number | bigint | undefined => {
      if (!/^(0|-?[1-9][0-9]*)$/.test(s)) return undefined;
      const n = BigInt(s);
      if (n < -(2n ** 63n) || n > 2n ** 63n - 1n) return undefined;
      return n >= -BigInt(Number.MAX_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
    };
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('0', '1', '9', '-', '+', ' ', 'x'), maxLength: 22 }), (s) => {
        assert.equal(parseRedisInteger(Buffer.from(s)), reference(s));
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), (n) => {
        assert.equal(parseRedisInteger(Buffer.from(n.toString())), reference(n.toString()));
      }),
    );
  });
});
