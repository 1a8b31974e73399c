import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bullmqKind } from '../../src/deliver/destinations/bullmq.js';
import { redisStreamKind } from '../../src/deliver/destinations/redis-stream.js';
import type { Destination, DestinationKind } from '../../src/deliver/destination.js';
import type { z } from 'zod';
import { redisSettingsFromUrl } from '../../src/queue/redis.js';
import { SentinelGroup } from '../support/redis-topologies.js';
import { TEN_MINUTES, deliveryEvents, silentLogger } from './redis-fixtures.js';

// A destination that writes into the bridge's own Redis reports `delivered` only once the bridge's
// waitReplicas hold the write: otherwise the job completes while the write it reports can be lost.

let group: SentinelGroup;
beforeAll(async () => {
  group = await SentinelGroup.start({ replicas: 1, sentinels: 0 });
});
afterAll(async () => {
  group.thaw();
  await group.close();
});

function onBridgeRedis<T extends string, O extends z.ZodObject>(
  kind: DestinationKind<T, O>,
  raw: Record<string, unknown>,
): Destination {
  return kind.create(
    { ...(kind.options.parse(raw) as z.output<O>), id: 'dest-test', timeout: 2_000, concurrency: 8 },
    {
      logger: silentLogger(),
      bridgeRedis: {
        ...redisSettingsFromUrl(`redis://127.0.0.1:${group.master}`),
        waitReplicas: 1,
        waitTimeoutMs: 200,
      },
      dedupWindowMs: TEN_MINUTES,
    },
  );
}

async function heldUntilReplicated(destination: Destination): Promise<void> {
  try {
    await destination.connect();
    const [event] = deliveryEvents(1);
    await group.freezeReplication();
    expect(await destination.send(event!, [])).toEqual({
      kind: 'retry',
      reason: '0 of 1 replicas acknowledged within 200ms (waitReplicas)',
    });
    group.thaw();
    expect((await destination.send(event!, [])).kind).toBe('delivered');
  } finally {
    group.thaw();
    await destination.close();
  }
}

describe('a destination writing into the bridge Redis with waitReplicas 1', () => {
  it('redis-stream retries while no replica holds the entry, and is delivered once one does', () =>
    heldUntilReplicated(onBridgeRedis(redisStreamKind, { stream: 'replicated:events' })));

  it('bullmq retries while no replica holds the job, and is delivered once one does', () =>
    heldUntilReplicated(onBridgeRedis(bullmqKind, { queue: 'replicated', prefix: 'downstream' })));
});
