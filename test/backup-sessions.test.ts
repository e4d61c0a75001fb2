import { strict as assert } from 'node:assert';
import { after, before, describe, it, mock } from 'node:test';
import { BackupSessions } from '../src/server/backup-sessions.js';
import { silentLogger } from '../src/log/logger.js';
import { b, openTestDb, type TestDb } from './support/engine-helpers.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';

// The limits that keep a client from pinning versions for ever (each pinned version keeps its
// tables on disk and holds the encryption scan off): a cap on open sessions, and an idle timeout.
describe('backup sessions: limits', () => {
  let root: string;
  let db: TestDb;
  let exclusions = 0;
  const host = () => ({
    checkpoint: () => db.engine.checkpoint(),
    beginBackup: () => {
      exclusions++;
      let held = true;
      return () => {
        if (held) exclusions--;
        held = false;
      };
    },
    describe: () => ({ method: 'aes256-ctr', masterKey: 'file test' }),
    identityOf: () => undefined,
  });
  before(async () => {
    root = await tempDir('backup-sessions-');
    db = await openTestDb(root, (await writeKeyFile(root)).path);
    for (let i = 0; i < 100; i++) await db.engine.put(b(`k${i}`), b(`v${i}`));
  });
  after(async () => {
    await db.close();
    await cleanup(root);
  });

  it('a session past the most open at once is refused, naming why; one ending makes room', async () => {
    const sessions = new BackupSessions(host(), silentLogger(), { maxSessions: 2, idleMs: 60_000 });
    const one = await sessions.begin(1);
    await sessions.begin(2);
    await assert.rejects(sessions.begin(3), /2 backup sessions are open, the most at once/);
    assert.equal(exclusions, 2, 'a refused session holds no exclusion');
    sessions.end(1, one.session);
    const three = await sessions.begin(3);
    assert.equal(sessions.active, 2);
    sessions.endAll();
    assert.equal(exclusions, 0);
    await assert.rejects(sessions.read(3, three.session, 'CURRENT', 0, 1), /no backup session/);
  });

  it('two BEGINs at once do not both pass the limit while their flushes run', async () => {
    const sessions = new BackupSessions(host(), silentLogger(), { maxSessions: 1, idleMs: 60_000 });
    await db.engine.put(b('race'), b('1'));
    const settled = await Promise.allSettled([sessions.begin(1), sessions.begin(2)]);
    assert.deepEqual(settled.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    assert.match(String((settled.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason), /1 backup sessions are open, the most at once/);
    sessions.endAll();
    assert.equal(exclusions, 0);
  });

  it('at most three files exported and unread at once; one read to its end makes room', async () => {
    // Two tables (two flushes), the manifest and CURRENT: four files.
    await db.engine.flush();
    await db.engine.put(b('extra'), b('x'));
    await db.engine.flush();
    const sessions = new BackupSessions(host(), silentLogger(), { maxSessions: 2, idleMs: 60_000 });
    const s = await sessions.begin(1);
    assert.ok(s.files.length >= 4, `${s.files.length} files`);
    const frame = () => ({ method: 'aes256-ctr' as const, key: Buffer.alloc(32, 7), keyId: 9, iv: Buffer.alloc(16, 1) });
    for (const f of s.files.slice(0, 3)) sessions.export(1, s.session, f.name, frame());
    assert.throws(() => sessions.export(1, s.session, s.files[3]!.name, frame()), /3 files of this session are exported and not yet read to their end/);
    const first = s.files[0]!.name;
    const size = await sessions.size(1, s.session, first);
    assert.equal((await sessions.read(1, s.session, first, 0, size)).length, size);
    sessions.export(1, s.session, s.files[3]!.name, frame());
    await assert.rejects(sessions.size(1, s.session, first), /was read to its end/);
    sessions.endAll();
    assert.equal(exclusions, 0);
  });

  it('a session with no BACKUP command for the idle time is ended and its version released; a command in time keeps it', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const sessions = new BackupSessions(host(), silentLogger(), { maxSessions: 2, idleMs: 1000 });
      const kept = await sessions.begin(1);
      const idle = await sessions.begin(2);
      mock.timers.tick(600);
      // A command resets the clock (SIZE refuses with nothing exported, but it is a command of the session).
      await assert.rejects(sessions.size(1, kept.session, 'CURRENT'), /is not exported in this session/);
      mock.timers.tick(600);
      assert.equal(sessions.active, 1, 'the idle session ended');
      assert.equal(exclusions, 1);
      assert.throws(() => sessions.end(2, idle.session), /no backup session .* after 1 s without a BACKUP command/);
      mock.timers.tick(1000);
      assert.equal(sessions.active, 0);
      assert.equal(exclusions, 0);
    } finally {
      mock.timers.reset();
    }
  });
});
