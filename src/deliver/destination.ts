import type { z } from 'zod';
import type { Logger } from '../lifecycle/logger.js';
import type { DeliveryEvent } from '../queue/job.js';
import type { RedisSettings } from '../queue/redis.js';

/**
 * What one attempt to hand one event to a destination came to. A destination only reports; what an
 * outcome leads to (done, another try, a dead letter, the breaker) is decided in one place by the lane.
 */
export type SendOutcome =
  /**
   * The far end acknowledged the event (2xx, a PubAck, a publisher confirm, a stream entry, a job).
   * `duplicate`: a destination that `deduplicates` already held this event id and added nothing.
   */
  | { readonly kind: 'delivered'; readonly note?: string; readonly duplicate?: true }
  /** Not taken this time; tried again per the schedule. `waitMs`: the far end asked for this wait. */
  | {
      readonly kind: 'retry';
      readonly reason: string;
      readonly waitMs?: number;
      readonly status?: number;
      readonly response?: string;
    }
  /** Can never be taken as it is (a webhook's 410, a message over the broker's size limit): dead-lettered now. */
  | {
      readonly kind: 'permanent';
      readonly reason: string;
      readonly status?: number;
      readonly response?: string;
    }
  /** Cut off by shutdown or a job's abort: handed back, no attempt used. */
  | { readonly kind: 'aborted' };

/**
 * One configured destination in one process. `send` never throws and never puts a credential in a
 * reason; it bounds itself by the destination's `timeout` and returns `aborted` once any of
 * `signals` fires.
 */
export interface Destination {
  readonly id: string;
  readonly type: string;
  /**
   * The far end itself keeps a second copy of an event id out for `dedupWindow`, atomically with
   * taking the first (redis-stream's marker). Delivery then skips its own claim for events that their
   * id alone identifies: one Redis script and one key per event fewer (docs/architecture.md).
   */
  readonly deduplicates?: true;
  /** Starts connecting; `send` (re)connects by itself when needed, so callers need not await this. */
  connect(): Promise<void>;
  send(event: DeliveryEvent, signals: readonly AbortSignal[]): Promise<SendOutcome>;
  /**
   * Optional: several events in one exchange with the far end (a batch job's events), one outcome per
   * event in the same order, with `send`'s guarantees (never throws, bounded by `timeout`, `aborted`
   * once a signal fires). An event repeated in `events` is taken once, like two `send`s of it.
   */
  sendMany?(events: readonly DeliveryEvent[], signals: readonly AbortSignal[]): Promise<SendOutcome[]>;
  /** Called once nothing is in flight. */
  close(): Promise<void>;
}

/** Where the bridge keeps its own keys, as a destination that writes to Redis sees it. */
export interface BridgeKeyspace {
  /** One server's URL; absent on sentinel and cluster, where only a destination without `url` shares it. */
  readonly url?: string;
  /** The bridge's Redis is a Cluster: multi-key writes there need a hash tag. */
  readonly cluster?: boolean;
  readonly prefix: string;
}

export interface DestinationDeps {
  /** Already bound to the destination (its id and type). */
  readonly logger: Logger;
  /** The bridge's own Redis: the default target of `redis-stream` and `bullmq` destinations. */
  readonly bridgeRedis: RedisSettings;
  readonly dedupWindowMs: number;
}

/** Keys every destination has, whatever its type, as a kind's `create` sees them (durations in ms). */
export interface CommonDestinationConfig {
  readonly id: string;
  readonly timeout: number;
  readonly concurrency: number;
}

/**
 * A kind of destination: its own config keys (schema.ts adds the common ones), a description safe to
 * show (`/status`, `config check`: never a credential), and a factory that does no I/O. A new kind is
 * one file exporting one of these, plus its entry in the registry.
 */
export interface DestinationKind<Type extends string, Options extends z.ZodObject> {
  readonly type: Type;
  readonly options: Options;
  describe(options: z.output<Options>): string;
  create(config: z.output<Options> & CommonDestinationConfig, deps: DestinationDeps): Destination;
  /**
   * For kinds that write to a Redis, which may be the bridge's own: why these options would mix the
   * destination's keys with the bridge's (`path` relative to the entry), or undefined.
   */
  keyspaceProblem?(
    options: z.output<Options>,
    bridge: BridgeKeyspace,
  ): { path: string[]; message: string } | undefined;
}
