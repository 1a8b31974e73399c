import { ImkitSimulator } from '../sim/imkit-simulator.js';
import { BridgeProcess, writeConfig, type Role } from '../support/bridge-process.js';
import { WebhookReceiver } from '../support/receiver.js';
import { RedisServer, waitFor } from '../support/redis.js';

export const SECRET = 'whsec_ZTJlLXRlc3Qtc2VjcmV0LWZvci1pbWtpdC1icmlkZ2U=';
export const BOT = 'audit-bot';

export interface WebhookBody {
  id: string;
  type: string;
  timestamp: string;
  account: string;
  data: unknown;
}

/**
 * Everything an end-to-end test needs, all real and all local: a private redis-server (AOF on), the
 * IMKIT simulator, a signature-verifying webhook receiver, and bridge processes started from config.
 */
export class World {
  readonly bridges: BridgeProcess[] = [];
  token = '';

  private constructor(
    readonly redis: RedisServer,
    readonly sim: ImkitSimulator,
    readonly receiver: WebhookReceiver,
    readonly prefix: string,
  ) {}

  static async start(): Promise<World> {
    const [redis, sim, receiver] = await Promise.all([
      RedisServer.start(),
      ImkitSimulator.start({ pingIntervalMs: 1_000 }),
      WebhookReceiver.start({ secret: SECRET }),
    ]);
    const world = new World(redis, sim, receiver, `e2e${Math.random().toString(36).slice(2, 8)}`);
    sim.addClient(BOT);
    world.token = sim.issueToken(BOT);
    return world;
  }

  /** A bridge config for this world; `overrides` replace top-level keys, `webhook` merges into the one webhook. */
  config(
    options: {
      webhook?: Record<string, unknown>;
      account?: Record<string, unknown>;
      top?: Record<string, unknown>;
    } = {},
  ): Record<string, unknown> {
    return {
      redis: { url: this.redis.url, prefix: this.prefix },
      server: { host: '127.0.0.1', port: 0 },
      imkit: { url: this.sim.url, clientKey: this.sim.clientKey, apiKey: this.sim.apiKey },
      accounts: [
        {
          id: BOT,
          token: '${env:BOT_TOKEN}',
          encoding: 'base64',
          heartbeatTimeout: '3s',
          ...options.account,
        },
      ],
      webhooks: [
        {
          id: 'audit',
          url: this.receiver.url,
          secret: SECRET,
          timeout: '2s',
          retry: {
            schedule: ['200ms', '400ms', '800ms', '1s', '1s', '1s', '1s', '1s', '1s', '1s'],
            jitter: 0.1,
          },
          breaker: { failures: 10, cooldown: '1s' },
          ...options.webhook,
        },
      ],
      shutdownTimeout: '2s',
      log: { level: 'info' },
      ...options.top,
    };
  }

  async bridge(config: Record<string, unknown>, role: Role = 'all'): Promise<BridgeProcess> {
    const bridge = await BridgeProcess.start(writeConfig(config), { role, env: { BOT_TOKEN: this.token } });
    this.bridges.push(bridge);
    return bridge;
  }

  /** Waits until the bot has `n` authenticated sockets on the simulator. */
  async connected(n = 1): Promise<void> {
    await waitFor(() => this.sim.connectedCount(BOT) >= n, { timeoutMs: 15_000, what: `${n} bot socket(s)` });
  }

  /** Bodies of 2xx-answered, signature-verified deliveries, by event id (the first of each). */
  delivered(): Map<string, WebhookBody> {
    const out = new Map<string, WebhookBody>();
    for (const r of this.receiver.requests) {
      if (r.status === undefined || r.status >= 300 || r.verified !== true) continue;
      const body = JSON.parse(r.body) as WebhookBody;
      if (!out.has(body.id)) out.set(body.id, body);
    }
    return out;
  }

  deliveredOfType(type: string): WebhookBody[] {
    return [...this.delivered().values()].filter((b) => b.type === type);
  }

  async waitDelivered(count: number, type?: string, timeoutMs = 30_000): Promise<WebhookBody[]> {
    return waitFor(
      () => {
        const bodies = type ? this.deliveredOfType(type) : [...this.delivered().values()];
        return bodies.length >= count ? bodies : undefined;
      },
      { timeoutMs, what: `${count} deliveries${type ? ` of ${type}` : ''}` },
    );
  }

  /** Emits `count` typing events to distinct rooms `<tag>-<i>` and returns the room names. */
  emitTyping(count: number, tag: string): string[] {
    const rooms: string[] = [];
    for (let i = 0; i < count; i++) {
      const room = `${tag}-${i}`;
      this.sim.emit(BOT, 'typing', { room, message: 'typing' });
      rooms.push(room);
    }
    return rooms;
  }

  /** Rooms of the typing events delivered so far. */
  deliveredRooms(): Set<string> {
    return new Set(this.deliveredOfType('typing').map((b) => (b.data as { room: string }).room));
  }

  /** The first capture group of `pattern` in a bridge's /metrics, as a number (0 when absent). */
  async metric(bridge: BridgeProcess, pattern: RegExp): Promise<number> {
    const match = pattern.exec((await bridge.get('/metrics')).body);
    return match ? Number(match[1]) : 0;
  }

  async close(): Promise<void> {
    await Promise.all(this.bridges.map((b) => b.stop('SIGKILL')));
    await Promise.all([this.sim.close(), this.receiver.close(), this.redis.close()]);
  }
}
