import { readFileSync } from 'node:fs';
import { TdekvError, errnoCode } from '../errors.js';
import type { TlsConfig } from './server-options.js';

/** The PEM files `[security]` names for TLS, read at startup; an unreadable one names its setting. */
export function readTlsMaterial(tls: TlsConfig): { cert: Buffer; key: Buffer; ca?: Buffer } {
  return {
    cert: readConfiguredFile(tls.certPath, 'security.cert-path'),
    key: readConfiguredFile(tls.keyPath, 'security.key-path'),
    ...(tls.caPath !== undefined ? { ca: readConfiguredFile(tls.caPath, 'security.ca-path') } : {}),
  };
}

function readConfiguredFile(path: string, setting: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TdekvError('CONFIG_INVALID', `${setting} = "${path}" cannot be read (${errnoCode(err) ?? String(err)}); check the path and its permissions`);
  }
}
