import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { openTestDb, type TestDb } from './support/engine-helpers.js';
import { BatchingStore } from '../src/server/keyspace/batching-store.js';
import { Keyspace, WrongTypeError } from '../src/server/keyspace/keyspace.js';

let root: string;
let keyPath: string;
let runs = 0;

before(async () => {
  root = await tempDir('tdekv-keyspace-');
  keyPath = (await writeKeyFile(root)).path;
});
after(() => cleanup(root));

type ModelValue = { type: 'string'; value: string; expireAt: number } | { type: 'hash'; fields: Map<string, string>; expireAt: number };

/** A keyspace over a real engine, reopenable, with a clock the test controls. */
class Harness {
  db!: TestDb;
  store!: BatchingStore;
  ks!: Keyspace;
  now = 1_000_000;
  touched: string[] = [];
  readonly dir = `${root}/run-${runs++}`;

  constructor(readonly cacheBytes = 0) {}

  async open(): Promise<void> {
    this.db = await openTestDb(this.dir, keyPath);
    this.store = new BatchingStore(this.db.engine, { sync: false, rowCacheBytes: this.cacheBytes });
    this.ks = new Keyspace(this.store, { touched: (k) => this.touched.push(k.toString()), expired: (k) => this.touched.push(k.toString()), read: () => undefined });
    this.ks.now = () => this.now;
  }

  async commit(): Promise<void> {
    this.ks.beforeCommit();
    await this.store.drain();
  }

  async reopen(): Promise<void> {
    await this.commit();
    await this.db.close();
    await this.open();
  }
}

const KEYS = ['a', 'b', 'c', 'ab'];
const FIELDS = ['x', 'y', 'z'];

type Op =
  | { op: 'set'; key: string; value: string; ttl: number | 'keep' }
  | { op: 'del'; key: string }
  | { op: 'hset'; key: string; field: string; value: string }
  | { op: 'hdel'; key: string; field: string }
  | { op: 'expire'; key: string; ttl: number }
  | { op: 'rename'; from: string; to: string }
  | { op: 'tick'; ms: number }
  | { op: 'commit' }
  | { op: 'clear' }
  | { op: 'expireCycle' }
  | { op: 'reopen' };

const key = fc.constantFrom(...KEYS);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('set' as const), key, value: fc.string({ maxLength: 4 }), ttl: fc.oneof(fc.constant(0), fc.constant('keep' as const), fc.integer({ min: 1, max: 50 })) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('del' as const), key }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('hset' as const), key, field: fc.constantFrom(...FIELDS), value: fc.string({ maxLength: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('hdel' as const), key, field: fc.constantFrom(...FIELDS) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('expire' as const), key, ttl: fc.integer({ min: -5, max: 50 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('rename' as const), from: key, to: key }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 1, max: 30 }) }) },
  { weight: 2, arbitrary: fc.constant({ op: 'commit' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'expireCycle' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'clear' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
);

const B = (s: string): Buffer => Buffer.from(s);

function live(model: Map<string, ModelValue>, now: number): Map<string, ModelValue> {
  return new Map([...model].filter(([, v]) => v.expireAt === 0 || v.expireAt > now));
}

async function apply(h: Harness, model: Map<string, ModelValue>, o: Op): Promise<void> {
  const alive = (k: string): ModelValue | undefined => live(model, h.now).get(k);
  switch (o.op) {
    case 'set': {
      const prev = alive(o.key);
      const expireAt = o.ttl === 'keep' ? (prev?.expireAt ?? 0) : o.ttl === 0 ? 0 : h.now + o.ttl;
      h.ks.setString(B(o.key), B(o.value), o.ttl === 'keep' ? 'keep' : expireAt, h.ks.lookup(B(o.key)));
      model.set(o.key, { type: 'string', value: o.value, expireAt });
      return;
    }
    case 'del':
      assert.equal(h.ks.delete(B(o.key)), alive(o.key) !== undefined);
      model.delete(o.key);
      return;
    case 'hset': {
      const prev = alive(o.key);
      if (prev?.type === 'string') {
        assert.throws(() => h.ks.hashSet(B(o.key), [[B(o.field), B(o.value)]]), WrongTypeError);
        return;
      }
      const added = h.ks.hashSet(B(o.key), [[B(o.field), B(o.value)]]);
      const fields = prev?.type === 'hash' ? prev.fields : new Map<string, string>();
      assert.equal(added, fields.has(o.field) ? 0 : 1);
      fields.set(o.field, o.value);
      model.set(o.key, { type: 'hash', fields, expireAt: prev?.expireAt ?? 0 });
      return;
    }
    case 'hdel': {
      const prev = alive(o.key);
      if (prev?.type !== 'hash') return;
      const r = h.ks.getHash(B(o.key))!;
      assert.equal(h.ks.hashDelete(B(o.key), r, [B(o.field)]), prev.fields.delete(o.field) ? 1 : 0);
      if (prev.fields.size === 0) model.delete(o.key);
      return;
    }
    case 'expire': {
      const prev = alive(o.key);
      const r = h.ks.lookup(B(o.key));
      assert.equal(r !== undefined, prev !== undefined);
      if (r === undefined || prev === undefined) return;
      const at = h.now + o.ttl;
      h.ks.setExpiry(B(o.key), r, at <= h.now ? -1 : at);
      if (at <= h.now) model.delete(o.key);
      else prev.expireAt = at;
      return;
    }
    case 'rename': {
      const prev = alive(o.from);
      const r = h.ks.lookup(B(o.from));
      if (r === undefined || prev === undefined) return;
      h.ks.rename(B(o.from), r, B(o.to));
      model.delete(o.from);
      model.set(o.to, prev);
      return;
    }
    case 'tick':
      h.now += o.ms;
      return;
    case 'commit':
      return h.commit();
    case 'clear':
      h.ks.clear();
      model.clear();
      return;
    case 'expireCycle':
      h.ks.expireCycle(2);
      return;
    case 'reopen':
      return h.reopen();
  }
}

function check(h: Harness, model: Map<string, ModelValue>): void {
  const expected = live(model, h.now);
  for (const k of KEYS) {
    const m = expected.get(k);
    // GET's path: the string read where it lies, a hash refused as the wrong type.
    if (m?.type === 'hash') assert.throws(() => h.ks.readStringAt(B(k), h.ks.valueAt), WrongTypeError);
    else {
      const n = h.ks.readStringAt(B(k), h.ks.valueAt);
      const at = h.ks.valueAt;
      assert.equal(n < 0 ? undefined : at.buf.subarray(at.start, at.start + n).toString(), m?.value, `GET ${k}`);
    }
    const r = h.ks.lookup(B(k));
    assert.equal(r?.type, m?.type, `type of ${k}`);
    if (r === undefined || m === undefined) continue;
    assert.equal(r.expireAt, m.expireAt, `expiry of ${k}`);
    if (r.type === 'string' && m.type === 'string') assert.equal(r.value.toString(), m.value, `value of ${k}`);
    if (r.type === 'hash' && m.type === 'hash') {
      assert.equal(r.fields, m.fields.size, `field count of ${k}`);
      const got = [...h.ks.hashEntries(B(k))].map(([f, v]) => `${f}=${v}`);
      const want = [...m.fields].sort(([a], [b]) => (a < b ? -1 : 1)).map(([f, v]) => `${f}=${v}`);
      assert.deepEqual(got, want, `fields of ${k}`);
    }
  }
  const walked = [...h.ks.keys()].map(([k]) => k.toString());
  assert.deepEqual(walked, [...expected.keys()].sort(), 'key walk');
  // The walk removed every expired key, so the counts are exact now.
  assert.equal(h.ks.keyCount, expected.size, 'key count');
  assert.equal(h.ks.expiresCount, [...expected.values()].filter((v) => v.expireAt !== 0).length, 'expiring key count');
}

describe('server keyspace', () => {
  for (const cacheBytes of [0, 1024]) {
    test(`model check (row cache ${cacheBytes === 0 ? 'off' : 'of 1 KiB, so entries are evicted often'}): strings, hashes, expiry, rename, clear, commits and reopens agree with a map`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async (ops) => {
          const h = new Harness(cacheBytes);
          await h.open();
          const model = new Map<string, ModelValue>();
          try {
            for (const o of ops) {
              await apply(h, model, o);
              check(h, model);
            }
            await h.reopen();
            check(h, model);
          } finally {
            await h.commit();
            await h.db.close();
            await cleanup(h.dir);
          }
        }),
        { numRuns: 30 },
      );
    });
  }

  test('active expiry removes due keys oldest first and drops their index entries', async () => {
    const h = new Harness();
    await h.open();
    try {
      for (let i = 0; i < 10; i++) h.ks.setString(B(`k${i}`), B('v'), h.now + 10 + i, undefined);
      h.ks.setString(B('forever'), B('v'), 0, undefined);
      await h.commit();
      h.now += 15; // k0..k5 are due
      assert.equal(h.ks.expireCycle(4), 4);
      assert.equal(h.ks.expireCycle(4), 2);
      assert.equal(h.ks.expireCycle(4), 0);
      assert.equal(h.ks.keyCount, 5);
      assert.equal(h.ks.expiresCount, 4);
      await h.reopen();
      assert.equal(h.ks.keyCount, 5, 'counts survive a reopen');
      assert.deepEqual([...h.ks.keys()].map(([k]) => k.toString()), ['forever', 'k6', 'k7', 'k8', 'k9']);
    } finally {
      await h.db.close();
    }
  });

  test('a pending write is visible at once and reaches the engine only when its batch is applied', async () => {
    const h = new Harness();
    await h.open();
    try {
      h.ks.setString(B('p'), B('1'), 0, undefined);
      assert.equal(h.ks.getString(B('p'))?.toString(), '1');
      assert.equal(h.db.engine.getSync(Buffer.from('kp')), undefined, 'not in the engine before commit');
      assert.ok(h.store.dependency > 0);
      await h.commit();
      assert.equal(h.store.dependency, 0);
      assert.equal(h.store.pendingWrites, 0, 'the overlay empties once applied');
      assert.ok(h.db.engine.getSync(Buffer.from('kp')) !== undefined);
    } finally {
      await h.db.close();
    }
  });

  for (const cacheBytes of [0, 1 << 20]) {
    test(`a damaged record is refused as damaged by every lookup, from the engine and from the row cache (${cacheBytes === 0 ? 'off' : 'on'})`, async () => {
      const h = new Harness(cacheBytes);
      await h.open();
      try {
        // Records as a damaged engine would return them: too short for a header, an unknown type.
        const damaged: Array<[string, Buffer]> = [
          ['short', Buffer.from([0, 0, 1])],
          ['empty', Buffer.alloc(0)],
          ['type', Buffer.from([7, 0, 0, 0, 0, 0, 0, 0, 0, 65])],
        ];
        for (const [name, raw] of damaged) await h.db.engine.write([{ type: 'put', key: Buffer.from(`k${name}`), value: raw }]);
        for (let pass = 0; pass < 2; pass++) {
          // The second pass reads what the first one cached.
          for (const [name] of damaged) {
            const key = B(name);
            assert.throws(() => h.ks.lookupMeta(key), { code: 'DATA_CORRUPTED', message: /record of a key .* is damaged.*tdekv ctl verify/ }, `lookupMeta ${name}`);
            assert.throws(() => h.ks.lookup(key), { code: 'DATA_CORRUPTED' }, `lookup ${name}`);
          }
        }
        // A record longer than the cached prefix: its header still decides.
        h.ks.setString(B('long'), Buffer.alloc(100, 120), 123_456_789_000, undefined);
        await h.commit();
        for (let pass = 0; pass < 2; pass++) assert.deepEqual(h.ks.lookupMeta(B('long')), { type: 'string', expireAt: 123_456_789_000 });
      } finally {
        await h.db.close();
      }
    });
  }
});
