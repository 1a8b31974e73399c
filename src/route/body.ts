import type { RelayedEvent } from './event.js';

/**
 * The webhook request body (README "What a webhook receives"), serialised once per event and shared by every webhook
 * and every attempt, so each signature covers the same bytes.
 */
export function requestBody(event: RelayedEvent): string {
  return JSON.stringify({
    id: event.id,
    type: event.type,
    timestamp: new Date(event.receivedAt).toISOString(),
    account: event.account,
    data: event.data,
  });
}
