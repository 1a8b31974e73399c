import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { Counter } from 'prom-client';
import type { BridgeMetrics } from '../admin/metrics.js';
import type { AccountConfig, BridgeConfig } from '../config/schema.js';
import { createDecoder, type DecodeFailure, type Decoder } from '../decode/decoder.js';
import { CHECKPOINT_INTERVAL_MS, SessionCheckpoints } from '../queue/checkpoints.js';
import { Enqueuer, type DirectDelivery, type OverflowReport } from '../queue/enqueuer.js';
import { identifiedEvent } from '../route/event-id.js';
import { Router } from '../route/router.js';
import { catchUp } from '../source/catch-up.js';
import { ImkitRest } from '../source/imkit-rest.js';
import { AccountSession, type SessionStatus } from '../source/session.js';
import { createTokenProvider, type TokenProvider } from '../source/tokens.js';
import { LogThrottle } from './log-throttle.js';
import type { Logger } from './logger.js';

/**
 * Catch-up starts this long before the heartbeat window that preceded a detected drop: the socket may
 * have been silently dead for up to `heartbeatTimeout` before anyone noticed. What overlaps with
 * events already received is removed by de-duplication.
 */
const CATCH_UP_SLACK_MS = 5_000;
const CATCH_UP_DRAIN_MS = 10_000;
const CATCH_UP_SLICE = 500;
const CHAT_MESSAGE = 'chat message';
const QUARANTINED = 'bridge.quarantined';

export interface IngestStatus {
  accounts: SessionStatus[];
  buffered: number;
  redisReady: boolean;
}

/**
 * The ingest half: one session per account feeding decode → id → route → enqueue, plus lifecycle
 * events and REST catch-up after gaps.
 */
export class Ingest {
  private readonly instance = hostname();
  private readonly router: Router;
  private readonly enqueuer: Enqueuer;
  private readonly checkpoints: SessionCheckpoints;
  private readonly rest: ImkitRest;
  private readonly accounts: AccountRelay[] = [];
  /** One for all sessions: an IMKIT outage logs a line per cause, not one per account. */
  private readonly sessionFailures = new LogThrottle();
  private readonly quarantineLog = new LogThrottle();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly config: BridgeConfig,
    private readonly logger: Logger,
    private readonly metrics: BridgeMetrics,
    directDelivery: ((webhookId: string) => DirectDelivery | undefined) | undefined,
  ) {
    this.router = new Router(config.webhooks);
    this.rest = new ImkitRest({
      url: config.imkit.url,
      clientKey: config.imkit.clientKey,
      apiKey: config.imkit.apiKey,
    });
    this.checkpoints = new SessionCheckpoints(config.redis.url, config.redis.prefix, () =>
      this.accounts.filter((r) => r.session.live).map((r) => r.account.id),
    );
    this.enqueuer = new Enqueuer({
      redisUrl: config.redis.url,
      prefix: config.redis.prefix,
      webhooks: config.webhooks,
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
    directDelivery?: (webhookId: string) => DirectDelivery | undefined,
  ): Promise<Ingest> {
    const ingest = new Ingest(config, logger, metrics, directDelivery);
    try {
      for (const account of config.accounts) {
        ingest.accounts.push(await ingest.relayFor(account));
      }
    } catch (err) {
      await ingest.close();
      throw err;
    }
    return ingest;
  }

  start(): void {
    this.checkpoints.start();
    for (const relay of this.accounts) relay.session.start();
  }

  get redisReady(): boolean {
    return this.enqueuer.ready;
  }

  notLive(): string[] {
    return this.accounts.filter((r) => !r.session.live).map((r) => r.account.id);
  }

  status(): IngestStatus {
    return {
      accounts: this.accounts.map((r) => r.session.status()),
      buffered: this.enqueuer.buffered,
      redisReady: this.enqueuer.ready,
    };
  }

  /** Sockets first (no new events), then whatever is buffered goes to Redis within the enqueuer's bound. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // The final checkpoint is written while the sessions are still live.
      await this.checkpoints.close();
      await Promise.all(this.accounts.map((r) => r.session.close()));
      await this.enqueuer.close();
      await this.rest.close();
    })();
    return this.closing;
  }

  private async relayFor(account: AccountConfig): Promise<AccountRelay> {
    const log = this.logger.child({ account: account.id });
    const decoder = await createDecoder(account, this.config.limits);
    const tokens = createTokenProvider(account, this.rest);
    const relay: AccountPipeline = {
      account,
      log,
      decoder,
      tokens,
      received: new Map(),
    };
    const session = new AccountSession({
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
        onLive: (info) => this.onLive(relay, info),
        onDown: (info) =>
          this.emitLifecycle(account.id, 'bridge.disconnected', { at: iso(info.at), reason: info.reason }),
      },
    });
    return { ...relay, session };
  }

  /** The per-event hot path: one decode, one id, one cached route lookup, one body serialisation. */
  private onEvent(relay: AccountPipeline, name: string, payload: unknown, receivedAt: number): void {
    this.receivedCounter(relay, name).inc();
    const decoded = relay.decoder.decode(payload);
    if (!decoded.ok) {
      this.quarantine(relay, name, decoded, receivedAt);
      return;
    }
    this.relay(relay.account.id, name, decoded.data, receivedAt);
  }

  private relay(
    account: string,
    type: string,
    data: unknown,
    receivedAt: number,
  ): Promise<{ fresh: boolean }> {
    const targets = this.router.targets(account, type);
    if (targets.length === 0) return Promise.resolve({ fresh: false });
    const event = identifiedEvent(account, type, data, receivedAt, this.config.repeatWindow);
    // Only catch-up asks whether an event is fresh, and it fetches chat messages only.
    return this.enqueuer.enqueue(event, targets, { markSeen: type === CHAT_MESSAGE });
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

  private onLive(relay: AccountPipeline, info: { at: number; gap?: { from: number; to: number } }): void {
    const { account } = relay;
    this.emitLifecycle(account.id, 'bridge.connected', { at: iso(info.at) });
    const gap = info.gap;
    if (!gap) {
      if (account.catchUp) void this.recoverSinceCheckpoint(relay, info.at);
      return;
    }
    void this.checkpoints.markLive(account.id).catch(() => undefined);
    if (!account.catchUp) {
      this.emitLifecycle(account.id, 'bridge.gap', { ...gapFields(gap), catchUp: false });
      return;
    }
    void this.recover(
      relay,
      { from: gap.from - account.heartbeatTimeout - CATCH_UP_SLACK_MS, to: gap.to },
      gap,
    );
  }

  /**
   * First connection of this process: whatever nobody received since the account was last live
   * anywhere (this process before a restart, or a replica) is fetched over REST. Reported as a gap
   * only when something was missing or the account was unattended for a while: with replicas, a
   * rolling restart finds a fresh checkpoint and nothing to recover.
   */
  private async recoverSinceCheckpoint(relay: AccountPipeline, now: number): Promise<void> {
    const last = await this.checkpoints.lastLive(relay.account.id);
    await this.checkpoints.markLive(relay.account.id).catch(() => undefined);
    if (last === undefined || last >= now) return;
    const gap = { from: last, to: now };
    await this.recover(relay, { from: last - CATCH_UP_SLACK_MS, to: now }, gap, {
      reason: 'restart',
      reportUnless: (recovered) => recovered === 0 && now - last <= 2 * CHECKPOINT_INTERVAL_MS,
    });
  }

  /** REST catch-up for an interval; every message goes through the same id and dedup path. */
  private async recover(
    relay: AccountPipeline,
    window: { from: number; to: number },
    gap: { from: number; to: number },
    options: GapOptions = { reason: 'disconnected' },
  ): Promise<void> {
    const { reportUnless, ...extra } = options;
    const { reason } = extra;
    const { account, log } = relay;
    try {
      // What was buffered before the gap lands first, so `recovered` counts only what REST added.
      await this.enqueuer.drain(CATCH_UP_DRAIN_MS);
      const token = await relay.tokens.token();
      const result = await catchUp({ rest: this.rest, token, gap: window, logger: log });
      // Fed in slices that fit the buffer, each landing before the next: a catch-up larger than the
      // buffer must not overflow it and trigger another catch-up.
      const slice = Math.max(1, Math.min(CATCH_UP_SLICE, Math.floor(this.config.limits.bufferEvents / 2)));
      let recovered = 0;
      for (let i = 0; i < result.messages.length; i += slice) {
        const outcomes = await Promise.all(
          result.messages.slice(i, i + slice).map((message) => {
            this.receivedCounter(relay, CHAT_MESSAGE).inc();
            return this.relay(account.id, CHAT_MESSAGE, message, Date.now());
          }),
        );
        recovered += outcomes.filter((o) => o.fresh).length;
      }
      this.metrics.catchUpMessages.inc({ account: account.id }, result.messages.length);
      log.info(
        { fetched: result.messages.length, recovered, truncated: result.truncated, reason },
        'catch-up done',
      );
      if (reportUnless?.(recovered)) return;
      this.emitLifecycle(account.id, 'bridge.gap', {
        ...gapFields(gap),
        ...extra,
        catchUp: true,
        fetched: result.messages.length,
        recovered,
        complete: !result.truncated,
      });
    } catch (err) {
      log.warn(
        { err: { code: (err as { code?: string }).code, message: (err as Error).message } },
        'catch-up failed',
      );
      this.emitLifecycle(account.id, 'bridge.gap', {
        ...gapFields(gap),
        ...extra,
        catchUp: true,
        recovered: 0,
        complete: false,
        error: (err as Error).message,
      });
    }
  }

  private onOverflow(report: OverflowReport): void {
    const relay = this.accounts.find((r) => r.account.id === report.account);
    const gap = { from: report.from, to: report.to };
    if (relay?.account.catchUp) {
      // IMKIT stamps a message before the bridge receives it: start the window a little earlier.
      const window = { from: report.from - CATCH_UP_SLACK_MS, to: report.to };
      void this.recover(relay, window, gap, { reason: 'buffer-overflow', dropped: report.dropped });
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
    void this.relay(account, type, { account, instance: this.instance, ...data }, Date.now());
  }
}

interface GapOptions {
  reason: 'disconnected' | 'buffer-overflow' | 'restart';
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

interface AccountRelay extends AccountPipeline {
  readonly session: AccountSession;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function gapFields(gap: { from: number; to: number }): Record<string, unknown> {
  return { from: iso(gap.from), to: iso(gap.to), durationMs: gap.to - gap.from };
}
