import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { BridgeMetrics } from '../../src/admin/metrics.js';
import { destinationsOf } from '../../src/config/destinations.js';
import type { BridgeConfig } from '../../src/config/schema.js';
import { DeliveryClaims } from '../../src/deliver/claims.js';
import type { Enqueuer } from '../../src/queue/enqueuer.js';
import { queueName } from '../../src/queue/names.js';
import type { DeliveryEvent } from '../../src/queue/job.js';
import { eventIdentity } from '../../src/route/event-id.js';
import type { RelayedEvent } from '../../src/route/event.js';
import { WebhookReceiver } from '../support/receiver.js';
import { waitFor } from '../support/redis.js';
import { SECRET_A, TestProducer, redisSuite, startAllInOne, startDelivery, testConfig } from './fixtures.js';

const redis = redisSuite();

/** The test's repeatWindow. Events carry chosen receivedAt values, so nothing here waits for it. */
const WINDOW = 1_000;
const TYPING = { room: 'r1', message: 'typing', sender: 'alice' };

/** A copy of the same typing event as ingest would queue it, received at `receivedAt`. */
function typingAt(receivedAt: number): Partial<DeliveryEvent> & { id: string; receivedAt: number } {
  const identity = eventIdentity('audit-bot', 'typing', TYPING, receivedAt, WINDOW);
  return { ...identity, type: 'typing', receivedAt };
}

/** A receivedAt at the start of a repeat-window slot, in the recent past. */
function slotStart(): number {
  return Math.floor(Date.now() / WINDOW) * WINDOW - 60 * WINDOW;
}

async function setup() {
  const receiver = await WebhookReceiver.start({ secret: SECRET_A });
  redis.defer(() => receiver.close());
  const config = testConfig(redis.target(), [{ id: 'hook', url: receiver.url, secret: SECRET_A }], {
    repeatWindow: WINDOW,
  });
  return { receiver, ...startDelivery(config, redis) };
}

/** One `--role all` process: ingest's Enqueuer sends what it lands through its own delivery lane. */
function allInOne(config: BridgeConfig): { enqueuer: Enqueuer; metrics: BridgeMetrics } {
  return startAllInOne(config, redis);
}

async function deduplicated(metrics: BridgeMetrics): Promise<number> {
  return (await metrics.eventsDeduplicated.get()).values.reduce((n, v) => n + v.value, 0);
}

describe('non-chat events at delivery: copies within repeatWindow are one event, later repeats are new', () => {
  it('delivers each of 8 repeats received more than repeatWindow apart, with 8 distinct webhook-ids', async () => {
    const { receiver, producer } = await setup();
    const start = slotStart() + 100;
    const repeats = Array.from({ length: 8 }, (_, i) => typingAt(start + i * 1.5 * WINDOW));
    for (const repeat of repeats) await producer.add('hook', repeat);
    await producer.waitEmpty('hook');
    await waitFor(() => receiver.deliveredIds().length === 8, { what: '8 deliveries' });
    expect(new Set(receiver.deliveredIds())).toEqual(new Set(repeats.map((r) => r.id)));
  });

  it('a replica copy received across a slot boundary, under another id, is not delivered again', async () => {
    const { receiver, producer, metrics } = await setup();
    const boundary = slotStart() + WINDOW;
    const [before, after] = [typingAt(boundary - 3), typingAt(boundary + 3)];
    expect(before.id).not.toBe(after.id);
    // Two replicas, each its own batch job, each with the copy its socket received.
    await Promise.all([producer.add('hook', before), producer.add('hook', after)]);
    await producer.waitEmpty('hook');
    await waitFor(async () => (await deduplicated(metrics)) === 1, { what: 'the second copy skipped' });
    expect(receiver.requests).toHaveLength(1);
    expect([before.id, after.id]).toContain(receiver.deliveredIds()[0]);
  });

  it('copies spread over less than repeatWindow are delivered once, whichever slot each fell in', async () => {
    const { receiver, producer, metrics } = await setup();
    const start = slotStart() + WINDOW / 2;
    const copies = [0, 0.2, 0.45, 0.7, 0.95].map((f) => typingAt(start + f * WINDOW));
    expect(new Set(copies.map((c) => c.id)).size).toBe(2);
    await Promise.all(copies.map((copy) => producer.add('hook', copy)));
    await producer.waitEmpty('hook');
    await waitFor(async () => (await deduplicated(metrics)) === copies.length - 1, {
      what: 'every copy but one skipped',
    });
    expect(receiver.requests).toHaveLength(1);
  });

  it('a steady stream of one content is delivered about once per repeatWindow, not once forever', async () => {
    const { receiver, producer } = await setup();
    const start = slotStart() + 100;
    // Every 0.4 windows for 20 windows, in one batch job so the claim sees them in order.
    const stream = Array.from({ length: 50 }, (_, i) => typingAt(start + i * 0.4 * WINDOW));
    await producer.addBatch('hook', stream);
    await producer.waitEmpty('hook');
    const delivered = receiver.deliveredIds().length;
    // At most one per window (the record does not slide), at least one per two windows.
    expect(delivered).toBeGreaterThanOrEqual(10);
    expect(delivered).toBeLessThanOrEqual(20);
    expect(new Set(receiver.deliveredIds()).size).toBe(delivered);
  });

  it('two --role all replicas, each sending its copy directly across a slot boundary: one delivery', async () => {
    const receiver = await WebhookReceiver.start({ secret: SECRET_A });
    redis.defer(() => receiver.close());
    const config = testConfig(redis.target(), [{ id: 'hook', url: receiver.url, secret: SECRET_A }], {
      repeatWindow: WINDOW,
    });
    const replicas = [allInOne(config), allInOne(config)];
    const producer = new TestProducer(config);
    redis.defer(() => producer.close());
    const boundary = slotStart() + WINDOW;
    const copies: RelayedEvent[] = [boundary - 2, boundary + 2].map((receivedAt) => ({
      ...eventIdentity('audit-bot', 'typing', TYPING, receivedAt, WINDOW),
      type: 'typing',
      account: 'audit-bot',
      receivedAt,
      data: TYPING,
    }));
    await Promise.all(copies.map((copy, i) => replicas[i]!.enqueuer.enqueue(copy, destinationsOf(config))));
    const skipped = async () =>
      (await Promise.all(replicas.map((r) => deduplicated(r.metrics)))).reduce((a, b) => a + b);
    await waitFor(async () => (await skipped()) === 1, { what: 'one copy skipped' });
    await producer.waitEmpty('hook');
    expect(receiver.requests).toHaveLength(1);
    expect(copies.map((c) => c.id)).toContain(receiver.deliveredIds()[0]);
  });

  it('a job written before repeat keys existed still delivers, claimed by id alone', async () => {
    const { receiver, producer, metrics } = await setup();
    const { repeatKey: _, ...old } = typingAt(slotStart());
    await producer.add('hook', old);
    await producer.add('hook', old);
    await producer.waitEmpty('hook');
    await waitFor(async () => (await deduplicated(metrics)) === 1, { what: 'the copy skipped' });
    expect(receiver.deliveredIds()).toEqual([old.id]);
  });

  it('claims: the job that owns an occurrence keeps it when run again; a straddling copy stays skipped', async () => {
    const target = redis.target();
    const connection = new Redis(target.url);
    redis.defer(async () => void connection.disconnect());
    const claims = new DeliveryClaims(connection, target.prefix, queueName('hook'), {
      dedupMs: 60_000,
      repeatMs: WINDOW,
    });
    const boundary = slotStart() + WINDOW;
    const [before, after] = [typingAt(boundary - 1), typingAt(boundary + 1)];
    expect(await claims.claim('job-1', [before])).toEqual([true]);
    expect(await claims.claim('job-2', [after])).toEqual([false]);
    expect(await claims.claim('job-1', [before])).toEqual([true]);
    expect(await claims.claim('job-2', [after])).toEqual([false]);
    // One socket received it twice in one flush: sent once.
    const later = typingAt(boundary + 5 * WINDOW);
    expect(await claims.claim('job-3', [later, later])).toEqual([true, false]);
  });
});
