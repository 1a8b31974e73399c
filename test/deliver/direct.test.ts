import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { destinationsOf } from '../../src/config/destinations.js';
import type { BridgeConfig } from '../../src/config/schema.js';
import type { DirectDelivery } from '../../src/queue/enqueuer.js';
import type { DeliveryJobData } from '../../src/queue/job.js';
import { queueName } from '../../src/queue/names.js';
import type { RelayedEvent } from '../../src/route/event.js';
import { WebhookReceiver } from '../support/receiver.js';
import { RedisServer, waitFor } from '../support/redis.js';
import { SECRET_A, eventId, redisSuite, startAllInOne, testConfig } from './fixtures.js';

const redis = redisSuite();

/** Ingest and delivery in one process, wired as `--role all` wires them. */
async function oneProcess(webhook: Record<string, unknown> = {}, target = redis.target()) {
  const receiver = await WebhookReceiver.start({ secret: SECRET_A });
  const config: BridgeConfig = testConfig(target, [
    { id: 'hook', url: receiver.url, secret: SECRET_A, ...webhook },
  ]);
  const slots = { cancelled: 0 };
  const counted = (lane: DirectDelivery): DirectDelivery => ({
    leaseMs: lane.leaseMs,
    reserve: () => {
      const slot = lane.reserve();
      return (
        slot && {
          deliver: slot.deliver,
          cancel: () => {
            slots.cancelled++;
            slot.cancel();
          },
        }
      );
    },
  });
  const { enqueuer } = startAllInOne(config, redis, { direct: counted });
  const queue = new Queue<DeliveryJobData>(queueName('hook'), {
    connection: { url: config.redis.url },
    prefix: config.redis.prefix,
  });
  queue.on('error', () => {});
  redis.defer(async () => {
    await queue.close();
    await receiver.close();
  });
  const send = (n: number) => {
    const event: RelayedEvent = {
      id: eventId(),
      type: 'typing',
      account: 'audit-bot',
      receivedAt: Date.now(),
      data: { room: `r${n}` },
    };
    const landed = enqueuer.enqueue(event, destinationsOf(config));
    return { id: event.id, landed };
  };
  const counts = () => queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
  /** Until no job is left in any state: nothing for a worker to send again, nothing dead-lettered. */
  const nothingLeft = () =>
    waitFor(async () => Object.values(await counts()).every((n) => n === 0), { what: 'no job left' });
  return { receiver, send, counts, nothingLeft, slots };
}

describe('direct delivery (ingest and delivery in one process)', () => {
  it('sends the job while Redis holds it as a delayed record, then removes the record', async () => {
    const { receiver, send, counts, nothingLeft } = await oneProcess();
    receiver.enqueue({ status: 204, delayMs: 1500 });
    const event = send(1);
    await waitFor(() => receiver.requests.length === 1, { what: 'the request in flight' });
    // While the request is out, the job is the record no worker may take yet: delayed, not active.
    expect(await counts()).toMatchObject({ delayed: 1, active: 0, waiting: 0 });
    await nothingLeft();
    expect(receiver.deliveredIds()).toEqual([event.id]);
  });

  it('a failed direct try becomes a retry a worker delivers, with the same webhook-id', async () => {
    const { receiver, send, nothingLeft } = await oneProcess();
    receiver.enqueue({ status: 500 });
    const event = send(1);
    await waitFor(() => receiver.deliveredIds().length === 1, { what: 'delivered on the retry' });
    expect(receiver.requestsFor(event.id).map((r) => r.status)).toEqual([500, 204]);
    await nothingLeft();
  });

  it('a send slower than the lease keeps its lease and is sent once', { timeout: 30_000 }, async () => {
    // Longer than the 10 s lease: without renewal a worker would take the job and send it again.
    const { receiver, send, nothingLeft } = await oneProcess({ timeout: '20s' });
    receiver.enqueue({ status: 204, delayMs: 12_000 });
    const event = send(1);
    await waitFor(() => receiver.deliveredIds().length === 1, {
      timeoutMs: 20_000,
      what: 'the slow delivery',
    });
    await nothingLeft();
    expect(receiver.requestsFor(event.id)).toHaveLength(1);
  });

  it('a burst beyond the lane takes the queue: every event delivered once', async () => {
    const { receiver, send, nothingLeft } = await oneProcess();
    const ids = Array.from({ length: 400 }, (_, i) => send(i).id);
    await waitFor(() => receiver.deliveredIds().length >= 400, { what: '400 deliveries' });
    expect(new Set(receiver.deliveredIds())).toEqual(new Set(ids));
    expect(receiver.requests).toHaveLength(400);
    await nothingLeft();
  });

  it('still sends directly after writes failed while Redis was down', async () => {
    const server = await RedisServer.start();
    redis.defer(() => server.close());
    const { receiver, send, counts, slots } = await oneProcess({}, { url: server.url, prefix: 'direct' });
    await server.stop();
    const during = [send(1).id, send(2).id];
    // More failed writes than the lane has slots (concurrency 4): each gave its slot back.
    await waitFor(() => slots.cancelled > 4, { what: 'failed writes while Redis is down' });
    await server.startProcess();
    await waitFor(() => during.every((id) => receiver.deliveredIds().includes(id)), {
      what: 'the buffered events delivered',
    });
    receiver.enqueue({ status: 204, delayMs: 1500 });
    send(3);
    await waitFor(() => receiver.requests.length === 3, { what: 'the next request in flight' });
    expect(await counts()).toMatchObject({ delayed: 1, active: 0, waiting: 0 });
  });

  it("leaves a webhook with a rateLimit to the queue's limiter", async () => {
    const { receiver, send } = await oneProcess({ rateLimit: { max: 2, duration: '1s' } });
    // One job each: every event is written on its own.
    for (let i = 0; i < 4; i++) await send(i).landed;
    await waitFor(() => receiver.deliveredIds().length === 4, { what: 'four deliveries' });
    const at = receiver.requests.map((r) => r.at);
    expect(at[2]! - at[0]!).toBeGreaterThanOrEqual(900);
  });
});
