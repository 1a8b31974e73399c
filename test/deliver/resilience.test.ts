import { Worker } from 'bullmq';
import { afterEach, describe, expect, it } from 'vitest';
import { DeliveryWorkers } from '../../src/deliver/workers.js';
import { WebhookReceiver } from '../support/receiver.js';
import { RedisServer, waitFor } from '../support/redis.js';
import { TestProducer, silentDeps, testConfig } from './fixtures.js';
import { eventsOf } from '../../src/queue/job.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(webhook: Record<string, unknown> = {}) {
  const server = await RedisServer.start();
  cleanups.push(() => server.close());
  const receiver = await WebhookReceiver.start();
  cleanups.push(() => receiver.close());
  const config = testConfig({ url: server.url, prefix: 'resilience' }, [
    { id: 'hook', url: receiver.url, concurrency: 2, ...webhook },
  ]);
  const producer = new TestProducer(config);
  cleanups.push(() => producer.close());
  return { server, receiver, config, producer };
}

describe('Redis restart', () => {
  it('loses nothing and workers resume by themselves (AOF on, restart mid-stream)', async () => {
    const { server, receiver, config, producer } = await setup();
    receiver.respondWith({ status: 204, delayMs: 20 });
    const workers = new DeliveryWorkers({ config, ...silentDeps(), watchdogIntervalMs: 1000 });
    cleanups.push(() => workers.close(500));
    workers.start();

    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push((await producer.add('hook')).id);
    await waitFor(() => receiver.deliveredIds().length >= 5, { what: 'first deliveries' });
    const beforeRestart = receiver.deliveredIds().length;
    await server.restart({ downMs: 500 });
    // The restart really cut through the stream.
    expect(beforeRestart).toBeLessThan(40);
    for (let i = 0; i < 20; i++) {
      ids.push(
        (await waitFor(() => producer.add('hook'), { what: 'enqueue after restart', timeoutMs: 5000 })).id,
      );
    }
    // A lost reply can orphan a job in active; the orphan sweep must free it long before BullMQ's
    // stalled check would (lock 30 s + stalled interval).
    await waitFor(() => ids.every((id) => receiver.deliveredIds().includes(id)), {
      what: 'every event delivered after the restart',
      timeoutMs: 20_000,
    });
    // Nothing stuck in active or dead-lettered along the way.
    await producer.waitEmpty('hook', { what: 'empty queue after the restart' });
  });

  it('an idle worker picks up new events after Redis was down for seconds (bullmq#2466)', async () => {
    const { server, receiver, config, producer } = await setup();
    const workers = new DeliveryWorkers({ config, ...silentDeps(), watchdogIntervalMs: 1000 });
    cleanups.push(() => workers.close(500));
    workers.start();
    const warm = await producer.add('hook');
    await waitFor(() => receiver.deliveredIds().includes(warm.id), { what: 'first delivery' });
    await server.restart({ downMs: 3000 });
    const job = await waitFor(() => producer.add('hook'), { what: 'enqueue after restart', timeoutMs: 5000 });
    await waitFor(() => receiver.deliveredIds().includes(job.id), {
      what: 'delivery after the outage',
      timeoutMs: 10_000,
    });
  });
});

describe('graceful close', () => {
  it('lets quick in-flight deliveries finish before returning', async () => {
    const { receiver, config, producer } = await setup();
    receiver.respondWith({ status: 204, delayMs: 400 });
    const workers = new DeliveryWorkers({ config, ...silentDeps() });
    workers.start();
    const job = await producer.add('hook');
    await waitFor(() => receiver.requests.length === 1, { what: 'request in flight' });
    const started = Date.now();
    await workers.close(3000);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(receiver.deliveredIds()).toEqual([job.id]);
    expect(await producer.queue('hook').getJobCounts('waiting', 'active', 'delayed')).toEqual({
      waiting: 0,
      active: 0,
      delayed: 0,
    });
  });

  it('returns within the bound with slow deliveries and hands them back for the next start', async () => {
    const { receiver, config, producer } = await setup({ timeout: '10s' });
    receiver.respondWith({ status: 204, delayMs: 8000 });
    const first = new DeliveryWorkers({ config, ...silentDeps() });
    first.start();
    const jobs = [await producer.add('hook'), await producer.add('hook')];
    await waitFor(() => receiver.requests.length === 2, { what: 'two slow requests in flight' });

    const started = Date.now();
    await first.close(1000);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeLessThan(1300);
    await first.close(1000); // idempotent
    const queue = producer.queue('hook');
    expect(await queue.getJobCounts('waiting', 'active', 'delayed', 'failed')).toEqual({
      waiting: 2,
      active: 0,
      delayed: 0,
      failed: 0,
    });
    // Handed back as waiting jobs of their own, and that is not a failed attempt.
    const waiting = await queue.getWaiting(0, -1);
    expect(waiting.map((j) => eventsOf(j.data)[0]!.id).sort()).toEqual(jobs.map((j) => j.id).sort());
    for (const job of waiting) {
      expect(job.attemptsMade).toBe(0);
      expect(job.data).not.toHaveProperty('attemptsBefore');
    }

    receiver.respondWith({ status: 204 });
    const second = new DeliveryWorkers({ config, ...silentDeps() });
    cleanups.push(() => second.close(500));
    const restarted = Date.now();
    second.start();
    await waitFor(() => jobs.every((j) => receiver.deliveredIds().includes(j.id)), {
      what: 'handed-back jobs delivered',
      timeoutMs: 5000,
    });
    // Far sooner than BullMQ's stalled-job recovery (lock 30 s + stalled check 30 s).
    expect(Date.now() - restarted).toBeLessThan(2000);
  });
});

describe('watchdog', () => {
  it('replaces a worker that stopped behind its back', async () => {
    const { receiver, config, producer } = await setup();
    const workers = new DeliveryWorkers({ config, ...silentDeps(), watchdogIntervalMs: 300 });
    cleanups.push(() => workers.close(500));
    workers.start();
    await waitFor(() => workers.status()[0]!.running, { what: 'worker running' });
    // Injected fault: the BullMQ worker ends its run loop without DeliveryWorkers asking for it.
    const lane = (workers as unknown as { lanes: { worker: { close(): Promise<void> } }[] }).lanes[0]!;
    await lane.worker.close();
    expect(workers.status()[0]!.running).toBe(false);
    const job = await producer.add('hook');
    await waitFor(() => receiver.deliveredIds().includes(job.id), { what: 'delivery by the replacement' });
    expect(workers.status()[0]!.running).toBe(true);
  });

  it('replaces a worker that stopped fetching while the breaker waits half-open for a probe', async () => {
    const { server, receiver, config, producer } = await setup({
      breaker: { failures: 1, cooldown: '300ms' },
      retry: { schedule: ['30s'], jitter: 0 },
    });
    receiver.respondWith({ status: 503 });
    const workers = new DeliveryWorkers({ config, ...silentDeps(), watchdogIntervalMs: 300 });
    cleanups.push(() => workers.close(500));
    workers.start();
    await producer.add('hook');
    await waitFor(() => workers.status()[0]!.breaker === 'open', { what: 'breaker open' });
    // Injected fault: the worker runs but never takes this queue's jobs (after a Cluster failover
    // its blocking connection was seen to hang so), stood in for by a live worker on another queue.
    const lane = (workers as unknown as { lanes: { worker: Worker }[] }).lanes[0]!;
    await lane.worker.close();
    lane.worker = new Worker('elsewhere', async () => {}, { connection: { url: server.url } });
    receiver.respondWith({ status: 204 });
    await waitFor(() => workers.status()[0]!.breaker === 'half-open', { what: 'breaker half-open' });
    const job = await producer.add('hook');
    await waitFor(() => receiver.deliveredIds().includes(job.id), {
      what: 'delivery by the replacement',
      timeoutMs: 5_000,
    });
    // The probe's answer closes the breaker once the lane has read it, just after the receiver saw it.
    await waitFor(() => workers.status()[0]!.breaker === 'closed', { what: 'breaker closed by the probe' });
  });
});
