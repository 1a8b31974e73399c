import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { replayDeadLetters } from '../../src/dlq/dead-letters.js';
import { RedisUnavailableError } from '../../src/errors.js';
import { SentinelGroup } from '../support/redis-topologies.js';
import { WebhookReceiver } from '../support/receiver.js';
import { waitFor } from '../support/redis.js';
import { SECRET_A, startDelivery, testConfig } from '../deliver/fixtures.js';

// With redis.waitReplicas, `dlq replay` reports "replayed N" only once replicas hold the moves: a
// failover right after the report could otherwise put the jobs back among the dead letters.

let group: SentinelGroup;
let receiver: WebhookReceiver;
const cleanups: (() => Promise<void>)[] = [];
const suite = {
  url: '',
  target: () => ({ url: '', prefix: '' }),
  defer: (c: () => Promise<void>) => void cleanups.push(c),
};

beforeAll(async () => {
  group = await SentinelGroup.start({ replicas: 1, sentinels: 0 });
  receiver = await WebhookReceiver.start({ secret: SECRET_A });
});
afterEach(async () => {
  group.thaw();
  while (cleanups.length) await cleanups.pop()!();
});
afterAll(async () => {
  await receiver.close();
  await group.close();
});

describe('dlq replay with waitReplicas 1', () => {
  it('fails naming the shortfall while no replica acknowledges the moves (which stand and deliver)', async () => {
    const url = `redis://127.0.0.1:${group.master}`;
    const config = testConfig(
      { url, prefix: 'replay' },
      [{ id: 'hook', url: receiver.url, secret: SECRET_A }],
      {
        redis: { url, prefix: 'replay', waitReplicas: 1, waitTimeout: '200ms' },
      },
    );
    const { producer } = startDelivery(config, suite as never);
    receiver.enqueue({ status: 410 }, { status: 410 });
    await producer.add('hook');
    await producer.add('hook');
    await waitFor(async () => (await producer.queue('hook').getFailedCount()) === 2, {
      what: 'dead letters',
    });

    await group.freezeReplication();
    const first = replayDeadLetters(config, { destination: 'hook' });
    await expect(first).rejects.toBeInstanceOf(RedisUnavailableError);
    await expect(first).rejects.toThrow(
      /replayed 2 dead letters of webhook-hook, but 0 of 1 replicas acknowledged within 200ms \(waitReplicas\)/,
    );
    group.thaw();
    await waitFor(() => receiver.deliveredIds().length === 2, { what: 'the replayed deliveries' });
  });
});
