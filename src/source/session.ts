import { io, type Socket } from 'socket.io-client';
import type { BridgeMetrics } from '../admin/metrics.js';
import type { AccountConfig, BridgeConfig } from '../config/schema.js';
import { describeError } from '../lifecycle/describe-error.js';
import { LogThrottle } from '../lifecycle/log-throttle.js';
import type { Logger } from '../lifecycle/logger.js';
import type { TokenProvider } from './tokens.js';

/** What an account session hands downstream. Handlers must not throw (a throw is logged and ignored). */
export interface SessionHandlers {
  /** One IMKIT event, payload exactly as received (decoding is the next stage). */
  onEvent(name: string, payload: unknown, receivedAt: number): void;
  /** After each successful auth2; `gap` is the interval since the previous live period ended (absent the first time). */
  onLive(info: { at: number; gap?: { from: number; to: number } }): void;
  /** A live period ended (not called by `close()`). */
  onDown(info: { at: number; reason: string }): void;
}

export type SessionState = 'connecting' | 'authenticating' | 'live' | 'backing-off' | 'closed';

export interface SessionStatus {
  id: string;
  state: SessionState;
  /** ISO time the session entered `state`. */
  since: string;
  /** ISO time of the last relayed event. */
  lastEventAt?: string;
  /** Times the session failed (connect, auth or a live drop) and scheduled a reconnect. */
  reconnects: number;
  /** The latest failure, e.g. `auth_failed: RC 401 Unauthorized`. Never contains the token. */
  lastError?: string;
}

export interface SessionTiming {
  /** Wait for the conf and auth2 acks, ms. Default 10 000. */
  ackTimeoutMs?: number;
  /** Socket.IO connect timeout, ms. Default 20 000. */
  connectTimeoutMs?: number;
  /** First backoff ceiling, ms; doubles per consecutive failure. Default 1 000. */
  backoffBaseMs?: number;
  /** Largest backoff ceiling, ms. Default 60 000. */
  backoffCapMs?: number;
  /** A live period at least this long resets the backoff. Default 60 000. */
  healthyAfterMs?: number;
}

export interface AccountSessionOptions {
  account: AccountConfig;
  imkit: BridgeConfig['imkit'];
  tokens: TokenProvider;
  logger: Logger;
  metrics: BridgeMetrics;
  handlers: SessionHandlers;
  /** Decodes an auth2 ack under `encoding: custom` (the account's codec). */
  decodeAck?: (raw: unknown) => unknown;
  timing?: SessionTiming;
  /** Source of jitter in [0, 1); injectable so backoff spacing can be checked exactly. */
  random?: () => number;
  /**
   * Collapses repeated failure lines; share one between the sessions of a process so an IMKIT
   * outage logs a line per cause, not one per account and attempt. Default: one of its own.
   */
  failureLog?: LogThrottle;
}

/** Failure reasons, also the `reason` label of `imkit_bridge_reconnects_total`. */
export type FailureReason =
  | 'connect_error'
  | 'server_disconnect'
  | 'disconnected'
  | 'auth_failed'
  | 'auth_timeout'
  | 'token_unavailable'
  | 'heartbeat_timeout';

/**
 * One authenticated IMKIT Socket.IO session for one account. Every connection sends conf (unless
 * the encoding is `none`) and auth2; Socket.IO's own reconnection is off because a server-side
 * disconnect leaves the client inactive and a failed auth2 would otherwise reconnect in a tight
 * loop, so this class reconnects with jittered exponential backoff itself. An app-level watchdog
 * drops a connection that has carried nothing for `heartbeatTimeout`, which is what catches
 * half-open TCP.
 */
export class AccountSession {
  readonly id: string;
  private readonly opts: AccountSessionOptions;
  private readonly log: Logger;
  private readonly timing: Required<SessionTiming>;
  private readonly relayAll: boolean;
  private readonly relayed: ReadonlySet<string>;
  private readonly failureLog: LogThrottle;
  private socket: Socket | undefined;
  private state: SessionState = 'connecting';
  private stateSince = Date.now();
  private started = false;
  private failures = 0;
  private reconnects = 0;
  private lastError: string | undefined;
  private lastEventAt: number | undefined;
  private lastTraffic = 0;
  private liveSince = 0;
  private downSince: number | undefined;
  private lastToken: string | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(opts: AccountSessionOptions) {
    this.opts = opts;
    this.id = opts.account.id;
    this.log = opts.logger.child({ account: this.id });
    const t = opts.timing ?? {};
    this.timing = {
      ackTimeoutMs: t.ackTimeoutMs ?? 10_000,
      connectTimeoutMs: t.connectTimeoutMs ?? 20_000,
      backoffBaseMs: t.backoffBaseMs ?? 1_000,
      backoffCapMs: t.backoffCapMs ?? 60_000,
      healthyAfterMs: t.healthyAfterMs ?? 60_000,
    };
    this.relayAll = opts.account.events.includes('*');
    this.relayed = new Set(opts.account.events);
    this.failureLog = opts.failureLog ?? new LogThrottle();
    opts.metrics.socketConnected.set({ account: this.id }, 0);
  }

  /** True while authenticated (readiness). */
  get live(): boolean {
    return this.state === 'live';
  }

  status(): SessionStatus {
    return {
      id: this.id,
      state: this.state,
      since: new Date(this.stateSince).toISOString(),
      ...(this.lastEventAt !== undefined ? { lastEventAt: new Date(this.lastEventAt).toISOString() } : {}),
      reconnects: this.reconnects,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
    };
  }

  start(): void {
    if (this.started || this.state === 'closed') return;
    this.started = true;
    this.connect();
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    clearTimeout(this.retryTimer);
    clearInterval(this.watchdog);
    const socket = this.socket;
    this.socket = undefined;
    socket?.disconnect();
    this.opts.metrics.socketConnected.set({ account: this.id }, 0);
    this.setState('closed');
  }

  private connect(): void {
    if (this.state === 'closed') return;
    this.setState('connecting');
    const socket = io(this.opts.imkit.url, {
      forceNew: true,
      transports: ['websocket'],
      reconnection: false,
      timeout: this.timing.connectTimeoutMs,
    });
    this.socket = socket;
    const current = () => this.socket === socket;
    const touch = () => {
      if (current()) this.lastTraffic = Date.now();
    };
    socket.io.on('packet', touch);
    socket.io.on('ping', touch);
    socket.on('connect', () => {
      if (current()) void this.handshake(socket, current);
    });
    socket.on('connect_error', (err) => {
      if (current()) this.fail('connect_error', connectErrorCause(err));
    });
    socket.on('disconnect', (reason) => {
      if (current())
        this.fail(reason === 'io server disconnect' ? 'server_disconnect' : 'disconnected', reason);
    });
    socket.onAny((name: string, ...args: unknown[]) => {
      if (!current()) return;
      touch();
      if (name === 'ping') {
        socket.emit('pong');
        return;
      }
      if (!this.relayAll && !this.relayed.has(name)) return;
      const receivedAt = Date.now();
      this.lastEventAt = receivedAt;
      // IMKIT events carry one argument; keep any extra ones rather than drop them.
      this.call('onEvent', () =>
        this.opts.handlers.onEvent(name, args.length <= 1 ? args[0] : args, receivedAt),
      );
    });
    this.lastTraffic = Date.now();
    this.startWatchdog(current);
  }

  private async handshake(socket: Socket, current: () => boolean): Promise<void> {
    const { account, imkit } = this.opts;
    const ackTimeout = this.timing.ackTimeoutMs;
    if (account.encoding !== 'none') {
      try {
        await socket.timeout(ackTimeout).emitWithAck('conf', { encoding: account.encoding });
      } catch {
        // Events on one socket are ordered, so auth2 still follows conf; a server that does not ack conf still works.
        if (!current()) return;
        this.log.debug({ encoding: account.encoding }, 'conf not acknowledged; sending auth2 anyway');
      }
      if (!current()) return;
    }
    this.setState('authenticating');
    let token: string;
    try {
      token = await this.opts.tokens.token();
    } catch (err) {
      if (current()) this.fail('token_unavailable', err instanceof Error ? err.message : String(err));
      return;
    }
    if (!current()) return;
    this.lastToken = token;
    const extra: Record<string, string> = { deviceId: account.deviceId };
    if (imkit.clientKey) {
      extra['IM-CLIENT-KEY'] = imkit.clientKey;
      extra.CLIENT_KEY = imkit.clientKey;
    }
    extra['IM-Authorization'] = token;
    extra.Authorization = token;
    // A callback, not emitWithAck: a refusing server sends the ack and then closes the socket, often in
    // one TCP read. The callback runs while the ack packet is handled, before the disconnect packet;
    // a promise continuation would run after it, and the failure would look like a plain disconnect
    // (and the refused token would never be invalidated).
    socket.timeout(ackTimeout).emit('auth2', token, extra, (err: Error | null, ack: unknown) => {
      if (!current()) return;
      if (err) {
        this.fail('auth_timeout', `no auth2 ack within ${ackTimeout} ms`);
        return;
      }
      const refusal = this.refusal(ack);
      if (refusal !== undefined) {
        this.opts.tokens.invalidate();
        this.fail('auth_failed', refusal);
        return;
      }
      this.goLive();
    });
  }

  /** Why an auth2 ack is not a success, or undefined when it is (`RC === 0`). */
  private refusal(raw: unknown): string | undefined {
    if (raw === undefined || raw === null) return 'empty ack';
    if (raw === 'NO ACK') return 'NO ACK';
    let ack: unknown = raw;
    if (typeof raw === 'string') {
      ack = this.opts.decodeAck ? safe(() => this.opts.decodeAck!(raw)) : undefined;
      ack ??= safe(() => JSON.parse(Buffer.from(raw, 'base64').toString('utf8')));
      ack ??= safe(() => JSON.parse(raw));
    }
    if (typeof ack !== 'object' || ack === null) return 'unreadable ack';
    const { RC, RM } = ack as { RC?: unknown; RM?: unknown };
    if (RC === 0) return undefined;
    return `RC ${String(RC)}${typeof RM === 'string' ? ` ${RM.slice(0, 200)}` : ''}`;
  }

  private goLive(): void {
    const at = Date.now();
    this.liveSince = at;
    this.setState('live');
    this.opts.metrics.socketConnected.set({ account: this.id }, 1);
    const gap = this.downSince !== undefined ? { from: this.downSince, to: at } : undefined;
    this.downSince = undefined;
    this.log.info(gap ? { gapMs: gap.to - gap.from } : {}, 'IMKIT session live');
    this.call('onLive', () => this.opts.handlers.onLive(gap ? { at, gap } : { at }));
  }

  private fail(reason: FailureReason, detail: string): void {
    if (this.state === 'closed') return;
    const socket = this.socket;
    this.socket = undefined;
    socket?.disconnect();
    clearInterval(this.watchdog);
    const at = Date.now();
    if (this.state === 'live') {
      this.opts.metrics.socketConnected.set({ account: this.id }, 0);
      this.downSince = at;
      if (at - this.liveSince >= this.timing.healthyAfterMs) this.failures = 0;
      this.call('onDown', () => this.opts.handlers.onDown({ at, reason }));
    }
    this.failures++;
    this.reconnects++;
    this.opts.metrics.reconnects.inc({ account: this.id, reason });
    const safeDetail = this.scrub(detail);
    this.lastError = `${reason}: ${safeDetail}`;
    const delay = this.backoff();
    const attempt = this.failures;
    this.failureLog.log(this.lastError, (repeats) =>
      this.log.warn(
        { reason, detail: safeDetail, attempt, retryInMs: delay, ...repeats },
        'IMKIT session failed; will reconnect',
      ),
    );
    this.setState('backing-off');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Full jitter between the base and a ceiling that doubles per consecutive failure, up to the cap. */
  private backoff(): number {
    const { backoffBaseMs: base, backoffCapMs: cap } = this.timing;
    const ceiling = Math.min(cap, base * 2 ** Math.min(this.failures - 1, 30));
    return Math.round(base + (this.opts.random ?? Math.random)() * (ceiling - base));
  }

  private startWatchdog(current: () => boolean): void {
    clearInterval(this.watchdog);
    const timeout = this.opts.account.heartbeatTimeout;
    this.watchdog = setInterval(
      () => {
        if (current() && Date.now() - this.lastTraffic > timeout) {
          this.fail('heartbeat_timeout', `nothing received for ${timeout} ms`);
        }
      },
      Math.max(50, Math.min(1_000, timeout / 4)),
    );
    this.watchdog.unref();
  }

  private setState(state: SessionState): void {
    if (this.state === state) return;
    this.state = state;
    this.stateSince = Date.now();
  }

  /** Server messages and library errors could echo what was sent; the token must never reach a log. */
  private scrub(text: string): string {
    return this.lastToken ? text.split(this.lastToken).join('[redacted]') : text;
  }

  private call(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err, handler: what }, 'session handler threw');
    }
  }
}

/**
 * socket.io-client reports every failed connection as "websocket error" (or "timeout"); the transport
 * error's `description` is the WebSocket error event, whose `error` is Node's own: ECONNREFUSED,
 * ENOTFOUND, a certificate code, or "Unexpected server response: 403" for a refused handshake.
 */
function connectErrorCause(err: Error): string {
  const { description } = err as { description?: unknown };
  const underlying =
    typeof description === 'object' && description !== null && 'error' in description
      ? description.error
      : (description ?? err.cause);
  return underlying === undefined ? err.message : `${err.message}: ${describeError(underlying)}`;
}

function safe<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}
