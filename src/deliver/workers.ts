import type { DirectDelivery } from '../queue/enqueuer.js';
import type { BridgeMetrics } from '../admin/metrics.js';
import { destinationsOf } from '../config/destinations.js';
import type { BridgeConfig } from '../config/schema.js';
import { within } from '../lifecycle/deadline.js';
import type { Logger } from '../lifecycle/logger.js';
import type { EventTracer } from '../lifecycle/tracing.js';
import { DestinationLane, type DestinationDeliveryStatus } from './lane.js';
import { createDestination } from './registry.js';
import { redisSettings } from '../queue/redis.js';

export type { DestinationDeliveryStatus } from './lane.js';

export interface DeliveryWorkersOptions {
  readonly config: BridgeConfig;
  readonly logger: Logger;
  readonly metrics: BridgeMetrics;
  /** With tracing on: a span per delivery attempt. */
  readonly tracer?: EventTracer;
  /** How often each worker is checked for having stopped or stalled (ms). */
  readonly watchdogIntervalMs?: number;
}

/** One lane per destination, each with its own BullMQ worker, Redis connection, client and breaker. */
export class DeliveryWorkers {
  private readonly lanes: DestinationLane[];
  private watchdog: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private readonly watchdogIntervalMs: number;

  constructor(private readonly options: DeliveryWorkersOptions) {
    const { config, logger, metrics, tracer } = options;
    this.watchdogIntervalMs = options.watchdogIntervalMs ?? 5000;
    this.lanes = destinationsOf(config).map((destination) => {
      const laneLogger = logger.child({ destination: destination.id, type: destination.type });
      const deps = {
        logger: laneLogger,
        bridgeRedis: redisSettings(config.redis),
        dedupWindowMs: config.dedupWindow,
      };
      return new DestinationLane(
        createDestination(destination, deps),
        destination,
        config,
        laneLogger,
        metrics,
        tracer,
      );
    });
  }

  start(): void {
    if (this.closing || this.watchdog) return;
    for (const lane of this.lanes) lane.start();
    this.watchdog = setInterval(() => {
      for (const lane of this.lanes) void lane.check(this.watchdogIntervalMs);
    }, this.watchdogIntervalMs);
    this.watchdog.unref();
  }

  status(): DestinationDeliveryStatus[] {
    return this.lanes.map((lane) => lane.status());
  }

  /** The lane that sends `destinationId`'s jobs from this process, for ingest in the same process. */
  direct(destinationId: string): DirectDelivery | undefined {
    return this.lanes.find((lane) => lane.destinationId === destinationId);
  }

  /**
   * Stops taking jobs and lets in-flight deliveries finish for up to `timeoutMs`; whatever is still
   * running then is aborted and moved back to waiting so the next start picks it up at once.
   */
  close(timeoutMs: number = this.options.config.shutdownTimeout): Promise<void> {
    this.closing ??= this.shutdown(timeoutMs);
    return this.closing;
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    if (this.watchdog) clearInterval(this.watchdog);
    // Part of the bound is kept for handing unfinished jobs back (one Redis call each).
    const reserve = Math.min(2000, Math.floor(timeoutMs / 4));
    const stopped = Promise.all(this.lanes.map((lane) => lane.stopWorker()));
    if (!(await within(stopped, timeoutMs - reserve))) {
      for (const lane of this.lanes) lane.handBack();
      if (!(await within(stopped, reserve))) {
        this.options.logger.error(
          { timeoutMs },
          'deliveries did not stop in time; unfinished jobs return to waiting after their lock expires',
        );
      }
    }
    await Promise.all(this.lanes.map((lane) => lane.release()));
  }
}
