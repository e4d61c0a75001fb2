import { isIPv4, isIPv6 } from 'node:net';

/** A listen address, as node:net takes it. */
export interface HostPort {
  host: string;
  port: number;
}

export const HOST_PORT_FORMS =
  '"host:port" where host is an IPv4 address, a hostname or an IPv6 address in brackets, and port is 0 to 65535 ' +
  '(0 picks a free port), e.g. "127.0.0.1:6380", "0.0.0.0:6380", "[::1]:6380", "localhost:6380"';

// RFC 1123 labels; a trailing dot (fully qualified) is accepted.
const HOSTNAME = /^(?=.{1,253}\.?$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

/**
 * Parses a listen address. IPv6 hosts come back without brackets, as node:net takes them.
 * Throws a plain Error saying what is wrong and naming the accepted forms.
 */
export function parseHostPort(text: string): HostPort {
  const fail = (why: string): never => {
    throw new Error(`${why}; expected ${HOST_PORT_FORMS}`);
  };
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return fail('"[" without a closing "]"');
    host = text.slice(1, close);
    if (text[close + 1] !== ':') return fail('no ":port" after the bracketed address');
    portText = text.slice(close + 2);
    if (!isIPv6(host)) return fail(`"${host}" is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return fail('no ":port"');
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return fail('an IPv6 address must be in brackets');
    if (host === '') return fail('no host (use 0.0.0.0 for every interface)');
    // Dotted digits that are not a valid IPv4 address ("256.1.1.1", "1.2.3") are a typo,
    // not a hostname a resolver should be asked about.
    if (/^[\d.]+$/.test(host) ? !isIPv4(host) : !HOSTNAME.test(host)) return fail(`"${host}" is not an IPv4 address or a hostname`);
  }
  if (!/^\d{1,5}$/.test(portText)) return fail(portText === '' ? 'no port' : `port "${portText}" is not a number`);
  const port = Number(portText);
  if (port > 65535) return fail(`port ${port} is above 65535`);
  return { host, port };
}

/** The form parseHostPort reads: IPv6 hosts in brackets. */
export function formatHostPort(addr: HostPort): string {
  return isIPv6(addr.host) ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}
