import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../lifecycle/logger.js';
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

const LOOP_STALL_MS = 5_000;

/**
 * `/healthz`, `/readyz`, `/status`, `/metrics`. Liveness fails only when the event loop has been
 * blocked for seconds: restarting a pod because Redis or IMKIT is down would not help, so those
 * affect readiness only.
 */
export class AdminServer {
  private readonly server: Server;
  private lastTick = Date.now();
  private readonly ticker: NodeJS.Timeout;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly source: AdminSource,
    private readonly metrics: BridgeMetrics,
    private readonly logger: Logger,
  ) {
    this.ticker = setInterval(() => (this.lastTick = Date.now()), 1_000);
    this.ticker.unref();
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.logger.error({ err, path: req.url }, 'admin request failed');
        if (!res.headersSent) send(res, 500, { error: 'internal error' });
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 5_000;
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
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closing;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
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
        send(res, 404, { error: 'not found', endpoints: ['/healthz', '/readyz', '/status', '/metrics'] });
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}
