/**
 * The benchmark's yardstick: the least a relay can do. One Socket.IO session per account (conf,
 * auth2, pong), and per event: base64 decode, JSON.parse, event id, body, then one publish of the
 * destination kind under test with the bridge's message contract (docs/destinations/*.md): a
 * Standard Webhooks signed undici POST, a JetStream publish with `Nats-Msg-Id`, an AMQP publish on a
 * confirm channel with `mandatory`, a plain XADD (no de-duplication marker), or a BullMQ `Queue.add`.
 * The socket handler publishes and moves on: no queue, no retry, no durability: an event in flight
 * when this process dies, or refused by the target, is gone. Run as a child of bench/bench.ts with
 * its settings as JSON in argv[2]; it reports `ready` over IPC once every account is authenticated
 * and the target is connected.
 */
import { io } from 'socket.io-client';
import { configSchema } from '../src/config/schema.js';
import { publishOptions } from '../src/deliver/destinations/amqp.js';
import { bullmqJob } from '../src/deliver/destinations/bullmq.js';
import { withEventHeaders } from '../src/deliver/destinations/nats.js';
import { streamFields } from '../src/deliver/destinations/redis-stream.js';
import { WebhookSigner } from '../src/deliver/signature.js';
import { renderTemplate } from '../src/deliver/template.js';
import type { DeliveryEvent } from '../src/queue/job.js';
import { eventIdentity } from '../src/route/event-id.js';

export type NaiveDestination =
  | {
      readonly type: 'webhook';
      readonly url: string;
      readonly secret: string;
      /** Keep-alive connections to the webhook, as the bridge's default `concurrency`. */
      readonly connections: number;
    }
  | { readonly type: 'nats'; readonly url: string; readonly subject: string }
  | { readonly type: 'amqp'; readonly url: string; readonly exchange: string; readonly routingKey: string }
  | { readonly type: 'redis-stream'; readonly url: string; readonly stream: string }
  | { readonly type: 'bullmq'; readonly url: string; readonly queue: string; readonly prefix: string };

export interface NaiveRelaySettings {
  readonly imkitUrl: string;
  readonly accounts: readonly { readonly id: string; readonly token: string }[];
  readonly destination: NaiveDestination;
}

/** Sends one event, not awaited by the socket handler; a failure only counts. */
type Publish = (event: DeliveryEvent) => Promise<unknown>;

const settings = JSON.parse(process.argv[2] ?? '{}') as NaiveRelaySettings;
// The bridge's default, so the event id costs what the bridge's does.
const REPEAT_WINDOW_MS = configSchema.shape.repeatWindow.parse(undefined);
let errors = 0;

async function publisher(destination: NaiveDestination): Promise<Publish> {
  switch (destination.type) {
    case 'webhook': {
      const { Pool } = await import('undici');
      const target = new URL(destination.url);
      const pool = new Pool(target.origin, {
        connections: destination.connections,
        keepAliveTimeout: 30_000,
      });
      const signer = new WebhookSigner(destination.secret);
      return (event) => {
        const timestamp = Math.floor(event.receivedAt / 1000);
        return pool
          .request({
            path: target.pathname,
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              'webhook-id': event.id,
              'webhook-timestamp': String(timestamp),
              'webhook-signature': signer.sign(event.id, timestamp, event.body),
            },
            body: event.body,
          })
          .then((res) => res.body.dump());
      };
    }
    case 'nats': {
      const { connect, headers } = await import('@nats-io/transport-node');
      const { jetstream } = await import('@nats-io/jetstream');
      const url = new URL(destination.url);
      const js = jetstream(await connect({ servers: url.host }));
      return (event) => {
        return js.publish(renderTemplate(destination.subject, event), event.body, {
          msgID: event.id,
          headers: withEventHeaders(headers(), event),
        });
      };
    }
    case 'amqp': {
      const { connect } = await import('amqplib');
      const channel = await (await connect(destination.url)).createConfirmChannel();
      // A returned (unroutable) message is lost here: nothing retries it.
      channel.on('return', () => errors++);
      return (event) =>
        new Promise<void>((resolve, reject) => {
          channel.publish(
            destination.exchange,
            renderTemplate(destination.routingKey, event),
            Buffer.from(event.body),
            publishOptions(event),
            (err: unknown) => (err ? reject(err as Error) : resolve()),
          );
        });
    }
    case 'redis-stream': {
      const { Redis } = await import('ioredis');
      const client = new Redis(destination.url);
      return (event) => client.xadd(renderTemplate(destination.stream, event), '*', ...streamFields(event));
    }
    case 'bullmq': {
      const [{ Queue }, { Redis }] = await Promise.all([import('bullmq'), import('ioredis')]);
      const queue = new Queue(destination.queue, {
        connection: new Redis(destination.url, { maxRetriesPerRequest: null }),
        prefix: destination.prefix,
      });
      await queue.waitUntilReady();
      return (event) => {
        const job = bullmqJob(event);
        return queue.add(job.name, job.data, job.opts);
      };
    }
  }
}

function relay(publish: Publish, account: string, type: string, payload: unknown): void {
  let data: unknown = payload;
  if (typeof payload === 'string') {
    const text = Buffer.from(payload, 'base64').toString('utf8');
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  const receivedAt = Date.now();
  const { id } = eventIdentity(account, type, data, receivedAt, REPEAT_WINDOW_MS);
  const body = JSON.stringify({ id, type, timestamp: new Date(receivedAt).toISOString(), account, data });
  publish({ id, type, account, receivedAt, body }).catch(() => errors++);
}

const publish = await publisher(settings.destination);
let live = 0;
for (const account of settings.accounts) {
  const socket = io(settings.imkitUrl, { forceNew: true, transports: ['websocket'], reconnection: false });
  socket.on('connect', () => {
    void (async () => {
      await socket.emitWithAck('conf', { encoding: 'base64' });
      const ack = (await socket.emitWithAck('auth2', account.token, { deviceId: `naive-${account.id}` })) as {
        RC?: number;
      };
      if (ack?.RC !== 0) throw new Error(`auth2 refused for ${account.id}`);
      if (++live === settings.accounts.length) process.send?.({ op: 'ready' });
    })();
  });
  socket.onAny((name: string, payload: unknown) => {
    if (name === 'ping') socket.emit('pong');
    else relay(publish, account.id, name, payload);
  });
}
process.on('disconnect', () => {
  if (errors > 0) console.error(`naive relay: ${errors} failed publishes (nothing retries them)`);
  process.exit(0);
});
