import { afterEach, beforeEach, expect, test } from 'vitest';
import type { BridgeProcess } from '../support/bridge-process.js';
import { sharedNatsUrl } from '../support/nats-server.js';
import { RedisServer, waitFor } from '../support/redis.js';
import { AmqpSink, BullmqSink, NatsSink, RedisStreamSink, type Landed, type Sink } from './sinks.js';
import { BOT, World, type WebhookBody } from './world.js';

let world: World;
let target: RedisServer;
let sinks: Sink[];

beforeEach(async () => {
  [world, target] = await Promise.all([World.start(), RedisServer.start()]);
  const natsUrl = sharedNatsUrl();
  sinks = [
    await NatsSink.create('audit-stream', natsUrl, { servers: new URL(natsUrl).host }),
    await AmqpSink.create('crm'),
    new RedisStreamSink('audit-log', target.url),
    new BullmqSink('backend-jobs', target.url),
  ];
});
afterEach(async () => {
  await world.close();
  await Promise.all(sinks.map((s) => s.close()));
  await target.close();
});

/** An awkward room: a space, a slash, an accented letter and an emoji (one `_` per code point). */
const ROOM = 'r 1/é😀';
/** Template values as the SPEC renders them. */
const RENDERED: Record<string, string> = {
  [BOT]: 'audit-bot',
  [ROOM]: 'r_1___',
  'chat message': 'chat_message',
  lastRead: 'lastRead',
  'bridge.connected': 'bridge_connected',
};

/** Waits until no destination has anything waiting, running or scheduled: nothing more will arrive. */
async function settled(bridge: BridgeProcess): Promise<void> {
  await waitFor(
    async () => {
      const status = JSON.parse((await bridge.get('/status')).body) as {
        destinations: { waiting?: number; active?: number; delayed?: number; inFlight?: number }[];
      };
      return status.destinations.every(
        (d) => d.waiting === 0 && d.active === 0 && d.delayed === 0 && d.inFlight === 0,
      );
    },
    { timeoutMs: 20_000, what: 'every destination settled' },
  );
}

test('every broker receives each event once, body byte-equal to the webhook, with the SPEC headers, properties, fields and job', async () => {
  const config = world.config({
    webhook: { events: ['*', 'bridge.connected'] },
    top: { destinations: sinks.map((s) => s.entry()) },
  });
  const bridge = await world.bridge(config);
  await world.connected();

  const chat = world.sim.sendMessage(ROOM, 'hello "world" 👋\n\u2028', {
    members: [BOT, 'alice'],
    sender: 'alice',
  });
  world.sim.editMessage(chat._id, 'hello, edited');
  world.sim.recallMessage(chat._id);
  world.sim.emit(BOT, 'lastRead', { roomID: ROOM, memberID: 'alice', messageID: chat._id });

  // Three versions of the chat message (sent, edited, recalled), lastRead, bridge.connected.
  await world.waitDelivered(5);
  const webhookBodies = new Map<string, string>();
  for (const r of world.receiver.requests) {
    if (r.verified && r.status !== undefined && r.status < 300)
      webhookBodies.set(String(r.headers['webhook-id']), r.body);
  }
  expect(webhookBodies.size).toBe(5);
  const types = [...webhookBodies.values()].map((b) => (JSON.parse(b) as WebhookBody).type).sort();
  expect(types).toEqual(['bridge.connected', 'chat message', 'chat message', 'chat message', 'lastRead']);

  const landed = new Map<string, Landed[]>();
  for (const sink of sinks) {
    landed.set(
      sink.id,
      await waitFor(
        async () => {
          const copies = await sink.landed();
          return copies.length >= 5 ? copies : undefined;
        },
        { timeoutMs: 20_000, what: `5 events in ${sink.type}` },
      ).catch(async (e) => {
        console.log(
          (await sink.landed()).length,
          bridge.logs
            .filter((l) => l.includes('backend'))
            .slice(0, 20)
            .join('\n'),
        );
        console.log((await bridge.get('/status')).body);
        throw e;
      }),
    );
  }
  await settled(bridge);

  for (const sink of sinks) {
    const copies = sink.type === 'amqp' ? await sink.landed() : landed.get(sink.id)!;
    // Once each, and byte for byte what the webhook received for the same event id.
    expect(copies.map((c) => c.id).sort(), sink.type).toEqual([...webhookBodies.keys()].sort());
    for (const copy of copies) {
      expect(copy.body, `${sink.type} ${copy.id}`).toBe(webhookBodies.get(copy.id));
      const body = JSON.parse(copy.body) as WebhookBody & { data: { room?: string } };
      const room = body.type === 'chat message' ? RENDERED[ROOM] : 'none';
      const key = `${RENDERED[BOT]}.${RENDERED[body.type]}.${room}`;
      expectShape(sink, copy, body, key);
    }
  }
});

function expectShape(sink: Sink, copy: Landed, body: WebhookBody, key: string): void {
  const what = `${sink.type} ${body.type}`;
  switch (sink.type) {
    case 'nats':
      expect(copy.where, what).toBe(`${(sink as NatsSink).stream}.${key}`);
      expect(copy.meta, what).toEqual({
        'Nats-Msg-Id': body.id,
        'Imkit-Event-Type': body.type,
        'Imkit-Account': BOT,
        'Imkit-Timestamp': body.timestamp,
      });
      return;
    case 'amqp':
      expect(copy.where, what).toBe(key);
      expect(copy.meta, what).toMatchObject({
        exchange: (sink as AmqpSink).exchange,
        deliveryMode: 2,
        contentType: 'application/json',
        messageId: body.id,
        type: body.type,
        timestamp: Math.floor(Date.parse(body.timestamp) / 1000),
        appId: 'imkit-bridge',
        headers: { 'imkit-account': BOT },
      });
      return;
    case 'redis-stream':
      expect(copy.where, what).toBe(`${(sink as RedisStreamSink).stream}:${key.replaceAll('.', ':')}`);
      expect(copy.meta, what).toMatchObject({
        order: ['id', 'type', 'account', 'timestamp', 'body'],
        id: body.id,
        type: body.type,
        account: BOT,
        timestamp: body.timestamp,
      });
      return;
    case 'bullmq':
      expect(copy.where, what).toBe(body.type);
      expect(copy.meta.data, what).toEqual(JSON.parse(copy.body));
      return;
  }
}
