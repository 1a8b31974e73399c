import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Cluster, type Redis } from 'ioredis';
import type { BridgeMetrics } from '../admin/metrics.js';
import type { DestinationConfig } from '../config/destinations.js';
import type { QuarantineIds } from '../decode/ids.js';
import type { RawType } from '../decode/raw.js';
import type { Logger } from '../lifecycle/logger.js';
import type { TraceContext } from '../lifecycle/tracing.js';
import { requestBody } from '../route/body.js';
import type { RelayedEvent } from '../route/event.js';
import {
  MAX_BATCH_BODY_LENGTH,
  MAX_BATCH_EVENTS,
  batchJob,
  type BatchJobData,
  type DeliveryEvent,
  type DeliveryJobData,
} from './job.js';
import { quarantineKey } from './names.js';
import { SeenMarkers } from './seen.js';
import {
  masterFor,
  producerConnection,
  reconnectDelay,
  type RedisClient,
  type RedisSettings,
} from './redis.js';
import { ReplicaConfirmer, watchMasterChanges } from './replication.js';

export interface EnqueuerOptions {
  readonly redis: RedisSettings;
  readonly prefix: string;
  readonly destinations: readonly QueueTarget[];
  readonly dedupWindowMs: number;
  /** Most events (and quarantine entries) held in memory while Redis is slow or away. */
  readonly bufferEvents: number;
  readonly logger: Logger;
  readonly metrics: BridgeMetrics;
  /** Called once per account per overflow episode, when the episode ends (or at close). */
  readonly onOverflow?: (gap: OverflowReport) => void;
  /** Most entries written per Redis round trip; default 500. */
  readonly batchSize?: number;
  /** The destination's delivery lane in this process (`--role all`), if any: it sends what it reserves itself. */
  readonly directDelivery?: (destinationId: string) => DirectDelivery | undefined;
}

/** What the Enqueuer needs of a destination: its id and its queue. */
export type QueueTarget = Pick<DestinationConfig, 'id' | 'jobQueue'>;

/**
 * A delivery lane in the same process that sends a batch job itself as soon as Redis holds it,
 * instead of waiting for a worker to take it from the queue. The job is added delayed by `leaseMs`
 * as the durable record: if this process dies before the lane is done, a worker runs the job once
 * the delay is up (docs/architecture.md, "Direct delivery").
 */
export interface DirectDelivery {
  readonly leaseMs: number;
  /** A slot for one job, or undefined when the lane is busy, paused or stopping: the job then waits for a worker. */
  reserve(): DirectSlot | undefined;
}

export interface DirectSlot {
  /** Redis holds the job: send it. */
  deliver(jobId: string, data: BatchJobData): void;
  /** The job was not written. */
  cancel(): void;
}

/** Events of one account dropped while the buffer was full: receivedAt of the first and last. */
export interface OverflowReport {
  readonly account: string;
  readonly from: number;
  readonly to: number;
  readonly dropped: number;
}

/**
 * `fresh`: no replica landed this event id before, inside `dedupWindow` (what catch-up counts as
 * recovered; delivery de-duplicates on its own, see docs/architecture.md). Always false for an
 * event enqueued with `markSeen: false`.
 * `dropped`: it never reached Redis (buffer overflow, or still buffered when close() gave up).
 */
export interface EnqueueResult {
  readonly fresh: boolean;
  readonly dropped?: true;
}

export interface QuarantineInput {
  readonly account: string;
  readonly event: string;
  readonly reason: string;
  readonly raw: Buffer;
  /** What kind of value `raw` holds, so `dlq replay --quarantine` can rebuild it (src/decode/raw.ts). */
  readonly rawType: RawType;
  /** Hex SHA-256 of `raw`, as in the `bridge.quarantined` event. */
  readonly sha256: string;
  readonly ids: QuarantineIds;
  readonly receivedAt: number;
}

interface JobEntry {
  readonly kind: 'job';
  readonly account: string;
  readonly receivedAt: number;
  readonly event: DeliveryEvent;
  /**
   * Targets whose queue has not confirmed the event. A reply lost in transit means the event is
   * added again in another batch job; delivery's claim makes that one delivery.
   */
  readonly todo: Map<string, QueueTarget>;
  /** On Cluster, the queue whose slot holds the event's seen marker: its first target's. */
  readonly seenSlot: string | undefined;
  /** The seen-marker write was answered (or none is wanted); `fresh` is its answer. */
  marked: boolean;
  fresh: boolean;
  /** Writes of this entry answered by a master and not yet confirmed by its replicas (waitReplicas). */
  unconfirmed: number;
  readonly resolve: (result: EnqueueResult) => void;
}

interface QuarantineEntry {
  readonly kind: 'quarantine';
  readonly account: string;
  readonly receivedAt: number;
  readonly fields: string[];
  written: boolean;
  unconfirmed: number;
  readonly resolve: (result: EnqueueResult) => void;
}

type Entry = JobEntry | QuarantineEntry;

interface Episode {
  readonly byAccount: Map<string, { from: number; to: number; dropped: number }>;
}

const DEFAULT_BATCH = 500;
/**
 * At most one write per this many ms while fewer than a full batch job's events wait. Every job
 * costs a fixed handful of Redis calls at ingest and at delivery whatever it holds, so at a few
 * hundred events/s one event per job made that fixed cost per event; waiting a few ms for company
 * cut the bridge's CPU per event by about a fifth at 500 events/s (docs/performance.md). An event
 * after a quiet spell is written at once.
 */
const LINGER_MS = 3;

/**
 * Lands events in Redis: one BullMQ queue per webhook, each flush's events as batch jobs (delivery
 * de-duplicates them, docs/architecture.md), with an ordered in-memory buffer that rides out Redis
 * outages.
 */
export class Enqueuer {
  private readonly connection: RedisClient;
  private readonly seen: SeenMarkers;
  private readonly replication: ReplicaConfirmer | undefined;
  /** Buffered entries with at least one unconfirmed write. */
  private unconfirmedEntries = 0;
  private readonly queues = new Map<string, Queue<DeliveryJobData>>();
  private readonly buffer: Entry[] = [];
  private readonly log: Logger;
  private readonly batchSize: number;
  private flushing = false;
  private scheduled = false;
  private failing = false;
  private attempt = 0;
  private wake: (() => void) | undefined;
  private episode: Episode | undefined;
  private accepted = 0;
  private landed = 0;
  private readonly landedWaiters = new Set<() => void>();
  private closed = false;
  private closing: Promise<Map<string, number>> | undefined;
  /** Batch job ids: random per instance plus a counter, unique across replicas without per-job entropy. */
  private readonly instance = randomBytes(5).toString('hex');
  private sequence = 0;
  private lastWriteAt = 0;

  constructor(private readonly options: EnqueuerOptions) {
    this.log = options.logger.child({ component: 'enqueuer' });
    this.batchSize = options.batchSize ?? DEFAULT_BATCH;
    this.connection = producerConnection(options.redis, 'imkit-bridge-ingest');
    this.seen = new SeenMarkers(this.connection, options.prefix, options.dedupWindowMs);
    // ioredis reports every failed reconnect; the flush loop logs outages once per episode instead.
    this.connection.on('error', () => {});
    this.connection.on('ready', () => this.wake?.());
    watchMasterChanges(this.connection, options.metrics.redisMasterChanges);
    const { waitReplicas, waitTimeoutMs } = options.redis;
    const connection = this.connection;
    this.replication =
      waitReplicas > 0
        ? new ReplicaConfirmer({
            waitReplicas,
            waitTimeoutMs,
            masterFor: (key) => masterFor(connection, key),
            onWaitError: () => {
              if (connection instanceof Cluster) connection.refreshSlotsCache();
            },
            metrics: options.metrics,
            logger: this.log,
          })
        : undefined;
    for (const destination of options.destinations) this.queue(destination);
  }

  /** False while Redis is unreachable, the last write failed or replicas fall short. */
  get ready(): boolean {
    return this.connection.status === 'ready' && !this.failing && !this.closed && this.problem === undefined;
  }

  /** Why landed events are still held: replicas did not acknowledge them in time (waitReplicas). */
  get problem(): string | undefined {
    return this.replication?.problem(this.buffer.length);
  }

  /** Events and quarantine entries held in memory, not yet confirmed by Redis. */
  get buffered(): number {
    return this.buffer.length;
  }

  /**
   * Settles once the event is in every target queue (or is dropped); never rejects. `markSeen: false`
   * skips the seen marker (a Redis write kept for `dedupWindow`) for events nobody asks `fresh` of.
   * `trace`: the event's trace context, kept in its jobs (tracing on only).
   */
  enqueue(
    event: RelayedEvent,
    targets: readonly QueueTarget[],
    options: { markSeen?: boolean; trace?: TraceContext } = {},
  ): Promise<EnqueueResult> {
    if (targets.length === 0) return Promise.resolve({ fresh: false });
    return new Promise((resolve) => {
      if (!this.admit(event.account, event.receivedAt, resolve)) return;
      // Built field by field: this runs for every event, and spreads of optional parts allocate.
      const todo = new Map<string, QueueTarget>();
      for (const target of targets) todo.set(target.id, target);
      this.push({
        kind: 'job',
        account: event.account,
        receivedAt: event.receivedAt,
        event: options.trace ? { ...deliveryEvent(event), ...options.trace } : deliveryEvent(event),
        todo,
        seenSlot: this.options.redis.topology === 'cluster' ? targets[0]!.jobQueue : undefined,
        marked: options.markSeen === false,
        fresh: false,
        unconfirmed: 0,
        resolve,
      });
    });
  }

  /** Keeps an undecodable payload in the quarantine stream (never trimmed) and counts it. */
  quarantine(entry: QuarantineInput): Promise<EnqueueResult> {
    this.options.metrics.decodeFailures.inc({ account: entry.account });
    return new Promise((resolve) => {
      if (!this.admit(entry.account, entry.receivedAt, resolve)) return;
      const fields = [
        'account',
        entry.account,
        'event',
        entry.event,
        'reason',
        entry.reason,
        'raw',
        entry.raw.toString('base64'),
        'receivedAt',
        String(entry.receivedAt),
        'size',
        String(entry.raw.length),
        'rawType',
        entry.rawType,
        'sha256',
        entry.sha256,
        'ids',
        JSON.stringify(entry.ids),
      ];
      this.push({
        kind: 'quarantine',
        account: entry.account,
        receivedAt: entry.receivedAt,
        fields,
        written: false,
        unconfirmed: 0,
        resolve,
      });
    });
  }

  /**
   * True when everything accepted before this call is in Redis (or was reported dropped); false when
   * `timeoutMs` (Infinity: no bound) passes or `signal` aborts first.
   */
  async drain(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const target = this.accepted;
    if (this.landed >= target) return true;
    if (signal?.aborted) return false;
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', abort);
        this.landedWaiters.delete(check);
        resolve(ok);
      };
      const check = () => {
        if (this.landed >= target) done(true);
      };
      const abort = () => done(false);
      const timer = Number.isFinite(timeoutMs) ? setTimeout(abort, timeoutMs) : undefined;
      signal?.addEventListener('abort', abort, { once: true });
      this.landedWaiters.add(check);
    });
  }

  /**
   * Per account, `receivedAt` of the oldest event or quarantine entry still held in memory: nothing
   * the account received from then on is known to be in Redis.
   */
  oldestBuffered(): Map<string, number> {
    const oldest = new Map<string, number>();
    for (const entry of this.buffer) {
      const at = oldest.get(entry.account);
      if (at === undefined || entry.receivedAt < at) oldest.set(entry.account, entry.receivedAt);
    }
    return oldest;
  }

  /**
   * Lands what is buffered within `timeoutMs` (nothing buffered: no wait), then stops. Resolves with
   * how many entries per account were still buffered and are lost; each is logged and counted.
   */
  close(timeoutMs = 0): Promise<Map<string, number>> {
    this.closing ??= this.shutdown(timeoutMs);
    return this.closing;
  }

  private async shutdown(timeoutMs: number): Promise<Map<string, number>> {
    await this.drain(timeoutMs);
    this.closed = true;
    this.wake?.();
    const lost = new Map<string, number>();
    for (const entry of this.buffer.splice(0)) {
      lost.set(entry.account, (lost.get(entry.account) ?? 0) + 1);
      entry.resolve({ fresh: false, dropped: true });
    }
    if (lost.size > 0) {
      for (const [account, count] of lost)
        this.options.metrics.eventsLost.inc({ account, reason: 'shutdown' }, count);
      this.log.error(
        { lost: Object.fromEntries(lost) },
        'events lost: still buffered at shutdown because Redis did not take them in time',
      );
    }
    this.options.metrics.ingestBuffered.set(0);
    if (this.replication) this.options.metrics.ingestUnconfirmed.set(0);
    this.endEpisode();
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
    if (this.connection.status === 'ready')
      await this.connection.quit().catch(() => this.connection.disconnect());
    else this.connection.disconnect();
    return lost;
  }

  /** Buffer admission. Full buffer: drop the newest, so what is kept stays a contiguous prefix. */
  private admit(account: string, receivedAt: number, resolve: (r: EnqueueResult) => void): boolean {
    if (this.closed || this.closing) {
      resolve({ fresh: false, dropped: true });
      return false;
    }
    if (this.buffer.length < this.options.bufferEvents) {
      this.endEpisode();
      return true;
    }
    this.options.metrics.ingestOverflow.inc();
    if (!this.episode) {
      this.episode = { byAccount: new Map() };
      this.log.error(
        { bufferEvents: this.options.bufferEvents },
        'ingest buffer full while Redis is not keeping up: dropping new events until there is room',
      );
    }
    const gap = this.episode.byAccount.get(account);
    if (gap) {
      gap.to = receivedAt;
      gap.dropped++;
    } else {
      this.episode.byAccount.set(account, { from: receivedAt, to: receivedAt, dropped: 1 });
    }
    resolve({ fresh: false, dropped: true });
    return false;
  }

  private endEpisode(): void {
    const episode = this.episode;
    if (!episode) return;
    this.episode = undefined;
    for (const [account, gap] of episode.byAccount) {
      this.log.warn(
        { account, ...gap },
        'ingest buffer has room again; events in this interval were dropped',
      );
      try {
        this.options.onOverflow?.({ account, ...gap });
      } catch (err) {
        this.log.error({ err }, 'onOverflow callback failed');
      }
    }
  }

  private push(entry: Entry): void {
    this.buffer.push(entry);
    this.accepted++;
    this.options.metrics.ingestBuffered.set(this.buffer.length);
    if (!this.flushing) this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const run = () => {
      this.scheduled = false;
      void this.flush();
    };
    const linger = this.lastWriteAt + LINGER_MS - Date.now();
    if (linger > 0 && this.buffer.length < MAX_BATCH_EVENTS) setTimeout(run, linger);
    // Otherwise one tick of collection: everything enqueued in this turn of the event loop goes together.
    else setImmediate(run);
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.buffer.length > 0 && !this.closed) {
        // Too soon for a small batch: schedule() waits out the rest of the linger.
        if (this.buffer.length < MAX_BATCH_EVENTS && Date.now() - this.lastWriteAt < LINGER_MS) break;
        const batch = this.buffer.slice(0, this.batchSize);
        this.lastWriteAt = Date.now();
        try {
          await this.write(batch);
        } catch (err) {
          if (!this.failing) this.log.warn({ err }, 'Redis write failed; buffering events and retrying');
          this.failing = true;
          await this.pause(reconnectDelay(this.attempt++));
          continue;
        }
        if (this.failing)
          this.log.info({ buffered: this.buffer.length }, 'Redis writes succeed again; flushing buffer');
        this.failing = false;
        const confirmed = this.replication ? await this.confirm(batch) : batch.length;
        if (confirmed === batch.length) this.attempt = 0;
        this.release(confirmed === batch.length ? batch : batch.slice(0, confirmed));
        if (confirmed < batch.length) await this.pause(reconnectDelay(this.attempt++));
      }
    } finally {
      this.flushing = false;
    }
    if (this.buffer.length > 0 && !this.closed) this.schedule();
  }

  /**
   * WAITs for the replicas of what `batch` wrote; writes that may be lost go back to pending. Returns
   * how many entries at the head of the batch are landed for good.
   */
  private async confirm(batch: readonly Entry[]): Promise<number> {
    await this.replication!.confirm();
    this.options.metrics.ingestUnconfirmed.set(this.unconfirmedEntries);
    const done = batch.findIndex((entry) =>
      entry.kind === 'job'
        ? entry.todo.size > 0 || !entry.marked || entry.unconfirmed > 0
        : !entry.written || entry.unconfirmed > 0,
    );
    return done === -1 ? batch.length : done;
  }

  /** `landed` entries are in Redis (and on enough replicas): forget and resolve them. */
  private release(batch: readonly Entry[]): void {
    if (batch.length === 0) return;
    // Only the head is ever removed and only new entries are appended, so the batch is still the head.
    this.buffer.splice(0, batch.length);
    this.landed += batch.length;
    this.options.metrics.ingestBuffered.set(this.buffer.length);
    // Report a drop interval as soon as Redis catches up, not only when the next event arrives.
    if (this.buffer.length < this.options.bufferEvents) this.endEpisode();
    for (const entry of batch) {
      entry.resolve(entry.kind === 'job' ? { fresh: entry.fresh } : { fresh: true });
    }
    for (const check of [...this.landedWaiters]) check();
  }

  /** Waits for the backoff delay, cut short when the connection becomes ready or close() begins. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  /**
   * One round trip per destination queue (its events in batch jobs, in order), one for the seen markers
   * and one for quarantine, in parallel. Parts that succeed are recorded on the entries, so a retry
   * after a partial failure sends only what Redis has not confirmed.
   */
  private async write(batch: readonly Entry[]): Promise<void> {
    const perQueue = new Map<string, { target: QueueTarget; entries: JobEntry[] }>();
    const unmarked: JobEntry[] = [];
    const quarantined: QuarantineEntry[] = [];
    for (const entry of batch) {
      if (entry.kind === 'quarantine') {
        if (!entry.written) quarantined.push(entry);
        continue;
      }
      if (!entry.marked) unmarked.push(entry);
      for (const [id, target] of entry.todo) {
        let group = perQueue.get(id);
        if (!group) perQueue.set(id, (group = { target, entries: [] }));
        group.entries.push(entry);
      }
    }
    const writes: Promise<void>[] = [...perQueue].map(async ([id, { target, entries }]) => {
      const jobs = chunked(entries).map((chunk) =>
        batchJob(
          `b-${this.instance}-${(this.sequence++).toString(36)}`,
          chunk.map((entry) => entry.event),
        ),
      );
      const queue = this.queue(target);
      const node = this.replication && this.nodeFor(`${this.options.prefix}:${target.jobQueue}:wait`);
      const direct = this.options.directDelivery?.(id);
      const slots = jobs.map(() => direct?.reserve());
      const specs = jobs.map((job, i) =>
        slots[i] ? { ...job, opts: { ...job.opts, delay: direct!.leaseMs } } : job,
      );
      try {
        // addBulk builds an ioredis pipeline, which copies every script BullMQ defined onto itself: at a
        // trickle (one job per flush) that garbage was a large share of the heap churn (docs/performance.md).
        if (specs.length === 1) await queue.add(specs[0]!.name, specs[0]!.data, specs[0]!.opts);
        else await queue.addBulk(specs);
      } catch (err) {
        for (const slot of slots) slot?.cancel();
        throw err;
      }
      for (const entry of entries) entry.todo.delete(id);
      const deliver = () => specs.forEach((job, i) => slots[i]?.deliver(job.opts.jobId, job.data));
      if (!node) return deliver();
      // Sent only once replicas hold the job; a re-landing writes a new job (fresh id) instead.
      this.hold(node, entries, deliver, () => {
        for (const entry of entries) entry.todo.set(id, target);
        for (const slot of slots) slot?.cancel();
      });
    });
    if (unmarked.length > 0) writes.push(this.markSeen(unmarked));
    if (quarantined.length > 0) writes.push(this.writeQuarantine(quarantined));
    const results = await Promise.allSettled(writes);
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
  }

  /**
   * SET NX per event id: the first replica to land an event inside the window sees it as fresh. One
   * script call per marker slot: one in all on a single Redis, one per first destination on Cluster.
   */
  private async markSeen(entries: JobEntry[]): Promise<void> {
    const bySlot = new Map<string | undefined, JobEntry[]>();
    for (const entry of entries) {
      const group = bySlot.get(entry.seenSlot);
      if (group) group.push(entry);
      else bySlot.set(entry.seenSlot, [entry]);
    }
    await Promise.all(
      [...bySlot].map(async ([slotOf, group]) => {
        const fresh = await this.seen.mark(
          group.map((entry) => entry.event.id),
          slotOf,
        );
        group.forEach((entry, i) => {
          entry.marked = true;
          entry.fresh = fresh[i]!;
        });
      }),
    );
  }

  private async writeQuarantine(entries: QuarantineEntry[]): Promise<void> {
    const key = quarantineKey(this.options.prefix);
    const node = this.replication && this.nodeFor(key);
    const pipeline = this.connection.pipeline();
    for (const entry of entries) pipeline.xadd(key, '*', ...entry.fields);
    const results = (await pipeline.exec()) ?? [];
    let error: unknown;
    results.forEach(([err], i) => {
      if (err) error ??= err;
      else entries[i]!.written = true;
    });
    if (node) {
      const written = entries.filter((entry) => entry.written);
      this.hold(
        node,
        written,
        () => {},
        () => written.forEach((entry) => (entry.written = false)),
      );
    }
    if (error || results.length !== entries.length)
      throw error ?? new Error('quarantine pipeline incomplete');
  }

  /** The node connection that will carry a write to `key`, before the write is sent. */
  private nodeFor(key: string): { connection: Redis; generation: number } {
    const node = this.replication!.target(key);
    if (!node) throw new Error(`no Redis master known for ${key}`);
    return node;
  }

  /** Keeps `entries` buffered until replicas confirm the write (`confirmed`) or it may be lost (`lost`). */
  private hold(
    node: { connection: Redis; generation: number },
    entries: readonly Entry[],
    confirmed: () => void,
    lost: () => void,
  ): void {
    for (const entry of entries) if (entry.unconfirmed++ === 0) this.unconfirmedEntries++;
    this.options.metrics.ingestUnconfirmed.set(this.unconfirmedEntries);
    const settle = () => {
      for (const entry of entries) if (--entry.unconfirmed === 0) this.unconfirmedEntries--;
    };
    this.replication!.written({
      ...node,
      events: entries.length,
      confirmed: () => {
        settle();
        confirmed();
      },
      lost: () => {
        settle();
        lost();
      },
    });
  }

  private queue(target: QueueTarget): Queue<DeliveryJobData> {
    let queue = this.queues.get(target.id);
    if (!queue) {
      queue = new Queue<DeliveryJobData>(target.jobQueue, {
        connection: this.connection,
        prefix: this.options.prefix,
        // Init must not wait for or probe Redis: writes fail fast and are retried by the flush loop.
        skipWaitingForReady: true,
        skipVersionCheck: true,
      });
      queue.on('error', () => {});
      this.queues.set(target.id, queue);
    }
    return queue;
  }
}

/** Consecutive events in jobs within MAX_BATCH_EVENTS and MAX_BATCH_BODY_LENGTH. */
function chunked(entries: readonly JobEntry[]): JobEntry[][] {
  const chunks: JobEntry[][] = [];
  let current: JobEntry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    const size = entry.event.body.length;
    if (current.length > 0 && (current.length >= MAX_BATCH_EVENTS || bytes + size > MAX_BATCH_BODY_LENGTH)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(entry);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** What a job carries of `event`: its body serialised once, its repeat key and room when it has them. */
function deliveryEvent(event: RelayedEvent): DeliveryEvent {
  const { id, repeatKey, type, account, receivedAt } = event;
  const body = requestBody(event);
  const room = roomOf(event);
  if (repeatKey !== undefined) {
    return room === undefined
      ? { id, repeatKey, type, account, receivedAt, body }
      : { id, repeatKey, room, type, account, receivedAt, body };
  }
  return room === undefined
    ? { id, type, account, receivedAt, body }
    : { id, room, type, account, receivedAt, body };
}

/** A chat message's room id (`room`, or `room._id` where the room is an object), read once at ingest. */
function roomOf(event: RelayedEvent): string | undefined {
  if (event.type !== 'chat message' || event.data === null || typeof event.data !== 'object')
    return undefined;
  const room = (event.data as { room?: unknown }).room;
  const id = typeof room === 'object' && room !== null ? (room as { _id?: unknown })._id : room;
  return typeof id === 'string' && id !== '' ? id : undefined;
}
