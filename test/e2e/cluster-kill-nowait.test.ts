import { expect, test } from 'vitest';
import { recordLoss } from './failover-world.js';
import { clusterKill } from './cluster-kill.js';

// C2 without waitReplicas: the burst the dead shard master had acknowledged is gone for the
// destination on that shard. The count goes to the log and bench/results/redis-loss.json.
test('Cluster, waitReplicas 0: kill -9 of a shard master whose replicas missed a burst; the loss is measured', async () => {
  const { world, cluster, burst, burstBytes, failoverMs, shards } = await clusterKill({});
  try {
    await world.settled(3_000, 60_000);
    const lost = world.missingCounts();
    const entry = {
      test: 'C2',
      topology: 'cluster',
      waitReplicas: 0,
      sent: world.sent.length,
      burst,
      burstBytes,
      failoverMs,
      sameShard: shards.audit === shards.crm,
      lost,
    };
    console.log(`redis failover loss: ${JSON.stringify(entry)}`);
    recordLoss(entry);
    const after = world.sent.slice(-50);
    for (const id of ['audit', 'crm']) expect(after.filter((m) => !world.delivered(id).has(m))).toEqual([]);
  } finally {
    await world.close();
    await cluster.close();
  }
}, 120_000);
