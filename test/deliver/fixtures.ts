import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { BridgeMetrics } from '../../src/admin/metrics.js';
import { destinationsOf } from '../../src/config/destinations.js';
import { DeliveryWorkers } from '../../src/deliver/workers.js';
import { Enqueuer, type DirectDelivery } from '../../src/queue/enqueuer.js';
import { configSchema, type BridgeConfig } from '../../src/config/schema.js';
import { batchJob, type DeliveryEvent, type DeliveryJobData } from '../../src/queue/job.js';
import { testRedis, waitFor } from '../support/redis.js';
import { redisSettings } from '../../src/queue/redis.js';

export const SECRET_A = `whsec_${randomBytes(32).toString('base64')}`;
export const SECRET_B = `whsec_${randomBytes(32).toString('base64')}`;

/** A validated config (defaults applied) with test-sized durations. */
export function testConfig(
  redis: { url: string; prefix: string },
  webhooks: Record<string, unknown>[],
  extra: Record<string, unknown> = {},
): BridgeConfig {
  return configSchema.parse({
    redis: { url: redis.url, prefix: redis.prefix },
    imkit: { url: 'http://127.0.0.1:1' },
    accounts: [{ id: 'audit-bot', token: 't' }],
    webhooks: webhooks.map((w) => ({
      timeout: '2s',
      concurrency: 4,
      retry: { schedule: ['100ms', '200ms'], jitter: 0 },
      ...w,
    })),
    shutdownTimeout: '3s',
    ...extra,
  }) as BridgeConfig;
}

export function silentDeps(): { logger: pino.Logger; metrics: BridgeMetrics } {
  return { logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }), metrics: new BridgeMetrics() };
}

export function eventId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  return `evt_${Array.from(randomBytes(26), (b) => alphabet[b % 32]).join('')}`;
}

/**
 * Stands in for the ingest Enqueuer: adds one event as the Enqueuer lands it, a batch job built by
 * the same `batchJob` (job options included), here holding that one event.
 */
export class TestProducer {
  private readonly queues = new Map<string, Queue<DeliveryJobData>>();

  constructor(private readonly config: BridgeConfig) {}

  async add(
    destinationId: string,
    overrides: Partial<DeliveryEvent> = {},
  ): Promise<DeliveryEvent & { jobId: string }> {
    const [added] = await this.addBatch(destinationId, [overrides]);
    return added!;
  }

  /** Several events in one batch job, in order, as one ingest flush lands them. */
  async addBatch(
    destinationId: string,
    events: readonly Partial<DeliveryEvent>[],
  ): Promise<(DeliveryEvent & { jobId: string })[]> {
    const complete = events.map((overrides): DeliveryEvent => {
      const id = overrides.id ?? eventId();
      const receivedAt = overrides.receivedAt ?? Date.now();
      const type = overrides.type ?? 'chat message';
      const account = overrides.account ?? 'audit-bot';
      const body =
        overrides.body ??
        JSON.stringify({
          id,
          type,
          timestamp: new Date(receivedAt).toISOString(),
          account,
          data: { text: 'héllo ✓', n: 1 },
        });
      const repeatKey = overrides.repeatKey === undefined ? {} : { repeatKey: overrides.repeatKey };
      return { id, ...repeatKey, type, account, receivedAt, body };
    });
    const { name, data, opts } = batchJob(`b-test-${randomBytes(6).toString('hex')}`, complete);
    await this.queue(destinationId).add(name, data, opts);
    return complete.map((event) => ({ ...event, jobId: opts.jobId }));
  }

  /** The queue of the webhook or destination `destinationId`. */
  queue(destinationId: string): Queue<DeliveryJobData> {
    let queue = this.queues.get(destinationId);
    if (!queue) {
      const destination = destinationsOf(this.config).find((d) => d.id === destinationId);
      if (!destination) throw new Error(`no webhook or destination ${destinationId}`);
      queue = new Queue<DeliveryJobData>(destination.jobQueue, {
        connection: { url: this.config.redis.url, maxRetriesPerRequest: null },
        prefix: this.config.redis.prefix,
      });
      queue.on('error', () => {});
      this.queues.set(destinationId, queue);
    }
    return queue;
  }

  /** Until no job of the webhook is waiting, active, delayed or failed: nothing stuck or dead-lettered. */
  async waitEmpty(destinationId: string, options: { what?: string; timeoutMs?: number } = {}): Promise<void> {
    await waitFor(
      async () => {
        const counts = await this.queue(destinationId).getJobCounts('waiting', 'active', 'delayed', 'failed');
        return Object.values(counts).every((c) => c === 0);
      },
      { what: `empty queue ${destinationId}`, ...options },
    );
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}

/**
 * A suite-wide Redis (from `testRedis`) and per-test cleanups, registered as vitest hooks. Each call
 * of `target()` gives a fresh key prefix so tests in one suite never see each other's queues.
 */
export function redisSuite(): {
  readonly url: string;
  target(): { url: string; prefix: string };
  defer(cleanup: () => Promise<void>): void;
} {
  let redis: Awaited<ReturnType<typeof testRedis>> | undefined;
  let n = 0;
  const cleanups: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    redis = await testRedis();
  });
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });
  afterAll(async () => {
    await redis?.close();
  });
  return {
    get url() {
      return redis!.url;
    },
    target: () => ({ url: redis!.url, prefix: `${redis!.prefix}-${++n}` }),
    defer: (cleanup) => void cleanups.push(cleanup),
  };
}

/** Delivery workers and a producer for `config`, both closed after the test. */
export function startDelivery(
  config: BridgeConfig,
  suite: ReturnType<typeof redisSuite>,
): { workers: DeliveryWorkers; producer: TestProducer; metrics: BridgeMetrics } {
  const deps = silentDeps();
  const workers = new DeliveryWorkers({ config, ...deps });
  const producer = new TestProducer(config);
  suite.defer(async () => {
    await workers.close(1000);
    await producer.close();
  });
  workers.start();
  return { workers, producer, metrics: deps.metrics };
}

/**
 * Ingest's Enqueuer and the delivery workers in one process, wired as `--role all` wires them: what
 * ingest lands, its own lane sends. `direct` can wrap the lane (to count its slots); both are closed
 * after the test.
 */
export function startAllInOne(
  config: BridgeConfig,
  suite: ReturnType<typeof redisSuite>,
  options: { direct?: (lane: DirectDelivery) => DirectDelivery } = {},
): { enqueuer: Enqueuer; workers: DeliveryWorkers; metrics: BridgeMetrics } {
  const { logger, metrics } = silentDeps();
  const workers = new DeliveryWorkers({ config, logger, metrics });
  const enqueuer = new Enqueuer({
    redis: redisSettings(config.redis),
    prefix: config.redis.prefix,
    destinations: destinationsOf(config),
    dedupWindowMs: config.dedupWindow,
    bufferEvents: 1000,
    logger,
    metrics,
    directDelivery: (id) => {
      const lane = workers.direct(id);
      return lane && (options.direct ? options.direct(lane) : lane);
    },
  });
  suite.defer(async () => {
    await enqueuer.close();
    await workers.close(1000);
  });
  workers.start();
  return { enqueuer, workers, metrics };
}
