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

  test('the literal prefix lets a walk start at the first possible key', () => {
    assert.equal(globPrefix(Buffer.from('user:*')).toString(), 'user:');
    assert.equal(globPrefix(Buffer.from('us\\*er?')).toString(), 'us*er');
    assert.equal(globPrefix(Buffer.from('[ab]c')).toString(), '');
    assert.equal(globPrefix(Buffer.from('plain')).toString(), 'plain');
  });
});
