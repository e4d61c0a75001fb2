/**
 * Child process of the lifecycle crash test: opens the database with `method`, lets the
 * encryption scan run (resuming whatever a killed predecessor left), and writes one synced
 * batch every few ms meanwhile. The parent SIGKILLs it at random moments.
 *   argv: dataDir keyFile method rateLimit exitWhenDone(0|1)
 *   stdout: "ready <percent> <state> <scanState>", "p <percent>" per progress event,
 *   "ack <n>" after batch n is durable, "done" once the scan completed (then exits if asked).
 */
import { Engine } from '../../src/engine/engine.js';
import type { EncryptionMethod } from '../../src/crypto/method.js';
import { openEnv } from '../../src/env/open-env.js';
import { EncryptionLifecycle } from '../../src/lifecycle/encryption-lifecycle.js';
import { silentLogger } from '../../src/log/logger.js';
import { COUNTER, SCAN_TUNING } from './lifecycle-scan-workload.js';


const [dataDir, keyFile, method, rate, exitWhenDone] = process.argv.slice(2) as [string, string, EncryptionMethod, string, string];
const enc = {
  dataEncryptionMethod: method,
  dataKeyRotationPeriodMs: 7 * 24 * 3600_000,
  enableFileDictionaryLog: true,
  fileDictionaryRewriteThreshold: 1_000_000,
  masterKey: { type: 'file' as const, path: keyFile },
  scanRateLimit: Number(rate),
};
const managed = await openEnv(dataDir, enc, { deferOpenWrites: true });
const engine = await Engine.open({ env: managed.env, ...SCAN_TUNING });
const lifecycle = await EncryptionLifecycle.open({ engine, managed, config: enc, logger: silentLogger() });
const st = lifecycle.status();
let n = Number(engine.getSync(Buffer.from(COUNTER))?.toString() ?? '0');
process.stdout.write(`ready ${st.percentComplete} ${st.encryptionState} ${st.scanState}\n`);
let done = st.scanStateDesc === 'COMPLETED' || st.encryptionState === 3;
lifecycle.on('progress', (s) => {
  process.stdout.write(`p ${s.percentComplete}\n`);
  if (s.scanStateDesc === 'COMPLETED' && !done) {
    done = true;
    process.stdout.write('done\n');
  }
});
if (done) process.stdout.write('done\n');
for (;;) {
  if (done && exitWhenDone === '1') break;
  n++;
  await engine.write([{ type: 'put', key: Buffer.from(`w${String(n).padStart(6, '0')}`), value: Buffer.from(`LIVE-MARKER-${n}`) }, { type: 'put', key: Buffer.from(COUNTER), value: Buffer.from(String(n)) }], { sync: true });
  process.stdout.write(`ack ${n}\n`);
  await new Promise((r) => setTimeout(r, 5));
}
await lifecycle.close();
await engine.close();
await managed.close();
