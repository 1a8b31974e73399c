import { clusterQueueName, queueName } from '../queue/names.js';
import type { BridgeConfig, LaneConfig } from './schema.js';

/**
 * One destination as delivery sees it, whatever its type: the lane keys, its `type`, its BullMQ
 * queue, and its kind's own keys (read only by the kind, src/deliver/registry.ts).
 */
export interface DestinationConfig extends LaneConfig {
  readonly type: string;
  /** The bridge's own BullMQ queue for it; not `queue`, which is a kind's key (the bullmq kind's target). */
  readonly jobQueue: string;
}

const lists = new WeakMap<BridgeConfig, readonly DestinationConfig[]>();

/**
 * Every destination, as one list: the `webhooks:` entries (type http, queues `webhook-<id>` as before
 * 0.2, so their jobs, dead letters and claims survive an upgrade), then `destinations:`
 * (queues `destination-<id>`; on Redis Cluster `{webhook-<id>}`, `{destination-<id>}`). Router, queues, workers, status and `dlq` all take this list.
 */
export function destinationsOf(config: BridgeConfig): readonly DestinationConfig[] {
  let list = lists.get(config);
  if (!list) {
    // On Cluster the name is a hash tag: the queue's keys share a slot, and destinations spread over shards.
    const jobQueue = config.redis.cluster ? (name: string) => clusterQueueName(name) : (name: string) => name;
    list = Object.freeze([
      ...config.webhooks.map((w) =>
        Object.freeze({ ...w, type: 'http', jobQueue: jobQueue(queueName(w.id, 'webhook')) }),
      ),
      ...(config.destinations as readonly (LaneConfig & { type: string })[]).map((d) =>
        Object.freeze({ ...d, jobQueue: jobQueue(queueName(d.id, 'destination')) }),
      ),
    ]);
    lists.set(config, list);
  }
  return list;
}
