import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { X509Certificate } from 'node:crypto';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import type { TdekvConfig } from '../config/types.js';
import { TdekvError, errnoCode } from '../errors.js';
import { formatHostPort, parseHostPort, type HostPort } from '../util/host-port.js';
import { RespClient, RespError, type RespReply } from './resp-client.js';

/*
 * The admin connection of the CLI commands that drive a running server (`tdekv encryption`,
 * `tdekv backup full`): where to connect from the config file the server reads, its TLS
 * (the server's own certificate pinned unless a CA is given), and AUTH as the admin user.
 */

export interface AdminConnectionOptions {
  config: string;
  /** host:port, when server.addr does not say where to connect (port 0, a wildcard behind NAT …). */
  addr?: string;
  /** Trust anchor for the server's certificate (default: the server's own certificate, pinned). */
  tlsCa?: string;
  /** Client certificate and key, when the server asks for one (`[security] ca-path`). */
  tlsCert?: string;
  tlsKey?: string;
}

/** The options that say where the running server is and how to trust it, for every command that drives one. */
export function addAdminConnectionOptions(cmd: Command, prefix = ''): Command {
  return cmd
    .option('--addr <host:port>', `${prefix}where the server listens (default: server.addr of the config)`)
    .option('--tls-ca <file>', `${prefix}CA of the server certificate (default: trust exactly security.cert-path of the config)`)
    .option('--tls-cert <file>', `${prefix}client certificate, when the server asks for one (security.ca-path)`)
    .option('--tls-key <file>', `${prefix}key of --tls-cert`);
}

/** Runs one command; an error reply becomes SERVER_REFUSED naming the command (and, for NOPERM, the setting to fix). */
export async function command(client: RespClient, args: string[]): Promise<RespReply> {
  const reply = await client.call(...args);
  if (reply instanceof RespError) {
    const hint = reply.message.startsWith('NOPERM')
      ? '. Set [security] admin-password in the config file this command reads (it authenticates as AUTH admin <admin-password>).'
      : '';
    throw new TdekvError('SERVER_REFUSED', `the server refused ${args.join(' ')}: ${reply.message}${hint}`);
  }
  return reply;
}

/** As the admin user when the config has admin-password (the ENCRYPTION commands need it then), else as the default user. */
export async function authenticate(client: RespClient, config: TdekvConfig): Promise<void> {
  const { adminPassword, requirepass } = config.security;
  const args = adminPassword !== undefined ? ['AUTH', 'admin', adminPassword] : requirepass !== undefined ? ['AUTH', requirepass] : undefined;
  if (args === undefined) return;
  const reply = await client.call(...args);
  if (reply instanceof RespError) {
    const setting = adminPassword !== undefined ? 'security.admin-password' : 'security.requirepass';
    throw new TdekvError('SERVER_REFUSED', `the server refused the password of ${setting}: ${reply.message}. Is it the config file the server runs with?`);
  }
}

/** Where the server listens, as a client reaches it: a wildcard address is reached on loopback. */
export function clientAddress(config: TdekvConfig, addr: string | undefined): HostPort {
  const a = addr !== undefined ? parseHostPort(addr) : config.server.addr;
  const host = a.host === '0.0.0.0' ? '127.0.0.1' : a.host === '::' ? '::1' : a.host;
  if (a.port === 0) {
    throw new TdekvError('INVALID_ARGUMENT', `server.addr = "${formatHostPort(config.server.addr)}" has port 0 (the server picked a free port at start): pass --addr host:port with the port it logged in its "ready" line`);
  }
  return { host, port: a.port };
}

export async function connectToServer(config: TdekvConfig, opts: AdminConnectionOptions, offlineHint: string): Promise<RespClient> {
  const addr = clientAddress(config, opts.addr);
  const shown = formatHostPort(addr);
  const tls = config.security.tls !== undefined ? await tlsOptions(config, opts) : undefined;
  try {
    return await RespClient.connect({ host: addr.host, port: addr.port, ...(tls ?? {}), timeoutMs: 5_000, replyTimeoutMs: 120_000 });
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ECONNREFUSED' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENOTFOUND' || code === 'ECONNRESET') {
      throw new TdekvError('SERVER_UNREACHABLE', `no tdekv server answers at ${shown} (server.addr of ${opts.config}; ${code}). Start it with tdekv serve --config ${opts.config}. ${offlineHint}`);
    }
    if (err instanceof TdekvError) throw err;
    throw new TdekvError('SERVER_UNREACHABLE', `cannot talk to the tdekv server at ${shown}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * The server's own certificate (security.cert-path) is pinned unless --tls-ca names a CA: the
 * CLI reads the same config on the same machine, and a pin needs no CA to have signed it.
 */
async function tlsOptions(config: TdekvConfig, opts: AdminConnectionOptions): Promise<{ tls: ConnectionOptions; checkPeer?: (s: TLSSocket) => void }> {
  const serverTls = config.security.tls!;
  const tls: ConnectionOptions = {};
  if (serverTls.caPath !== undefined) {
    if (opts.tlsCert === undefined || opts.tlsKey === undefined) {
      throw new TdekvError('INVALID_ARGUMENT', `the server asks clients for a certificate (security.ca-path = ${serverTls.caPath}): pass --tls-cert and --tls-key with a client certificate that CA signed`);
    }
  }
  if (opts.tlsCert !== undefined) tls.cert = await readFile(opts.tlsCert);
  if (opts.tlsKey !== undefined) tls.key = await readFile(opts.tlsKey);
  if (opts.tlsCa !== undefined) {
    tls.ca = await readFile(opts.tlsCa);
    return { tls };
  }
  const pinned = new X509Certificate(await readFile(serverTls.certPath));
  tls.rejectUnauthorized = false;
  return {
    tls,
    checkPeer: (socket) => {
      const peer = socket.getPeerX509Certificate();
      if (peer === undefined || peer.fingerprint256 !== pinned.fingerprint256) {
        throw new TdekvError('SERVER_REFUSED', `the server's TLS certificate is not security.cert-path (${serverTls.certPath}); pass --tls-ca with the CA that signed it, or check --addr`);
      }
    },
  };
}
