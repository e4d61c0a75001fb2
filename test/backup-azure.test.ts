import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { runCli, type CliResult } from './support/cli.js';
import { cleanup, tempDir, writeKeyFile } from './support/fs-helpers.js';
import { backupMachine, readAll, rows, writeData } from './support/backup-fixture.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, selfSignedCert, startAzurite, type Emulator, type TlsMaterial } from './support/storage-emulators.js';

// `tdekv backup full` and `restore full` through Azure Blob (azurite over https, a
// customer-provided key in AZURE_ENCRYPTION_KEY) in child processes, as a user runs them:
// the restore equals the source, and no blob holds a value in clear (issue 14). The CLI trusts
// the emulator's certificate through NODE_EXTRA_CA_CERTS, as a deployment would its CA.

const CONTAINER = 'backups';

function ok(r: CliResult, what: string): void {
  assert.equal(r.code, 0, `${what} failed (${String(r.code)}): ${r.stderr}`);
}

describe('backup and restore through Azure Blob (azurite, customer-provided key)', () => {
  let root: string;
  let tls: TlsMaterial;
  let azurite: Emulator;
  before(async () => {
    root = await tempDir('tdekv-backup-azure-');
    tls = await selfSignedCert(root);
    azurite = await startAzurite(root, tls);
    const service = new BlobServiceClient(azurite.endpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY), { tlsOptions: { ca: tls.cert } } as object);
    await service.getContainerClient(CONTAINER).create();
  });
  after(async () => {
    await azurite?.stop();
    await cleanup(root);
  });

  test('backup full --offline and restore full on another machine, the key from the environment; every blob ciphertext', async () => {
    const src = await backupMachine(root, 'source');
    await writeData(src, rows(800, 'azmarker'));
    const want = await readAll(src);
    const crypter = (await writeKeyFile(root, 'crypter.key')).path;
    const cpk = randomBytes(32).toString('base64');
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: tls.certPath, AZURE_ENCRYPTION_KEY: cpk, AZURE_STORAGE_ACCOUNT: AZURITE_ACCOUNT, AZURE_STORAGE_KEY: AZURITE_KEY };
    const storage = ['--storage', `azure://${CONTAINER}/prod`, '--azblob.endpoint', azurite.endpoint];
    const protector = ['--crypter.method', 'aes256-ctr', '--crypter.key-file', crypter];
    ok(await runCli(['backup', 'full', '--config', src.configPath, ...storage, '--offline', ...protector], { env }), 'backup full');

    // What the storage holds: read every blob back (with the customer key) and look for the values.
    const service = new BlobServiceClient(azurite.endpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY), { tlsOptions: { ca: tls.cert } } as object);
    const container = service.getContainerClient(CONTAINER);
    let blobs = 0;
    for await (const b of container.listBlobsFlat({ prefix: 'prod/' })) {
      const body = await container.getBlobClient(b.name).downloadToBuffer(undefined, undefined, { customerProvidedKey: { encryptionKey: cpk, encryptionAlgorithm: 'AES256' } });
      assert.equal(body.includes(Buffer.from('azmarker')), false, `${b.name} holds a value in clear`);
      blobs++;
    }
    assert.ok(blobs >= 4, `${blobs} blobs`);

    const dst = await backupMachine(root, 'target');
    ok(await runCli(['restore', 'full', '--config', dst.configPath, ...storage, ...protector], { env }), 'restore full');
    assert.deepEqual(await readAll(dst), want);
  });
});
