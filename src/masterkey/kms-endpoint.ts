import { isIPv4 } from 'node:net';

/*
 * KMS answers GenerateDataKey and Decrypt with the plaintext wrapping key in the response
 * body, so an endpoint reached over plain HTTP hands that key to anyone on the path. Only
 * loopback, which never leaves the host (a local KMS emulator or a TLS-terminating sidecar),
 * is exempt.
 */

export const ALLOW_INSECURE_ENDPOINT = 'allow-insecure-endpoint';

/** True for localhost, 127.0.0.0/8 and ::1 (also IPv4-mapped), as a URL spells its hostname. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIPv4(host)) return host.startsWith('127.');
  if (host === '::1') return true;
  // The URL parser writes ::ffff:127.0.0.1 as ::ffff:7f00:1.
  return /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(host);
}

/**
 * Why `endpoint` may not be used as a KMS endpoint (undefined when it may): TLS is required
 * except on loopback, unless `allowInsecure` (`allow-insecure-endpoint = true`) says
 * something else protects the path.
 */
export function insecureKmsEndpoint(endpoint: string | undefined, allowInsecure: boolean | undefined): string | undefined {
  if (endpoint === undefined || allowInsecure === true) return undefined;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return 'it is not a URL';
  }
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return undefined;
  return (
    `${url.protocol}// is not TLS and ${url.hostname} is not a loopback address, and KMS replies carry the plaintext wrapping key. ` +
    `Use an https:// endpoint, or set ${ALLOW_INSECURE_ENDPOINT} = true only if the network path is protected otherwise`
  );
}

/**
 * `endpoint` as it may be shown in messages, status and metrics: a URL can carry credentials
 * (user:password@host) or tokens in its query, and neither may leave the process.
 */
export function publicEndpoint(endpoint: string): string {
  try {
    const url = new URL(endpoint);
    return `${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname}`;
  } catch {
    return endpoint.replace(/\/\/[^/@\s]*@/g, '//').replace(/[?#].*$/, '');
  }
}
