import { BridgeError } from '../errors.js';

/** The webhook did not take the event this time (non-2xx, timeout, network); it will be tried again per schedule. */
export class DeliveryRetryableError extends BridgeError {
  readonly code = 'BRIDGE_ERR_DELIVERY_RETRY';

  constructor(
    message: string,
    readonly details: {
      /** HTTP status when the receiver answered; undefined for timeouts and network errors. */
      readonly status?: number;
      /** Parsed `Retry-After` in ms (429 and 503 only). */
      readonly retryAfterMs?: number;
      /** First bytes of the response body, for the operator. */
      readonly responseSnippet?: string;
    } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The webhook said 410 Gone: never try this event again; it is dead-lettered at once. */
export class DeliveryPermanentError extends BridgeError {
  readonly code = 'BRIDGE_ERR_DELIVERY_GONE';

  constructor(
    message: string,
    readonly details: { readonly status: number; readonly responseSnippet?: string },
  ) {
    super(message);
  }
}

/** The delivery was stopped because this process is shutting down; the job is handed back, not failed. */
export class DeliveryAbortedError extends BridgeError {
  readonly code = 'BRIDGE_ERR_DELIVERY_ABORTED';
}
