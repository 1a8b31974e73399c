import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';

interface Pair {
  client: Socket;
  upstream: Socket;
  frozen: boolean;
  /** Requests still reach the target; only its answers are dropped. */
  repliesFrozen: boolean;
}

/**
 * A loopback TCP proxy that can freeze its connections: bytes stop flowing both ways (they are
 * dropped, as on a dead network path) while both TCP connections stay open and neither side sees a
 * FIN or RST. That is a half-open connection, which only an application-level watchdog detects.
 * Connections accepted after `freeze()` flow normally, so a client that reconnects gets through.
 * The soak puts one in front of each ingest replica so socket faults hit one replica at a time.
 */
export class TcpProxy {
  private readonly pairs = new Set<Pair>();
  private readonly server: Server;
  private listeningPort = 0;
  private closed = false;

  private constructor(targetPort: number, targetHost: string) {
    this.server = createServer((client) => {
      const upstream = connect(targetPort, targetHost);
      const pair: Pair = { client, upstream, frozen: false, repliesFrozen: false };
      this.pairs.add(pair);
      client.on('data', (chunk) => {
        if (!pair.frozen) upstream.write(chunk);
      });
      upstream.on('data', (chunk) => {
        if (!pair.frozen && !pair.repliesFrozen) client.write(chunk);
      });
      // A frozen pair passes no close either: the far side must keep believing the link is up.
      const end = (other: Socket) => () => {
        if (!pair.frozen) other.destroy();
        if (client.destroyed && upstream.destroyed) this.pairs.delete(pair);
      };
      client.on('close', end(upstream));
      upstream.on('close', end(client));
      client.on('error', () => {});
      upstream.on('error', () => {});
    });
  }

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
    const proxy = new TcpProxy(targetPort, targetHost);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(0, '127.0.0.1', () => resolve());
    });
    proxy.listeningPort = (proxy.server.address() as AddressInfo).port;
    return proxy;
  }

  get port(): number {
    return this.listeningPort;
  }

  get url(): string {
    return `http://127.0.0.1:${this.listeningPort}`;
  }

  /** Open proxied connections (frozen ones included). */
  get connections(): number {
    return [...this.pairs].filter((p) => !p.client.destroyed).length;
  }

  /** Freezes every connection open now. */
  freeze(): void {
    for (const pair of this.pairs) pair.frozen = true;
  }

  /**
   * Holds connections open now (all, or those whose upstream socket's local port `only` picks, as
   * the target lists its clients): neither side's bytes are read, so they queue up in the senders'
   * buffers instead of being dropped, and `release()` delivers them in order. A replication link held
   * this way lags without breaking, which is how a replica falls behind its master.
   */
  hold(only: (upstreamLocalPort: number) => boolean = () => true): void {
    for (const pair of this.pairs) {
      if (!only(pair.upstream.localPort ?? 0)) continue;
      pair.client.pause();
      pair.upstream.pause();
    }
  }

  release(): void {
    for (const pair of this.pairs) {
      pair.client.resume();
      pair.upstream.resume();
    }
  }

  /**
   * Drops what the target sends back on every connection open now, while what the client sends still
   * arrives: a request is carried out but its answer (an ack, a reply) is lost.
   */
  freezeReplies(): void {
    for (const pair of this.pairs) pair.repliesFrozen = true;
  }

  /** Resets every connection open now (frozen ones too), as a dropped network path would. */
  drop(): void {
    for (const pair of this.pairs) {
      pair.frozen = false;
      pair.client.resetAndDestroy();
      pair.upstream.resetAndDestroy();
    }
    this.pairs.clear();
  }

  /**
   * Resets every open connection and stops listening, so new connections are refused (ECONNREFUSED),
   * as from a host whose broker is down. `accept()` listens again on the same port.
   */
  async refuse(): Promise<void> {
    this.drop();
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async accept(): Promise<void> {
    if (this.server.listening) return;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.listeningPort, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.refuse();
  }
}
