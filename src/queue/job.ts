/** What one BullMQ job carries: one event for one webhook. */
export interface DeliveryJobData {
  readonly id: string;
  readonly type: string;
  readonly account: string;
  /** Epoch ms the event was received; the source of `imkit_bridge_event_latency_seconds`. */
  readonly receivedAt: number;
  /** The exact request body, serialised once at ingest so every attempt signs the same bytes. */
  readonly body: string;
}
