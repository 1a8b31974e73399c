import { describe, expect, it } from 'vitest';
import { DeliveryWorkers } from '../../src/deliver/workers.js';
import { WebhookReceiver } from '../support/receiver.js';
import { freePort, waitFor } from '../support/redis.js';
import { TestProducer, silentDeps, testConfig, redisSuite } from './fixtures.js';

const redis = redisSuite();

describe('isolation between webhooks', () => {
  it.each([
    ['hanging', 'hang'],
    ['refusing connections', 'refuse'],
  ])('a %s webhook does not delay another webhook', async (_label, mode) => {
    const healthy = await WebhookReceiver.start();
    redis.defer(() => healthy.close());
    let downUrl: string;
    if (mode === 'hang') {
      const hanging = await WebhookReceiver.start();
      hanging.respondWith({ hang: true });
      redis.defer(() => hanging.close());
      downUrl = hanging.url;
    } else {
      downUrl = `http://127.0.0.1:${await freePort()}/hook`;
    }
    const config = testConfig(redis.target(), [
      { id: 'down', url: downUrl, timeout: '2s', concurrency: 2, retry: { schedule: ['100ms'], jitter: 0 } },
      { id: 'up', url: healthy.url, concurrency: 2 },
    ]);
    const workers = new DeliveryWorkers({ config, ...silentDeps() });
    const producer = new TestProducer(config);
    redis.defer(async () => {
      await workers.close(500);
      await producer.close();
    });
    workers.start();

    for (let i = 0; i < 20; i++) await producer.add('down');
    const healthyIds: string[] = [];
    for (let i = 0; i < 10; i++) {
      healthyIds.push((await producer.add('up')).id);
      await new Promise((r) => setTimeout(r, 30));
    }
    await waitFor(() => healthyIds.every((id) => healthy.deliveredIds().includes(id)), {
      what: 'healthy deliveries',
    });
    // Received -> delivered, per event, while the other webhook is failing.
    const latencies = healthy.requests.map((r) => r.at - Date.parse(JSON.parse(r.body).timestamp));
    expect(Math.max(...latencies)).toBeLessThan(250);
    // And the other webhook really was failing the whole time.
    const down = workers.status().find((s) => s.destination === 'down')!;
    if (mode === 'hang') expect(down.inFlight).toBe(2);
    else expect(down.lastError?.message).toMatch(/^network error: ECONNREFUSED/);
    expect(await producer.queue('down').getCompletedCount()).toBe(0);
  });
});

describe('circuit breaker', () => {
  it('opens after N failures, sends nothing during cool-down, probes, re-opens, then closes; no event lost', async () => {
    const receiver = await WebhookReceiver.start();
    redis.defer(() => receiver.close());
    receiver.respondWith({ status: 500 });
    const config = testConfig(redis.target(), [
      {
        id: 'flaky',
        url: receiver.url,
        concurrency: 4,
        breaker: { failures: 3, cooldown: '1s' },
        retry: { schedule: ['100ms', '100ms', '100ms', '100ms', '100ms', '100ms'], jitter: 0 },
      },
    ]);
    const { logger, metrics } = silentDeps();
    const workers = new DeliveryWorkers({ config, logger, metrics });
    const producer = new TestProducer(config);
    redis.defer(async () => {
      await workers.close(500);
      await producer.close();
    });
    const breakerGauge = async () => (await metrics.breakerOpen.get()).values[0]?.value;
    workers.start();

    const ids = [
      (await producer.add('flaky')).id,
      (await producer.add('flaky')).id,
      (await producer.add('flaky')).id,
    ];
    await waitFor(() => workers.status()[0]!.breaker === 'open', { what: 'breaker open' });
    const openedAt = Date.now();
    expect(receiver.requests).toHaveLength(3);
    expect(await breakerGauge()).toBe(1);
    // Events keep queueing while it is open.
    for (let i = 0; i < 5; i++) ids.push((await producer.add('flaky')).id);

    // First probe fails: back to open for another cool-down.
    const probe1 = await waitFor(() => receiver.requests[3], { what: 'first probe', timeoutMs: 3000 });
    expect(probe1.at - receiver.requests[2]!.at).toBeGreaterThanOrEqual(950);
    await waitFor(() => probe1.status === 500 && workers.status()[0]!.breaker === 'open', {
      what: 're-open',
    });
    receiver.respondWith({ status: 204 });
    const probe2 = await waitFor(() => receiver.requests[4], { what: 'second probe', timeoutMs: 3000 });
    expect(probe2.at - probe1.at).toBeGreaterThanOrEqual(950);

    await waitFor(() => ids.every((id) => receiver.deliveredIds().includes(id)), {
      what: 'all events delivered',
    });
    expect(workers.status()[0]!.breaker).toBe('closed');
    expect(await breakerGauge()).toBe(0);
    expect(Date.now() - openedAt).toBeGreaterThan(1900);
    // Hold-backs during cool-down used no attempts: nothing was dead-lettered.
    expect(await producer.queue('flaky').getFailedCount()).toBe(0);
  });
});
