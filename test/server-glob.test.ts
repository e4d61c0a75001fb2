import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { globMatcher, globPrefix } from '../src/server/glob.js';

const matches = (pattern: string, s: string): boolean => globMatcher(Buffer.from(pattern, 'latin1'))(Buffer.from(s, 'latin1'));

describe('glob patterns (KEYS, SCAN MATCH)', () => {
  test('the cases Redis documents for KEYS', () => {
    assert.ok(matches('h?llo', 'hello') && matches('h?llo', 'hallo') && !matches('h?llo', 'hllo'));
    assert.ok(matches('h*llo', 'hllo') && matches('h*llo', 'heeeello') && !matches('h*llo', 'hellx'));
    assert.ok(matches('h[ae]llo', 'hello') && matches('h[ae]llo', 'hallo') && !matches('h[ae]llo', 'hillo'));
    assert.ok(matches('h[^e]llo', 'hallo') && !matches('h[^e]llo', 'hello'));
    assert.ok(matches('h[a-b]llo', 'hallo') && matches('h[a-b]llo', 'hbllo') && !matches('h[a-b]llo', 'hcllo'));
    assert.ok(matches('h[b-a]llo', 'hallo'), 'a reversed range is still a range');
    assert.ok(matches('h\\*llo', 'h*llo') && !matches('h\\*llo', 'hello'), 'an escaped star is literal');
    assert.ok(matches('[\\]]', ']'), 'an escaped bracket in a class');
  });

  test('stars, empties and binary bytes', () => {
    assert.ok(matches('*', '') && matches('*', 'anything'));
    assert.ok(matches('a*b*c', 'aXXbYYc') && !matches('a*b*c', 'aXXbYY'));
    assert.ok(matches('', '') && !matches('', 'a'));
    assert.ok(matches('\xff*', '\xff\x00\x01'));
    assert.ok(!matches('a?', 'a'));
  });

  // CVE-2022-36021: each extra `a*` multiplied the time by ~15 (a*×11 took 43 s on 40 bytes and froze
  // the server). With the early give-up these finish in microseconds; on the old matcher this test
  // does not finish, so the timeout turns a regression into a failure instead of a hang.
  test('pathological star patterns are rejected without exponential backtracking', { timeout: 60_000 }, () => {
    const forty = 'a'.repeat(40);
    assert.ok(!matches('a*'.repeat(20) + 'b', forty));
    assert.ok(matches('a*'.repeat(20), forty) && matches('a*'.repeat(20) + 'a', forty));
    assert.ok(!matches('*a'.repeat(30) + '*b', forty));
    assert.ok(!matches('*?'.repeat(60) + 'b', forty));
    assert.ok(!matches('*[a-z]'.repeat(30) + 'b', forty));
    assert.ok(!matches('a*'.repeat(999) + 'b', 'a'.repeat(5000)), 'at the nesting limit');
    assert.ok(matches('*a?'.repeat(10) + 'b', 'ab'.repeat(20) + 'b'));
  });

  test('the early give-up keeps the answers of a plain backtracking matcher', () => {
    // Dynamic-programming reference over a small alphabet; subjects are never empty because
    // Redis answers no for an empty subject against `**` (only a lone `*` short-cuts to yes).
    const reference = (p: string, s: string): boolean => {
      let row = [true, ...Array<boolean>(s.length).fill(false)];
      for (const c of p) {
        const next = [c === '*' && row[0]!];
        for (let j = 1; j <= s.length; j++) {
          next[j] = c === '*' ? row[j]! || next[j - 1]! : row[j - 1]! && (c === '?' || c === s[j - 1]);
        }
        row = next;
      }
      return row[s.length]!;
    };
    let seed = 0x2545f491;
    const rand = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    for (let i = 0; i < 20_000; i++) {
      const p = Array.from({ length: rand(9) }, () => 'ab*?*'[rand(5)]).join('');
      const s = Array.from({ length: 1 + rand(10) }, () => 'ab'[rand(2)]).join('');
      assert.equal(matches(p, s), reference(p, s), `${JSON.stringify(p)} against ${JSON.stringify(s)}`);
    }
  });

  test('the literal prefix lets a walk start at the first possible key', () => {
    assert.equal(globPrefix(Buffer.from('user:*')).toString(), 'user:');
    assert.equal(globPrefix(Buffer.from('us\\*er?')).toString(), 'us*er');
    assert.equal(globPrefix(Buffer.from('[ab]c')).toString(), '');
    assert.equal(globPrefix(Buffer.from('plain')).toString(), 'plain');
  });
});
