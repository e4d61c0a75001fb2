/**
 * A worker thread that holds only file grants (no env, no key dictionary, no master key):
 * reads the granted file, writes a new granted file with a tag over each record, and reports.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AuthDomain } from '../../src/crypto/file-auth.js';
import { createGranted, openGrantedRead, type FileGrant } from '../../src/env/file-grant.js';

const { read, create } = workerData as { read: FileGrant; create: FileGrant };
const src = openGrantedRead(read);
const content = src.readSync(0, src.size);
src.close();
const out = await createGranted(create);
const upper = Buffer.from(content.toString('latin1').toUpperCase(), 'latin1');
const tag = out.auth!.tag(AuthDomain.LogRecord, 0, upper);
await out.append(upper);
await out.append(tag);
await out.sync();
await out.close();
parentPort!.postMessage({ readKeyWiped: read.key.every((b) => b === 0), createKeyWiped: create.key.every((b) => b === 0), bytes: upper.length });
