/**
 * Every error the bridge raises on purpose, in one place: a class per failure with a stable `code`
 * that operators and tests match on instead of message text. docs/errors.md lists the same codes
 * (test/errors.test.ts keeps the two in step). Messages never contain secrets.
 */
export const ERROR_CODES = {
  BRIDGE_ERR_USAGE: 'The command line is wrong (unknown command, bad option value). Exit 1.',
  BRIDGE_ERR_CONFIG:
    'The config file is invalid; one line per problem names the field path and never a value. Exit 1.',
  BRIDGE_ERR_CODEC_LOAD: "An account's custom codec cannot be loaded or lacks decode(). Exit 1.",
  BRIDGE_ERR_TOKEN_UNAVAILABLE:
    'No IMKIT token could be obtained (unreadable or empty tokenFile, failed issuance); the session retries.',
  BRIDGE_ERR_IMKIT_REST: 'IMKIT answered a REST call with a non-2xx status or an RC other than 0.',
  BRIDGE_ERR_IMKIT_AUTH:
    'IMKIT refused the credentials (HTTP or RC 401): a token or key is wrong or expired.',
  BRIDGE_ERR_IMKIT_UNREACHABLE: 'IMKIT did not answer a REST call in time, or the connection failed.',
  BRIDGE_ERR_RECOVERY_NOT_LANDED:
    'REST catch-up recovered messages that were dropped before reaching Redis; the recovery is tried again and the checkpoint waits.',
  BRIDGE_ERR_DELIVERY_RETRY:
    'A destination did not take an event this time (non-2xx, timeout, network, a broker down or refusing); it is retried per schedule.',
  BRIDGE_ERR_DELIVERY_GONE:
    "A destination refused an event for good (a webhook's 410 Gone, a message a broker can never take): it is dead-lettered at once.",
  BRIDGE_ERR_DESTINATION_UNREACHABLE:
    'A destination cannot reach its broker or Redis (refused, lost, authentication refused); its events wait and are retried.',
  BRIDGE_ERR_DLQ_UNKNOWN_DESTINATION:
    '`dlq --destination ID` (or its alias `--webhook ID`) names no configured destination. Exit 1.',
  BRIDGE_ERR_DLQ_UNKNOWN_QUARANTINE_ENTRY:
    '`dlq replay --quarantine --id` is not a stream id, or no quarantine entry has it. Exit 1.',
  BRIDGE_ERR_DLQ_FILTER:
    '`dlq --since`/`--until` is neither an ISO time nor a duration ago (`2h`), `--since` is not before `--until`, or a `--type` is empty. Exit 1.',
  BRIDGE_ERR_DLQ_PURGE_UNCONFIRMED:
    '`dlq purge` without `--yes`: nothing was removed; the command printed what it would remove. Exit 1.',
  BRIDGE_ERR_DLQ_REDIS_UNAVAILABLE:
    'A `dlq` command cannot use Redis; the message names the cause (ECONNREFUSED, WRONGPASS, …). Exit 2.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export abstract class BridgeError extends Error {
  abstract readonly code: ErrorCode;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A problem the operator fixes in the command line or the config file: the CLI exits 1, not 2. */
export abstract class UsageError extends BridgeError {}

export class CommandLineError extends UsageError {
  readonly code = 'BRIDGE_ERR_USAGE';
}

export class ConfigError extends UsageError {
  readonly code = 'BRIDGE_ERR_CONFIG';

  /** One `path: problem` line per problem, safe to print (never contains values). */
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

/** The codec named in the config cannot be used: a configuration problem (exit 1), not a runtime one. */
export class CodecLoadError extends UsageError {
  readonly code = 'BRIDGE_ERR_CODEC_LOAD';
}

/** No token could be obtained (unreadable or empty token file, failed issuance). Never holds the token. */
export class TokenUnavailableError extends BridgeError {
  readonly code = 'BRIDGE_ERR_TOKEN_UNAVAILABLE';
}

/** IMKIT answered with an envelope whose `RC` is not 0, or with a non-2xx status. */
export class ImkitRestError extends BridgeError {
  readonly code: ErrorCode = 'BRIDGE_ERR_IMKIT_REST';

  constructor(
    message: string,
    readonly status: number,
    readonly rc: unknown,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** IMKIT refused the credentials (HTTP 401 or RC 401): a token or key is wrong or expired. */
export class ImkitAuthError extends ImkitRestError {
  override readonly code = 'BRIDGE_ERR_IMKIT_AUTH';
}

/** No complete answer within the timeout, or the connection failed. */
export class ImkitUnreachableError extends BridgeError {
  readonly code = 'BRIDGE_ERR_IMKIT_UNREACHABLE';
}

/**
 * A destination did not take an event this time; thrown to BullMQ so the event job is tried again
 * after `delayMs` (src/deliver/outcome.ts decides it), and logged with each retry.
 */
export class DeliveryRetryableError extends BridgeError {
  readonly code = 'BRIDGE_ERR_DELIVERY_RETRY';

  constructor(
    message: string,
    readonly details: {
      /** The wait before the next try, as decided (schedule, jitter, the far end's requested wait). */
      readonly delayMs?: number;
      /** HTTP status when a webhook answered. */
      readonly status?: number;
      /** First bytes of the far end's answer, for the operator. */
      readonly response?: string;
    } = {},
  ) {
    super(message);
  }
}

/** A destination refused an event for good (a webhook's 410 Gone, a message a broker can never take). */
export class DeliveryPermanentError extends BridgeError {
  readonly code = 'BRIDGE_ERR_DELIVERY_GONE';

  constructor(
    message: string,
    readonly details: { readonly status?: number; readonly response?: string } = {},
  ) {
    super(message);
  }
}

/** Some recovered messages did not reach Redis (the buffer was full or closing): the recovery is tried again. */
export class RecoveryNotLandedError extends BridgeError {
  readonly code = 'BRIDGE_ERR_RECOVERY_NOT_LANDED';

  constructor() {
    super('recovered messages were dropped before reaching Redis');
  }
}

/**
 * A destination's connection to its broker or Redis is down. Logged once per outage; the message is
 * the client's one-line cause with every credential of the URL removed, and it carries no cause
 * (client errors can hold the AUTH arguments).
 */
export class DestinationUnreachableError extends BridgeError {
  readonly code = 'BRIDGE_ERR_DESTINATION_UNREACHABLE';
}

export class UnknownDestinationError extends UsageError {
  readonly code = 'BRIDGE_ERR_DLQ_UNKNOWN_DESTINATION';
}

export class UnknownQuarantineEntryError extends UsageError {
  readonly code = 'BRIDGE_ERR_DLQ_UNKNOWN_QUARANTINE_ENTRY';
}

/** A dead-letter filter (`--since`, `--until`, `--type`) that selects nothing sensible. */
export class InvalidFilterError extends UsageError {
  readonly code = 'BRIDGE_ERR_DLQ_FILTER';
}

/** `dlq purge` was not confirmed with `--yes`: it only showed what it would remove. */
export class PurgeNotConfirmedError extends UsageError {
  readonly code = 'BRIDGE_ERR_DLQ_PURGE_UNCONFIRMED';
}

export class RedisUnavailableError extends BridgeError {
  readonly code = 'BRIDGE_ERR_DLQ_REDIS_UNAVAILABLE';
}
