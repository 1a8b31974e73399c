/**
 * How webhook queues are named in Redis. The Helm chart's KEDA trigger and the operator's guide
 * depend on this: BullMQ keeps waiting jobs of queue Q under `<prefix>:<Q>:wait` (a list).
 */
export function queueName(webhookId: string): string {
  return `webhook-${webhookId}`;
}

export function waitListKey(prefix: string, webhookId: string): string {
  return `${prefix}:${queueName(webhookId)}:wait`;
}

/** Raw payloads that could not be decoded, kept for `dlq list` (a Redis stream). */
export function quarantineKey(prefix: string): string {
  return `${prefix}:quarantine`;
}

/** Marks an event id as landed by some replica (only for counting what catch-up recovered). */
export function seenKey(prefix: string, eventId: string): string {
  return `${prefix}:seen:${eventId}`;
}

/** Which job owns delivering an event to a webhook inside `dedupWindow` (src/deliver/claims.ts). */
export function claimKey(prefix: string, webhookId: string, eventId: string): string {
  return `${prefix}:${queueName(webhookId)}:claim:${eventId}`;
}

/**
 * The last occurrence of a non-chat event's content claimed for a webhook: its id and receivedAt,
 * for `dedupWindow` (src/deliver/claims.ts).
 */
export function repeatKeyName(prefix: string, webhookId: string, repeatKey: string): string {
  return `${prefix}:${queueName(webhookId)}:repeat:${repeatKey}`;
}
