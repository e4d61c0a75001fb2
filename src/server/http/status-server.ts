import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { formatHostPort } from '../../util/host-port.js';
import { TdekvError, errnoCode } from '../../errors.js';
import type { Logger } from '../../log/logger.js';
import { STATUS_PAGE_HEADERS, STATUS_PAGE_HTML } from './status-page.js';

export interface StatusServerOptions {
  host: string;
  /** 0 picks a free port; the one picked is returned. */
  port: number;
  registry: Registry;
  /** The /status document (see statusReport); must hold no key material. */
  status: () => unknown | Promise<unknown>;
  /** /healthz: 200 "ok" when ok, else 503 with the reason. */
  healthy: () => { ok: boolean; reason?: string };
  logger: Logger;
}

export interface StatusServer {
  host: string;
  port: number;
  /** Stops listening and drops open connections (a scraper's keep-alive must not hold shutdown). */
  close(): Promise<void>;
}

type Reply = { status: number; type: string; body: string; headers?: Record<string, string> };
type Route = () => Promise<Reply> | Reply;

const TEXT = 'text/plain; charset=utf-8';

/**
 * The HTTP side of `[server] status-addr`: a status page for people, Prometheus metrics, a
 * JSON status document and a health check, read-only and unauthenticated like TiKV's status port — bind it to a
 * private address.
 */
export async function startStatusServer(options: StatusServerOptions): Promise<StatusServer> {
  const { registry, logger } = options;
  const routes: Readonly<Record<string, Route>> = {
    '/': () => ({ status: 200, type: 'text/html; charset=utf-8', body: STATUS_PAGE_HTML, headers: STATUS_PAGE_HEADERS }),
    '/metrics': async () => ({ status: 200, type: registry.contentType, body: await registry.metrics() }),
    '/status': async () => ({ status: 200, type: 'application/json; charset=utf-8', body: `${JSON.stringify(await options.status(), null, 2)}\n` }),
    '/healthz': () => {
      const h = options.healthy();
      return h.ok ? { status: 200, type: TEXT, body: 'ok\n' } : { status: 503, type: TEXT, body: `${h.reason ?? 'unhealthy'}\n` };
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://status').pathname;
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    let reply: Reply;
    if (route === undefined) {
      reply = { status: 404, type: TEXT, body: `not found: try ${Object.keys(routes).join(', ')}\n` };
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply = { status: 405, type: TEXT, body: 'method not allowed: GET or HEAD\n', headers: { allow: 'GET, HEAD' } };
    } else {
      try {
        reply = await route();
      } catch (err) {
        // The reason goes to the log only: an HTTP client on this unauthenticated port
        // need not learn file paths or internal state from it.
        logger.error({ err, path }, 'status endpoint failed');
        reply = { status: 500, type: TEXT, body: 'internal error; see the server log\n' };
      }
    }
    res.writeHead(reply.status, {
      'content-type': reply.type,
      'content-length': Buffer.byteLength(reply.body),
      'cache-control': 'no-store',
      ...reply.headers,
    });
    // Node sends no body for HEAD by itself; the headers still describe the GET.
    res.end(reply.body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error({ err }, 'status request failed');
      res.destroy();
    });
  });
  // Scrapes are small and quick: a client that dribbles its request must not hold a socket.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;

  const where = formatHostPort({ host: options.host, port: options.port });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      const code = errnoCode(err) ?? 'error';
      const fix = code === 'EADDRINUSE' ? 'another process uses that port: choose another' : 'check the address';
      reject(new TdekvError('IO_FAILED', `cannot serve status on ${where} (${code}: ${err.message}); ${fix} in [server] status-addr (port 0 picks a free one)`, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err }, 'status server error'));

  const address = server.address() as AddressInfo;
  logger.info({ addr: formatHostPort({ host: address.address, port: address.port }) }, 'status server listening (/, /metrics, /status, /healthz)');

  let closing: Promise<void> | undefined;
  return {
    host: address.address,
    port: address.port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
