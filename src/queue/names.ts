/**
 * How destination queues are named in Redis. The Helm chart's KEDA trigger and the operator's guide
 * depend on this: BullMQ keeps waiting jobs of queue Q under `<prefix>:<Q>:wait` (a list).
 */
export type QueueFamily = 'webhook' | 'destination';

/**
 * `webhook-<id>` for a `webhooks:` entry (the name before 0.2: queued jobs, dead letters and claims
 * survive an upgrade), `destination-<id>` for a `destinations:` entry. Ids are unique across both
 * lists, so the two never collide.
 */
export function queueName(id: string, family: QueueFamily = 'webhook'): string {
  return `${family}-${id}`;
}

/**
 * The BullMQ queue of a destination on Redis Cluster: its name as a hash tag (`{webhook-audit}`), so
 * every key of the queue (`<prefix>:{webhook-audit}:wait`, jobs, locks), its claims and its repeat
 * records share one slot, and different destinations land on different slots.
 */
export function clusterQueueName(name: string): string {
  return `{${name}}`;
}

export function waitListKey(
  prefix: string,
  id: string,
  family: QueueFamily = 'webhook',
  cluster = false,
): string {
  const name = queueName(id, family);
  return `${prefix}:${cluster ? clusterQueueName(name) : name}:wait`;
}

/** Raw payloads that could not be decoded, kept for `dlq list` (a Redis stream). */
export function quarantineKey(prefix: string): string {
  return `${prefix}:quarantine`;
}

/**
 * Marks an event id as landed by some replica (only for counting what catch-up recovered). On
 * Cluster (`slotOf`: the tagged queue of the first destination the event routes to, the same on
 * every replica) it lives in that queue's slot, so one script marks a flush's events per destination.
 */
export function seenKey(prefix: string, eventId: string, slotOf?: string): string {
  return slotOf === undefined ? `${prefix}:seen:${eventId}` : `${prefix}:${slotOf}:seen:${eventId}`;
}

/**
 * An account's checkpoint (src/queue/checkpoints.ts). On Cluster all of them share the `{sessions}`
 * slot, so one script advances every account's checkpoint.
 */
export function checkpointKey(prefix: string, account: string, cluster = false): string {
  return cluster ? `${prefix}:{sessions}:${account}:live-at` : `${prefix}:session:${account}:live-at`;
}

/** Which job owns delivering an event to the destination of `queue` inside `dedupWindow` (src/deliver/claims.ts). */
export function claimKey(prefix: string, queue: string, eventId: string): string {
  return `${prefix}:${queue}:claim:${eventId}`;
}

/**
 * The last occurrence of a non-chat event's content claimed for the destination of `queue`: its id
 * and receivedAt, for `dedupWindow` (src/deliver/claims.ts).
 */
export function repeatKeyName(prefix: string, queue: string, repeatKey: string): string {
  return `${prefix}:${queue}:repeat:${repeatKey}`;
}
