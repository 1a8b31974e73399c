import { expect, test } from 'vitest';
import { sentinelKill } from './sentinel-kill.js';

// S1: with waitReplicas 1, a master killed -9 while its replicas lag loses nothing: what ingest
// landed stays in memory until a replica holds it, and is landed again on the promoted master.
test('Sentinel, waitReplicas 1: kill -9 of a lagging master loses no event', async () => {
  const { world, bridge, group } = await sentinelKill({ waitReplicas: 1 });
  try {
    const complete = await world.allDelivered(45_000);
    expect(world.missingCounts(), world.diagnosis()).toEqual({
      audit: 0,
      crm: 0,
    });
    expect(complete).toBe(true);
    expect(await world.metric(bridge, 'imkit_bridge_redis_relanded_events_total')).toBeGreaterThan(0);
    expect(await world.metric(bridge, 'imkit_bridge_redis_wait_shortfalls_total')).toBeGreaterThan(0);
  } finally {
    await world.close();
    await group.close();
  }
}, 90_000);
