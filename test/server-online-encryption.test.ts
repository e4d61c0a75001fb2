import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeTempDir, removeTempDir, startTdekv, tdekvOnly, waitUntil } from './support/server-process.js';

// Issue 12's acceptance test: a server holding 50,000 marker keys in plaintext is moved to
// aes256-ctr online (config change + ENCRYPTION RELOAD) while clients keep writing and
// reading; the state goes 1/0 -> 2 -> 3, percent rises to 100, no marker byte is left under
// the data dir, and no client write is lost or refused.

const MARKER = 'ONLINE-ENC-MARKER';
const KEYS = 50_000;
const ADMIN = 'admin-pw';

async function filesHolding(root: string, needle: string): Promise<string[]> {
  const hits: string[] = [];
  for (const d of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (!d.isFile()) continue;
    // The server may remove a file between the listing and the read.
    const bytes = await readFile(join(d.parentPath, d.name)).catch(() => Buffer.alloc(0));
    if (bytes.includes(needle)) hits.push(d.name);
  }
  return hits;
}

function statusMap(flat: unknown[]): Map<string, unknown> {
  const m = new Map<string, unknown>();
  for (let i = 0; i < flat.length; i += 2) m.set(String(flat[i]), flat[i + 1]);
  return m;
}

test('online plaintext -> aes256-ctr with 50,000 marker keys and live traffic: 2 -> 3, 100%, no marker left, no write lost', tdekvOnly(), async () => {
  // A slow scan (1 MiB/s), so the traffic below overlaps it; small tables, so there are many steps.
  const dir = await makeTempDir('tdekv-online-enc-');
  const server = await startTdekv({
    dir,
    settings: {
      security: { 'admin-password': ADMIN, encryption: { 'data-encryption-method': 'plaintext', 'scan-rate-limit': '1MiB' } },
      // Level 0 is not compacted by itself during the test: an ordinary compaction would move the
      // data to the new key unthrottled and leave the scan nothing to do (seen under CI load).
      engine: {
        'write-buffer-size': '256KiB',
        'target-file-size-base': '128KiB',
        'level0-file-num-compaction-trigger': 100,
        'level0-slowdown-writes-trigger': 200,
        'level0-stop-writes-trigger': 300,
      },
    },
  });
  try {
    const admin = server.client({ username: 'admin', password: ADMIN });
    const c = server.client({ username: 'admin', password: ADMIN });
    for (let i = 0; i < KEYS; i += 1000) {
      const p = c.pipeline();
      for (let j = i; j < i + 1000; j++) p.set(`m:${j}`, `${MARKER}-${j}`);
      await p.exec();
    }
    const before = statusMap((await admin.call('ENCRYPTION', 'STATUS')) as unknown[]);
    assert.ok([0, 1].includes(Number(before.get('encryption_state'))));
    // Flushed to tables, so the scan has files to rewrite.
    assert.ok((await filesHolding(server.dataDir!, MARKER)).length > 0);

    // Turn encryption on in the config file and reload.
    const original = await readFile(server.configPath!, 'utf8');
    assert.match(original, /data-encryption-method = "plaintext"/);
    await writeFile(server.configPath!, original.replace('data-encryption-method = "plaintext"', 'data-encryption-method = "aes256-ctr"'));
    // Traffic throughout: writes of new keys and overwrites, reads of markers.
    let stop = false;
    let written = 0;
    // Writes acknowledged while the last status seen said the scan was in progress (state 2).
    let scanning = false;
    let writtenDuringScan = 0;
    let failures = 0;
    const traffic = (async () => {
      const w = server.client();
      while (!stop) {
        try {
          await w.set(`live:${written}`, `${MARKER}-live-${written}`);
          written++;
          if (scanning) writtenDuringScan++;
          const j = written % KEYS;
          assert.equal(await w.get(`m:${j}`), `${MARKER}-${j}`);
        } catch (err) {
          failures++;
          // A server that is gone fails every call at once: stop rather than spin.
          if (failures > 100) throw new Error(`client calls keep failing (${String(err)}); server log:\n${server.stderr().slice(-4000)}`);
        }
      }
    })();
    const seen = new Set<number>();
    const percents: number[] = [];
    try {
      const report = (await admin.call('ENCRYPTION', 'RELOAD')) as unknown[];
      const status = statusMap(statusMap(report).get('status') as unknown[]);
      assert.equal(Number(status.get('encryption_state')), 2);
      await waitUntil(
        async () => {
          const s = statusMap((await admin.call('ENCRYPTION', 'STATUS')) as unknown[]);
          seen.add(Number(s.get('encryption_state')));
          scanning = Number(s.get('encryption_state')) === 2;
          percents.push(Number(s.get('percent_complete')));
          return s.get('encryption_scan_state_desc') === 'COMPLETED';
        },
        'the scan to complete',
        120_000,
        100,
      );
    } catch (err) {
      throw new Error(`${String(err)}; server log:\n${server.stderr().slice(-4000)}`, { cause: err });
    } finally {
      // Whatever happened, the traffic stops (a dead server must not leave it spinning).
      stop = true;
      await traffic;
    }
    const end = statusMap((await admin.call('ENCRYPTION', 'STATUS')) as unknown[]);
    assert.equal(Number(end.get('encryption_state')), 3);
    assert.equal(Number(end.get('percent_complete')), 100);
    assert.ok(seen.has(2), `states seen: ${[...seen].join(',')}`);
    for (let i = 1; i < percents.length; i++) assert.ok(percents[i]! >= percents[i - 1]!, 'percent went backwards');
    assert.ok(writtenDuringScan > 0, `client writes were acknowledged while the scan ran (percentages seen: ${percents.join(',')})`);
    assert.equal(failures, 0);
    assert.ok(written > 0);
    // Everything written is there, and nothing is on disk in the clear once the memtable is flushed too.
    const r = server.client();
    for (let j = 0; j < KEYS; j += 101) assert.equal(await r.get(`m:${j}`), `${MARKER}-${j}`);
    for (let n = 0; n < written; n++) assert.equal(await r.get(`live:${n}`), `${MARKER}-live-${n}`);
    const code = await server.stop();
    assert.equal(code, 0);
    assert.deepEqual(await filesHolding(server.dataDir!, MARKER), []);
  } finally {
    await server.stop().catch(() => undefined);
    await removeTempDir(dir);
  }
});
