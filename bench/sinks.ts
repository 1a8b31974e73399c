/**
 * Where the benchmark's relays deliver, one kind per `--destination`: what the bridge's config gets,
 * what the naive relay publishes to, and what arrived (first arrival of each event id, stamped with
 * the bench's clock, the same wall clock the simulator stamps `sentAt` with).
 */
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { connect as amqpConnect, type Channel, type ChannelModel } from 'amqplib';
import { Redis } from 'ioredis';
import { NatsServer } from '../test/support/nats-server.js';
import { amqpUrl } from '../test/support/rabbitmq.js';
import { WebhookReceiver } from '../test/support/receiver.js';
import { waitFor } from '../test/support/redis.js';
import type { NaiveDestination } from './naive-relay.js';
import { pidsByCmdline } from './process-stats.js';

export const DESTINATION_TYPES = ['webhook', 'nats', 'amqp', 'redis-stream', 'bullmq'] as const;
export type DestinationType = (typeof DESTINATION_TYPES)[number];

export interface Arrival {
  readonly at: number;
  readonly body: string;
  /** Webhooks only: whether the signature verified. */
  readonly verified?: boolean;
}

/** What a sink found in its target at the end, against what the simulator sent. */
export interface StoredCheck {
  readonly sent: number;
  /** Events the target holds (stream entries, queue messages received, jobs). */
  readonly stored: number;
  /** Arrivals beyond the first of an event id (a repeat the target did not drop). */
  readonly repeats: number;
}

export interface Sink {
  /** The bridge config's delivery part: a `webhooks:` or a `destinations:` list with one entry. */
  bridgeConfig(concurrency: number | undefined): Record<string, unknown>;
  /** Where and how the naive relay publishes: the same target and message contract. */
  readonly naive: NaiveDestination;
  /** A position in the arrivals, to read what came after it. */
  mark(): number;
  since(mark: number): readonly Arrival[];
  /** Once the relay is done: what the target holds, against `sent`. */
  check(sent: number): Promise<StoredCheck>;
  close(): Promise<void>;
}

/** Everything the sinks of one run share: the broker processes and connections. */
export interface SinkContext {
  readonly redisUrl: string;
  readonly secret: string;
}

const DEST_ID = 'bench';
/** The arrivals' dedup window and the stream's `duplicate_window`: the bridge's default `dedupWindow`. */
const TEN_MINUTES_NS = 10 * 60 * 1000 * 1_000_000;

/** Makes a fresh sink (unique stream, exchange, queue) for each relay run of one `--destination`. */
export interface SinkFactory {
  readonly type: DestinationType;
  /** The broker's processes whose CPU is charged to the broker column (none when it is the bench's Redis). */
  readonly brokerPids: () => number[];
  /** A note on the broker's CPU figure. */
  readonly brokerNote?: string;
  create(): Promise<Sink>;
  close(): Promise<void>;
}

export async function sinkFactory(type: DestinationType, context: SinkContext): Promise<SinkFactory> {
  let serial = 0;
  const next = () => `${Date.now().toString(36)}${serial++}`;
  switch (type) {
    case 'webhook':
      return {
        type,
        brokerPids: () => [],
        create: () => WebhookSink.start(context.secret),
        close: async () => {},
      };
    case 'nats': {
      const server = await NatsServer.start();
      const nc = await natsConnect(server.clientOptions);
      const jsm = await jetstreamManager(nc);
      return {
        type,
        brokerPids: () => pidsByCmdline(server.dir),
        create: () => NatsSink.start(server.url, nc, jsm, next()),
        close: async () => {
          await nc.close();
          await server.close();
        },
      };
    }
    case 'amqp':
      return {
        type,
        // RabbitMQ is the machine's, shared with other work: its CPU is indicative only.
        brokerPids: () => pidsByCmdline('beam.smp'),
        brokerNote: "RabbitMQ is the machine's own, shared: its CPU figure is indicative",
        create: () => AmqpSink.start(amqpUrl(), next()),
        close: async () => {},
      };
    case 'redis-stream':
      return {
        type,
        brokerPids: () => [],
        create: () => RedisStreamSink.start(context.redisUrl, next()),
        close: async () => {},
      };
    case 'bullmq':
      return {
        type,
        brokerPids: () => [],
        create: () => BullmqSink.start(context.redisUrl, next()),
        close: async () => {},
      };
  }
}

/** First arrivals by event id, with a count of repeats. */
class Arrivals {
  readonly list: Arrival[] = [];
  private readonly seen = new Set<string>();
  repeats = 0;

  add(id: string, at: number, body: string): void {
    if (this.seen.has(id)) {
      this.repeats++;
      return;
    }
    this.seen.add(id);
    this.list.push({ at, body });
  }
}

class WebhookSink implements Sink {
  private constructor(
    private readonly receiver: WebhookReceiver,
    private readonly secret: string,
  ) {}

  static async start(secret: string): Promise<WebhookSink> {
    return new WebhookSink(await WebhookReceiver.start({ secret }), secret);
  }

  bridgeConfig(concurrency: number | undefined) {
    return {
      webhooks: [
        { id: DEST_ID, url: this.receiver.url, secret: this.secret, ...(concurrency ? { concurrency } : {}) },
      ],
    };
  }

  get naive(): NaiveDestination {
    return { type: 'webhook', url: this.receiver.url, secret: this.secret, connections: 16 };
  }

  mark(): number {
    return this.receiver.requests.length;
  }

  /** Requests answered 2xx. */
  since(mark: number): readonly Arrival[] {
    return this.receiver.requests.slice(mark).filter((r) => r.status !== undefined && r.status < 300);
  }

  check(sent: number): Promise<StoredCheck> {
    const ids = this.receiver.deliveredIds();
    return Promise.resolve({ sent, stored: new Set(ids).size, repeats: ids.length - new Set(ids).size });
  }

  close(): Promise<void> {
    return this.receiver.close();
  }
}

/** A stream capturing `<prefix>.>`, filled by JetStream publishes; arrivals from a core subscription. */
class NatsSink implements Sink {
  private readonly arrivals = new Arrivals();

  private constructor(
    private readonly url: string,
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    private readonly prefix: string,
  ) {
    const sub = nc.subscribe(`${prefix}.>`, {
      callback: (err, msg) => {
        if (err) return;
        this.arrivals.add(msg.headers?.get('Nats-Msg-Id') ?? '', Date.now(), msg.string());
      },
    });
    void sub;
  }

  static async start(url: string, nc: NatsConnection, jsm: JetStreamManager, unique: string) {
    const stream = `BENCH_${unique}`;
    const prefix = `bench${unique}`;
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.>`], duplicate_window: TEN_MINUTES_NS });
    const sink = new NatsSink(url, nc, jsm, stream, prefix);
    // The subscription is registered with the server once this round trip is answered.
    await nc.flush();
    return sink;
  }

  bridgeConfig(concurrency: number | undefined) {
    return {
      destinations: [
        {
          id: DEST_ID,
          type: 'nats',
          url: this.url,
          subject: `${this.prefix}.{account}.{type}`,
          ...(concurrency ? { concurrency } : {}),
        },
      ],
    };
  }

  get naive(): NaiveDestination {
    return { type: 'nats', url: this.url, subject: `${this.prefix}.{account}.{type}` };
  }

  mark(): number {
    return this.arrivals.list.length;
  }

  since(mark: number): readonly Arrival[] {
    return this.arrivals.list.slice(mark);
  }

  /** The stream's own count: what JetStream stored, once each (its duplicate window drops repeats). */
  async check(sent: number): Promise<StoredCheck> {
    const stored = await settledCount(async () => (await this.jsm.streams.info(this.stream)).state.messages);
    return { sent, stored, repeats: this.arrivals.repeats };
  }

  async close(): Promise<void> {
    await this.jsm.streams.delete(this.stream);
  }
}

/** A run-unique topic exchange and a queue bound `#` on the machine's RabbitMQ, consumed with noAck. */
class AmqpSink implements Sink {
  private readonly arrivals = new Arrivals();

  private constructor(
    private readonly url: string,
    private readonly model: ChannelModel,
    private readonly channel: Channel,
    private readonly exchange: string,
    private readonly queue: string,
  ) {}

  static async start(url: string, unique: string): Promise<AmqpSink> {
    const model = await amqpConnect(url);
    const channel = await model.createChannel();
    const exchange = `imkit-bench-x-${unique}`;
    const queue = `imkit-bench-q-${unique}`;
    await channel.assertExchange(exchange, 'topic', { durable: false });
    await channel.assertQueue(queue, { durable: false });
    await channel.bindQueue(queue, exchange, '#');
    const sink = new AmqpSink(url, model, channel, exchange, queue);
    await channel.consume(
      queue,
      (message) => {
        if (!message) return;
        const id = (message.properties.messageId as string | undefined) ?? '';
        sink.arrivals.add(id, Date.now(), message.content.toString('utf8'));
      },
      { noAck: true },
    );
    return sink;
  }

  bridgeConfig(concurrency: number | undefined) {
    return {
      destinations: [
        {
          id: DEST_ID,
          type: 'amqp',
          url: this.url,
          exchange: this.exchange,
          routingKey: 'bench.{account}.{type}',
          ...(concurrency ? { concurrency } : {}),
        },
      ],
    };
  }

  get naive(): NaiveDestination {
    return { type: 'amqp', url: this.url, exchange: this.exchange, routingKey: 'bench.{account}.{type}' };
  }

  mark(): number {
    return this.arrivals.list.length;
  }

  since(mark: number): readonly Arrival[] {
    return this.arrivals.list.slice(mark);
  }

  /** AMQP cannot drop a repeat: distinct message ids received, and repeats of one apart. */
  async check(sent: number): Promise<StoredCheck> {
    const stored = await settledCount(() => Promise.resolve(this.arrivals.list.length));
    return { sent, stored, repeats: this.arrivals.repeats };
  }

  async close(): Promise<void> {
    await this.channel.deleteQueue(this.queue);
    await this.channel.deleteExchange(this.exchange);
    await this.model.close();
  }
}

/** Reads a Redis stream with XREAD BLOCK on a connection of its own until closed. */
class StreamReader {
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly client: Redis,
    key: string,
    onEntries: (entries: [string, string[]][], at: number) => Promise<void> | void,
  ) {
    this.done = (async () => {
      let last = '0';
      while (!this.stopped) {
        const reply = await client.xread('COUNT', 2000, 'BLOCK', 200, 'STREAMS', key, last).catch(() => null);
        if (!reply) continue;
        const entries = reply[0]![1];
        if (entries.length === 0) continue;
        last = entries[entries.length - 1]![0];
        await onEntries(entries, Date.now());
      }
    })();
  }

  async close(): Promise<void> {
    this.stopped = true;
    await this.done;
    this.client.disconnect();
  }
}

function fieldOf(fields: string[], name: string): string {
  const i = fields.indexOf(name);
  return i >= 0 ? (fields[i + 1] ?? '') : '';
}

/** A stream on the bench's Redis (the contract's default target, the bridge's own Redis). */
class RedisStreamSink implements Sink {
  private readonly arrivals = new Arrivals();
  private readonly reader: StreamReader;

  private constructor(
    private readonly admin: Redis,
    private readonly stream: string,
  ) {
    this.reader = new StreamReader(admin.duplicate(), stream, (entries, at) => {
      for (const [, fields] of entries) this.arrivals.add(fieldOf(fields, 'id'), at, fieldOf(fields, 'body'));
    });
  }

  static start(redisUrl: string, unique: string): Promise<RedisStreamSink> {
    return Promise.resolve(new RedisStreamSink(new Redis(redisUrl), `imkit-bench:events:${unique}`));
  }

  bridgeConfig(concurrency: number | undefined) {
    return {
      destinations: [
        { id: DEST_ID, type: 'redis-stream', stream: this.stream, ...(concurrency ? { concurrency } : {}) },
      ],
    };
  }

  get naive(): NaiveDestination {
    return { type: 'redis-stream', url: redisUrlOf(this.admin), stream: this.stream };
  }

  mark(): number {
    return this.arrivals.list.length;
  }

  since(mark: number): readonly Arrival[] {
    return this.arrivals.list.slice(mark);
  }

  async check(sent: number): Promise<StoredCheck> {
    const stored = await settledCount(() => this.admin.xlen(this.stream));
    return { sent, stored, repeats: this.arrivals.repeats };
  }

  async close(): Promise<void> {
    await this.reader.close();
    await this.admin.del(this.stream);
    this.admin.disconnect();
  }
}

/**
 * A BullMQ queue on the bench's Redis, with no worker: arrivals are the queue's `added` events (read
 * from its events stream), each job's data read right away.
 */
class BullmqSink implements Sink {
  private readonly arrivals = new Arrivals();
  private readonly reader: StreamReader;
  /**
   * The name the bridge gives its own delivery queue for this destination id: until the config keeps
   * a bullmq destination's `queue` apart from that name, the bridge adds its jobs there whatever
   * `queue` says. The run-unique part is the prefix, so both relays use the same queue either way.
   */
  private readonly queue = `destination-${DEST_ID}`;

  private constructor(
    private readonly admin: Redis,
    private readonly prefix: string,
  ) {
    const keyOf = (suffix: string) => `${prefix}:${this.queue}:${suffix}`;
    this.reader = new StreamReader(admin.duplicate(), keyOf('events'), async (entries, at) => {
      const ids = entries
        .filter(([, fields]) => fieldOf(fields, 'event') === 'added')
        .map(([, fields]) => fieldOf(fields, 'jobId'));
      if (ids.length === 0) return;
      const pipeline = this.admin.pipeline();
      for (const id of ids) pipeline.hget(keyOf(id), 'data');
      const bodies = (await pipeline.exec()) ?? [];
      ids.forEach((id, i) => this.arrivals.add(id, at, String(bodies[i]?.[1] ?? '')));
    });
  }

  static start(redisUrl: string, unique: string): Promise<BullmqSink> {
    return Promise.resolve(new BullmqSink(new Redis(redisUrl), `imkit-bench-bull-${unique}`));
  }

  bridgeConfig(concurrency: number | undefined) {
    return {
      destinations: [
        {
          id: DEST_ID,
          type: 'bullmq',
          queue: this.queue,
          prefix: this.prefix,
          ...(concurrency ? { concurrency } : {}),
        },
      ],
    };
  }

  get naive(): NaiveDestination {
    return { type: 'bullmq', url: redisUrlOf(this.admin), queue: this.queue, prefix: this.prefix };
  }

  mark(): number {
    return this.arrivals.list.length;
  }

  since(mark: number): readonly Arrival[] {
    return this.arrivals.list.slice(mark);
  }

  /** Jobs waiting in the queue (nothing consumes them), once each: BullMQ drops a repeated job id. */
  async check(sent: number): Promise<StoredCheck> {
    const stored = await settledCount(() => this.admin.llen(`${this.prefix}:${this.queue}:wait`));
    return { sent, stored, repeats: this.arrivals.repeats };
  }

  async close(): Promise<void> {
    await this.reader.close();
    const keys = await this.admin.keys(`${this.prefix}:${this.queue}:*`);
    for (let i = 0; i < keys.length; i += 1000) await this.admin.del(...keys.slice(i, i + 1000));
    this.admin.disconnect();
  }
}

function redisUrlOf(client: Redis): string {
  return `redis://${client.options.host}:${client.options.port}`;
}

/** A count read until it stops changing (what is in flight lands), bounded at 10 s. */
async function settledCount(read: () => Promise<number>): Promise<number> {
  let last = -1;
  const { count } = await waitFor(
    async () => {
      const now = await read();
      const settled = now === last;
      last = now;
      return settled ? { count: now } : undefined;
    },
    { timeoutMs: 10_000, intervalMs: 250, what: 'a settled count' },
  );
  return count;
}
