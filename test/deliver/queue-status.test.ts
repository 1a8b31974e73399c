import { afterEach, expect, it } from 'vitest';
import { BridgeMetrics } from '../../src/admin/metrics.js';
import { QueueStatusReader } from '../../src/deliver/queue-status.js';
import { RedisServer } from '../support/redis.js';
import { TestProducer, testConfig } from './fixtures.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

it('reads per-destination counts without any worker and exports them as imkit_bridge_queue_jobs', async () => {
  const server = await RedisServer.start();
  cleanups.push(() => server.close());
  const config = testConfig({ url: server.url, prefix: 'status' }, [
    { id: 'a', url: 'http://127.0.0.1:1/a' },
    { id: 'b', url: 'http://127.0.0.1:1/b' },
  ]);
  const producer = new TestProducer(config);
  cleanups.push(() => producer.close());
  const received = Date.now() - 120_000;
  await producer
    .queue('a')
    .add('old', { id: 'old', type: 't', account: 'a', receivedAt: received, body: '{}' });
  await producer.add('a');
  await producer.add('a');
  await producer.add('b');
  await producer
    .queue('b')
    .add('later', { id: 'x', type: 't', account: 'a', receivedAt: 0, body: '{}' }, { delay: 60_000 });

  const metrics = new BridgeMetrics();
  const reader = new QueueStatusReader({ config, metrics });
  cleanups.push(() => reader.close());
  const counts = await reader.refreshMetrics();
  expect(counts).toMatchObject([
    { destination: 'a', waiting: 3, active: 0, delayed: 0, failed: 0 },
    { destination: 'b', waiting: 1, active: 0, delayed: 1, failed: 0 },
  ]);
  // The oldest waiting event of 'a' is the one received two minutes ago, not the newest.
  expect(counts[0]!.oldestWaitingSeconds).toBeGreaterThanOrEqual(120);
  expect(counts[0]!.oldestWaitingSeconds).toBeLessThan(180);
  expect(counts[1]!.oldestWaitingSeconds).toBeLessThan(60);
  const text = await metrics.registry.metrics();
  expect(text).toContain('imkit_bridge_queue_jobs{destination="a",state="waiting"} 3');
  expect(text).toMatch(/imkit_bridge_queue_oldest_waiting_seconds\{destination="a"\} 1[2-7]\d/);
  expect(text).toContain('imkit_bridge_queue_jobs{destination="b",state="delayed"} 1');
  expect(text).toContain('imkit_bridge_queue_jobs{destination="b",state="failed"} 0');

  // While Redis is down a scrape fails fast instead of hanging the admin server.
  await server.stop();
  const started = Date.now();
  await expect(reader.read()).rejects.toThrow();
  expect(Date.now() - started).toBeLessThan(6000);
  await server.startProcess();
  await reader.close();
  await reader.close();
});
