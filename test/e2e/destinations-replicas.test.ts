import { afterEach, beforeEach, expect, test } from 'vitest';
import type { BridgeProcess } from '../support/bridge-process.js';
import { sharedNatsUrl } from '../support/nats-server.js';
import { amqpUrl } from '../support/rabbitmq.js';
import { RedisServer, waitFor } from '../support/redis.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import {
  AmqpSink,
  BullmqSink,
  NatsSink,
  RedisStreamSink,
  copiesById,
  type Landed,
  type Sink,
} from './sinks.js';
import { BOT, World } from './world.js';

let world: World;
let target: RedisServer;
let proxies: TcpProxy[];
let sinks: Sink[];

beforeEach(async () => {
  [world, target] = await Promise.all([World.start(), RedisServer.start()]);
  proxies = [];
  sinks = [];
});
afterEach(async () => {
  await world.close();
  await Promise.all(proxies.map((p) => p.close()));
  await Promise.all(sinks.map((s) => s.close()));
  await target.close();
});

/** `url` with its host and port replaced by a fault proxy's in front of it. */
async function behindProxy(url: string, defaultPort: number): Promise<string> {
  const parsed = new URL(url);
  const proxy = await TcpProxy.start(Number(parsed.port || defaultPort), parsed.hostname);
  proxies.push(proxy);
  parsed.hostname = '127.0.0.1';
  parsed.port = String(proxy.port);
  return parsed.toString();
}

/** One destination of each broker type, which the bridge reaches through fault proxies if asked. */
async function allSinks(options: { viaProxies: boolean }): Promise<Sink[]> {
  const nats = sharedNatsUrl();
  const via = async (url: string, port: number) => (options.viaProxies ? behindProxy(url, port) : url);
  const redisUrl = await via(target.url, 6379);
  sinks = [
    await NatsSink.create('audit-stream', await via(nats, 4222), { servers: new URL(nats).host }),
    await AmqpSink.create('crm', await via(amqpUrl(), 5672)),
    new RedisStreamSink('audit-log', target.url, redisUrl),
    new BullmqSink('backend-jobs', target.url, redisUrl),
  ];
  return sinks;
}

function chatCopies(landed: readonly Landed[]): Landed[] {
  return landed.filter((l) => (JSON.parse(l.body) as { type: string }).type === 'chat message');
}

/** Waits until every sink holds every id in `ids` among its chat messages; returns what each holds. */
async function allLanded(ids: readonly string[], timeoutMs = 30_000): Promise<Map<Sink, Landed[]>> {
  const out = new Map<Sink, Landed[]>();
  for (const sink of sinks) {
    const copies = await waitFor(
      async () => {
        const chats = chatCopies(await sink.landed());
        const have = new Set(chats.map((c) => c.id));
        return ids.every((id) => have.has(id)) ? chats : undefined;
      },
      { timeoutMs, what: `${ids.length} chat messages in ${sink.type}` },
    );
    out.set(sink, copies);
  }
  return out;
}

/** Waits until none of `bridges` has anything waiting, running or scheduled for any destination. */
async function settled(...bridges: BridgeProcess[]): Promise<void> {
  for (const bridge of bridges) {
    await waitFor(
      async () => {
        const status = JSON.parse((await bridge.get('/status')).body) as {
          destinations: { waiting?: number; active?: number; delayed?: number; inFlight?: number }[];
        };
        return status.destinations.every(
          (d) => d.waiting === 0 && d.active === 0 && d.delayed === 0 && (d.inFlight ?? 0) === 0,
        );
      },
      { timeoutMs: 30_000, what: 'every destination settled' },
    );
  }
}

/** The ids the bridge gives chat messages, read from what landed in the first sink (all sinks agree). */
async function sendChats(count: number, tag: string): Promise<string[]> {
  const messages = Array.from({ length: count }, (_, i) =>
    world.sim.sendMessage('r1', `${tag} ${i}`, { members: [BOT, 'alice'], sender: 'alice' }),
  );
  const ids = await waitFor(
    async () => {
      const bodies = chatCopies(await sinks[2]!.landed()).map(
        (l) => JSON.parse(l.body) as { id: string; data: { _id: string; message: string } },
      );
      const mine = bodies.filter((b) => messages.some((m) => m._id === b.data._id));
      const distinct = new Set(mine.map((b) => b.id));
      return distinct.size === count ? [...distinct] : undefined;
    },
    { timeoutMs: 30_000, what: `${count} chat messages (${tag}) in the redis stream` },
  );
  return ids;
}

/** Each event once where the broker de-duplicates; for AMQP at least once, every copy under the event's id. */
function expectOnceEach(landed: Map<Sink, Landed[]>, ids: readonly string[]): void {
  for (const [sink, copies] of landed) {
    const counts = copiesById(copies);
    expect([...counts.keys()].sort(), sink.type).toEqual([...ids].sort());
    for (const copy of copies) expect(copy.id, sink.type).toBe((JSON.parse(copy.body) as { id: string }).id);
    if (sink.type !== 'amqp')
      expect(
        [...counts.values()].every((n) => n === 1),
        sink.type,
      ).toBe(true);
  }
}

test('two --role all processes on one account: the NATS stream, Redis stream and BullMQ queue hold each event once, AMQP copies share the event id', async () => {
  await allSinks({ viaProxies: false });
  const config = world.config({ top: { webhooks: [], destinations: sinks.map((s) => s.entry()) } });
  const replicas = [await world.bridge(config), await world.bridge(config)];
  await world.connected(2);
  await Promise.all(replicas.map((r) => r.waitReady()));

  const ids = await sendChats(30, 'pair');
  await settled(...replicas);
  expectOnceEach(await allLanded(ids), ids);
});

test('kill -9 of the bridge with publishes landed but unacknowledged: a worker sends them again, held once where the broker de-duplicates', async () => {
  await allSinks({ viaProxies: true });
  // A long timeout keeps the first process's sends in flight until it is killed.
  const config = world.config({
    top: { webhooks: [], destinations: sinks.map((s) => s.entry({ timeout: '30s' })) },
  });
  const first = await world.bridge(config);
  await world.connected();
  await first.waitReady();
  // Every destination's connection is open (and the BullMQ queue made) before the fault.
  const warm = await sendChats(1, 'warm');
  await allLanded(warm);

  for (const proxy of proxies) proxy.freezeReplies();
  const ids = await sendChats(10, 'in-flight');
  // The brokers hold them; the acknowledgements never reach the bridge.
  await allLanded(ids);
  await first.kill9();

  const worker = await world.bridge(config, 'worker');
  const all = [...warm, ...ids];
  // A resent copy shows in AMQP, which keeps it: the worker did send every event again.
  await waitFor(
    async () => {
      const counts = copiesById(chatCopies(await sinks[1]!.landed()));
      return ids.every((id) => (counts.get(id) ?? 0) >= 2);
    },
    { timeoutMs: 40_000, what: 'the worker resending the 10 events' },
  );
  await settled(worker);
  expectOnceEach(await allLanded(all), all);
});
