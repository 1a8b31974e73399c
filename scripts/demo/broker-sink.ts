import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import { connect as amqpConnect } from 'amqplib';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { parseNatsUrl } from '../../src/deliver/destinations/nats.js';
import { NatsServer, natsServerBinary } from '../../test/support/nats-server.js';

export const DEMO_DESTINATION_TYPES = ['redis-stream', 'nats', 'amqp', 'bullmq'] as const;
export type DemoDestinationType = (typeof DEMO_DESTINATION_TYPES)[number];

/** One event as it landed in the broker: the webhook body and the id the broker carried beside it. */
export interface Landing {
  readonly at: number;
  readonly id: string | undefined;
  readonly body: string;
}

/**
 * The demo's consumer of a broker destination: it prepares the broker (stream, exchange and queue),
 * gives the `destinations:` entry that publishes there, and keeps what lands, in order.
 */
export interface BrokerSink {
  readonly type: DemoDestinationType;
  /** Where events land, for the banner (no credentials). */
  readonly where: string;
  /** The destination's type-specific keys, for bridge.yaml. */
  readonly destination: Record<string, string>;
  readonly landed: Landing[];
  close(): Promise<void>;
}

/** `tag` makes every broker name this run's own; `redisUrl` is the demo's Redis. */
export async function startBrokerSink(
  type: DemoDestinationType,
  options: { redisUrl: string; tag: string },
): Promise<BrokerSink> {
  switch (type) {
    case 'redis-stream':
      return redisStreamSink(options.redisUrl, `${options.tag}:events`);
    case 'nats':
      return natsSink(options.tag);
    case 'amqp':
      return amqpSink(options.tag);
    case 'bullmq':
      return bullmqSink(options.redisUrl, options.tag);
  }
}

/** XREAD from the demo's Redis, the bridge's own (the destination has no `url`). */
async function redisStreamSink(redisUrl: string, stream: string): Promise<BrokerSink> {
  const landed: Landing[] = [];
  const reader = new Redis(redisUrl, { maxRetriesPerRequest: null });
  reader.on('error', () => {});
  let closing = false;
  const loop = (async () => {
    let after = '$';
    while (!closing) {
      const answer = await reader.xread('BLOCK', 500, 'STREAMS', stream, after).catch(() => null);
      for (const [entryId, fields] of answer?.[0]?.[1] ?? []) {
        const field = (name: string) => fields[fields.indexOf(name) + 1];
        landed.push({ at: Date.now(), id: field('id'), body: field('body') ?? '' });
        after = entryId;
      }
    }
  })();
  return {
    type: 'redis-stream',
    where: `stream ${stream} on ${redisUrl}`,
    destination: { stream },
    landed,
    close: async () => {
      closing = true;
      await loop;
      await reader.del(stream).catch(() => undefined);
      reader.disconnect();
    },
  };
}

/** `NATS_URL` when set, else a private nats-server; a stream of this run's own, read by an ordered consumer. */
async function natsSink(tag: string): Promise<BrokerSink> {
  const external = process.env.NATS_URL || undefined;
  if (!external && !natsServerBinary()) {
    throw new Error('--destination nats needs nats-server (apt-get install nats-server) or NATS_URL set');
  }
  const server = external ? undefined : await NatsServer.start();
  const url = external ?? server!.url;
  const { server: host, user, pass, token } = parseNatsUrl(url);
  const nc = await natsConnect({ servers: host, user, pass, token });
  const stream = tag.toUpperCase().replace(/[^A-Z0-9_-]/g, '_');
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [`${tag}.>`] });
  const messages = await (await jetstream(nc).consumers.get(stream)).consume();
  const landed: Landing[] = [];
  const loop = (async () => {
    for await (const m of messages) {
      landed.push({ at: Date.now(), id: m.headers?.get('Nats-Msg-Id'), body: m.string() });
    }
  })();
  return {
    type: 'nats',
    where: `JetStream stream ${stream} on ${host}${server ? ' (a private nats-server)' : ''}`,
    destination: { url, subject: `${tag}.{account}.{type}` },
    landed,
    close: async () => {
      await messages.close();
      await loop;
      await jsm.streams.delete(stream).catch(() => undefined);
      await nc.close();
      await server?.close();
    },
  };
}

/** `AMQP_URL` (default the machine's RabbitMQ): an exchange and an exclusive queue of this run's own. */
async function amqpSink(tag: string): Promise<BrokerSink> {
  const url = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/';
  const model = await amqpConnect(url).catch((err: unknown) => {
    throw new Error(`--destination amqp needs RabbitMQ at AMQP_URL (default 127.0.0.1:5672): ${String(err)}`);
  });
  const channel = await model.createChannel();
  await channel.assertExchange(tag, 'topic', { durable: false });
  const { queue } = await channel.assertQueue(tag, { exclusive: true, durable: false });
  await channel.bindQueue(queue, tag, '#');
  const landed: Landing[] = [];
  await channel.consume(
    queue,
    (m) => {
      if (m)
        landed.push({ at: Date.now(), id: m.properties.messageId as string, body: m.content.toString() });
    },
    { noAck: true },
  );
  const host = new URL(url);
  return {
    type: 'amqp',
    where: `exchange ${tag}, queue ${queue} on ${host.hostname}:${host.port || 5672}`,
    destination: { url, exchange: tag },
    landed,
    close: async () => {
      await channel.deleteExchange(tag).catch(() => undefined);
      // The exclusive queue goes with the connection.
      await model.close();
    },
  };
}

/** A BullMQ Worker on the queue the destination adds jobs to, in the demo's Redis. */
async function bullmqSink(redisUrl: string, tag: string): Promise<BrokerSink> {
  const queue = tag;
  const landed: Landing[] = [];
  // BullMQ leaves connections it was given open: closed below.
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const worker = new Worker(
    queue,
    async (job) => {
      landed.push({ at: Date.now(), id: job.id, body: JSON.stringify(job.data) });
    },
    { connection, concurrency: 16 },
  );
  worker.on('error', () => {});
  await worker.waitUntilReady();
  return {
    type: 'bullmq',
    where: `BullMQ queue ${queue} (prefix bull) on ${redisUrl}`,
    destination: { queue },
    landed,
    close: async () => {
      await worker.close();
      const q = new Queue(queue, { connection });
      await q.obliterate({ force: true }).catch(() => undefined);
      await q.close();
      connection.disconnect();
    },
  };
}
