import { expect, test } from 'vitest';
import { recordLoss } from './failover-world.js';
import { sentinelKill } from './sentinel-kill.js';

// S2: the same failover without waitReplicas. What the dead master had acknowledged but not yet
// replicated is gone; the count goes to the log and bench/results/redis-loss.json for the docs.
test('Sentinel, waitReplicas 0: kill -9 of a lagging master; the loss is measured', async () => {
  const { world, group, window, failoverMs } = await sentinelKill({});
  try {
    await world.settled(3_000, 45_000);
    const lost = world.missingCounts();
    const entry = {
      test: 'S2',
      topology: 'sentinel',
      waitReplicas: 0,
      sent: world.sent.length,
      window,
      failoverMs,
      lost,
    };
    console.log(`redis failover loss: ${JSON.stringify(entry)}`);
    recordLoss(entry);
    // The bridge carried on after the failover: the last messages, sent after it, all arrived.
    const after = world.sent.slice(-50);
    for (const id of ['audit', 'crm']) expect(after.filter((m) => !world.delivered(id).has(m))).toEqual([]);
  } finally {
    await world.close();
    await group.close();
  }
}, 90_000);
