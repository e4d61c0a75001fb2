import { createRequire } from 'node:module';
import { generateKeyPairSync, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';
import { TdekvError } from '../../errors.js';

/**
 * node:crypto parses X.509 certificates but cannot build one; @peculiar/x509 does, over
 * WebCrypto. Typed here rather than imported, and loaded on first use: only creating a
 * certificate needs it (parsing, thumbprints and RSA-OAEP are node:crypto's), so every other
 * command and the server do not pay for loading it. Its DI container (tsyringe) needs a
 * Reflect polyfill loaded first.
 */
export const X509_PACKAGE = '@peculiar/x509';
export const X509_PACKAGE_VERSION = '2.2.0';
const REFLECT_PACKAGE = 'reflect-metadata';

interface X509Lib {
  cryptoProvider: { set(crypto: unknown): void };
  X509CertificateGenerator: {
    createSelfSigned(params: {
      serialNumber?: string;
      name: string;
      notBefore: Date;
      notAfter: Date;
      signingAlgorithm: { name: string; hash: string };
      keys: { publicKey: webcrypto.CryptoKey; privateKey: webcrypto.CryptoKey };
      extensions: unknown[];
    }): Promise<{ toString(format: 'pem'): string }>;
  };
  KeyUsagesExtension: new (usages: number, critical?: boolean) => unknown;
  BasicConstraintsExtension: new (ca?: boolean, pathLength?: number, critical?: boolean) => unknown;
  KeyUsageFlags: { digitalSignature: number; keyEncipherment: number };
}

let lib: X509Lib | undefined;

function load(): X509Lib {
  if (lib !== undefined) return lib;
  const require = createRequire(import.meta.url);
  try {
    require(REFLECT_PACKAGE);
    lib = require(X509_PACKAGE) as X509Lib;
  } catch (err) {
    throw new TdekvError(
      'INVALID_ARGUMENT',
      `creating a certificate needs the packages ${X509_PACKAGE}@${X509_PACKAGE_VERSION} and ${REFLECT_PACKAGE}, which are not installed: run \`npm install\` in tdekv's directory.`,
      { cause: err },
    );
  }
  lib.cryptoProvider.set(webcrypto);
  return lib;
}

/** RSA-3072: SQL Server's certificates for TDE default to RSA 2048; 3072 is NIST's level for use beyond 2030. */
export const RSA_BITS = 3072;

/** "CN=…, O=…" as given, or plain text as SQL Server's WITH SUBJECT takes it, which becomes the CN. */
export function distinguishedName(subject: string): string {
  const trimmed = subject.trim();
  if (trimmed === '') throw new TdekvError('INVALID_ARGUMENT', 'the certificate subject is empty: give --subject "some text" or --subject "CN=…, O=…".');
  if (/^[A-Za-z][A-Za-z0-9.]*=/.test(trimmed)) return trimmed;
  return `CN=${trimmed.replace(/([,+"\\<>;=#])/g, '\\$1')}`;
}

/** A new RSA key pair and a self-signed certificate for it (SHA-256 with RSA), as SQL Server's CREATE CERTIFICATE makes. */
export async function createSelfSignedCertificate(subject: string, validDays: number): Promise<{ certificatePem: string; privateKey: KeyObject }> {
  if (!Number.isInteger(validDays) || validDays < 1 || validDays > 36500) {
    throw new TdekvError('INVALID_ARGUMENT', `--valid-days must be a whole number of days from 1 to 36500 (found ${validDays}).`);
  }
  const x509 = load();
  const name = distinguishedName(subject);
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: RSA_BITS });
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
  let signing: webcrypto.CryptoKey;
  try {
    signing = await webcrypto.subtle.importKey('pkcs8', pkcs8, alg, false, ['sign']);
  } finally {
    pkcs8.fill(0);
  }
  const verifying = await webcrypto.subtle.importKey('spki', spki, alg, true, ['verify']);
  const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000);
  const notAfter = new Date(notBefore.getTime() + validDays * 86_400_000);
  let pem: string;
  try {
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      name,
      notBefore,
      notAfter,
      signingAlgorithm: alg,
      keys: { publicKey: verifying, privateKey: signing },
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.digitalSignature, true),
      ],
    });
    pem = cert.toString('pem');
  } catch (err) {
    throw new TdekvError('INVALID_ARGUMENT', `cannot create a certificate with subject ${JSON.stringify(subject)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  // Parsed back by node:crypto, which is what every later use of the certificate goes through.
  new X509Certificate(pem);
  return { certificatePem: pem, privateKey };
}
