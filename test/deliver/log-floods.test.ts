import { describe, expect, it } from 'vitest';
import { BridgeMetrics } from '../../src/admin/metrics.js';
import { DeliveryWorkers } from '../../src/deliver/workers.js';
import { captureLogger } from '../source/harness.js';
import { WebhookReceiver } from '../support/receiver.js';
import { waitFor } from '../support/redis.js';
import { SECRET_A, TestProducer, redisSuite, testConfig } from './fixtures.js';

const redis = redisSuite();

describe('a receiver failing every event', () => {
  it('logs a few lines per cause with repeat counts, not a line per attempt', async () => {
    const receiver = await WebhookReceiver.start({ secret: SECRET_A });
    redis.defer(() => receiver.close());
    receiver.respondWith({ status: 500 });
    const config = testConfig(redis.target(), [
      {
        id: 'hook',
        url: receiver.url,
        secret: SECRET_A,
        concurrency: 16,
        retry: { schedule: ['50ms'], jitter: 0 },
        breaker: { failures: 100_000 },
      },
    ]);
    const log = captureLogger();
    const workers = new DeliveryWorkers({ config, logger: log.logger, metrics: new BridgeMetrics() });
    const producer = new TestProducer(config);
    redis.defer(async () => {
      await workers.close(1000);
      await producer.close();
    });
    workers.start();
    const events = 200;
    await producer.addBatch(
      'hook',
      Array.from({ length: events }, () => ({})),
    );
    await waitFor(async () => (await producer.queue('hook').getFailedCount()) === events, {
      timeoutMs: 30_000,
      what: 'every event dead-lettered',
    });
    expect(receiver.requests).toHaveLength(2 * events);

    const lines = () =>
      log.lines
        .map((l) => JSON.parse(l) as { msg: string; repeated?: number; err?: { message?: string } })
        .filter((r) => r.msg.startsWith('delivery failed'));
    const counted = (msg: string) =>
      lines()
        .filter((r) => r.msg === msg)
        .reduce((n, r) => n + (r.repeated ?? 1), 0);
    // Every failure is still accounted for once the throttle's windows close.
    await waitFor(
      () =>
        counted('delivery failed; will retry') === events &&
        counted('delivery failed; schedule exhausted, dead-lettered') === events,
      { timeoutMs: 15_000, what: 'every failure counted' },
    );
    expect(lines().length).toBeLessThanOrEqual(8);
    expect(lines().every((r) => r.err?.message === 'HTTP 500')).toBe(true);
  });
});
