import type { BridgeProcess } from '../support/bridge-process.js';
import { ClusterGroup } from '../support/redis-topologies.js';
import { waitFor } from '../support/redis.js';
import { FailoverWorld, sentMore } from './failover-world.js';

export interface ClusterKillOutcome {
  readonly world: FailoverWorld;
  readonly bridge: BridgeProcess;
  readonly cluster: ClusterGroup;
  /** Bytes of chat message text in the burst. */
  readonly burstBytes: number;
  readonly burst: number;
  readonly failoverMs: number;
  /** The master port of each destination's shard before the failover. */
  readonly shards: Record<string, number>;
}

const BURST = 400;
const MESSAGE_BYTES = 52 * 1024;

/**
 * C2: steady chat traffic to two webhook destinations over a 3-master cluster with 2 replicas per
 * master. The replicas of destination `audit`'s shard are stopped (SIGSTOP), the destinations refuse
 * so deliveries wait in Redis, a burst of over 20 MB lands on that shard, its master is killed -9 and
 * the replicas continue; one is promoted. With the replicas stopped the burst never left the dead
 * master. The caller checks what arrived and closes `world` and `cluster`.
 */
export async function clusterKill(redis: { waitReplicas?: number }): Promise<ClusterKillOutcome> {
  const cluster = await ClusterGroup.start({ masters: 3, replicasPerMaster: 2, nodeTimeoutMs: 1_000 });
  const world = await FailoverWorld.start(['audit', 'crm']);
  try {
    const bridge = await world.bridge(
      world.config({ cluster: cluster.urls, waitTimeout: '500ms', ...redis }),
    );
    world.startTraffic();
    await waitFor(() => world.delivered('audit').size >= 50 && world.delivered('crm').size >= 50, {
      timeoutMs: 15_000,
      what: 'steady deliveries',
    });
    const key = `${world.prefix}:{webhook-audit}:wait`;
    const master = await cluster.masterOf(key);
    const replicas = await cluster.replicasOf(master);
    world.destinationsDown(true);
    for (const replica of replicas) cluster.stop(replica);
    const filler = 'x'.repeat(MESSAGE_BYTES);
    for (let i = 0; i < BURST; i++) {
      const msg = world.sim.sendMessage('burst', `${i} ${filler}`, {
        members: ['audit-bot', 'alice'],
        sender: 'alice',
      });
      world.sent.push(msg._id);
    }
    // The whole burst is written: on the shard's master (and, with its replicas stopped, nowhere else).
    await waitFor(
      async () => {
        if ((await world.metric(bridge, 'imkit_bridge_events_received_total')) < world.sent.length)
          return false;
        if (redis.waitReplicas)
          return (await world.metric(bridge, 'imkit_bridge_ingest_unconfirmed_events')) > 0;
        return (await world.metric(bridge, 'imkit_bridge_ingest_buffer_events')) === 0;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: 'the burst written' },
    );
    const shards = { audit: master, crm: await cluster.masterOf(`${world.prefix}:{webhook-crm}:wait`) };
    const killedAt = Date.now();
    await cluster.killMaster(key, { wait: false });
    for (const replica of replicas) cluster.cont(replica);
    await cluster.awaitNewMaster(key, master, 30_000);
    const failoverMs = Date.now() - killedAt;
    world.destinationsDown(false);
    await sentMore(world, 100);
    world.stopTraffic();
    return { world, bridge, cluster, shards, burst: BURST, burstBytes: BURST * MESSAGE_BYTES, failoverMs };
  } catch (err) {
    await world.close();
    await cluster.close();
    throw err;
  }
}
