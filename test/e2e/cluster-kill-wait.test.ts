import { expect, test } from 'vitest';
import { clusterKill } from './cluster-kill.js';

// C2: with waitReplicas 1 a shard master killed -9 before its replicas got a 20 MB burst loses
// nothing: ingest held the burst until a replica had it, and landed it again on the promoted one.
test('Cluster, waitReplicas 1: kill -9 of a shard master whose replicas missed a 20 MB burst loses no event', async () => {
  const { world, bridge, cluster } = await clusterKill({ waitReplicas: 1 });
  try {
    const complete = await world.allDelivered(60_000);
    expect(world.missingCounts(), world.diagnosis()).toEqual({
      audit: 0,
      crm: 0,
    });
    expect(complete).toBe(true);
    expect(await world.metric(bridge, 'imkit_bridge_redis_relanded_events_total')).toBeGreaterThan(0);
  } finally {
    await world.close();
    await cluster.close();
  }
}, 120_000);
