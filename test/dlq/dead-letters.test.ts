import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { BridgeConfig } from '../../src/config/schema.js';
import { RedisUnavailableError, UnknownDestinationError } from '../../src/errors.js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import {
  formatDeadLetters,
  formatReplay,
  listDeadLetters,
  readDeadLetter,
  replayDeadLetters,
} from '../../src/dlq/dead-letters.js';
import { quarantineKey, queueName } from '../../src/queue/names.js';
import { WebhookReceiver } from '../support/receiver.js';
import { freePort, waitFor } from '../support/redis.js';
import { SECRET_A, TestProducer, redisSuite, startDelivery, testConfig } from '../deliver/fixtures.js';

const redis = redisSuite();

async function setup(webhook: Record<string, unknown> = {}) {
  const receiver = await WebhookReceiver.start({ secret: SECRET_A });
  redis.defer(() => receiver.close());
  const config: BridgeConfig = testConfig(redis.target(), [
    { id: 'hook', url: receiver.url, secret: SECRET_A, ...webhook },
    { id: 'other', url: receiver.url, secret: SECRET_A },
  ]);
  const { producer, metrics } = startDelivery(config, redis);
  return { receiver, config, producer, metrics };
}

describe('dead letters from delivery', () => {
  it('410 dead-letters at once; list shows it; replay delivers it with the same webhook-id', async () => {
    const { receiver, config, producer, metrics } = await setup();
    receiver.enqueue({ status: 410 });
    const job = await producer.add('hook');
    await waitFor(async () => (await producer.queue('hook').getFailedCount()) === 1, { what: 'dead letter' });
    expect(receiver.requestsFor(job.id)).toHaveLength(1);
    const dead = (await metrics.deliveries.get()).values.find((v) => v.labels.outcome === 'dead');
    expect(dead?.value).toBe(1);

    const list = await listDeadLetters(config, { destination: 'hook' });
    expect(list.destinations).toHaveLength(1);
    const [entry] = list.destinations[0]!.entries;
    expect(entry).toMatchObject({
      destination: 'hook',
      id: job.id,
      // Its own job since the batch's try: `<event id>-<batch job id>`.
      jobId: `${job.id}-${job.jobId}`,
      type: 'chat message',
      account: 'audit-bot',
      attempts: 1,
      lastError: 'HTTP 410 Gone',
    });
    expect(Date.parse(entry!.failedAt)).toBeGreaterThan(Date.now() - 10_000);
    expect(entry!.age).toBeGreaterThanOrEqual(0);

    const result = await replayDeadLetters(config, { destination: 'hook' });
    expect(result).toEqual({
      destinations: [{ destination: 'hook', type: 'http', replayed: 1, failed: 0 }],
      replayed: 1,
      failed: 0,
    });
    await waitFor(() => receiver.deliveredIds().includes(job.id), { what: 'replayed delivery' });
    const reqs = receiver.requestsFor(job.id);
    expect(reqs.map((r) => r.headers['webhook-id'])).toEqual([job.id, job.id]);
    expect(reqs.every((r) => r.verified && r.body === job.body)).toBe(true);
    expect((await listDeadLetters(config)).destinations.every((w) => w.total === 0)).toBe(true);
  });

  it('an exhausted schedule dead-letters; replay by event id starts a full schedule again', async () => {
    const { receiver, config, producer } = await setup();
    receiver.respondWith({ status: 500 });
    const job = await producer.add('hook');
    const bystander = await producer.add('hook');
    await waitFor(async () => (await producer.queue('hook').getFailedCount()) === 2, {
      what: 'two dead letters',
    });
    expect(receiver.requestsFor(job.id)).toHaveLength(3); // first try + schedule [100ms, 200ms]

    const list = await listDeadLetters(config);
    const hook = list.destinations.find((w) => w.destination === 'hook')!;
    expect(hook.total).toBe(2);
    expect(hook.entries.find((e) => e.id === job.id)).toMatchObject({ attempts: 3, lastError: 'HTTP 500' });
    expect(list.destinations.find((w) => w.destination === 'other')!.total).toBe(0);

    // Two more failures, then success: only a reset attempt count gets that far.
    receiver.enqueue({ status: 500 }, { status: 500 }, { status: 204 });
    const result = await replayDeadLetters(config, { id: job.id });
    expect(result.replayed).toBe(1);
    await waitFor(() => receiver.deliveredIds().includes(job.id), { what: 'replayed delivery' });
    expect(receiver.requestsFor(job.id)).toHaveLength(6);
    const after = await listDeadLetters(config, { destination: 'hook' });
    expect(after.destinations[0]!.entries.map((e) => e.id)).toEqual([bystander.id]);
  });

  it('a hand-picked selection (the console) replays exactly those jobs, at their own destinations, audited by job', async () => {
    const { receiver, config, producer } = await setup();
    receiver.respondWith({ status: 410 });
    const [a, b, c] = [await producer.add('hook'), await producer.add('hook'), await producer.add('other')];
    await waitFor(
      async () =>
        (await producer.queue('hook').getFailedCount()) === 2 &&
        (await producer.queue('other').getFailedCount()) === 1,
      { what: 'three dead letters' },
    );
    const deadJob = (event: { id: string; jobId: string }) => `${event.id}-${event.jobId}`;

    const shown = await readDeadLetter(config, 'hook', deadJob(b!));
    expect(shown?.entries).toMatchObject([{ id: b!.id, destination: 'hook', lastError: 'HTTP 410 Gone' }]);
    expect(shown?.bodies).toEqual({ [b!.id]: b!.body });
    // Only a dead letter is shown: not another destination's, nor an id that is not one.
    expect(await readDeadLetter(config, 'other', deadJob(b!))).toBeUndefined();
    expect(await readDeadLetter(config, 'hook', 'no-such-job')).toBeUndefined();

    const lines: string[] = [];
    const logger = pino(
      new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) }),
    );
    receiver.respondWith({ status: 204 });
    const result = await replayDeadLetters(config, {
      jobs: [
        { destination: 'hook', jobId: deadJob(a!) },
        { destination: 'other', jobId: deadJob(c!) },
        { destination: 'hook', jobId: 'no-such-job' },
      ],
      audit: { who: 'console session 0badc0de from 127.0.0.1', logger },
    });
    expect(result).toMatchObject({ replayed: 2, failed: 1 });
    await waitFor(() => [a!.id, c!.id].every((id) => receiver.deliveredIds().includes(id)), {
      what: 'both replayed deliveries',
    });
    const left = await listDeadLetters(config);
    expect(left.destinations.flatMap((d) => d.entries.map((e) => e.id))).toEqual([b!.id]);
    expect(JSON.parse(lines.join(''))).toMatchObject({
      audit: 'dlq replay',
      who: 'console session 0badc0de from 127.0.0.1',
      jobs: [`hook/${deadJob(a!)}`, `other/${deadJob(c!)}`, 'hook/no-such-job'],
      replayed: 2,
      failed: 1,
    });
  });

  it('fails with a clear error, not a hang, when Redis is unreachable', async () => {
    const config = testConfig({ url: `redis://127.0.0.1:${await freePort()}`, prefix: 'x' }, [
      { id: 'hook', url: 'http://127.0.0.1:1/hook' },
    ]);
    const started = Date.now();
    await expect(listDeadLetters(config)).rejects.toBeInstanceOf(RedisUnavailableError);
    expect(Date.now() - started).toBeLessThan(7000);
  });

  it('rejects an unknown webhook id', async () => {
    const { config } = await setup();
    await expect(listDeadLetters(config, { destination: 'nope' })).rejects.toBeInstanceOf(
      UnknownDestinationError,
    );
    await expect(replayDeadLetters(config, { destination: 'nope' })).rejects.toMatchObject({
      code: 'BRIDGE_ERR_DLQ_UNKNOWN_DESTINATION',
    });
  });
});

describe('a batch job in the failed set', () => {
  it('is listed event by event, and replay delivers every event of it', async () => {
    const receiver = await WebhookReceiver.start({ secret: SECRET_A });
    redis.defer(() => receiver.close());
    const config = testConfig(redis.target(), [{ id: 'hook', url: receiver.url, secret: SECRET_A }]);
    const producer = new TestProducer(config);
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    redis.defer(async () => {
      await producer.close();
      connection.disconnect();
    });
    // How a batch job gets there: stalled past BullMQ's limit, i.e. it failed without our processor deciding.
    const events = await producer.addBatch('hook', [{}, {}, {}]);
    const worker = new Worker(
      queueName('hook'),
      async () => {
        throw new UnrecoverableError('job stalled more than allowable limit');
      },
      { connection, prefix: config.redis.prefix },
    );
    await waitFor(async () => (await producer.queue('hook').getFailedCount()) === 1, {
      what: 'failed batch',
    });
    await worker.close();

    const [hook] = (await listDeadLetters(config)).destinations;
    expect(hook!.entries.map((e) => e.id).sort()).toEqual(events.map((e) => e.id).sort());
    expect(hook!.entries.every((e) => e.jobId === events[0]!.jobId)).toBe(true);
    expect(hook!.entries[0]!.lastError).toBe('job stalled more than allowable limit');

    expect((await replayDeadLetters(config)).replayed).toBe(1);
    startDelivery(config, redis);
    await waitFor(() => events.every((e) => receiver.deliveredIds().includes(e.id)), {
      what: 'the replayed batch delivered',
    });
    expect(receiver.requests).toHaveLength(3);
  });
});

describe('large dead-letter sets and quarantine', () => {
  it('lists with exact totals but bounded entries, and replays all of them page by page', async () => {
    const config = testConfig(redis.target(), [{ id: 'bulk', url: 'http://127.0.0.1:1/hook' }]);
    const producer = new TestProducer(config);
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const total = 1200;
    for (let i = 0; i < total; i += 200) {
      await Promise.all(Array.from({ length: 200 }, () => producer.add('bulk')));
    }
    // Dead-letter them the way a 410 does.
    const worker = new Worker(
      queueName('bulk'),
      async () => {
        throw new UnrecoverableError('HTTP 410 Gone');
      },
      { connection, prefix: config.redis.prefix, concurrency: 100 },
    );
    redis.defer(async () => {
      await producer.close();
      connection.disconnect();
    });
    await waitFor(async () => (await producer.queue('bulk').getFailedCount()) === total, {
      what: 'bulk dead letters',
    });
    await worker.close();
    await connection.xadd(
      quarantineKey(config.redis.prefix),
      '*',
      ...[
        'account',
        'audit-bot',
        'event',
        'chat message',
        'reason',
        'invalid base64',
        'raw',
        'AAE=',
        'receivedAt',
        '1795600000000',
        'size',
        '2',
      ],
    );

    const list = await listDeadLetters(config, { limit: 1000 });
    expect(list.destinations[0]!.total).toBe(total);
    expect(list.destinations[0]!.entries).toHaveLength(1000);
    expect(new Set(list.destinations[0]!.entries.map((e) => e.jobId)).size).toBe(1000);
    expect(list.quarantine.total).toBe(1);
    expect(list.quarantine.entries[0]).toMatchObject({
      account: 'audit-bot',
      event: 'chat message',
      reason: 'invalid base64',
      size: 2,
      receivedAt: new Date(1795600000000).toISOString(),
    });

    const text = formatDeadLetters(list, { json: false });
    expect(text).toContain(
      'destination bulk (http): 1200 dead-lettered (showing 1-1000, newest first; 200 more: --offset 1000)',
    );
    expect(text).toContain('quarantine: 1 payload(s)');
    expect(text).toMatch(new RegExp(`invalid base64\\s+2\\s+${new Date(1795600000000).toISOString()}`));
    expect(JSON.parse(formatDeadLetters(list, { json: true }))).toEqual(JSON.parse(JSON.stringify(list)));

    const result = await replayDeadLetters(config, { destination: 'bulk' });
    expect(result.replayed).toBe(total);
    expect(formatReplay(result, { json: false })).toContain('replayed 1200 dead letter(s)');
    expect(JSON.parse(formatReplay(result, { json: true }))).toEqual(result);
    const counts = await producer.queue('bulk').getJobCounts('failed', 'waiting');
    expect(counts).toEqual({ failed: 0, waiting: total });
  });
});
