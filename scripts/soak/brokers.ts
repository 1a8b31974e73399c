import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import type { NatsServer } from '../../test/support/nats-server.js';

/**
 * One copy of an event as a destination holds it, whatever the kind: a webhook request, a stream
 * message, a stream entry. `status` is the receiver's answer (brokers: stored, so 200); `id` is the id
 * the transport carried beside the body (`webhook-id`, `Nats-Msg-Id`, the entry's `id` field).
 */
export interface Receipt {
  readonly at: number;
  readonly body: string;
  readonly id: string | undefined;
  readonly status: number | undefined;
  /** Webhooks: whether the signature verified. Brokers sign nothing: always true. */
  readonly verified: boolean;
}

/**
 * Reads what a broker destination stored, incrementally, so the drain loop can poll it cheaply.
 * Reads run one after another: two overlapping reads from one position would list entries twice
 * and show duplicates the broker does not hold.
 */
export abstract class BrokerCollector {
  readonly receipts: Receipt[] = [];
  private reading: Promise<void> = Promise.resolve();

  /** Reads what was added since the last read; a broker that is down (a fault) is read next time. */
  refresh(): Promise<void> {
    this.reading = this.reading.then(() => this.readMore());
    return this.reading;
  }

  protected abstract readMore(): Promise<void>;

  abstract close(): Promise<void>;
}

/** Every message of a JetStream stream, by sequence; `at` is when the server stored it. */
export class NatsStreamCollector extends BrokerCollector {
  private nextSeq = 1;

  constructor(
    private readonly server: NatsServer,
    private readonly stream: string,
  ) {
    super();
  }

  protected async readMore(): Promise<void> {
    let nc: NatsConnection | undefined;
    try {
      nc = await connect({ ...this.server.clientOptions, timeout: 1_000, reconnect: false });
      const jsm = await jetstreamManager(nc);
      const { state } = await jsm.streams.info(this.stream);
      for (; this.nextSeq <= state.last_seq; this.nextSeq++) {
        const message = await jsm.streams.getMessage(this.stream, { seq: this.nextSeq });
        if (!message) continue;
        this.receipts.push({
          at: message.time.getTime(),
          body: message.string(),
          id: message.header?.get('Nats-Msg-Id'),
          status: 200,
          verified: true,
        });
      }
    } catch {
      // Killed by the fault lane right now: what is stored is read on the next refresh.
    } finally {
      await nc?.close().catch(() => undefined);
    }
  }

  async close(): Promise<void> {}
}

/** Every entry of some Redis streams; `at` is the entry id's time (the target server's clock). */
export class RedisStreamCollector extends BrokerCollector {
  private readonly after = new Map<string, string>();
  private readonly redis: Redis;

  constructor(
    url: string,
    private readonly streams: readonly string[],
  ) {
    super();
    this.redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
    this.redis.on('error', () => {});
  }

  protected async readMore(): Promise<void> {
    try {
      for (const stream of this.streams) {
        for (;;) {
          const after = this.after.get(stream);
          const page = await this.redis.xrange(stream, after ? `(${after}` : '-', '+', 'COUNT', 1000);
          for (const [entryId, fields] of page) {
            const field = (name: string) => fields[fields.indexOf(name) + 1];
            this.receipts.push({
              at: Number(entryId.split('-')[0]),
              body: field('body') ?? '',
              id: field('id'),
              status: 200,
              verified: true,
            });
            this.after.set(stream, entryId);
          }
          if (page.length < 1000) break;
        }
      }
    } catch {
      // The target is being restarted by the fault lane: read the rest next time.
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
