import type { BridgeProcess } from '../support/bridge-process.js';
import { SentinelGroup } from '../support/redis-topologies.js';
import { waitFor } from '../support/redis.js';
import { FailoverWorld, sentMore } from './failover-world.js';

export interface KillOutcome {
  readonly world: FailoverWorld;
  readonly bridge: BridgeProcess;
  readonly group: SentinelGroup;
  /** Messages sent while replication was frozen and the destinations refused (the window a failover can lose). */
  readonly window: number;
  readonly failoverMs: number;
}

/**
 * S1/S2: steady chat traffic to two webhook destinations through a Sentinel group (master, 2
 * replicas, 3 sentinels). The destinations refuse for a while so deliveries wait in Redis, the
 * replicas stop receiving the master's writes for about a second, then the master is killed -9 and
 * the sentinels promote a replica. Traffic goes on throughout. The caller checks what arrived and
 * closes `world` and `group`.
 */
export async function sentinelKill(redis: { waitReplicas?: number }): Promise<KillOutcome> {
  const group = await SentinelGroup.start({
    replicas: 2,
    sentinels: 3,
    downAfterMs: 1_000,
    failoverTimeoutMs: 5_000,
  });
  const world = await FailoverWorld.start(['audit', 'crm']);
  try {
    const bridge = await world.bridge(
      world.config({ sentinels: group.sentinelUrls, name: group.name, waitTimeout: '500ms', ...redis }),
    );
    world.startTraffic();
    await waitFor(() => world.delivered('audit').size >= 50 && world.delivered('crm').size >= 50, {
      timeoutMs: 15_000,
      what: 'steady deliveries',
    });
    world.destinationsDown(true);
    const before = world.sent.length;
    await group.freezeReplication();
    await sentMore(world, 100);
    const window = world.sent.length - before;
    const killedAt = Date.now();
    await group.killMaster();
    const failoverMs = Date.now() - killedAt;
    world.destinationsDown(false);
    await sentMore(world, 100);
    world.stopTraffic();
    return { world, bridge, group, window, failoverMs };
  } catch (err) {
    await world.close();
    await group.close();
    throw err;
  }
}
