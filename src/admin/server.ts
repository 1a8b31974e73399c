import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { BridgeConfig } from '../config/schema.js';
import type { Logger } from '../lifecycle/logger.js';
import { AdminToken } from './console/auth.js';
import type { BridgeMetrics } from './metrics.js';

export interface Readiness {
  ready: boolean;
  /** Why not ready, for operators; empty when ready. */
  reasons: string[];
}

/** What the admin endpoints read from the running daemon. */
export interface AdminSource {
  readiness(): Promise<Readiness>;
  status(): Promise<unknown>;
  /** Brings gauges that are read on demand (queue sizes) up to date before a scrape. */
  refreshMetrics(): Promise<void>;
}

/** The operating console (src/admin/console): every path but the four endpoints below, when enabled. */
export interface ConsoleHandler {
  handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void>;
  close(): void;
}

const LOOP_STALL_MS = 5_000;
const ENDPOINTS = ['/healthz', '/readyz', '/status', '/metrics'];
const CONSOLE_OFF = `The operating console is off. To turn it on, set server.adminToken (at least 16 characters),
for example from an environment variable, and restart:

  server:
    adminToken: \${env:ADMIN_TOKEN}

Then open this address and log in with that token. ${ENDPOINTS.join(', ')} stay open as they are.
`;

export type AdminOptions = Pick<BridgeConfig['server'], 'maxConnections' | 'requestTimeout' | 'adminToken'>;

/**
 * `/healthz`, `/readyz`, `/status`, `/metrics`. Liveness fails only when the event loop has been
 * blocked for seconds: restarting a pod because Redis or IMKIT is down would not help, so those
 * affect readiness only.
 *
 * The port is often reachable by more than the probes, so it must not be able to take file handles
 * from webhook delivery: connections are capped at `maxConnections`, and a connection that sends no
 * complete request within `requestTimeout` is closed. At the cap a new connection replaces the
 * oldest idle one rather than being refused, so a probe still gets through an idle-connection flood.
 */
export class AdminServer {
  private readonly server: Server;
  private lastTick = Date.now();
  private readonly ticker: NodeJS.Timeout;
  private closing: Promise<void> | undefined;
  /** Open connections, oldest first, and those with a request in progress. */
  private readonly connections = new Set<Socket>();
  private readonly busy = new Set<Socket>();
  private readonly token: AdminToken | undefined;

  constructor(
    private readonly source: AdminSource,
    private readonly metrics: BridgeMetrics,
    private readonly logger: Logger,
    private readonly options: AdminOptions,
    private readonly operatingConsole?: ConsoleHandler,
  ) {
    this.ticker = setInterval(() => (this.lastTick = Date.now()), 1_000);
    this.ticker.unref();
    this.token = options.adminToken === undefined ? undefined : new AdminToken(options.adminToken);
    const timeout = options.requestTimeout;
    this.server = createServer(
      {
        headersTimeout: timeout,
        requestTimeout: timeout,
        keepAliveTimeout: timeout,
        // Node checks the two timeouts above only this often (30 s by default).
        connectionsCheckingInterval: Math.max(1, Math.floor(timeout / 5)),
      },
      (req, res) => {
        this.busy.add(req.socket);
        req.socket.setTimeout(0);
        res.once('close', () => {
          this.busy.delete(req.socket);
          req.socket.setTimeout(timeout);
        });
        this.handle(req, res).catch((err: unknown) => {
          this.logger.error({ err, path: req.url }, 'admin request failed');
          if (!res.headersSent) send(res, 500, { error: 'internal error' });
          else res.destroy();
        });
      },
    );
    this.server.on('connection', (socket: Socket) => this.admit(socket));
  }

  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const bound = (this.server.address() as AddressInfo).port;
    this.logger.info({ host, port: bound }, 'admin http listening');
    return bound;
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      clearInterval(this.ticker);
      this.operatingConsole?.close();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closing;
  }

  private admit(socket: Socket): void {
    if (this.connections.size >= this.options.maxConnections) {
      const idle = this.oldestIdle();
      if (idle === undefined) {
        socket.destroy();
        return;
      }
      this.connections.delete(idle);
      idle.destroy();
    }
    this.connections.add(socket);
    // headersTimeout starts with the first byte; this closes a connection that sends nothing, or
    // nothing more after its last answer. Suspended while a request is being answered.
    socket.setTimeout(this.options.requestTimeout, () => socket.destroy());
    socket.once('close', () => {
      this.connections.delete(socket);
      this.busy.delete(socket);
    });
  }

  private oldestIdle(): Socket | undefined {
    for (const socket of this.connections) if (!this.busy.has(socket)) return socket;
    return undefined;
  }

  /** Open without `adminToken`; with it, a matching bearer token, compared in constant time. */
  private authorized(req: IncomingMessage): boolean {
    return this.token === undefined || this.token.bearerOf(req);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin.invalid');
    } catch {
      send(res, 400, { error: 'bad request target' });
      return;
    }
    const path = url.pathname;
    if (!ENDPOINTS.includes(path)) {
      if (this.operatingConsole) return this.operatingConsole.handle(req, res, url);
      if (path === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
        res.end(CONSOLE_OFF);
        return;
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, { error: 'method not allowed' });
      return;
    }
    switch (path) {
      case '/healthz': {
        const stalledMs = Date.now() - this.lastTick;
        if (stalledMs > LOOP_STALL_MS)
          send(res, 503, { ok: false, reason: `event loop stalled ${stalledMs} ms` });
        else send(res, 200, { ok: true });
        return;
      }
      case '/readyz': {
        const readiness = await this.source.readiness();
        send(res, readiness.ready ? 200 : 503, readiness);
        return;
      }
      case '/status':
        if (!this.authorized(req)) {
          res.setHeader('www-authenticate', 'Bearer realm="imkit-bridge"');
          send(res, 401, { error: 'unauthorized: send Authorization: Bearer <server.adminToken>' });
          return;
        }
        send(res, 200, await this.source.status());
        return;
      case '/metrics': {
        await this.source.refreshMetrics();
        const text = await this.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
        res.end(text);
        return;
      }
      default:
        send(res, 404, { error: 'not found', endpoints: ENDPOINTS });
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}
