import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { Counter } from 'prom-client';
import type { BridgeMetrics } from '../admin/metrics.js';
import type { AccountConfig, BridgeConfig } from '../config/schema.js';
import { createDecoder, type DecodeFailure, type Decoder } from '../decode/decoder.js';
import { CHECKPOINT_INTERVAL_MS, SessionCheckpoints } from '../queue/checkpoints.js';
import { Enqueuer, type DirectDelivery, type EnqueueResult, type OverflowReport } from '../queue/enqueuer.js';
import { identifiedEvent } from '../route/event-id.js';
import { Router } from '../route/router.js';
import { destinationsOf, type DestinationConfig } from '../config/destinations.js';
import { catchUp, type CatchUpResult } from '../source/catch-up.js';
import { ImkitRest } from '../source/imkit-rest.js';
import { AccountSession, type SessionStatus } from '../source/session.js';
import { createTokenProvider, type TokenProvider } from '../source/tokens.js';
import { RecoveryNotLandedError } from '../errors.js';
import { Deadline, within } from './deadline.js';
import { LogThrottle } from './log-throttle.js';
import type { Logger } from './logger.js';
import { Recoveries } from './recoveries.js';
import { Slots } from './slots.js';
import type { EventSource, EventTracer } from './tracing.js';
import { redisSettings } from '../queue/redis.js';

/**
 * Catch-up starts this long before the heartbeat window that preceded a detected drop: the socket may
 * have been silently dead for up to `heartbeatTimeout` before anyone noticed. What overlaps with
 * events already received is removed by de-duplication.
 */
const CATCH_UP_SLACK_MS = 5_000;
const CATCH_UP_SLICE = 500;
/**
 * A failed recovery (IMKIT's API or Redis away) is tried again after 1 s, doubling up to 60 s: the
 * bounds of the session's own reconnect backoff, for the same kind of outage.
 */
const RECOVERY_RETRY_FIRST_MS = 1_000;
const RECOVERY_RETRY_CAP_MS = 60_000;
const CHAT_MESSAGE = 'chat message';
const QUARANTINED = 'bridge.quarantined';

/** Why this process took an account on (`start`: its own start; the others: a membership change). */
export type MoveCause = 'start' | 'join' | 'leave' | 'expire' | 'rebalance';

/** What the placer needs of ingest: take an account on, and let it go. */
export interface AccountHolder {
  /** Opens a new session for `account` (nothing when it is held already); its first live connection catches up. */
  hold(account: string, cause: MoveCause): void;
  /** Closes `account`'s session, stops its recoveries and writes its final checkpoint. */
  release(account: string): Promise<void>;
  /** Accounts with a session here. */
  held(): ReadonlySet<string>;
  /** Held accounts whose session is authenticated. */
  live(): ReadonlySet<string>;
}

export interface IngestStatus {
  accounts: SessionStatus[];
  buffered: number;
  redisReady: boolean;
}

/**
 * The ingest half: one session per held account feeding decode → id → route → enqueue, plus
 * lifecycle events and REST catch-up after gaps. Every account's pipeline (decoder, tokens) is built
 * at start; a session exists only while the account is held, and a new one is made each time it is.
 */
export class Ingest implements AccountHolder {
  private readonly instance = hostname();
  private readonly router: Router<DestinationConfig>;
  private readonly enqueuer: Enqueuer;
  private readonly checkpoints: SessionCheckpoints;
  private readonly rest: ImkitRest;
  private readonly pipelines = new Map<string, AccountPipeline>();
  private readonly sessions = new Map<string, AccountSession>();
  /** One for all sessions: an IMKIT outage logs a line per cause, not one per account. */
  private readonly sessionFailures = new LogThrottle();
  private readonly quarantineLog = new LogThrottle();
  private readonly recoveries = new Recoveries((account) => this.writeCheckpoint(account));
  /** REST catch-ups at once: a takeover of many accounts must not send IMKIT a request per account at once. */
  private readonly catchUpSlots: Slots;
  private closing: Promise<Map<string, number>> | undefined;

  private constructor(
    private readonly config: BridgeConfig,
    private readonly logger: Logger,
    private readonly metrics: BridgeMetrics,
    directDelivery: ((destinationId: string) => DirectDelivery | undefined) | undefined,
    private readonly tracer: EventTracer | undefined,
  ) {
    this.router = new Router(destinationsOf(config));
    this.catchUpSlots = new Slots(config.ingest.catchUpConcurrency);
    this.rest = new ImkitRest({
      url: config.imkit.url,
      clientKey: config.imkit.clientKey,
      apiKey: config.imkit.apiKey,
    });
    this.checkpoints = new SessionCheckpoints(redisSettings(config.redis), () =>
      this.checkpointPositions([...this.live()], Date.now()),
    );
    this.enqueuer = new Enqueuer({
      redis: redisSettings(config.redis),
      prefix: config.redis.prefix,
      destinations: destinationsOf(config),
      dedupWindowMs: config.dedupWindow,
      bufferEvents: config.limits.bufferEvents,
      logger: logger.child({ stage: 'enqueue' }),
      metrics,
      onOverflow: (report) => this.onOverflow(report),
      ...(directDelivery ? { directDelivery } : {}),
    });
  }

  static async create(
    config: BridgeConfig,
    logger: Logger,
    metrics: BridgeMetrics,
    directDelivery?: (destinationId: string) => DirectDelivery | undefined,
    tracer?: EventTracer,
  ): Promise<Ingest> {
    const ingest = new Ingest(config, logger, metrics, directDelivery, tracer);
    try {
      for (const account of config.accounts) {
        ingest.pipelines.set(account.id, await ingest.pipelineFor(account));
      }
    } catch (err) {
      await ingest.close();
      throw err;
    }
    return ingest;
  }

  /** Starts the periodic checkpoint writes; with `copies: all`, holds every account. */
  start(): void {
    this.checkpoints.start();
    if (this.config.ingest.copies === 'all') {
      for (const account of this.pipelines.keys()) this.hold(account, 'start');
    }
  }

  hold(account: string, cause: MoveCause): void {
    const pipeline = this.pipelines.get(account);
    if (this.closing || !pipeline || this.sessions.has(account)) return;
    const session = this.sessionFor(pipeline, cause === 'start' ? 'restart' : 'takeover');
    this.sessions.set(account, session);
    this.metrics.accountsHeld.set(this.sessions.size);
    session.start();
  }

  /**
   * Sockets first (no new events), then the account's recoveries; its checkpoint moves as far as what
   * landed allows and no further, so whoever holds it next catches up from there.
   */
  async release(account: string): Promise<void> {
    const session = this.sessions.get(account);
    if (!session) return;
    this.sessions.delete(account);
    this.metrics.accountsHeld.set(this.sessions.size);
    const releasedAt = Date.now();
    const wasLive = session.live;
    await session.close();
    await this.recoveries.stop(account);
    if (wasLive) await this.checkpoints.write(this.checkpointPositions([account], releasedAt));
    this.recoveries.forget(account);
    // Only holders report the account's socket: an account held nowhere has no series at all.
    this.metrics.socketConnected.remove({ account });
  }

  held(): ReadonlySet<string> {
    return new Set(this.sessions.keys());
  }

  live(): ReadonlySet<string> {
    const live = new Set<string>();
    for (const [account, session] of this.sessions) if (session.live) live.add(account);
    return live;
  }

  get redisReady(): boolean {
    return this.enqueuer.ready;
  }

  /** Why landed events are held although Redis answers (replicas short of `redis.waitReplicas`). */
  get redisProblem(): string | undefined {
    return this.enqueuer.problem;
  }

  /** Held accounts whose session is not authenticated. */
  notLive(): string[] {
    return [...this.sessions].filter(([, session]) => !session.live).map(([account]) => account);
  }

  status(): IngestStatus {
    return {
      accounts: [...this.sessions.values()].map((session) => session.status()),
      buffered: this.enqueuer.buffered,
      redisReady: this.enqueuer.ready,
    };
  }

  /**
   * Sockets first (no new events); running recoveries get up to half of the time to `deadline`,
   * landing the buffer the rest; then the final checkpoints. Resolves with the events per account
   * that were still buffered and are lost (logged and counted by the enqueuer).
   */
  close(deadline = Deadline.in(this.config.shutdownTimeout)): Promise<Map<string, number>> {
    this.closing ??= (async () => {
      const stoppedAt = Date.now();
      const live = [...this.live()];
      await Promise.all([...this.sessions.values()].map((session) => session.close()));
      await this.recoveries.close(deadline.share(0.5).remaining());
      // Whatever a recovery still waits for from IMKIT is abandoned with it.
      await this.rest.close();
      await this.enqueuer.drain(deadline.remaining());
      await within(this.checkpoints.close(this.checkpointPositions(live, stoppedAt)), deadline.remaining());
      return this.enqueuer.close();
    })();
    return this.closing;
  }

  /**
   * Writes one account's checkpoint now. Only that account's: thousands of sessions going live at
   * once (a start, a takeover) must not each write every live account's, which is quadratic.
   */
  private writeCheckpoint(account: string): void {
    void this.checkpoints.write(this.checkpointPositions([account], Date.now()));
  }

  /**
   * Per account, where its checkpoint may move: everything it received before that time has landed
   * in Redis. That is `now`, held back by any recovery still pending for it and by the oldest of its
   * events still in the in-memory buffer; an account that is held entirely (its recovery has not read
   * the checkpoint yet) is left out.
   */
  private checkpointPositions(accounts: readonly string[], now: number): Map<string, number> {
    const buffered = this.enqueuer.oldestBuffered();
    const positions = new Map<string, number>();
    for (const account of accounts) {
      const at = Math.min(now, this.recoveries.heldAt(account), buffered.get(account) ?? Infinity);
      if (Number.isFinite(at)) positions.set(account, at);
    }
    return positions;
  }

  private async pipelineFor(account: AccountConfig): Promise<AccountPipeline> {
    const log = this.logger.child({ account: account.id });
    const decoder = await createDecoder(account, this.config.limits);
    const tokens = createTokenProvider(account, this.rest);
    return { account, log, decoder, tokens, received: new Map() };
  }

  /** A closed session cannot start again, so every hold gets a new one. */
  private sessionFor(relay: AccountPipeline, firstLive: FirstLiveReason): AccountSession {
    const { account, decoder, tokens } = relay;
    return new AccountSession({
      account,
      imkit: this.config.imkit,
      tokens,
      logger: this.logger,
      metrics: this.metrics,
      failureLog: this.sessionFailures,
      decodeAck: (raw) => {
        const result = decoder.decode(raw);
        return result.ok ? result.data : undefined;
      },
      handlers: {
        onEvent: (name, payload, receivedAt) => this.onEvent(relay, name, payload, receivedAt),
        onLive: (info) => this.onLive(relay, info, firstLive),
        onDown: (info) =>
          this.emitLifecycle(account.id, 'bridge.disconnected', { at: iso(info.at), reason: info.reason }),
      },
    });
  }

  /** The per-event hot path: one decode, one id, one cached route lookup, one body serialisation. */
  private onEvent(relay: AccountPipeline, name: string, payload: unknown, receivedAt: number): void {
    this.receivedCounter(relay, name).inc();
    const decoded = relay.decoder.decode(payload);
    if (!decoded.ok) {
      this.quarantine(relay, name, decoded, receivedAt);
      return;
    }
    this.relay(relay.account.id, name, decoded.data, receivedAt, 'socket');
  }

  private relay(
    account: string,
    type: string,
    data: unknown,
    receivedAt: number,
    source: EventSource,
  ): Promise<EnqueueResult> {
    const targets = this.router.targets(account, type);
    if (targets.length === 0) return Promise.resolve({ fresh: false });
    const event = identifiedEvent(account, type, data, receivedAt, this.config.repeatWindow);
    // Only catch-up asks whether an event is fresh, and it fetches chat messages only.
    const markSeen = type === CHAT_MESSAGE;
    if (!this.tracer) return this.enqueuer.enqueue(event, targets, { markSeen });
    const landing = this.tracer.received(event, source, targets.length);
    const landed = this.enqueuer.enqueue(event, targets, { markSeen, trace: landing.context });
    void landed.then((result) => landing.landed(result.dropped === true));
    return landed;
  }

  /**
   * Keeps the raw payload and tells destinations that subscribe to `bridge.quarantined`: a payload
   * nobody can decode must still show in the audit trail. The event carries no payload content and
   * nothing of this process, so replicas quarantining the same payload report the same event.
   */
  private quarantine(
    relay: AccountPipeline,
    event: string,
    failure: DecodeFailure,
    receivedAt: number,
  ): void {
    const { reason, raw, rawType, ids } = failure;
    const account = relay.account.id;
    const sha256 = createHash('sha256').update(raw).digest('hex');
    void this.enqueuer.quarantine({ account, event, reason, raw, rawType, sha256, ids, receivedAt });
    void this.relay(
      account,
      QUARANTINED,
      { account, event, reason, size: raw.length, sha256, ids },
      receivedAt,
      'bridge',
    );
    // A stretch of garbage must not turn into a log flood.
    this.quarantineLog.log(`${account}: ${reason}`, (repeats) =>
      relay.log.warn({ event, reason, size: raw.length, ...repeats }, 'payload quarantined: cannot decode'),
    );
  }

  private receivedCounter(relay: AccountPipeline, type: string): Counter.Internal {
    let counter = relay.received.get(type);
    if (!counter) {
      counter = this.metrics.eventsReceived.labels({ account: relay.account.id, type });
      relay.received.set(type, counter);
    }
    return counter;
  }

  private onLive(
    relay: AccountPipeline,
    info: { at: number; gap?: { from: number; to: number } },
    firstLive: FirstLiveReason,
  ): void {
    const { account } = relay;
    this.emitLifecycle(account.id, 'bridge.connected', { at: iso(info.at) });
    const gap = info.gap;
    if (!gap) {
      if (account.catchUp) this.recoverSinceCheckpoint(relay, info.at, firstLive);
    } else if (!account.catchUp) {
      this.emitLifecycle(account.id, 'bridge.gap', { ...gapFields(gap), catchUp: false });
    } else {
      // The socket may have been silently dead for up to heartbeatTimeout before the drop was noticed.
      const since = gap.from - account.heartbeatTimeout;
      this.recoveries.start(account.id, since, (_hold, signal) =>
        this.recover(relay, { since, to: gap.to }, gap, signal),
      );
    }
    // Holds are in place: record the live time now rather than at the next periodic write.
    this.writeCheckpoint(account.id);
  }

  /**
   * First connection of a session: whatever nobody received since the account's checkpoint (this
   * process before a restart, a replica, or the holder this process takes the account over from) is
   * fetched over REST. Until the checkpoint has been read the account's checkpoint is not written at
   * all. Reported as a gap only when something was missing or the account was unattended for a
   * while: with replicas, a rolling restart or a handover finds a fresh checkpoint and nothing to
   * recover.
   */
  private recoverSinceCheckpoint(relay: AccountPipeline, now: number, reason: FirstLiveReason): void {
    const { account, log } = relay;
    this.recoveries.start(account.id, -Infinity, async (hold, signal) => {
      let last: number | undefined;
      const read = await this.retrying(log, 'checkpoint read', signal, async () => {
        last = await this.checkpoints.read(account.id, signal);
      });
      if (!read) return false;
      if (last === undefined || last >= now) return true;
      hold.at = last;
      return this.recover(relay, { since: last, to: now }, { from: last, to: now }, signal, {
        reason,
        reportUnless: (recovered) => recovered === 0 && now - last! <= 2 * CHECKPOINT_INTERVAL_MS,
      });
    });
  }

  /**
   * REST catch-up for what the account received from `span.since` (checkpoint time) to `span.to`;
   * every message goes through the same id and dedup path. Tried until it lands everything it
   * fetched; true then, false when shutdown stopped it first. A truncated catch-up (page cap, a
   * crowded millisecond) counts as done: it is reported incomplete, because fetching the same window
   * again would stop at the same place (docs/architecture.md, "Checkpoints").
   */
  private async recover(
    relay: AccountPipeline,
    span: { since: number; to: number },
    gap: { from: number; to: number },
    signal: AbortSignal,
    options: GapOptions = { reason: 'disconnected' },
  ): Promise<boolean> {
    const { reportUnless, ...extra } = options;
    const { reason } = extra;
    const { account, log } = relay;
    // IMKIT stamps a message before the bridge receives it: start the window a little earlier.
    const window = { from: span.since - CATCH_UP_SLACK_MS, to: span.to };
    let result: CatchUpResult | undefined;
    let recovered = 0;
    const done = await this.retrying(log, 'catch-up', signal, async () => {
      // What was buffered before the gap lands first, so `recovered` counts only what REST added.
      if (!(await this.enqueuer.drain(Infinity, signal))) signal.throwIfAborted();
      await this.catchUpSlots.run(signal, async () => {
        const token = await relay.tokens.token();
        result = await catchUp({ rest: this.rest, token, gap: window, logger: log });
        recovered = await this.land(relay, result.messages);
      });
    });
    if (!done || !result) return false;
    this.metrics.catchUpMessages.inc({ account: account.id }, result.messages.length);
    log.info(
      { fetched: result.messages.length, recovered, truncated: result.truncated, reason },
      'catch-up done',
    );
    if (!reportUnless?.(recovered)) {
      this.emitLifecycle(account.id, 'bridge.gap', {
        ...gapFields(gap),
        ...extra,
        catchUp: true,
        fetched: result.messages.length,
        recovered,
        complete: !result.truncated,
      });
    }
    return true;
  }

  /**
   * Feeds recovered messages in slices that fit the buffer, each landing before the next: a catch-up
   * larger than the buffer must not overflow it and trigger another catch-up. Resolves with how many
   * were new; rejects if any did not reach Redis.
   */
  private async land(relay: AccountPipeline, messages: readonly unknown[]): Promise<number> {
    const slice = Math.max(1, Math.min(CATCH_UP_SLICE, Math.floor(this.config.limits.bufferEvents / 2)));
    let recovered = 0;
    for (let i = 0; i < messages.length; i += slice) {
      const outcomes = await Promise.all(
        messages.slice(i, i + slice).map((message) => {
          this.receivedCounter(relay, CHAT_MESSAGE).inc();
          return this.relay(relay.account.id, CHAT_MESSAGE, message, Date.now(), 'catch-up');
        }),
      );
      if (outcomes.some((o) => o.dropped)) throw new RecoveryNotLandedError();
      recovered += outcomes.filter((o) => o.fresh).length;
    }
    return recovered;
  }

  /** Runs `attempt` until it succeeds, waiting longer after each failure; false once `signal` aborts. */
  private async retrying(
    log: Logger,
    what: string,
    signal: AbortSignal,
    attempt: () => Promise<void>,
  ): Promise<boolean> {
    for (let failures = 0; !signal.aborted; failures++) {
      try {
        await attempt();
        return true;
      } catch (err) {
        if (signal.aborted) break;
        const retryInMs = Math.min(RECOVERY_RETRY_FIRST_MS * 2 ** failures, RECOVERY_RETRY_CAP_MS);
        log.warn({ err, retryInMs }, `${what} failed; trying again`);
        await sleep(retryInMs, signal);
      }
    }
    return false;
  }

  private onOverflow(report: OverflowReport): void {
    const relay = this.pipelines.get(report.account);
    const gap = { from: report.from, to: report.to };
    if (relay?.account.catchUp) {
      this.recoveries.start(report.account, report.from, (_hold, signal) =>
        this.recover(relay, { since: report.from, to: report.to }, gap, signal, {
          reason: 'buffer-overflow',
          dropped: report.dropped,
        }),
      );
    } else {
      this.emitLifecycle(report.account, 'bridge.gap', {
        ...gapFields(gap),
        reason: 'buffer-overflow',
        dropped: report.dropped,
        catchUp: false,
      });
    }
  }

  /** Every replica reports its own session, so lifecycle events name the instance (the pod) too. */
  private emitLifecycle(account: string, type: string, data: Record<string, unknown>): void {
    void this.relay(account, type, { account, instance: this.instance, ...data }, Date.now(), 'bridge');
  }
}

/** `bridge.gap`'s reason for what a session's first connection recovers. */
type FirstLiveReason = 'restart' | 'takeover';

interface GapOptions {
  reason: 'disconnected' | 'buffer-overflow' | FirstLiveReason;
  dropped?: number;
  /** Skip the bridge.gap report when this says nothing worth reporting happened. */
  reportUnless?: (recovered: number) => boolean;
}

/** What the per-event path needs of an account. */
interface AccountPipeline {
  readonly account: AccountConfig;
  readonly log: Logger;
  readonly decoder: Decoder;
  readonly tokens: TokenProvider;
  readonly received: Map<string, Counter.Internal>;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function gapFields(gap: { from: number; to: number }): Record<string, unknown> {
  return { from: iso(gap.from), to: iso(gap.to), durationMs: gap.to - gap.from };
}
