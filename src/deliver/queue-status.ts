import { Queue } from 'bullmq';
import {
  keySlot,
  producerConnection,
  redisSettings,
  watchRedisErrors,
  type RedisClient,
  type RedisSettings,
} from '../queue/redis.js';
import {
  queuePlacement,
  readRedisStatus,
  type QueuePlacement,
  type RedisStatus,
} from '../queue/redis-status.js';
import type { BridgeMetrics } from '../admin/metrics.js';
import { destinationsOf } from '../config/destinations.js';
import { LogThrottle } from '../lifecycle/log-throttle.js';
import type { Logger } from '../lifecycle/logger.js';
import type { BridgeConfig } from '../config/schema.js';
import { eventsOf, type DeliveryJobData } from '../queue/job.js';

export interface DestinationQueueCounts {
  readonly destination: string;
  readonly waiting: number;
  readonly active: number;
  readonly delayed: number;
  /** The dead-letter queue. */
  readonly failed: number;
  /** Age of the oldest waiting event (since the bridge received it); 0 when nothing waits. */
  readonly oldestWaitingSeconds: number;
}

const STATES = ['waiting', 'active', 'delayed', 'failed'] as const;

/**
 * Per-destination queue counts for `/status` and `imkit_bridge_queue_jobs`. Needs no workers, so an
 * ingest-only process can report too. Commands fail fast while Redis is down instead of queueing.
 */
export class QueueStatusReader {
  private readonly connection: RedisClient;
  private readonly queues: ReadonlyMap<string, Queue<DeliveryJobData>>;
  /** Why the connection is down (`connect ECONNREFUSED …`, `WRONGPASS …`), while it is. */
  readonly connectionError: () => string | undefined;
  private closed = false;
  private readonly settings: RedisSettings;

  /** With `logger`, each Redis problem is logged (explained, once per 5 s per cause) and its end too. */
  constructor(private readonly options: { config: BridgeConfig; metrics?: BridgeMetrics; logger?: Logger }) {
    const { config } = options;
    const settings = redisSettings(config.redis);
    this.settings = settings;
    this.connection = producerConnection(settings, 'imkit-bridge-status');
    const bySlot = new Map(destinationsOf(config).map((d) => [keySlot(d.jobQueue), `destination ${d.id}`]));
    const log = options.logger?.child({ stage: 'redis' });
    const throttle = new LogThrottle();
    this.connectionError = watchRedisErrors(this.connection, settings, {
      slotOwner: (slot) => bySlot.get(slot),
      onProblem: (reason) => {
        if (!log) return;
        if (reason === undefined) log.info({ redis: settings.endpoint() }, 'redis reachable again');
        else
          throttle.log(reason, (repeats) =>
            log.warn({ redis: settings.endpoint(), reason, ...repeats }, `redis: ${reason}`),
          );
      },
    });
    this.queues = new Map(
      destinationsOf(config).map((d) => {
        const queue = new Queue<DeliveryJobData>(d.jobQueue, {
          connection: this.connection,
          prefix: config.redis.prefix,
        });
        // Connection trouble reaches the caller as a rejected read(); the event itself adds nothing.
        queue.on('error', () => {});
        return [d.id, queue] as const;
      }),
    );
  }

  async read(): Promise<DestinationQueueCounts[]> {
    return Promise.all(
      [...this.queues].map(async ([destination, queue]) => {
        const counts = await queue.getJobCounts(...STATES);
        const waiting = counts.waiting ?? 0;
        return {
          destination,
          waiting,
          active: counts.active ?? 0,
          delayed: counts.delayed ?? 0,
          failed: counts.failed ?? 0,
          oldestWaitingSeconds: waiting > 0 ? await oldestWaitingAge(queue) : 0,
        };
      }),
    );
  }

  /** `/status.redis`; `reachable`: whether the last read() succeeded. */
  redis(reachable: boolean): Promise<RedisStatus> {
    return readRedisStatus(this.connection, this.settings, reachable, this.connectionError());
  }

  /** Cluster: the slot and node of a destination's queue; undefined on one server or Sentinel. */
  placement(jobQueue: string): QueuePlacement | undefined {
    return queuePlacement(this.connection, jobQueue);
  }

  /** Reads the counts and sets `imkit_bridge_queue_jobs{destination,state}`; the admin server calls it on scrape. */
  async refreshMetrics(): Promise<DestinationQueueCounts[]> {
    const all = await this.read();
    const gauge = this.options.metrics?.queueJobs;
    for (const counts of all) {
      for (const state of STATES) gauge?.set({ destination: counts.destination, state }, counts[state]);
      this.options.metrics?.oldestWaiting.set(
        { destination: counts.destination },
        counts.oldestWaitingSeconds,
      );
    }
    return all;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
    this.connection.disconnect();
  }
}

/**
 * A backlog that does not move is what an operator must see (workers down, breaker stuck): the
 * waiting list is FIFO, so its oldest job is one ranged read.
 */
async function oldestWaitingAge(queue: Queue<DeliveryJobData>): Promise<number> {
  const [oldest] = await queue.getJobs(['wait'], 0, 0, true);
  if (!oldest) return 0;
  const since = (oldest.data ? eventsOf(oldest.data)[0]?.receivedAt : undefined) ?? oldest.timestamp;
  return Math.max(0, (Date.now() - since) / 1000);
}
