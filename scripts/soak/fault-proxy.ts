import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

interface Pair {
  readonly client: Socket;
  readonly upstream: Socket;
  frozen: boolean;
}

/**
 * A loopback TCP proxy in front of the IMKIT simulator, one per ingest replica, so socket faults hit
 * one replica and not the other. `freeze()` makes every open connection half-open (bytes are dropped
 * both ways, no FIN or RST reaches either side); `drop()` resets them. New connections flow normally,
 * so a replica that notices and reconnects gets through.
 */
export class SocketFaultProxy {
  private readonly pairs = new Set<Pair>();
  private readonly server: Server;
  private listeningPort = 0;
  private closed = false;

  private constructor(targetPort: number) {
    this.server = createServer((client) => {
      const upstream = connect(targetPort, '127.0.0.1');
      const pair: Pair = { client, upstream, frozen: false };
      this.pairs.add(pair);
      client.on('data', (chunk) => {
        if (!pair.frozen) upstream.write(chunk);
      });
      upstream.on('data', (chunk) => {
        if (!pair.frozen) client.write(chunk);
      });
      // A frozen pair passes no close either: each side must keep believing the link is up.
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

  static async start(targetPort: number): Promise<SocketFaultProxy> {
    const proxy = new SocketFaultProxy(targetPort);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(0, '127.0.0.1', () => resolve());
    });
    proxy.listeningPort = (proxy.server.address() as AddressInfo).port;
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.listeningPort}`;
  }

  /** Half-opens every connection open now. */
  freeze(): void {
    for (const pair of this.pairs) pair.frozen = true;
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

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.drop();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
