import { setMaxListeners } from 'node:events';
import { Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { DirectDelivery, DirectSlot } from '../queue/enqueuer.js';
import { createWorkerConnection } from '../queue/redis.js';
import type { BridgeMetrics } from '../admin/metrics.js';
import type { BridgeConfig, WebhookConfig } from '../config/schema.js';
import { LogThrottle } from '../lifecycle/log-throttle.js';
import { within } from '../lifecycle/deadline.js';
import type { Logger } from '../lifecycle/logger.js';
import {
  BATCH_JOB_NAME,
  attemptsBefore,
  eventJobOptions,
  isBatch,
  type BatchJobData,
  type DeliveryEvent,
  type DeliveryJobData,
  type EventJobData,
} from '../queue/job.js';
import { queueName } from '../queue/names.js';
import { retryDelay, type RetryPolicy } from './backoff.js';
import { CircuitBreaker, type BreakerState } from './breaker.js';
import { DeliveryClaims } from './claims.js';
import { DeliveryAbortedError, DeliveryPermanentError, DeliveryRetryableError } from '../errors.js';
import { WebhookSender } from './http.js';
import { OrphanSweeper } from './orphans.js';
import { Permits } from './permits.js';

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
/**
 * A job this process sends itself (direct delivery) waits this long, delayed, before a worker may
 * take it: the same bound as a killed worker's lock. A send still going at half of it renews it.
 */
const DIRECT_LEASE_MS = LOCK_DURATION_MS;

/** How one try of one event ended. `held`: the breaker kept it back; `aborted`: shutdown cut it off. */
type Attempt =
  | { readonly outcome: 'delivered' }
  | { readonly outcome: 'failed'; readonly err: Error }
  | { readonly outcome: 'gone'; readonly err: DeliveryPermanentError }
  | { readonly outcome: 'held'; readonly waitMs: number }
  | { readonly outcome: 'aborted' };

interface EventJobSpec {
  readonly name: string;
  readonly data: EventJobData;
  readonly opts: ReturnType<typeof eventJobOptions> & { jobId: string; delay?: number };
}

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

  /** The lane that sends `webhookId`'s jobs from this process, for ingest in the same process. */
  direct(webhookId: string): DirectDelivery | undefined {
    return this.lanes.find((lane) => lane.webhookId === webhookId);
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

class WebhookLane implements DirectDelivery {
  readonly leaseMs = DIRECT_LEASE_MS;
  private readonly connection: Redis;
  private readonly queue: Queue<DeliveryJobData>;
  private readonly sender: WebhookSender;
  private readonly breaker: CircuitBreaker;
  private readonly claims: DeliveryClaims;
  private readonly permits: Permits;
  private readonly policy: RetryPolicy;
  private readonly shutdownController = new AbortController();
  private worker: Worker<DeliveryJobData> | undefined;
  private readonly inFlightTokens = new Set<string>();
  private readonly workerIds = new Set<string>();
  private readonly orphans: OrphanSweeper;
  private lastError: { at: string; message: string } | undefined;
  /** A receiver that is down fails every event the same way: one line per cause, with a count. */
  private readonly failureLog = new LogThrottle();
  /** Last time the worker took a job or found the queue empty; the stall check compares against it. */
  private lastProgress = Date.now();
  private stopping = false;
  private recovering = false;
  /** Direct deliveries: slots handed out and not yet finished, and each running job by id. */
  private directSlots = 0;
  private readonly directRuns = new Map<string, { run: Promise<void>; leasedAt: number }>();
  private leaseTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly webhook: WebhookConfig,
    private readonly config: BridgeConfig,
    private readonly logger: Logger,
    private readonly metrics: BridgeMetrics,
  ) {
    this.connection = createWorkerConnection(config.redis.url, {
      name: `imkit-bridge-deliver-${webhook.id}`,
    });
    this.connection.on('error', (err) => this.logger.debug({ err }, 'redis connection error'));
    this.queue = new Queue(queueName(webhook.id), {
      connection: this.connection,
      prefix: config.redis.prefix,
    });
    this.queue.on('error', (err) => this.logger.debug({ err }, 'queue error'));
    this.sender = new WebhookSender(webhook);
    setMaxListeners(0, this.shutdownController.signal);
    this.claims = new DeliveryClaims(this.connection, config.redis.prefix, webhook.id, {
      dedupMs: config.dedupWindow,
      repeatMs: config.repeatWindow,
    });
    this.permits = new Permits(webhook.concurrency);
    this.policy = { schedule: webhook.retry.schedule, jitter: webhook.retry.jitter };
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

  get webhookId(): string {
    return this.webhook.id;
  }

  start(): void {
    if (this.worker || this.stopping) return;
    this.worker = this.createWorker();
    this.leaseTimer = setInterval(() => this.renewLeases(), DIRECT_LEASE_MS / 4);
    this.leaseTimer.unref();
  }

  /**
   * Direct delivery is for the plain case only: a webhook with a rate limit is paced by BullMQ's
   * limiter, and one whose breaker is not closed is paused through the queue; both wait for a worker.
   * At most `concurrency` jobs at a time, so a burst goes to the queue instead of piling up here.
   */
  reserve(): DirectSlot | undefined {
    if (this.stopping || !this.worker || this.webhook.rateLimit || this.breaker.state !== 'closed')
      return undefined;
    if (this.directSlots >= this.webhook.concurrency) return undefined;
    this.directSlots++;
    let used = false;
    return {
      deliver: (jobId, data) => {
        if (used) return;
        used = true;
        const run = this.deliverDirect(jobId, data).finally(() => {
          this.directSlots--;
          this.directRuns.delete(jobId);
        });
        this.directRuns.set(jobId, { run, leasedAt: Date.now() });
      },
      cancel: () => {
        if (used) return;
        used = true;
        this.directSlots--;
      },
    };
  }

  status(): WebhookDeliveryStatus {
    return {
      webhook: this.webhook.id,
      breaker: this.breaker.state,
      running: this.worker?.isRunning() ?? false,
      inFlight: this.inFlightTokens.size + this.directRuns.size,
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
      await worker.close(true).catch((err: unknown) => this.logger.debug({ err }, 'old worker close'));
    } catch (err) {
      this.logger.debug({ err }, 'watchdog check failed');
    } finally {
      this.recovering = false;
    }
  }

  async stopWorker(): Promise<void> {
    this.stopping = true;
    // BullMQ's close waits for Redis even with nothing running (for ever while it is away); with
    // nothing running there is nothing to wait for, so close without waiting then.
    const idle = this.inFlightTokens.size === 0 && this.directRuns.size === 0;
    const force = idle && this.connection.status !== 'ready';
    await Promise.all([this.worker?.close(force), ...[...this.directRuns.values()].map((d) => d.run)]);
    clearInterval(this.leaseTimer);
  }

  /** Aborts in-flight requests; each processor then returns its job to waiting (see `process`). */
  handBack(): void {
    this.shutdownController.abort();
  }

  async release(): Promise<void> {
    clearInterval(this.leaseTimer);
    await Promise.allSettled([this.queue.close(), this.sender.close()]);
    this.connection.disconnect();
  }

  private createWorker(): Worker<DeliveryJobData> {
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
        settings: {
          backoffStrategy: (attemptsMade, _type, err, job) =>
            retryDelay(this.policy, attemptsMade + attemptsBefore(job?.data), err),
        },
      },
    );
    this.workerIds.add(worker.id);
    worker.on('error', (err) =>
      this.failureLog.log(`worker: ${err.message}`, (repeats) =>
        this.logger.warn({ err, ...repeats }, 'delivery worker error'),
      ),
    );
    worker.on('active', () => (this.lastProgress = Date.now()));
    worker.on('drained', () => (this.lastProgress = Date.now()));
    worker.run().catch((err: unknown) => this.logger.error({ err }, 'delivery worker stopped'));
    return worker;
  }

  /**
   * The job's first try, as a worker would make it; then the job, delayed until now, is removed. If
   * that removal fails, or this process dies first, a worker runs the job once its lease is up and
   * sends again what this try delivered: duplicates with the same webhook-id, never a loss. It does
   * not touch `lastProgress`: the watchdog must still notice a worker that stopped fetching.
   */
  private async deliverDirect(jobId: string, data: BatchJobData): Promise<void> {
    try {
      await this.processBatch(jobId, data, undefined);
      await this.queue.remove(jobId);
    } catch (err) {
      this.logger.warn(
        { jobId, err },
        'direct delivery not recorded; a worker runs the job when its lease ends',
      );
    }
  }

  private renewLeases(): void {
    const now = Date.now();
    for (const [jobId, direct] of this.directRuns) {
      if (now - direct.leasedAt < DIRECT_LEASE_MS / 2) continue;
      direct.leasedAt = now;
      new Job(this.queue, BATCH_JOB_NAME, {}, {}, jobId)
        .changeDelay(DIRECT_LEASE_MS)
        .catch((err: unknown) => this.logger.debug({ jobId, err }, 'could not renew a lease'));
    }
  }

  private async process(
    job: Job<DeliveryJobData>,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const tracked = token ?? '';
    this.inFlightTokens.add(tracked);
    // Every request in flight listens on it; Permits bound how many, so no listener leak to warn about.
    if (signal) setMaxListeners(0, signal);
    try {
      const data = job.data;
      if (isBatch(data)) await this.processBatch(job.id ?? '', data, signal);
      else await this.processEvent(job as Job<EventJobData>, data, signal);
    } finally {
      this.inFlightTokens.delete(tracked);
      this.lastProgress = Date.now();
    }
  }

  /**
   * Every event this job owns gets one try, in parallel within the webhook's concurrency. The job
   * completes once each event is delivered or has its own event job (retry, dead letter, or held
   * back by the breaker or by shutdown); it fails only if those cannot be added, and is then run
   * again, sending again what it had delivered (duplicates with the same webhook-id, never a loss).
   */
  private async processBatch(
    jobId: string,
    data: BatchJobData,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const owned = await this.claims.claim(jobId, data.events);
    const mine = data.events.filter((_, i) => owned[i]);
    if (mine.length < data.events.length)
      this.metrics.eventsDeduplicated.inc(data.events.length - mine.length);
    const attempts = await Promise.all(mine.map((event) => this.attempt(event, signal)));
    const followUps: EventJobSpec[] = [];
    let holdMs = 0;
    attempts.forEach((attempt, i) => {
      const event = mine[i]!;
      const jobIdFor = `${event.id}-${jobId}`;
      switch (attempt.outcome) {
        case 'delivered':
          return;
        case 'held':
          holdMs = Math.max(holdMs, attempt.waitMs);
          followUps.push(this.eventJob(jobIdFor, event, 0));
          return;
        case 'aborted':
          followUps.push(this.eventJob(jobIdFor, event, 0));
          return;
        case 'gone':
          this.reportFailure(event, 1, 'gone', attempt.err);
          followUps.push(this.eventJob(jobIdFor, event, 1, { deadLetter: attempt.err.message }));
          return;
        case 'failed': {
          const exhausted = this.scheduleSpent(1);
          this.reportFailure(event, 1, exhausted ? 'exhausted' : 'retry', attempt.err);
          followUps.push(
            exhausted
              ? this.eventJob(jobIdFor, event, 1, { deadLetter: attempt.err.message })
              : this.eventJob(jobIdFor, event, 1, { delay: retryDelay(this.policy, 1, attempt.err) }),
          );
        }
      }
    });
    if (holdMs > 0) await this.pauseQueue(holdMs);
    if (followUps.length > 0) await this.queue.addBulk(followUps);
  }

  /** An event on its own: BullMQ's attempts and the 'schedule' backoff carry it through its retries. */
  private async processEvent(
    job: Job<EventJobData>,
    event: EventJobData,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    // Already reported when its batch got the 410 (or ran out of schedule); only the failed set is left.
    if (event.deadLetter !== undefined) throw new UnrecoverableError(event.deadLetter);
    const attempt = await this.attempt(event, signal);
    const number = attemptsBefore(event) + job.attemptsMade + 1;
    switch (attempt.outcome) {
      case 'delivered':
        return;
      case 'held':
        // Back to waiting without using an attempt; the queue-wide limit keeps every replica off the webhook.
        await this.pauseQueue(attempt.waitMs);
        throw Worker.RateLimitError();
      case 'aborted':
        this.logger.info({ jobId: job.id }, 'delivery interrupted by shutdown; job handed back');
        throw Worker.RateLimitError();
      case 'gone':
        this.reportFailure(event, number, 'gone', attempt.err);
        throw new UnrecoverableError(attempt.err.message);
      case 'failed': {
        // Counted with the batch's try, which BullMQ's own attempt count does not include.
        const exhausted = this.scheduleSpent(number);
        this.reportFailure(event, number, exhausted ? 'exhausted' : 'retry', attempt.err);
        throw exhausted ? new UnrecoverableError(attempt.err.message) : attempt.err;
      }
    }
  }

  /** One try: a permit, the breaker's word, the signed request; metrics for what it returned. */
  private async attempt(event: DeliveryEvent, signal: AbortSignal | undefined): Promise<Attempt> {
    await this.permits.acquire();
    try {
      const admission = this.breaker.admit();
      if (!admission.allowed) return { outcome: 'held', waitMs: admission.waitMs };
      return await this.send(event, admission.probe, signal);
    } finally {
      this.permits.release();
    }
  }

  private async send(
    event: DeliveryEvent,
    probe: boolean,
    signal: AbortSignal | undefined,
  ): Promise<Attempt> {
    const webhook = this.webhook.id;
    const started = performance.now();
    try {
      await this.sender.send(event, signal, this.shutdownController.signal);
      this.metrics.deliveryDuration.observe({ webhook }, (performance.now() - started) / 1000);
      this.metrics.deliveries.inc({ webhook, outcome: 'delivered' });
      this.metrics.eventLatency.observe({ webhook }, Math.max(0, Date.now() - event.receivedAt) / 1000);
      this.breaker.succeeded(probe);
      // The event is delivered: failing to lift the pause early must not fail anything.
      if (probe) {
        await this.queue
          .removeRateLimitKey()
          .catch((err: unknown) => this.logger.debug({ err }, 'could not lift the breaker pause'));
      }
      return { outcome: 'delivered' };
    } catch (caught) {
      if (caught instanceof DeliveryAbortedError) {
        this.breaker.released(probe);
        return { outcome: 'aborted' };
      }
      this.metrics.deliveryDuration.observe({ webhook }, (performance.now() - started) / 1000);
      const err = caught instanceof Error ? caught : new Error(String(caught));
      this.lastError = { at: new Date().toISOString(), message: err.message };
      if (err instanceof DeliveryPermanentError) {
        // The receiver answered, so it is up: a 410 does not count against the breaker.
        this.breaker.succeeded(probe);
        return { outcome: 'gone', err };
      }
      this.breaker.failed(probe);
      const remaining = this.breaker.remainingMs();
      if (remaining > 0) await this.pauseQueue(remaining);
      return { outcome: 'failed', err };
    }
  }

  /** Whether the attempt numbered `attempt` (1-based, the batch's try included) was the last one. */
  private scheduleSpent(attempt: number): boolean {
    return attempt >= this.webhook.retry.schedule.length + 1;
  }

  private reportFailure(
    event: DeliveryEvent,
    attempt: number,
    verdict: 'gone' | 'exhausted' | 'retry',
    err: Error,
  ): void {
    this.metrics.deliveries.inc({
      webhook: this.webhook.id,
      outcome: verdict === 'retry' ? 'retry' : 'dead',
    });
    const snippet =
      err instanceof DeliveryRetryableError || err instanceof DeliveryPermanentError
        ? err.details.responseSnippet
        : undefined;
    const fields = { eventId: event.id, attempt, err, response: snippet };
    this.failureLog.log(`${verdict}: ${err.message}`, (repeats) => {
      if (verdict === 'gone') this.logger.warn({ ...fields, status: 410, ...repeats }, 'dead-lettered');
      else if (verdict === 'exhausted')
        this.logger.warn({ ...fields, ...repeats }, 'delivery failed; schedule exhausted, dead-lettered');
      else this.logger.warn({ ...fields, ...repeats }, 'delivery failed; will retry');
    });
  }

  private eventJob(
    jobId: string,
    event: DeliveryEvent,
    tried: number,
    extra: { deadLetter?: string; delay?: number } = {},
  ): EventJobSpec {
    const { id, type, account, receivedAt, body } = event;
    const data: EventJobData = {
      id,
      type,
      account,
      receivedAt,
      body,
      ...(tried > 0 ? { attemptsBefore: tried } : {}),
      ...(extra.deadLetter !== undefined ? { deadLetter: extra.deadLetter } : {}),
    };
    const opts = { ...eventJobOptions(this.webhook), jobId };
    return { name: type, data, opts: extra.delay ? { ...opts, delay: extra.delay } : opts };
  }

  /** A pause that cannot be set (Redis away) is only logged: the breaker still holds this process's jobs back. */
  private async pauseQueue(ms: number): Promise<void> {
    try {
      await this.queue.rateLimit(ms);
    } catch (err) {
      this.logger.debug({ err }, 'could not pause the queue for the breaker');
    }
  }
}
