import { Cluster } from 'ioredis';
import { keySlot, type RedisClient, type RedisSettings } from './redis.js';

/** A cluster node as `/status` shows it. */
export interface ClusterNodeStatus {
  readonly address: string;
  readonly role: 'master' | 'replica';
  /** Slot ranges a master serves, `0-5460`; empty for a replica. */
  readonly slots: readonly string[];
  readonly up: boolean;
}

/** `/status.redis`: which topology, where the bridge is connected, and what is wrong if anything. */
export interface RedisStatus {
  readonly topology: RedisSettings['topology'];
  /** The configured endpoint, without secrets. */
  readonly endpoint: string;
  readonly state: 'ok' | 'unreachable';
  /** Sentinel: the master the bridge is connected to now (`10.0.0.7:6379`). */
  readonly master?: string;
  /** Cluster: every node the bridge knows of. */
  readonly nodes?: readonly ClusterNodeStatus[];
  readonly waitReplicas: number;
  readonly error?: string;
}

/** Cluster: where a destination's queue lives. */
export interface QueuePlacement {
  readonly slot: number;
  /** The master serving the slot, or undefined while the slot map is unknown. */
  readonly node?: string;
}

export function queuePlacement(client: RedisClient, queue: string): QueuePlacement | undefined {
  if (!(client instanceof Cluster)) return undefined;
  const slot = keySlot(queue);
  const node = client.slots[slot]?.[0];
  return node === undefined ? { slot } : { slot, node };
}

/**
 * Reads the topology's live facts from `client`: on Sentinel the master's address (`CLIENT INFO`
 * names the server's side of this connection), on Cluster the nodes and their slot ranges from the
 * client's slot map. Never rejects: a failed read is `unreachable` with `error`.
 */
export async function readRedisStatus(
  client: RedisClient,
  settings: RedisSettings,
  reachable: boolean,
  error: string | undefined,
): Promise<RedisStatus> {
  const base = {
    topology: settings.topology,
    endpoint: settings.endpoint(),
    state: reachable ? ('ok' as const) : ('unreachable' as const),
    waitReplicas: settings.waitReplicas,
    ...(reachable || error === undefined ? {} : { error }),
  };
  if (client instanceof Cluster) return { ...base, nodes: clusterNodes(client) };
  if (settings.topology !== 'sentinel' || !reachable) return base;
  const info = await client.call('CLIENT', 'INFO').catch(() => undefined);
  const master = typeof info === 'string' ? /\bladdr=(\S+)/.exec(info)?.[1] : undefined;
  return master === undefined ? base : { ...base, master };
}

function clusterNodes(cluster: Cluster): ClusterNodeStatus[] {
  const ranges = new Map<string, string[]>();
  let start = 0;
  for (let slot = 1; slot <= cluster.slots.length; slot++) {
    const owner = cluster.slots[start]?.[0];
    if (slot < cluster.slots.length && cluster.slots[slot]?.[0] === owner) continue;
    if (owner !== undefined) {
      const list = ranges.get(owner) ?? [];
      list.push(start === slot - 1 ? `${start}` : `${start}-${slot - 1}`);
      ranges.set(owner, list);
    }
    start = slot;
  }
  const masters = new Set(cluster.nodes('master').map((n) => `${n.options.host}:${n.options.port}`));
  return cluster
    .nodes('all')
    .map((node) => {
      const address = `${node.options.host}:${node.options.port}`;
      return {
        address,
        role: masters.has(address) ? ('master' as const) : ('replica' as const),
        slots: ranges.get(address) ?? [],
        up: node.status === 'ready',
      };
    })
    .sort((a, b) => a.address.localeCompare(b.address));
}
