import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { createWorkerConnection } from '../queue/redis.js';
import type { BridgeMetrics } from '../admin/metrics.js';
import type { BridgeConfig, WebhookConfig } from '../config/schema.js';
import type { Logger } from '../lifecycle/logger.js';
import type { DeliveryJobData } from '../queue/job.js';
import { queueName } from '../queue/names.js';
import { retryDelay } from './backoff.js';
import { CircuitBreaker, type BreakerState } from './breaker.js';
import { DeliveryAbortedError, DeliveryPermanentError, DeliveryRetryableError } from './errors.js';
import { WebhookSender } from './http.js';
import { OrphanSweeper } from './orphans.js';

export interface DeliveryWorkersOptions {
  readonly config: BridgeConfig;
  readonly logger: Logger;
  readonly metrics: BridgeMetrics;
  /** How often each worker is checked for having stopped or stalled (ms). */
  readonly watchdogIntervalMs?: number;
}

export interface WebhookDeliveryStatus {
  readonly webhook: string;
  readonly breaker: BreakerState;
  readonly running: boolean;
  readonly inFlight: number;
  readonly lastError?: { readonly at: string; readonly message: string };
}

/**
 * Without a limiter BullMQ ignores the queue's rate-limit key, and the breaker pauses a webhook through
 * that key; so every worker gets a limiter, one no real webhook reaches unless configured.
 */
const UNLIMITED = { max: 2 ** 31, duration: 1000 } as const;
/**
 * A job whose worker died mid-delivery is "stalled"; past this many stalls BullMQ fails it. Crashes
 * are not the webhook's fault, so allow several before an event can end up dead-lettered that way.
 */
const MAX_STALLED_COUNT = 10;
/**
 * A live worker renews its job locks every half lock; a worker killed with SIGKILL does not, so its
 * in-flight jobs go back to waiting within lock + stall-check interval (BullMQ's defaults would make
 * that up to a minute). A live process blocked longer than the lock would see a job redelivered:
 * a duplicate with the same webhook-id, never a loss.
 */
const LOCK_DURATION_MS = 10_000;
const STALLED_INTERVAL_MS = 5_000;

/** One BullMQ worker per webhook queue, each with its own Redis connection, HTTP pool and breaker. */
export class DeliveryWorkers {
  private readonly lanes: WebhookLane[];
  private watchdog: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private readonly watchdogIntervalMs: number;

  constructor(private readonly options: DeliveryWorkersOptions) {
    this.watchdogIntervalMs = options.watchdogIntervalMs ?? 5000;
    this.lanes = options.config.webhooks.map(
      (webhook) =>
        new WebhookLane(
          webhook,
          options.config,
          options.logger.child({ webhook: webhook.id }),
          options.metrics,
        ),
    );
  }

  start(): void {
    if (this.closing || this.watchdog) return;
    for (const lane of this.lanes) lane.start();
    this.watchdog = setInterval(() => {
      for (const lane of this.lanes) void lane.check(this.watchdogIntervalMs);
    }, this.watchdogIntervalMs);
    this.watchdog.unref();
  }

  status(): WebhookDeliveryStatus[] {
    return this.lanes.map((lane) => lane.status());
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

class WebhookLane {
  private readonly connection: Redis;
  private readonly queue: Queue<DeliveryJobData>;
  private readonly sender: WebhookSender;
  private readonly breaker: CircuitBreaker;
  private readonly shutdownController = new AbortController();
  private worker: Worker<DeliveryJobData> | undefined;
  private readonly inFlightTokens = new Set<string>();
  private readonly workerIds = new Set<string>();
  private readonly orphans: OrphanSweeper;
  private lastError: { at: string; message: string } | undefined;
  /** Last time the worker took a job or found the queue empty; the stall check compares against it. */
  private lastProgress = Date.now();
  private stopping = false;
  private recovering = false;

  constructor(
    private readonly webhook: WebhookConfig,
    private readonly config: BridgeConfig,
    private readonly logger: Logger,
    private readonly metrics: BridgeMetrics,
  ) {
    this.connection = createWorkerConnection(config.redis.url, {
      name: `imkit-bridge-deliver-${webhook.id}`,
    });
    this.connection.on('error', (err) => this.logger.debug({ err: err.message }, 'redis connection error'));
    this.queue = new Queue(queueName(webhook.id), {
      connection: this.connection,
      prefix: config.redis.prefix,
    });
    this.queue.on('error', (err) => this.logger.debug({ err: err.message }, 'queue error'));
    this.sender = new WebhookSender(webhook);
    this.breaker = new CircuitBreaker(
      { failures: webhook.breaker.failures, cooldownMs: webhook.breaker.cooldown },
      (state) => {
        this.metrics.breakerOpen.set({ webhook: webhook.id }, state === 'closed' ? 0 : 1);
        this.logger.warn({ breaker: state }, `circuit breaker ${state}`);
      },
    );
    this.metrics.breakerOpen.set({ webhook: webhook.id }, 0);
    this.orphans = new OrphanSweeper(
      this.connection,
      this.queue,
      () => this.workerIds,
      () => this.inFlightTokens,
    );
  }

  start(): void {
    if (this.worker || this.stopping) return;
    this.worker = this.createWorker();
  }

  status(): WebhookDeliveryStatus {
    return {
      webhook: this.webhook.id,
      breaker: this.breaker.state,
      running: this.worker?.isRunning() ?? false,
      inFlight: this.inFlightTokens.size,
      ...(this.lastError ? { lastError: { ...this.lastError } } : {}),
    };
  }

  /**
   * Watchdog: BullMQ workers have been seen to stop fetching after a Redis reconnect (the blocking
   * connection never resumes). A worker that is not running, or that sits idle while its queue has
   * waiting jobs it is allowed to take, is replaced.
   */
  async check(intervalMs: number): Promise<void> {
    const worker = this.worker;
    if (!worker || this.stopping || this.recovering) return;
    this.recovering = true;
    try {
      const recovered = await this.orphans.sweep();
      if (recovered.length > 0)
        this.logger.warn({ jobIds: recovered }, 'orphaned jobs moved back to waiting');
      let reason: string | undefined;
      if (!worker.isRunning()) {
        reason = 'worker stopped';
      } else if (this.inFlightTokens.size === 0 && Date.now() - this.lastProgress > 2 * intervalMs) {
        if (this.breaker.state !== 'closed') return;
        const [waiting, limitTtl] = await Promise.all([
          this.queue.getWaitingCount(),
          this.queue.getRateLimitTtl(this.webhook.rateLimit?.max ?? UNLIMITED.max),
        ]);
        if (waiting > 0 && limitTtl <= 0 && !this.stopping) reason = `idle with ${waiting} waiting jobs`;
        else this.lastProgress = Date.now();
      }
      if (!reason) return;
      this.logger.warn({ reason }, 'restarting delivery worker');
      this.worker = this.createWorker();
      this.lastProgress = Date.now();
      // Nothing is in flight on the old worker, so forcing its close loses no delivery.
      await worker
        .close(true)
        .catch((err: unknown) => this.logger.debug({ err: String(err) }, 'old worker close'));
    } catch (err) {
      this.logger.debug({ err: err instanceof Error ? err.message : String(err) }, 'watchdog check failed');
    } finally {
      this.recovering = false;
    }
  }

  async stopWorker(): Promise<void> {
    this.stopping = true;
    await this.worker?.close();
  }

  /** Aborts in-flight requests; each processor then returns its job to waiting (see `process`). */
  handBack(): void {
    this.shutdownController.abort();
  }

  async release(): Promise<void> {
    await Promise.allSettled([this.queue.close(), this.sender.close()]);
    this.connection.disconnect();
  }

  private createWorker(): Worker<DeliveryJobData> {
    const policy = { schedule: this.webhook.retry.schedule, jitter: this.webhook.retry.jitter };
    const worker = new Worker<DeliveryJobData>(
      queueName(this.webhook.id),
      (job, token, signal) => this.process(job, token, signal),
      {
        connection: this.connection,
        prefix: this.config.redis.prefix,
        concurrency: this.webhook.concurrency,
        limiter: this.webhook.rateLimit
          ? { max: this.webhook.rateLimit.max, duration: this.webhook.rateLimit.duration }
          : UNLIMITED,
        maxStalledCount: MAX_STALLED_COUNT,
        lockDuration: LOCK_DURATION_MS,
        stalledInterval: STALLED_INTERVAL_MS,
        // BullMQ's default waits 15 s before retrying a Redis call that failed (e.g. completing a job
        // across a Redis restart); a short retry keeps deliveries flowing right after Redis returns.
        runRetryDelay: 1000,
        autorun: false,
        settings: { backoffStrategy: (attemptsMade, _type, err) => retryDelay(policy, attemptsMade, err) },
      },
    );
    this.workerIds.add(worker.id);
    worker.on('error', (err) => this.logger.warn({ err: err.message }, 'delivery worker error'));
    worker.on('active', () => (this.lastProgress = Date.now()));
    worker.on('drained', () => (this.lastProgress = Date.now()));
    worker.run().catch((err: unknown) => this.logger.error({ err: String(err) }, 'delivery worker stopped'));
    return worker;
  }

  private async process(
    job: Job<DeliveryJobData>,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const admission = this.breaker.admit();
    if (!admission.allowed) {
      // Back to waiting without using an attempt; the queue-wide limit keeps every replica off the webhook.
      await this.pauseQueue(admission.waitMs);
      throw Worker.RateLimitError();
    }
    const { probe } = admission;
    const webhook = this.webhook.id;
    const tracked = token ?? '';
    this.inFlightTokens.add(tracked);
    const started = performance.now();
    try {
      await this.sender.send(job.data, signal, this.shutdownController.signal);
      this.metrics.deliveryDuration.observe({ webhook }, (performance.now() - started) / 1000);
      this.metrics.deliveries.inc({ webhook, outcome: 'delivered' });
      this.metrics.eventLatency.observe({ webhook }, Math.max(0, Date.now() - job.data.receivedAt) / 1000);
      this.breaker.succeeded(probe);
      // The event is delivered: failing to lift the pause early must not fail the job.
      if (probe) {
        await this.queue
          .removeRateLimitKey()
          .catch((e: unknown) => this.logger.debug({ err: String(e) }, 'could not lift the breaker pause'));
      }
    } catch (err) {
      if (err instanceof DeliveryAbortedError) {
        this.breaker.released(probe);
        this.logger.info({ jobId: job.id }, 'delivery interrupted by shutdown; job handed back');
        throw Worker.RateLimitError();
      }
      this.metrics.deliveryDuration.observe({ webhook }, (performance.now() - started) / 1000);
      const message = err instanceof Error ? err.message : String(err);
      this.lastError = { at: new Date().toISOString(), message };
      const snippet =
        err instanceof DeliveryRetryableError || err instanceof DeliveryPermanentError
          ? err.details.responseSnippet
          : undefined;
      if (err instanceof DeliveryPermanentError) {
        // The receiver answered, so it is up: a 410 does not count against the breaker.
        this.breaker.succeeded(probe);
        this.metrics.deliveries.inc({ webhook, outcome: 'dead' });
        this.logger.warn(
          { eventId: job.data.id, jobId: job.id, status: 410, response: snippet },
          'dead-lettered',
        );
        throw new UnrecoverableError(message);
      }
      const exhausted = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      this.metrics.deliveries.inc({ webhook, outcome: exhausted ? 'dead' : 'retry' });
      this.logger.warn(
        {
          eventId: job.data.id,
          jobId: job.id,
          attempt: job.attemptsMade + 1,
          err: message,
          response: snippet,
        },
        exhausted ? 'delivery failed; schedule exhausted, dead-lettered' : 'delivery failed; will retry',
      );
      this.breaker.failed(probe);
      const remaining = this.breaker.remainingMs();
      if (remaining > 0) await this.pauseQueue(remaining);
      throw err;
    } finally {
      this.inFlightTokens.delete(tracked);
      this.lastProgress = Date.now();
    }
  }

  /** A pause that cannot be set (Redis away) is only logged: the breaker still holds this process's jobs back. */
  private async pauseQueue(ms: number): Promise<void> {
    try {
      await this.queue.rateLimit(ms);
    } catch (err) {
      this.logger.debug({ err: String(err) }, 'could not pause the queue for the breaker');
    }
  }
}

async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>(
    (resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ms))),
  );
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
