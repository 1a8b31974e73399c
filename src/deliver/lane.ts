import { setMaxListeners } from 'node:events';
import { Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { DirectDelivery, DirectSlot } from '../queue/enqueuer.js';
import { redisSettings, workerConnection, type RedisClient } from '../queue/redis.js';
import type { BridgeMetrics } from '../admin/metrics.js';
import type { DestinationConfig } from '../config/destinations.js';
import type { BridgeConfig } from '../config/schema.js';
import { DeliveryPermanentError, DeliveryRetryableError } from '../errors.js';
import { LogThrottle } from '../lifecycle/log-throttle.js';
import type { Logger } from '../lifecycle/logger.js';
import type { AttemptTrace, EventTracer } from '../lifecycle/tracing.js';
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
import { retryDelay, type RetryPolicy } from './backoff.js';
import { CircuitBreaker, type BreakerState } from './breaker.js';
import { DeliveryClaims } from './claims.js';
import type { Destination, SendOutcome } from './destination.js';
import { OrphanSweeper } from './orphans.js';
import { breakerVerdict, decide, type AttemptResult, type Next } from './outcome.js';
import { Permits } from './permits.js';

export interface DestinationDeliveryStatus {
  readonly destination: string;
  readonly breaker: BreakerState;
  readonly running: boolean;
  readonly inFlight: number;
  readonly lastError?: { readonly at: string; readonly message: string };
}

/**
 * Without a limiter BullMQ ignores the queue's rate-limit key, and the breaker pauses a destination
 * through that key; so every worker gets a limiter, one no real destination reaches unless configured.
 */
const UNLIMITED = { max: 2 ** 31, duration: 1000 } as const;
/**
 * A job whose worker died mid-delivery is "stalled"; past this many stalls BullMQ fails it. Crashes
 * are not the destination's fault, so allow several before an event can end up dead-lettered that way.
 */
const MAX_STALLED_COUNT = 10;
/**
 * A live worker renews its job locks every half lock; a worker killed with SIGKILL does not, so its
 * in-flight jobs go back to waiting within lock + stall-check interval (BullMQ's defaults would make
 * that up to a minute). A live process blocked longer than the lock would see a job redelivered:
 * a duplicate with the same event id, never a loss.
 */
const LOCK_DURATION_MS = 10_000;
const STALLED_INTERVAL_MS = 5_000;
/**
 * A job this process sends itself (direct delivery) waits this long, delayed, before a worker may
 * take it: the same bound as a killed worker's lock. A send still going at half of it renews it.
 */
const DIRECT_LEASE_MS = LOCK_DURATION_MS;

/** One try's result, and its span when tracing is on (ended once the lane has decided what follows). */
interface Tried {
  readonly result: AttemptResult;
  readonly trace?: AttemptTrace;
}

/** The far end already held the event (a destination that `deduplicates`): a copy, not a delivery. */
function isCopy(result: AttemptResult): boolean {
  return result.kind === 'delivered' && result.duplicate === true;
}

interface EventJobSpec {
  readonly name: string;
  readonly data: EventJobData;
  readonly opts: ReturnType<typeof eventJobOptions> & { jobId: string; delay?: number };
}

/**
 * One destination's delivery in this process, whatever its type: a BullMQ worker on its queue with
 * its own Redis connection, claims, permits and breaker. What an attempt's outcome leads to is
 * decided in outcome.ts; this class only applies it.
 */
export class DestinationLane implements DirectDelivery {
  readonly leaseMs = DIRECT_LEASE_MS;
  private readonly connection: RedisClient;
  private readonly queue: Queue<DeliveryJobData>;
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
  /** A destination that is down fails every event the same way: one line per cause, with a count. */
  private readonly failureLog = new LogThrottle();
  /** Last time the worker took a job or found the queue empty; the stall check compares against it. */
  private lastProgress = Date.now();
  private stopping = false;
  private recovering = false;
  /** Direct deliveries: slots handed out and not yet finished, and each running job by id. */
  private directSlots = 0;
  private readonly directRuns = new Map<string, { run: Promise<void>; leasedAt: number }>();
  private leaseTimer: NodeJS.Timeout | undefined;
  /** Label sets of the per-event series, built once instead of per event. */
  private readonly laneLabels: { readonly destination: string };
  private readonly deliveredLabels: { readonly destination: string; readonly outcome: 'delivered' };

  constructor(
    private readonly destination: Destination,
    private readonly lane: DestinationConfig,
    private readonly config: BridgeConfig,
    private readonly logger: Logger,
    private readonly metrics: BridgeMetrics,
    private readonly tracer: EventTracer | undefined,
  ) {
    this.laneLabels = { destination: lane.id };
    this.deliveredLabels = { destination: lane.id, outcome: 'delivered' };
    this.connection = workerConnection(redisSettings(config.redis), `imkit-bridge-deliver-${lane.id}`);
    this.connection.on('error', (err) => this.logger.debug({ err }, 'redis connection error'));
    this.queue = new Queue(lane.jobQueue, {
      connection: this.connection,
      prefix: config.redis.prefix,
    });
    this.queue.on('error', (err) => this.logger.debug({ err }, 'queue error'));
    setMaxListeners(0, this.shutdownController.signal);
    this.claims = new DeliveryClaims(this.connection, config.redis.prefix, lane.jobQueue, {
      dedupMs: config.dedupWindow,
      repeatMs: config.repeatWindow,
    });
    this.permits = new Permits(lane.concurrency);
    this.policy = { schedule: lane.retry.schedule, jitter: lane.retry.jitter };
    this.breaker = new CircuitBreaker(
      { failures: lane.breaker.failures, cooldownMs: lane.breaker.cooldown },
      (state) => {
        this.metrics.breakerOpen.set({ destination: lane.id }, state === 'closed' ? 0 : 1);
        this.logger.warn({ breaker: state }, `circuit breaker ${state}`);
      },
    );
    this.metrics.breakerOpen.set({ destination: lane.id }, 0);
    this.orphans = new OrphanSweeper(
      this.connection,
      this.queue,
      () => this.workerIds,
      () => this.inFlightTokens,
    );
  }

  get destinationId(): string {
    return this.lane.id;
  }

  start(): void {
    if (this.worker || this.stopping) return;
    // Sends connect by themselves when needed; starting early only saves the first event the wait.
    this.destination
      .connect()
      .catch((err: unknown) => this.logger.warn({ err }, 'destination not reachable yet; sends will retry'));
    this.worker = this.createWorker();
    this.leaseTimer = setInterval(() => this.renewLeases(), DIRECT_LEASE_MS / 4);
    this.leaseTimer.unref();
  }

  /**
   * Direct delivery is for the plain case only: a destination with a rate limit is paced by BullMQ's
   * limiter, and one whose breaker is not closed is paused through the queue; both wait for a worker.
   * At most `concurrency` jobs at a time, so a burst goes to the queue instead of piling up here.
   */
  reserve(): DirectSlot | undefined {
    if (this.stopping || !this.worker || this.lane.rateLimit || this.breaker.state !== 'closed')
      return undefined;
    if (this.directSlots >= this.lane.concurrency) return undefined;
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

  status(): DestinationDeliveryStatus {
    return {
      destination: this.lane.id,
      breaker: this.breaker.state,
      running: this.worker?.isRunning() ?? false,
      inFlight: this.inFlightTokens.size + this.directRuns.size,
      ...(this.lastError ? { lastError: { ...this.lastError } } : {}),
    };
  }

  /**
   * Watchdog: BullMQ workers have been seen to stop fetching after a Redis reconnect (the blocking
   * connection never resumes). A worker that is not running, or that sits idle while its queue has
   * waiting jobs it is allowed to take, is replaced. Whatever the breaker's state: an open breaker
   * pauses the queue (the rate-limit TTL), and a half-open one waits for a job to probe with, which
   * a stuck worker never takes (seen after a Cluster failover: half-open for good).
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
        const [waiting, limitTtl] = await Promise.all([
          this.queue.getWaitingCount(),
          this.queue.getRateLimitTtl(this.lane.rateLimit?.max ?? UNLIMITED.max),
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
    await Promise.allSettled([this.queue.close(), this.destination.close()]);
    this.connection.disconnect();
  }

  private createWorker(): Worker<DeliveryJobData> {
    const worker = new Worker<DeliveryJobData>(
      this.lane.jobQueue,
      (job, token, signal) => this.process(job, token, signal),
      {
        connection: this.connection,
        prefix: this.config.redis.prefix,
        concurrency: this.lane.concurrency,
        limiter: this.lane.rateLimit
          ? { max: this.lane.rateLimit.max, duration: this.lane.rateLimit.duration }
          : UNLIMITED,
        maxStalledCount: MAX_STALLED_COUNT,
        lockDuration: LOCK_DURATION_MS,
        stalledInterval: STALLED_INTERVAL_MS,
        // BullMQ's default waits 15 s before retrying a Redis call that failed (e.g. completing a job
        // across a Redis restart); a short retry keeps deliveries flowing right after Redis returns.
        runRetryDelay: 1000,
        autorun: false,
        settings: {
          // The delay was decided with the outcome (settleEventJob); the schedule covers anything else.
          backoffStrategy: (attemptsMade, _type, err, job) =>
            err instanceof DeliveryRetryableError && err.details.delayMs !== undefined
              ? err.details.delayMs
              : retryDelay(this.policy, attemptsMade + attemptsBefore(job?.data), undefined),
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
   * sends again what this try delivered: duplicates with the same event id, never a loss. It does
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
   * Every event this job owns gets one try, in parallel within the destination's concurrency. The
   * job completes once each event is delivered or has its own event job (retry, dead letter, or held
   * back by the breaker or by shutdown); it fails only if those cannot be added, and is then run
   * again, sending again what it had delivered (duplicates with the same event id, never a loss).
   */
  private async processBatch(
    jobId: string,
    data: BatchJobData,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const owned = await this.owned(jobId, data.events);
    const mine = data.events.filter((_, i) => owned[i]);
    let copies = data.events.length - mine.length;
    const sendMany = this.destination.sendMany?.bind(this.destination);
    const tries = sendMany
      ? await this.attemptMany(sendMany, mine, signal)
      : await Promise.all(mine.map((event) => this.attempt(event, signal, 1)));
    const followUps: EventJobSpec[] = [];
    let holdMs = 0;
    let delivered = 0;
    tries.forEach(({ result, trace }, i) => {
      const event = mine[i]!;
      const next = decide(result, 1, this.policy);
      if (next.step === 'done') {
        trace?.end(result, next);
        if (isCopy(result)) copies++;
        else {
          delivered++;
          this.observeLatency(event);
        }
        return;
      }
      this.record(event, next, trace);
      trace?.end(result, next);
      if (next.step === 'hold') holdMs = Math.max(holdMs, next.waitMs);
      const followUp = this.followUp(next, `${event.id}-${jobId}`, event);
      if (followUp) followUps.push(followUp);
    });
    // One increment for the batch's deliveries: the same count as one per event, one label lookup.
    if (delivered > 0) this.metrics.deliveries.inc(this.deliveredLabels, delivered);
    if (copies > 0) this.metrics.eventsDeduplicated.inc(copies);
    if (holdMs > 0) await this.pauseQueue(holdMs);
    if (followUps.length > 0) await this.queue.addBulk(followUps);
  }

  /**
   * Which of a batch job's events this job delivers. The claim decides, except for an event its id
   * alone identifies (no repeat key) going to a destination that `deduplicates` itself: there the
   * far end's own marker keeps a second copy out, and the claim would be the same check twice.
   */
  private async owned(jobId: string, events: readonly DeliveryEvent[]): Promise<boolean[]> {
    if (!this.destination.deduplicates) return this.claims.claim(jobId, events);
    const repeating = events.filter((event) => event.repeatKey !== undefined);
    if (repeating.length === 0) return events.map(() => true);
    const granted = await this.claims.claim(jobId, repeating);
    let next = 0;
    return events.map((event) => event.repeatKey === undefined || granted[next++]!);
  }

  /** An event on its own: BullMQ's attempts and the decided delays carry it through its retries. */
  private async processEvent(
    job: Job<EventJobData>,
    event: EventJobData,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    // Already reported when its batch's try was refused for good or ran out of schedule.
    if (event.deadLetter !== undefined) throw new UnrecoverableError(event.deadLetter);
    // Counted with the batch's try, which BullMQ's own attempt count does not include.
    const attempt = attemptsBefore(event) + job.attemptsMade + 1;
    const { result, trace } = await this.attempt(event, signal, attempt);
    const next = decide(result, attempt, this.policy);
    if (isCopy(result)) this.metrics.eventsDeduplicated.inc();
    else this.record(event, next, trace);
    trace?.end(result, next);
    await this.settleEventJob(next, job.id, trace);
  }

  /** The batch path's answer: the event job that carries `next` on, if any. */
  private followUp(next: Next, jobId: string, event: DeliveryEvent): EventJobSpec | undefined {
    switch (next.step) {
      case 'done':
        return undefined;
      case 'hold':
      case 'hand-back':
        return this.eventJob(jobId, event, 0);
      case 'retry':
        return this.eventJob(jobId, event, next.attempt, { delay: next.delayMs });
      case 'dead':
        return this.eventJob(jobId, event, next.attempt, { deadLetter: next.failure.reason });
    }
  }

  /** The single-event path's answer, in BullMQ's terms: return, or throw what makes BullMQ do `next`. */
  private async settleEventJob(next: Next, jobId: string | undefined, trace?: AttemptTrace): Promise<void> {
    switch (next.step) {
      case 'done':
        return;
      case 'hold':
        // Back to waiting without using an attempt; the queue-wide limit keeps every replica off it.
        await this.pauseQueue(next.waitMs);
        throw Worker.RateLimitError();
      case 'hand-back':
        this.logger.info({ jobId, ...trace?.log }, 'delivery interrupted by shutdown; job handed back');
        throw Worker.RateLimitError();
      case 'retry':
        throw new DeliveryRetryableError(next.failure.reason, { delayMs: next.delayMs });
      case 'dead':
        throw new UnrecoverableError(next.failure.reason);
    }
  }

  /**
   * One try (number `attempt` of the event): a permit, the breaker's word, the send; the breaker and
   * metrics learn what it returned.
   */
  private async attempt(
    event: DeliveryEvent,
    signal: AbortSignal | undefined,
    attempt: number,
  ): Promise<Tried> {
    await this.permits.acquire();
    try {
      const admission = this.breaker.admit();
      if (!admission.allowed) return { result: { kind: 'held', waitMs: admission.waitMs } };
      const trace = this.traceAttempt(event, attempt);
      const started = performance.now();
      const outcome = await this.destination.send(
        trace ? { ...event, ...trace.context } : event,
        this.signalsFor(signal),
      );
      await this.learn(outcome, admission.probe, started);
      return { result: outcome, trace };
    } finally {
      this.permits.release();
    }
  }

  /** The attempt's span, for an event that carries a trace (ingest had tracing on) while tracing is on here. */
  private traceAttempt(event: DeliveryEvent, attempt: number): AttemptTrace | undefined {
    const { traceparent, tracestate } = event;
    if (!this.tracer || traceparent === undefined) return undefined;
    const parent = tracestate === undefined ? { traceparent } : { traceparent, tracestate };
    return this.tracer.attempt(parent, this.destination, attempt);
  }

  /**
   * One try for each of a batch job's events through the destination's `sendMany`, in chunks of at
   * most `concurrency` events, each chunk holding one permit per event; results in `events`' order.
   */
  private async attemptMany(
    sendMany: NonNullable<Destination['sendMany']>,
    events: readonly DeliveryEvent[],
    signal: AbortSignal | undefined,
  ): Promise<Tried[]> {
    const size = this.lane.concurrency;
    const chunks: DeliveryEvent[][] = [];
    for (let i = 0; i < events.length; i += size) chunks.push(events.slice(i, i + size));
    const results = await Promise.all(chunks.map((chunk) => this.attemptChunk(sendMany, chunk, signal)));
    return results.flat();
  }

  /** As `attempt` for each event of `chunk`: the breaker admits each, and learns each outcome. */
  private async attemptChunk(
    sendMany: NonNullable<Destination['sendMany']>,
    chunk: readonly DeliveryEvent[],
    signal: AbortSignal | undefined,
  ): Promise<Tried[]> {
    await this.permits.acquire(chunk.length);
    try {
      const admissions = chunk.map(() => this.breaker.admit());
      const admitted = chunk.filter((_, i) => admissions[i]!.allowed);
      const traces = this.tracer ? admitted.map((event) => this.traceAttempt(event, 1)) : undefined;
      const sent = traces
        ? admitted.map((event, i) => (traces[i] ? { ...event, ...traces[i].context } : event))
        : admitted;
      const started = performance.now();
      const outcomes = sent.length > 0 ? await sendMany(sent, this.signalsFor(signal)) : [];
      // The breaker learns each outcome in order; only a probe or a failure has Redis work to wait for.
      const tried: Tried[] = [];
      const waits: Promise<void>[] = [];
      let taken = 0;
      for (const admission of admissions) {
        if (!admission.allowed) {
          tried.push({ result: { kind: 'held', waitMs: admission.waitMs } });
          continue;
        }
        const trace = traces?.[taken];
        const outcome = outcomes[taken++]!;
        const wait = this.learn(outcome, admission.probe, started);
        if (wait) waits.push(wait);
        tried.push({ result: outcome, trace });
      }
      if (waits.length > 0) await Promise.all(waits);
      return tried;
    } finally {
      this.permits.release(chunk.length);
    }
  }

  private signalsFor(signal: AbortSignal | undefined): AbortSignal[] {
    return signal ? [signal, this.shutdownController.signal] : [this.shutdownController.signal];
  }

  /**
   * What the breaker and the metrics learn from one send's outcome (`probe`: as admitted). Returns
   * the Redis work to wait for (lifting or setting the queue's pause), if any: most outcomes have none.
   */
  private learn(outcome: SendOutcome, probe: boolean, started: number): Promise<void> | undefined {
    const verdict = breakerVerdict(outcome);
    if (verdict === 'released') {
      this.breaker.released(probe);
      return undefined;
    }
    this.metrics.deliveryDuration.observe(this.laneLabels, (performance.now() - started) / 1000);
    if (verdict === 'succeeded') {
      this.breaker.succeeded(probe);
      // Delivered or refused for good: either way the far end answered; failing to lift the pause
      // early must not fail anything.
      if (!probe) return undefined;
      return this.queue
        .removeRateLimitKey()
        .then(() => undefined)
        .catch((err: unknown) => this.logger.debug({ err }, 'could not lift the breaker pause'));
    }
    this.breaker.failed(probe);
    const remaining = this.breaker.remainingMs();
    return remaining > 0 ? this.pauseQueue(remaining) : undefined;
  }

  /** Receive-to-delivered time of a delivered event. */
  private observeLatency(event: DeliveryEvent): void {
    this.metrics.eventLatency.observe(this.laneLabels, Math.max(0, Date.now() - event.receivedAt) / 1000);
  }

  /** Metrics, `lastError` and the log line (with the attempt's trace ids) for what happens next to `event`. */
  private record(event: DeliveryEvent, next: Next, trace: AttemptTrace | undefined): void {
    const destination = this.lane.id;
    if (next.step === 'done') {
      this.metrics.deliveries.inc(this.deliveredLabels);
      this.observeLatency(event);
      return;
    }
    if (next.step !== 'retry' && next.step !== 'dead') return;
    this.metrics.deliveries.inc({ destination, outcome: next.step });
    const { reason, status, response } = next.failure;
    this.lastError = { at: new Date().toISOString(), message: reason };
    const verdict = next.step === 'retry' ? 'retry' : next.why;
    this.failureLog.log(`${verdict}: ${reason}`, (repeats) => {
      const fields = {
        eventId: event.id,
        attempt: next.attempt,
        status,
        response,
        ...trace?.log,
        ...repeats,
      };
      if (next.step === 'retry') {
        const err = new DeliveryRetryableError(reason, { delayMs: next.delayMs, status, response });
        this.logger.warn({ ...fields, err }, 'delivery failed; will retry');
      } else if (next.why === 'exhausted') {
        const err = new DeliveryRetryableError(reason, { status, response });
        this.logger.warn({ ...fields, err }, 'delivery failed; schedule exhausted, dead-lettered');
      } else {
        const err = new DeliveryPermanentError(reason, { status, response });
        this.logger.warn({ ...fields, err }, 'dead-lettered');
      }
    });
  }

  private eventJob(
    jobId: string,
    event: DeliveryEvent,
    tried: number,
    extra: { deadLetter?: string; delay?: number } = {},
  ): EventJobSpec {
    const { id, type, account, receivedAt, body, room, traceparent, tracestate } = event;
    const data: EventJobData = {
      id,
      type,
      account,
      receivedAt,
      body,
      ...(room !== undefined ? { room } : {}),
      // The receipt span's context, so the retries' spans join the same trace.
      ...(traceparent !== undefined ? { traceparent } : {}),
      ...(tracestate !== undefined ? { tracestate } : {}),
      ...(tried > 0 ? { attemptsBefore: tried } : {}),
      ...(extra.deadLetter !== undefined ? { deadLetter: extra.deadLetter } : {}),
    };
    const opts = { ...eventJobOptions(this.lane), jobId };
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
