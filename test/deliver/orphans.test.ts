import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { OrphanSweeper } from '../../src/deliver/orphans.js';
import { queueName } from '../../src/queue/names.js';
import { testRedis } from '../support/redis.js';
import { TestProducer, testConfig } from './fixtures.js';

let redis: Awaited<ReturnType<typeof testRedis>>;
beforeAll(async () => {
  redis = await testRedis();
});
afterAll(async () => {
  await redis.close();
});

it('moves back only jobs locked by our workers, not in flight, seen twice with the same token', async () => {
  const config = testConfig(redis, [{ id: 'hook', url: 'http://127.0.0.1:1/hook' }]);
  const producer = new TestProducer(config);
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  // A worker used only to take jobs by hand, standing in for one whose replies were lost.
  const ours = new Worker(queueName('hook'), null, { connection, prefix: config.redis.prefix });
  const theirs = new Worker(queueName('hook'), null, { connection, prefix: config.redis.prefix });
  try {
    const queue = producer.queue('hook');
    const a = await producer.add('hook');
    const b = await producer.add('hook');
    const c = await producer.add('hook');
    const jobA = await ours.getNextJob(`${ours.id}:1`);
    const jobB = await ours.getNextJob(`${ours.id}:2`);
    const jobC = await theirs.getNextJob(`${theirs.id}:1`);
    expect([jobA?.id, jobB?.id, jobC?.id]).toEqual([a.jobId, b.jobId, c.jobId]);

    const inFlight = new Set([`${ours.id}:2`]);
    const sweeper = new OrphanSweeper(
      connection,
      queue,
      () => new Set([ours.id]),
      () => inFlight,
    );
    expect(await sweeper.sweep()).toEqual([]); // first sighting only
    expect(await sweeper.sweep()).toEqual([a.jobId]);
    expect(await queue.getJobState(a.jobId)).toBe('waiting');
    expect(await queue.getJobState(b.jobId)).toBe('active'); // in flight
    expect(await queue.getJobState(c.jobId)).toBe('active'); // another process's
    expect((await queue.getJob(a.jobId))!.attemptsMade).toBe(0);
  } finally {
    await ours.close(true);
    await theirs.close(true);
    await producer.close();
    connection.disconnect();
  }
});
