import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { addDecimalFloats, formatDecimalFloat, parseDecimalFloat } from '../src/server/commands/decimal-float.js';

function sum(a: string, b: string): string | undefined {
  const x = parseDecimalFloat(Buffer.from(a));
  const y = parseDecimalFloat(Buffer.from(b));
  assert.ok(x && y, `${a} and ${b} parse`);
  const s = addDecimalFloats(x, y);
  return s === undefined ? undefined : formatDecimalFloat(s);
}

describe('INCRBYFLOAT arithmetic (Redis long double, "%.17Lf" trimmed)', () => {
  test('sums print as Redis prints them', () => {
    assert.equal(sum('0.1', '0.2'), '0.3');
    assert.equal(sum('10.5', '0.1'), '10.6');
    assert.equal(sum('5.0e3', '0'), '5000');
    assert.equal(sum('3', '-3'), '0');
    assert.equal(sum('-0.5', '0.25'), '-0.25');
    assert.equal(sum('1e-20', '0'), '0', 'below 17 fractional digits rounds to zero');
    assert.equal(sum('.5', '5.'), '5.5');
    assert.equal(sum('0.123456789012345678', '0'), '0.12345678901234568', 'rounded at the 17th fractional digit');
    assert.equal(sum('0.000000000000000005', '0'), '0', 'a tie rounds to even');
    assert.equal(sum('0.000000000000000015', '0'), '0.00000000000000002', 'a tie rounds to even');
    assert.equal(sum('-1E+2', '1'), '-99');
  });

  test('infinity makes the sum not finite; bad text does not parse', () => {
    assert.equal(sum('inf', '1'), undefined);
    assert.equal(sum('-Infinity', '1'), undefined);
    for (const bad of ['', ' 1', '1 ', 'nan', 'abc', '1e', '0x10', '--1', '1e5000', '.', '1.2.3']) {
      assert.equal(parseDecimalFloat(Buffer.from(bad)), undefined, JSON.stringify(bad));
    }
    assert.ok(parseDecimalFloat(Buffer.from('1e4000')), 'large but within long double range');
  });
});
