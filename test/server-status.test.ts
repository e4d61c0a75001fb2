/** tdekv only: the HTTP status port (health, Prometheus metrics, encryption status). */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTdekv, target, waitUntil, type ServerHandle } from './support/server-process.js';

describe('status HTTP endpoint', { skip: target() !== 'tdekv' && 'tdekv only' }, () => {
  let server: ServerHandle | undefined;
  let masterKeyHex: string;
  before(async () => {
    server = await startTdekv();
    masterKeyHex = (await readFile(join(server.dir, 'master.key'), 'utf8')).trim();
    const c = server.client();
    await c.call('SET', 'k', 'v');
    await c.call('HSET', 'h', 'f', 'v');
  });
  after(async () => {
    await server?.stop();
  });
  const get = async (path: string): Promise<{ status: number; type: string; body: string }> => {
    assert.ok(server?.statusPort, 'the ready line named a status port');
    const r = await fetch(`http://127.0.0.1:${server.statusPort}${path}`);
    return { status: r.status, type: r.headers.get('content-type') ?? '', body: await r.text() };
  };

  test('GET /healthz is 200', async () => {
    const r = await get('/healthz');
    assert.equal(r.status, 200);
  });

  test('GET /metrics: Prometheus text with the encryption metrics', async () => {
    const r = await get('/metrics');
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain/);
    assert.match(r.body, /^tdekv_encryption_is_initialized(\{[^}]*\})? 1$/m);
    assert.match(r.body, /^tdekv_encryption_file_num(\{[^}]*\})? \d+$/m);
    assert.ok(!r.body.toLowerCase().includes(masterKeyHex.toLowerCase()), 'no master key material in /metrics');
  });

  test('GET /status: JSON naming the method, without key material', async () => {
    type StatusDoc = { engine: { backgroundThread: { enabled: boolean; threadId?: number } }; lifecycle: { encryptionStateDesc: string } };
    // The server starts its background thread at start (not when the first memtable is an
    // eighth full, as an embedded engine does): it reports a thread id once loaded.
    let r = await get('/status');
    await waitUntil(async () => {
      r = await get('/status');
      return (JSON.parse(r.body) as StatusDoc).engine.backgroundThread.threadId !== undefined;
    }, 'the background thread to load');
    assert.equal(r.status, 200);
    assert.match(r.type, /json/);
    const doc = JSON.parse(r.body) as StatusDoc;
    assert.match(r.body, /aes256-ctr/);
    // The default: flushes and compactions on the worker thread, none yet; and the lifecycle's state.
    const threadId = doc.engine.backgroundThread.threadId;
    assert.ok(typeof threadId === 'number' && threadId > 0, `thread id ${threadId}`);
    assert.deepEqual(doc.engine.backgroundThread, { enabled: true, threadId, flushes: 0, compactions: 0 });
    assert.equal(doc.lifecycle.encryptionStateDesc, 'ENCRYPTED');
    assert.ok(!r.body.toLowerCase().includes(masterKeyHex.toLowerCase()), 'no master key hex in /status');
    assert.doesNotMatch(r.body, /"[^"]*"\s*:\s*"[0-9a-fA-F]{64}"/, 'no 256-bit hex strings at all');
  });

  test('an unknown path is 404', async () => {
    assert.equal((await get('/no-such-page')).status, 404);
  });
});
