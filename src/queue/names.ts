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
