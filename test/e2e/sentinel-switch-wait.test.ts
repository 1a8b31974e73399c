import { expect, test } from 'vitest';
import { SentinelGroup } from '../support/redis-topologies.js';
import { waitFor } from '../support/redis.js';
import { FailoverWorld, sentMore } from './failover-world.js';

// S3: a graceful `SENTINEL FAILOVER` (what an upgrade does) under traffic. The demoted master stays
// writable until a sentinel reconfigures it; with waitReplicas 1 what it took there is not
// confirmed (it has no replica) and is landed again on the new master: nothing is lost.
test('Sentinel, waitReplicas 1: SENTINEL FAILOVER under traffic loses no event', async () => {
  const group = await SentinelGroup.start({
    replicas: 2,
    sentinels: 3,
    downAfterMs: 1_000,
    failoverTimeoutMs: 5_000,
  });
  const world = await FailoverWorld.start(['audit', 'crm']);
  try {
    const bridge = await world.bridge(
      world.config({
        sentinels: group.sentinelUrls,
        name: group.name,
        waitReplicas: 1,
        waitTimeout: '500ms',
      }),
    );
    world.startTraffic();
    await waitFor(() => world.delivered('audit').size >= 50, {
      timeoutMs: 15_000,
      what: 'steady deliveries',
    });
    const old = group.master;
    expect(await group.failover()).not.toBe(old);
    await sentMore(world, 200);
    world.stopTraffic();
    expect(await world.allDelivered(45_000)).toBe(true);
    expect(await world.metric(bridge, 'imkit_bridge_redis_master_changes_total')).toBeGreaterThan(0);
  } finally {
    await world.close();
    await group.close();
  }
}, 90_000);
