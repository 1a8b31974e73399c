import { expect, test } from 'vitest';
import { ClusterGroup } from '../support/redis-topologies.js';
import { waitFor } from '../support/redis.js';
import { FailoverWorld, sentMore } from './failover-world.js';

// C3: a graceful `CLUSTER FAILOVER` of the shard holding a destination's queue, under traffic and
// with waitReplicas 1: nothing is lost and delivery goes on from the new master.
test('Cluster, waitReplicas 1: CLUSTER FAILOVER under traffic loses no event and delivery resumes', async () => {
  const cluster = await ClusterGroup.start({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 });
  const world = await FailoverWorld.start(['audit', 'crm']);
  try {
    const bridge = await world.bridge(
      world.config({ cluster: cluster.urls, waitReplicas: 1, waitTimeout: '500ms' }),
    );
    world.startTraffic();
    await waitFor(() => world.delivered('audit').size >= 50, {
      timeoutMs: 15_000,
      what: 'steady deliveries',
    });
    const key = `${world.prefix}:{webhook-audit}:wait`;
    const master = await cluster.masterOf(key);
    const replica = await cluster.replicaOf(master);
    await cluster.failover(replica);
    expect(await cluster.masterOf(key)).toBe(replica);
    const switched = world.sent.length;
    await sentMore(world, 200);
    world.stopTraffic();
    expect(await world.allDelivered(45_000)).toBe(true);
    // Delivery resumed on the new master: what was sent after the switch arrived too.
    expect(world.sent.slice(switched).every((m) => world.delivered('audit').has(m))).toBe(true);
    expect(await world.metric(bridge, 'imkit_bridge_redis_master_changes_total')).toBeGreaterThan(0);
  } finally {
    await world.close();
    await cluster.close();
  }
}, 90_000);
