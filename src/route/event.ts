/** An event the bridge relays: decoded, identified and stamped with when this process received it. */
export interface RelayedEvent {
  /** `evt_…`, deterministic from what was received (see event-id.ts). */
  readonly id: string;
  /** Set for events identified by their content: the same for every repeat of it (see event-id.ts). */
  readonly repeatKey?: string;
  /** The IMKIT event name (`chat message`, `lastRead`, …) or a bridge lifecycle type (`bridge.gap`). */
  readonly type: string;
  /** The configured account id whose session received it. */
  readonly account: string;
  /** Epoch milliseconds when the bridge received it. */
  readonly receivedAt: number;
  /** The decoded payload, unchanged. */
  readonly data: unknown;
}

/** Lifecycle events are never relayed by `"*"`: a webhook must name them or `bridge.*`. */
export const BRIDGE_EVENT_PREFIX = 'bridge.';
