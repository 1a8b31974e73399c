import { afterEach, describe, expect, test } from 'vitest';
import type { BridgeProcess } from '../support/bridge-process.js';
import { NatsServer } from '../support/nats-server.js';
import { amqpUrl } from '../support/rabbitmq.js';
import { RedisServer, waitFor } from '../support/redis.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import {
  AmqpSink,
  BullmqSink,
  NatsSink,
  RedisStreamSink,
  copiesById,
  roomsOf,
  type Sink,
  type SinkType,
} from './sinks.js';
import { World } from './world.js';

/** A broker destination and a way to take its broker away and bring it back. */
interface Outage {
  readonly sink: Sink;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

/** How each broker goes away: nats-server and the target redis-server are SIGKILLed, RabbitMQ is cut off. */
const OUTAGES: Record<SinkType, () => Promise<Outage>> = {
  nats: async () => {
    const server = await NatsServer.start();
    const sink = await NatsSink.create('audit-stream', server.url, server.clientOptions);
    return {
      sink,
      cut: () => server.kill(),
      restore: () => server.startProcess(),
      close: async () => {
        await sink.close();
        await server.close();
      },
    };
  },
  amqp: async () => {
    const broker = new URL(amqpUrl());
    const proxy = await TcpProxy.start(Number(broker.port || 5672), broker.hostname);
    const viaProxy = new URL(broker);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const sink = await AmqpSink.create('crm', viaProxy.toString());
    return {
      sink,
      // Open connections are reset (the drop) and new ones refused until the path is back.
      cut: () => proxy.refuse(),
      restore: () => proxy.accept(),
      close: async () => {
        await proxy.close();
        await sink.close();
      },
    };
  },
  'redis-stream': async () => redisOutage((url) => new RedisStreamSink('audit-log', url)),
  bullmq: async () => redisOutage((url) => new BullmqSink('backend-jobs', url)),
};

async function redisOutage(make: (url: string) => Sink): Promise<Outage> {
  const target = await RedisServer.start();
  const sink = make(target.url);
  return {
    sink,
    cut: () => target.stop({ kill9: true }),
    restore: () => target.startProcess(),
    close: async () => {
      await sink.close();
      await target.close();
    },
  };
}

interface DestinationStatus {
  id: string;
  waiting?: number;
  active?: number;
  delayed?: number;
  dead?: number;
  inFlight?: number;
  breaker?: string;
  lastError?: { at: string; message: string };
}

async function statusOf(bridge: BridgeProcess, id: string): Promise<DestinationStatus> {
  const status = JSON.parse((await bridge.get('/status')).body) as { destinations: DestinationStatus[] };
  return status.destinations.find((d) => d.id === id)!;
}

let world: World | undefined;
let outage: Outage | undefined;
afterEach(async () => {
  await world?.close();
  await outage?.close();
  world = outage = undefined;
});

describe.each(Object.keys(OUTAGES) as SinkType[])('%s destination, broker outage mid-stream', (type) => {
  test('the outage shows in /status, events queue, and afterwards every event is in the broker with nothing waiting', async () => {
    world = await World.start();
    outage = await OUTAGES[type]();
    const { sink } = outage;
    const bridge = await world.bridge(world.config({ top: { webhooks: [], destinations: [sink.entry()] } }));
    await world.connected();

    const rooms = world.emitTyping(10, 'before');
    const landedRooms = async () => roomsOf(await sink.landed());
    await waitFor(
      async () => {
        const landed = await landedRooms();
        return rooms.every((r) => landed.has(r));
      },
      { timeoutMs: 20_000, what: `the first 10 events in ${type}` },
    );

    await outage.cut();
    rooms.push(...world.emitTyping(20, 'during'));
    const down = await waitFor(
      async () => {
        const d = await statusOf(bridge, sink.id);
        const queued = (d.waiting ?? 0) + (d.active ?? 0) + (d.delayed ?? 0);
        return d.lastError !== undefined && d.breaker !== 'closed' && queued > 0 ? d : undefined;
      },
      { timeoutMs: 20_000, what: `/status showing ${type} down (breaker, lastError, queued events)` },
    );
    expect(['open', 'half-open']).toContain(down.breaker);
    expect(down.lastError!.message.length).toBeGreaterThan(0);

    await outage.restore();
    rooms.push(...world.emitTyping(10, 'after'));
    const landed = await waitFor(
      async () => {
        const copies = await sink.landed();
        const seen = roomsOf(copies);
        return rooms.every((r) => seen.has(r)) ? copies : undefined;
      },
      { timeoutMs: 45_000, what: `all 40 events in ${type}` },
    );
    await waitFor(
      async () => {
        const d = await statusOf(bridge, sink.id);
        return (
          d.waiting === 0 && d.active === 0 && d.delayed === 0 && d.inFlight === 0 && d.breaker === 'closed'
        );
      },
      { timeoutMs: 20_000, what: `${type}: nothing waiting` },
    );
    expect((await statusOf(bridge, sink.id)).dead).toBe(0);

    const typing = (type === 'amqp' ? await sink.landed() : landed).filter(
      (l) => (JSON.parse(l.body) as { type: string }).type === 'typing',
    );
    const copies = copiesById(typing);
    expect(copies.size).toBe(40);
    // Where the broker de-duplicates, a repeat after the outage left no second copy.
    if (type !== 'amqp') expect([...copies.values()].every((n) => n === 1)).toBe(true);
  });
});
