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

export function waitListKey(prefix: string, id: string, family: QueueFamily = 'webhook'): string {
  return `${prefix}:${queueName(id, family)}:wait`;
}

/** Raw payloads that could not be decoded, kept for `dlq list` (a Redis stream). */
export function quarantineKey(prefix: string): string {
  return `${prefix}:quarantine`;
}

/** Marks an event id as landed by some replica (only for counting what catch-up recovered). */
export function seenKey(prefix: string, eventId: string): string {
  return `${prefix}:seen:${eventId}`;
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
