import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { BridgeMetrics } from '../../src/admin/metrics.js';
import { destinationsOf } from '../../src/config/destinations.js';
import { DeliveryClaims } from '../../src/deliver/claims.js';
import { listDeadLetters } from '../../src/dlq/dead-letters.js';
import { eventJobOptions } from '../../src/queue/job.js';
import { claimKey, queueName } from '../../src/queue/names.js';
import { WebhookReceiver } from '../support/receiver.js';
import { waitFor } from '../support/redis.js';
import { SECRET_A, eventId, redisSuite, startDelivery, testConfig, type TestProducer } from './fixtures.js';

const redis = redisSuite();

async function setup(extra: Record<string, unknown> = {}) {
  const receiver = await WebhookReceiver.start({ secret: SECRET_A });
  redis.defer(() => receiver.close());
  const target = redis.target();
  const config = testConfig(target, [{ id: 'hook', url: receiver.url, secret: SECRET_A }], extra);
  return { receiver, config, target, ...startDelivery(config, redis) };
}

async function total(
  counter: BridgeMetrics['eventsDeduplicated'] | BridgeMetrics['deliveries'],
  outcome?: string,
) {
  const values = (await counter.get()).values;
  return values.filter((v) => !outcome || v.labels.outcome === outcome).reduce((n, v) => n + v.value, 0);
}

/**
 * 40 chat messages queued for `destination` by two replicas: one saw 0..29, the other 10..39, each
 * batched its own way, so 20 of the 60 queued are copies. Returns the 40 ids.
 */
async function addOverlapping(producer: TestProducer, destination: string): Promise<string[]> {
  const ids = Array.from({ length: 40 }, () => eventId());
  const batches = [
    [0, 15],
    [10, 25],
    [15, 30],
    [25, 40],
  ] as const;
  await Promise.all(
    batches.map(([from, to]) =>
      producer.addBatch(
        destination,
        ids.slice(from, to).map((id) => ({ id })),
      ),
    ),
  );
  return ids;
}

describe('de-duplication at delivery', () => {
  it('two replicas queue overlapping batches: every event is delivered once, and the copies are counted', async () => {
    const { receiver, producer, metrics } = await setup();
    const ids = await addOverlapping(producer, 'hook');
    await waitFor(() => new Set(receiver.deliveredIds()).size === ids.length, { what: 'all 40 delivered' });
    await producer.waitEmpty('hook');
    expect(receiver.deliveredIds().sort()).toEqual([...ids].sort());
    expect(receiver.requests.every((r) => r.verified)).toBe(true);
    expect(await total(metrics.eventsDeduplicated)).toBe(20);
    expect(await total(metrics.deliveries, 'delivered')).toBe(40);
  });

  it('an event delivered inside dedupWindow is not sent again; after the window it is', async () => {
    const { receiver, producer, metrics, target } = await setup({
      dedupWindow: '1500ms',
      repeatWindow: '1s',
    });
    const connection = new Redis(target.url);
    redis.defer(async () => void connection.disconnect());
    const id = eventId();
    await producer.addBatch('hook', [{ id }]);
    await waitFor(() => receiver.deliveredIds().length === 1, { what: 'first delivery' });
    const marker = eventId();
    await producer.addBatch('hook', [{ id }, { id: marker }]);
    await waitFor(() => receiver.deliveredIds().includes(marker), { what: 'the marker after the copy' });
    expect(receiver.requestsFor(id)).toHaveLength(1);
    expect(await total(metrics.eventsDeduplicated)).toBe(1);

    await waitFor(
      async () => (await connection.exists(claimKey(target.prefix, queueName('hook'), id))) === 0,
      {
        what: 'window over',
        timeoutMs: 5000,
      },
    );
    await producer.addBatch('hook', [{ id }]);
    await waitFor(() => receiver.requestsFor(id).length === 2, { what: 'delivered again after the window' });
  });

  it('claims: first job owns an event, others do not, and the owner keeps it when run again', async () => {
    const target = redis.target();
    const connection = new Redis(target.url);
    redis.defer(async () => void connection.disconnect());
    const claims = new DeliveryClaims(connection, target.prefix, queueName('hook'), {
      dedupMs: 60_000,
      repeatMs: 5_000,
    });
    const receivedAt = Date.now();
    const [a, b, c] = [
      { id: eventId(), receivedAt },
      { id: eventId(), receivedAt },
      { id: eventId(), receivedAt },
    ];
    expect(await claims.claim('job-1', [a, b])).toEqual([true, true]);
    expect(await claims.claim('job-2', [b, c, a])).toEqual([false, true, false]);
    // job-1 crashed and runs again: still its events; job-2's stay job-2's.
    expect(await claims.claim('job-1', [a, b, c])).toEqual([true, true, false]);
    const ttl = await connection.pttl(claimKey(target.prefix, queueName('hook'), a.id));
    expect(ttl).toBeGreaterThan(55_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    expect(await claims.claim('job-3', [])).toEqual([]);
  });

  it('a redis-stream destination keeps copies out with its own marker: chat messages take no claim, repeat-keyed events still do', async () => {
    const target = redis.target();
    const stream = `batches-stream:${target.prefix}`;
    const config = testConfig(target, [], {
      destinations: [{ id: 'feed', type: 'redis-stream', stream, concurrency: 4 }],
    });
    const { producer, metrics } = startDelivery(config, redis);
    const connection = new Redis(target.url);
    redis.defer(async () => void connection.disconnect());
    const ids = await addOverlapping(producer, 'feed');
    const repeated = eventId();
    await producer.addBatch('feed', [{ id: repeated, type: 'user update', repeatKey: 'user-update-key' }]);
    await waitFor(async () => (await connection.xlen(stream)) === 41, { what: '41 entries in the stream' });
    await producer.waitEmpty('feed');

    const entries = await connection.xrange(stream, '-', '+');
    const entryIds = entries.map(([, fields]) => fields[fields.indexOf('id') + 1]);
    expect(entryIds.sort()).toEqual([...ids, repeated].sort());
    expect(await total(metrics.deliveries, 'delivered')).toBe(41);
    expect(await total(metrics.eventsDeduplicated)).toBe(20);
    const queue = destinationsOf(config)[0]!.jobQueue;
    const claimed = await Promise.all(
      [...ids, repeated].map((id) => connection.exists(claimKey(target.prefix, queue, id))),
    );
    expect(claimed.slice(0, 40).every((n) => n === 0)).toBe(true);
    expect(claimed[40]).toBe(1);

    // A retry's event job for an event that is in the stream by now: done, and a copy too.
    const [first] = ids;
    const receivedAt = Date.now();
    await producer
      .queue('feed')
      .add(
        'chat message',
        { id: first!, type: 'chat message', account: 'audit-bot', receivedAt, body: '{}', attemptsBefore: 1 },
        { ...eventJobOptions(destinationsOf(config)[0]!), jobId: `${first}-retry` },
      );
    await waitFor(async () => (await total(metrics.eventsDeduplicated)) === 21, { what: 'the retry a copy' });
    await producer.waitEmpty('feed');
    expect(await connection.xlen(stream)).toBe(41);
    expect(await total(metrics.deliveries, 'delivered')).toBe(41);
  });
});

describe('a batch whose events fare differently', () => {
  it('delivers the good ones once, retries the failing one alone with its webhook-id, dead-letters the 410', async () => {
    const { receiver, producer, config } = await setup();
    const [ok1, flaky, gone, ok2] = [eventId(), eventId(), eventId(), eventId()];
    let flakyTries = 0;
    receiver.respondWith((req) => {
      const id = req.headers['webhook-id'];
      if (id === gone) return { status: 410 };
      if (id === flaky && flakyTries++ < 2) return { status: 500 };
      return { status: 204 };
    });
    await producer.addBatch('hook', [{ id: ok1 }, { id: flaky }, { id: gone }, { id: ok2 }]);
    await waitFor(() => receiver.deliveredIds().includes(flaky), {
      what: 'flaky delivered on its third try',
    });
    await waitFor(async () => (await producer.queue('hook').getFailedCount()) === 1, {
      what: 'one dead letter',
    });

    expect(receiver.requestsFor(ok1)).toHaveLength(1);
    expect(receiver.requestsFor(ok2)).toHaveLength(1);
    expect(receiver.requestsFor(gone)).toHaveLength(1);
    const flakyReqs = receiver.requestsFor(flaky);
    expect(flakyReqs.map((r) => r.status)).toEqual([500, 500, 204]);
    expect(new Set(flakyReqs.map((r) => r.body)).size).toBe(1);
    // The schedule is [100ms, 200ms]: the second try waits ~100 ms, the third ~200 ms more.
    expect(flakyReqs[1]!.at - flakyReqs[0]!.at).toBeGreaterThanOrEqual(90);
    expect(flakyReqs[2]!.at - flakyReqs[1]!.at).toBeGreaterThanOrEqual(190);

    const [entry] = (await listDeadLetters(config, { destination: 'hook' })).destinations[0]!.entries;
    expect(entry).toMatchObject({ id: gone, attempts: 1, lastError: 'HTTP 410 Gone' });
  });

  it('an exhausted schedule counts the batch try: three tries in all, then one dead letter', async () => {
    const { receiver, producer, config, metrics } = await setup();
    receiver.respondWith({ status: 503 });
    const [event] = await producer.addBatch('hook', [{}]);
    await waitFor(async () => (await producer.queue('hook').getFailedCount()) === 1, { what: 'dead letter' });
    expect(receiver.requestsFor(event!.id)).toHaveLength(3);
    const [entry] = (await listDeadLetters(config)).destinations[0]!.entries;
    expect(entry).toMatchObject({ id: event!.id, attempts: 3, lastError: 'HTTP 503' });
    expect(await total(metrics.deliveries, 'retry')).toBe(2);
    expect(await total(metrics.deliveries, 'dead')).toBe(1);
  });
});
