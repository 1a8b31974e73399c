import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ImkitSimulator } from '../sim/imkit-simulator.js';
import { BridgeProcess, writeConfig } from '../support/bridge-process.js';
import { WebhookReceiver } from '../support/receiver.js';
import { waitFor } from '../support/redis.js';
import { BOT, SECRET } from './world.js';

/**
 * The failover tests' world: the IMKIT simulator, one receiver per webhook destination and a bridge
 * process (`--role all`) on a Redis topology the test started. Chat messages are the traffic: every
 * one that IMKIT sent must reach every destination.
 */
export class FailoverWorld {
  readonly bridges: BridgeProcess[] = [];
  readonly sent: string[] = [];
  private token = '';
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly sim: ImkitSimulator,
    readonly receivers: Map<string, WebhookReceiver>,
    readonly prefix: string,
  ) {}

  static async start(destinations: readonly string[]): Promise<FailoverWorld> {
    const sim = await ImkitSimulator.start({ pingIntervalMs: 1_000 });
    const receivers = new Map<string, WebhookReceiver>();
    for (const id of destinations) receivers.set(id, await WebhookReceiver.start({ secret: SECRET }));
    const world = new FailoverWorld(sim, receivers, `fo${Math.random().toString(36).slice(2, 8)}`);
    sim.addClient(BOT);
    world.token = sim.issueToken(BOT);
    return world;
  }

  /** A bridge config on `redis` (the topology keys plus waitReplicas), one webhook per receiver. */
  config(redis: Record<string, unknown>): Record<string, unknown> {
    return {
      redis: { prefix: this.prefix, ...redis },
      server: { host: '127.0.0.1', port: 0 },
      imkit: { url: this.sim.url, clientKey: this.sim.clientKey, apiKey: this.sim.apiKey },
      accounts: [{ id: BOT, token: '${env:BOT_TOKEN}', encoding: 'base64', heartbeatTimeout: '3s' }],
      webhooks: [...this.receivers].map(([id, receiver]) => ({
        id,
        url: receiver.url,
        secret: SECRET,
        timeout: '2s',
        events: ['chat message'],
        retry: {
          schedule: ['200ms', '400ms', '800ms', '1s', '1s', '1s', '1s', '1s', '1s', '1s'],
          jitter: 0.1,
        },
        breaker: { failures: 1_000, cooldown: '1s' },
      })),
      shutdownTimeout: '5s',
      log: { level: 'info' },
    };
  }

  async bridge(config: Record<string, unknown>): Promise<BridgeProcess> {
    const bridge = await BridgeProcess.start(writeConfig(config), { env: { BOT_TOKEN: this.token } });
    this.bridges.push(bridge);
    await waitFor(() => this.sim.connectedCount(BOT) >= 1, { timeoutMs: 15_000, what: 'bot socket' });
    await bridge.waitReady(20_000);
    return bridge;
  }

  /** Sends `perTick` chat messages every 10 ms until `stopTraffic()`. */
  startTraffic(perTick = 1): void {
    let n = 0;
    this.timer = setInterval(() => {
      for (let i = 0; i < perTick; i++) {
        const msg = this.sim.sendMessage(`r${n % 5}`, `steady ${n++}`, {
          members: [BOT, 'alice'],
          sender: 'alice',
        });
        this.sent.push(msg._id);
      }
    }, 10);
  }

  stopTraffic(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Every destination answers 503 (`down`) or 204: deliveries then wait in Redis, as with a slow destination. */
  destinationsDown(down: boolean): void {
    for (const receiver of this.receivers.values()) receiver.respondWith({ status: down ? 503 : 204 });
  }

  /** Chat message ids a destination acknowledged (2xx, signature verified). */
  delivered(id: string): Set<string> {
    const out = new Set<string>();
    for (const r of this.receivers.get(id)!.requests) {
      if (r.status === undefined || r.status >= 300 || r.verified !== true) continue;
      const body = JSON.parse(r.body) as { type: string; data: { _id: string } };
      if (body.type === 'chat message') out.add(body.data._id);
    }
    return out;
  }

  /** Per destination, sent messages it never acknowledged. */
  missing(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const id of this.receivers.keys()) {
      const got = this.delivered(id);
      out.set(
        id,
        this.sent.filter((m) => !got.has(m)),
      );
    }
    return out;
  }

  /** Per destination, how many sent messages it never acknowledged. */
  missingCounts(): Record<string, number> {
    return Object.fromEntries([...this.missing()].map(([id, m]) => [id, m.length]));
  }

  /** For a failure message: which sent messages (by send order) each destination lacks, and the bridge's last warnings. */
  diagnosis(): string {
    const order = new Map(this.sent.map((m, i) => [m, i]));
    const missing = [...this.missing()].map(([id, m]) => `${id}: #${m.map((x) => order.get(x)).join(', #')}`);
    const warnings = this.bridges.flatMap((b) =>
      b.logs.filter((l) => /"level":(40|50|60)/.test(l)).slice(-20),
    );
    return `sent ${this.sent.length}; missing ${missing.join('; ')}\n${warnings.join('\n')}`;
  }

  /** Waits until every destination has every sent message; false when `timeoutMs` passes first. */
  async allDelivered(timeoutMs: number): Promise<boolean> {
    return waitFor(() => [...this.missing().values()].every((m) => m.length === 0), {
      timeoutMs,
      intervalMs: 200,
      what: 'every sent message at every destination',
    }).then(
      () => true,
      () => false,
    );
  }

  /**
   * Waits until deliveries stop changing for `quietMs` (bounded by `timeoutMs`): what is missing
   * then is lost.
   */
  async settled(quietMs: number, timeoutMs: number): Promise<void> {
    let last = -1;
    let since = Date.now();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const now = [...this.receivers.values()].reduce((n, r) => n + r.requests.length, 0);
      if (now !== last) {
        last = now;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The value of a counter or gauge (summed over labels) in the bridge's /metrics. */
  async metric(bridge: BridgeProcess, name: string): Promise<number> {
    const text = (await bridge.get('/metrics')).body;
    let sum = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue;
      const rest = line.slice(name.length);
      if (rest.startsWith(' ') || rest.startsWith('{')) sum += Number(line.split(' ').at(-1));
    }
    return sum;
  }

  async close(): Promise<void> {
    this.stopTraffic();
    await Promise.all(this.bridges.map((b) => b.stop('SIGKILL')));
    await Promise.all([this.sim.close(), ...[...this.receivers.values()].map((r) => r.close())]);
  }
}

/**
 * Records a test's latest measurement in bench/results/redis-loss.json (one entry per `test`), for
 * the operator's guide: how many acknowledged events a failover lost without waitReplicas.
 */
export function recordLoss(entry: { test: string } & Record<string, unknown>): void {
  const file = resolve(import.meta.dirname, '../../bench/results/redis-loss.json');
  mkdirSync(dirname(file), { recursive: true });
  let runs: Record<string, unknown>[] = [];
  try {
    runs = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>[];
  } catch {
    runs = [];
  }
  runs = [...runs.filter((r) => r.test !== entry.test), { at: new Date().toISOString(), ...entry }];
  writeFileSync(file, JSON.stringify(runs, null, 2) + '\n');
}

/** Waits until `count` more messages were sent (steady traffic keeps going meanwhile). */
export async function sentMore(world: FailoverWorld, count: number, timeoutMs = 15_000): Promise<void> {
  const target = world.sent.length + count;
  await waitFor(() => world.sent.length >= target, { timeoutMs, what: `${count} more messages sent` });
}
