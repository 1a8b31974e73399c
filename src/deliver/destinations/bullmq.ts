import type { Queue } from 'bullmq';
import { z } from 'zod';
import type { Logger } from '../../lifecycle/logger.js';
import type { DeliveryEvent } from '../../queue/job.js';
import { withDeadline } from '../deadline.js';
import type {
  BridgeKeyspace,
  CommonDestinationConfig,
  Destination,
  DestinationDeps,
  DestinationKind,
  SendOutcome,
} from '../destination.js';
import { RedisTarget, sharesBridgeKeyspace, targetDescription, targetRedisUrl } from './redis-target.js';

const options = z.strictObject({
  url: targetRedisUrl,
  // BullMQ refuses a queue name with ":" (its key separator).
  queue: z
    .string()
    .min(1)
    .regex(/^[^:]+$/, 'must not contain ":"'),
  prefix: z.string().min(1).default('bull'),
});

type BullmqOptions = z.output<typeof options>;

/**
 * A BullMQ queue on the bridge's own Redis must not use the bridge's key prefix: its keys
 * (`<prefix>:<queue>:<job id>`, `…:id`, `…:wait`) would mix with the bridge's queues, claims and
 * markers under that prefix. For the config's cross-field check; `path` is relative to the
 * destination's entry.
 */
export function bullmqKeyspaceProblem(
  config: BullmqOptions,
  bridge: BridgeKeyspace,
): { path: string[]; message: string } | undefined {
  if (!sharesBridgeKeyspace(config.url, bridge)) return undefined;
  if (config.prefix === bridge.prefix) {
    return {
      path: ['prefix'],
      message: `must differ from redis.prefix ("${bridge.prefix}") on the bridge's own Redis`,
    };
  }
  // BullMQ's scripts touch several keys of a queue at once, which a cluster accepts only within one slot.
  if (bridge.cluster && !/\{[^}]+\}/.test(config.prefix) && !/\{[^}]+\}/.test(config.queue)) {
    return {
      path: ['prefix'],
      message: `needs a hash tag on the bridge's Redis Cluster, e.g. "{${config.prefix}}", so the queue's keys share a slot`,
    };
  }
  return undefined;
}

/**
 * The job an event becomes: named after the type, the body parsed, the event id as job id. With
 * tracing on, the attempt's W3C Trace Context goes where BullMQ's own telemetry carries a producer's
 * context (`opts.telemetry.metadata`, JSON of the propagation headers), so a worker with BullMQ
 * telemetry on continues the trace; the data stays the body.
 */
export function bullmqJob(event: DeliveryEvent): {
  name: string;
  data: unknown;
  opts: { jobId: string; telemetry?: { metadata: string } };
} {
  const opts = { jobId: event.id };
  if (event.traceparent === undefined) return { name: event.type, data: JSON.parse(event.body), opts };
  const propagation = {
    traceparent: event.traceparent,
    ...(event.tracestate !== undefined ? { tracestate: event.tracestate } : {}),
  };
  const telemetry = { metadata: JSON.stringify(propagation) };
  return { name: event.type, data: JSON.parse(event.body), opts: { ...opts, telemetry } };
}

class BullmqDestination implements Destination {
  readonly type = 'bullmq';
  readonly id: string;
  private readonly log: Logger;
  private readonly target: RedisTarget;
  private queue: Promise<Queue> | undefined;

  constructor(
    private readonly config: BullmqOptions & CommonDestinationConfig,
    deps: DestinationDeps,
  ) {
    this.id = config.id;
    this.log = deps.logger;
    this.target = new RedisTarget(
      config.url ?? deps.bridgeRedis,
      config.timeout,
      `imkit-bridge-${config.id}`,
      this.log,
    );
  }

  async connect(): Promise<void> {
    await this.target.connect();
  }

  async send(event: DeliveryEvent, signals: readonly AbortSignal[]): Promise<SendOutcome> {
    try {
      const result = await withDeadline(
        async (signal): Promise<SendOutcome> => {
          const unusable = await this.target.unusable(signal);
          if (unusable !== undefined) return { kind: 'retry', reason: unusable };
          const queue = await this.open();
          const job = bullmqJob(event);
          // An existing job id is left as it is and returned: a repeat adds nothing while the job is kept.
          const added = await queue.add(job.name, job.data, job.opts);
          const short = await this.target.replicated(`${this.config.prefix}:${this.config.queue}:wait`);
          if (short !== undefined) return { kind: 'retry', reason: short };
          return { kind: 'delivered', note: `job ${added.id ?? event.id}` };
        },
        this.config.timeout,
        signals,
      );
      if (result.ok) return result.value;
      if (result.why === 'aborted') return { kind: 'aborted' };
      return { kind: 'retry', reason: `timeout after ${this.config.timeout} ms` };
    } catch (err) {
      return { kind: 'retry', reason: this.target.reason(err) };
    }
  }

  async close(): Promise<void> {
    const queue = await this.queue?.catch(() => undefined);
    // The client is ours, not the queue's (BullMQ leaves a client it was given open).
    await queue?.close().catch(() => {});
    await this.target.close();
  }

  /**
   * The queue, made on first use so that neither `create` nor `config check` loads BullMQ or does
   * I/O. A queue whose set-up failed (the connection dropped during BullMQ's version check) stays
   * broken, so it is dropped and made again on the next attempt.
   */
  private open(): Promise<Queue> {
    this.queue ??= this.makeQueue().catch((err: unknown) => {
      this.queue = undefined;
      throw err;
    });
    return this.queue;
  }

  private async makeQueue(): Promise<Queue> {
    const { Queue } = await import('bullmq');
    const queue = new Queue(this.config.queue, {
      connection: this.target.client,
      prefix: this.config.prefix,
    });
    // Connection errors are the target's to report (once per outage); a listener is required anyway.
    queue.on('error', () => {});
    try {
      await queue.waitUntilReady();
    } catch (err) {
      await queue.close().catch(() => {});
      throw err;
    }
    return queue;
  }
}

export const bullmqKind: DestinationKind<'bullmq', typeof options> = {
  type: 'bullmq',
  options,
  describe: (config) => `${targetDescription(config.url)} BullMQ queue ${config.prefix}:${config.queue}`,
  create: (config, deps) => new BullmqDestination(config, deps),
  keyspaceProblem: bullmqKeyspaceProblem,
};
