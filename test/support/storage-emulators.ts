import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { request as httpRequest, createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest, createServer as createHttpsServer } from 'node:https';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './server-process.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'node_modules', '.bin');

/** Azurite's well-known development account (published in Azure's docs; not a secret). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface Emulator {
  /** http(s)://127.0.0.1:PORT (Azure: with /devstoreaccount1). */
  endpoint: string;
  port: number;
  stop(): Promise<void>;
}

async function waitForPort(port: number, child: ChildProcess, output: () => string, deadlineMs = 15_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the emulator exited (${child.exitCode}) before listening: ${output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const sock = connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`the emulator did not listen on ${port} within ${deadlineMs} ms: ${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };
}

function spawnEmulator(bin: string, args: string[], cwd: string): { child: ChildProcess; output: () => string } {
  const child = spawn(join(BIN, bin), args, { stdio: ['ignore', 'pipe', 'pipe'], cwd });
  let out = '';
  const keep = (chunk: Buffer): void => {
    out = (out + chunk.toString()).slice(-4000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return { child, output: () => out };
}

/** s3rver on a loopback port with a data dir under `dir` and these buckets created. */
export async function startS3rver(dir: string, buckets: string[]): Promise<Emulator> {
  const port = await freePort();
  const data = join(dir, 's3rver');
  await mkdir(data, { recursive: true });
  const args = ['-d', data, '-a', '127.0.0.1', '-p', String(port), '--silent', '--no-vhost-buckets'];
  for (const b of buckets) args.push('--configure-bucket', b);
  const { child, output } = spawnEmulator('s3rver', args, dir);
  await waitForPort(port, child, output);
  return { endpoint: `http://127.0.0.1:${port}`, port, stop: stopper(child) };
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  certPath: string;
  keyPath: string;
}

/** A self-signed certificate for 127.0.0.1 (openssl), for https emulators and proxies. */
export async function selfSignedCert(dir: string): Promise<TlsMaterial> {
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const run = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', keyPath, '-out', certPath,
  ], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`openssl failed: ${run.stderr}`);
  return { cert: await readFile(certPath), key: await readFile(keyPath), certPath, keyPath };
}

/** azurite-blob in memory on a loopback port; https when `tls` is given. */
export async function startAzurite(dir: string, tls?: TlsMaterial): Promise<Emulator> {
  const port = await freePort();
  const args = [
    '--blobHost', '127.0.0.1', '--blobPort', String(port), '--silent', '--inMemoryPersistence',
    '--skipApiVersionCheck', '--loose', '--disableTelemetry',
  ];
  if (tls !== undefined) args.push('--cert', tls.certPath, '--key', tls.keyPath);
  const { child, output } = spawnEmulator('azurite-blob', args, dir);
  await waitForPort(port, child, output);
  return { endpoint: `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}/${AZURITE_ACCOUNT}`, port, stop: stopper(child) };
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export interface RecordingProxy {
  /** The proxy's origin: http(s)://127.0.0.1:PORT. */
  origin: string;
  requests: RecordedRequest[];
  stop(): Promise<void>;
}

/**
 * A forwarding proxy that records every request's method, URL and headers, so a test can see
 * exactly what the SDK sent. Headers (Host included) pass unchanged, so signatures still verify.
 */
export async function startRecordingProxy(target: { port: number; tls?: TlsMaterial }, serveTls?: TlsMaterial): Promise<RecordingProxy> {
  const requests: RecordedRequest[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    const options = { host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers };
    const onResponse = (up: IncomingMessage): void => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    };
    const upstream = target.tls === undefined ? httpRequest(options, onResponse) : httpsRequest({ ...options, ca: target.tls.cert }, onResponse);
    upstream.on('error', () => res.destroy());
    req.on('error', () => upstream.destroy());
    // A client that gives up midway must not leave a half request looking complete upstream.
    req.on('aborted', () => upstream.destroy());
    req.pipe(upstream);
  };
  const server = serveTls === undefined ? createHttpServer(handler) : createHttpsServer({ cert: serveTls.cert, key: serveTls.key }, handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    origin: `${serveTls === undefined ? 'http' : 'https'}://127.0.0.1:${address.port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
