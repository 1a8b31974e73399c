import { jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect, type ConnectionOptions } from '@nats-io/transport-node';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { RabbitAdmin, amqpUrl, uniqueName } from '../support/rabbitmq.js';

export type SinkType = 'nats' | 'amqp' | 'redis-stream' | 'bullmq';
export const SINK_TYPES: readonly SinkType[] = ['nats', 'amqp', 'redis-stream', 'bullmq'];

/** One copy of an event as the broker holds it: its id as the broker carries it, the body, and the rest. */
export interface Landed {
  /** Nats-Msg-Id, AMQP messageId, the stream entry's `id` field, the BullMQ job id. */
  readonly id: string;
  readonly body: string;
  /** Subject, routing key or stream key; the job's name for BullMQ. */
  readonly where: string;
  /** Headers, properties or fields, as the broker gives them. */
  readonly meta: Record<string, unknown>;
}

/**
 * A place a broker destination writes to, set up for one test and read back by the test's own client:
 * a JetStream stream, a RabbitMQ exchange with a queue bound to everything, Redis streams, a BullMQ
 * queue. `entry` is the bridge's `destinations:` entry for it; `url` is what the bridge dials (a fault
 * proxy or credentials may stand in between), the reader always goes straight to the broker.
 */
export interface Sink {
  readonly type: SinkType;
  readonly id: string;
  entry(overrides?: Record<string, unknown>): Record<string, unknown>;
  /** Every copy in the broker now (AMQP: every copy taken from the queue so far). */
  landed(): Promise<Landed[]>;
  close(): Promise<void>;
}

/** The lane keys every broker destination of these tests gets: short timeout, retries and breaker. */
export const FAST_LANE = {
  events: ['*', 'bridge.connected'],
  timeout: '2s',
  retry: { schedule: Array.from({ length: 30 }, () => '500ms'), jitter: 0.1 },
  breaker: { failures: 3, cooldown: '1s' },
};

export class NatsSink implements Sink {
  readonly type = 'nats';
  readonly stream = uniqueName('js').replace(/[^A-Za-z0-9_-]/g, '_');

  private constructor(
    readonly id: string,
    private readonly bridgeUrl: string,
    private readonly client: ConnectionOptions,
  ) {}

  /** `bridgeUrl`: what the bridge dials; `client`: how the test reaches the same server. */
  static async create(
    id: string,
    bridgeUrl: string,
    client: ConnectionOptions,
    stream: { maxMsgSize?: number } = {},
  ): Promise<NatsSink> {
    const sink = new NatsSink(id, bridgeUrl, client);
    await sink.admin(async (jsm) => {
      await jsm.streams.add({
        name: sink.stream,
        subjects: [`${sink.stream}.>`],
        duplicate_window: 10 * 60 * 1e9,
        ...(stream.maxMsgSize ? { max_msg_size: stream.maxMsgSize } : {}),
      });
    });
    return sink;
  }

  entry(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      id: this.id,
      type: 'nats',
      url: this.bridgeUrl,
      subject: `${this.stream}.{account}.{type}.{room}`,
      ...FAST_LANE,
      ...overrides,
    };
  }

  async setMaxMsgSize(bytes: number): Promise<void> {
    await this.admin(async (jsm) => {
      const info = await jsm.streams.info(this.stream);
      await jsm.streams.update(this.stream, { ...info.config, max_msg_size: bytes });
    });
  }

  async landed(): Promise<Landed[]> {
    return this.admin(async (jsm) => {
      const info = await jsm.streams.info(this.stream);
      const out: Landed[] = [];
      if (info.state.messages === 0) return out;
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const msg = await jsm.streams.getMessage(this.stream, { seq });
        if (!msg) continue;
        const meta: Record<string, unknown> = {};
        for (const key of msg.header?.keys() ?? []) meta[key] = msg.header!.get(key);
        out.push({ id: String(meta['Nats-Msg-Id']), body: msg.string(), where: msg.subject, meta });
      }
      return out;
    });
  }

  async close(): Promise<void> {
    await this.admin((jsm) => jsm.streams.delete(this.stream)).catch(() => undefined);
  }

  /** A fresh connection per use, so a reader survives the server being killed and restarted. */
  private async admin<T>(
    work: (jsm: Awaited<ReturnType<typeof jetstreamManager>>) => Promise<T>,
  ): Promise<T> {
    const nc = await natsConnect({ ...this.client, timeout: 2_000, reconnect: false });
    try {
      return await work(await jetstreamManager(nc));
    } finally {
      await nc.close();
    }
  }
}

export class AmqpSink implements Sink {
  readonly type = 'amqp';
  private readonly taken: Landed[] = [];

  private constructor(
    readonly id: string,
    private readonly bridgeUrl: string,
    private readonly admin: RabbitAdmin,
    readonly exchange: string,
    private readonly queue: string,
  ) {}

  /** `bridgeUrl`: what the bridge dials (default the broker itself, or a proxy in front of it). */
  static async create(id: string, bridgeUrl = amqpUrl()): Promise<AmqpSink> {
    const admin = await RabbitAdmin.open();
    const exchange = await admin.exchange(uniqueName('x'));
    const queue = await admin.queue(uniqueName('q'));
    await admin.bind(queue, exchange, '#');
    return new AmqpSink(id, bridgeUrl, admin, exchange, queue);
  }

  entry(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      id: this.id,
      type: 'amqp',
      url: this.bridgeUrl,
      exchange: this.exchange,
      routingKey: '{account}.{type}.{room}',
      ...FAST_LANE,
      ...overrides,
    };
  }

  async landed(): Promise<Landed[]> {
    for (const message of await this.admin.drain(this.queue)) {
      const { properties, fields } = message;
      this.taken.push({
        id: String(properties.messageId),
        body: message.content.toString('utf8'),
        where: fields.routingKey,
        meta: { ...properties, exchange: fields.exchange },
      });
    }
    return [...this.taken];
  }

  async close(): Promise<void> {
    await this.admin.close();
  }
}

export class RedisStreamSink implements Sink {
  readonly type = 'redis-stream';
  readonly stream = uniqueName('st');

  /** `readerUrl`: the target Redis itself; `bridgeUrl`: what the bridge dials (default the same). */
  constructor(
    readonly id: string,
    private readonly readerUrl: string,
    private readonly bridgeUrl = readerUrl,
  ) {}

  entry(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      id: this.id,
      type: 'redis-stream',
      url: this.bridgeUrl,
      stream: `${this.stream}:{account}:{type}:{room}`,
      ...FAST_LANE,
      ...overrides,
    };
  }

  async landed(): Promise<Landed[]> {
    return withRedis(this.readerUrl, async (redis) => {
      const out: Landed[] = [];
      for (const key of (await redis.keys(`${this.stream}:*`)).sort()) {
        for (const [entryId, flat] of await redis.xrange(key, '-', '+')) {
          const fields: Record<string, unknown> = { entryId, order: flat.filter((_, i) => i % 2 === 0) };
          for (let i = 0; i < flat.length; i += 2) fields[flat[i]!] = flat[i + 1];
          out.push({ id: String(fields.id), body: String(fields.body), where: key, meta: fields });
        }
      }
      return out;
    });
  }

  async close(): Promise<void> {
    await withRedis(this.readerUrl, async (redis) => {
      const keys = await redis.keys(`${this.stream}:*`);
      if (keys.length > 0) await redis.del(...keys);
    }).catch(() => undefined);
  }
}

export class BullmqSink implements Sink {
  readonly type = 'bullmq';
  readonly queue = uniqueName('bq');
  readonly prefix = 'e2ebull';

  constructor(
    readonly id: string,
    private readonly readerUrl: string,
    private readonly bridgeUrl = readerUrl,
  ) {}

  entry(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      id: this.id,
      type: 'bullmq',
      url: this.bridgeUrl,
      queue: this.queue,
      prefix: this.prefix,
      ...FAST_LANE,
      ...overrides,
    };
  }

  async landed(): Promise<Landed[]> {
    return this.withQueue(async (queue) => {
      const jobs = await queue.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed'], 0, -1);
      return jobs.map((job) => ({
        id: String(job.id),
        body: JSON.stringify(job.data),
        where: job.name,
        meta: { name: job.name, data: job.data as unknown, attemptsMade: job.attemptsMade },
      }));
    });
  }

  async close(): Promise<void> {
    await this.withQueue((queue) => queue.obliterate({ force: true })).catch(() => undefined);
  }

  private async withQueue<T>(work: (queue: Queue) => Promise<T>): Promise<T> {
    const queue = new Queue(this.queue, {
      connection: { url: this.readerUrl, maxRetriesPerRequest: 1, enableOfflineQueue: false },
      prefix: this.prefix,
    });
    queue.on('error', () => {});
    try {
      return await work(queue);
    } finally {
      await queue.close().catch(() => undefined);
    }
  }
}

async function withRedis<T>(url: string, work: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return await work(redis);
  } finally {
    redis.disconnect();
  }
}

/** How many copies of each id the broker holds. */
export function copiesById(landed: readonly Landed[]): Map<string, number> {
  const copies = new Map<string, number>();
  for (const l of landed) copies.set(l.id, (copies.get(l.id) ?? 0) + 1);
  return copies;
}

/** The `data.room` of every typing event that landed (the tests tag events by room). */
export function roomsOf(landed: readonly Landed[]): Set<string> {
  const rooms = new Set<string>();
  for (const l of landed) {
    const body = JSON.parse(l.body) as { type: string; data: { room?: string } };
    if (body.type === 'typing' && body.data.room) rooms.add(body.data.room);
  }
  return rooms;
}
