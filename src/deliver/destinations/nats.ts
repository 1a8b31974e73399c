import type { JetStreamClient, JetStreamManager, PubAck } from '@nats-io/jetstream';
import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import type { Logger } from '../../lifecycle/logger.js';
import type { DeliveryEvent } from '../../queue/job.js';
import { withDeadline } from '../deadline.js';
import type {
  CommonDestinationConfig,
  Destination,
  DestinationDeps,
  DestinationKind,
  SendOutcome,
} from '../destination.js';
import { renderTemplate, templateProblem } from '../template.js';

export const DEFAULT_NATS_SUBJECT = 'imkit.{account}.{type}';
/** JetStream's err_code for a message over the stream's max_msg_size. */
const STREAM_MESSAGE_TOO_BIG = 10054;

const natsUrl = z
  .url({ protocol: /^(nats|tls)$/, error: 'must be a nats:// or tls:// URL' })
  .refine((raw) => {
    const url = new URL(raw);
    return url.hostname !== '' && (url.pathname === '' || url.pathname === '/') && !url.search && !url.hash;
  }, 'must be nats://[user:pass@ or token@]host[:port] (no path, query or fragment)');

const subject = z
  .string()
  .default(DEFAULT_NATS_SUBJECT)
  .superRefine((template, ctx) => {
    const problem = templateProblem(template) ?? subjectProblem(renderSample(template));
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

const options = z.strictObject({ url: natsUrl, subject });
export type NatsOptions = z.output<typeof options>;

/** `nats`: a JetStream publish per event, acknowledged by the stream that captures the subject. */
/** The headers of the contract (docs/destinations/nats.md) besides `Nats-Msg-Id`, set on `h`. */
export function withEventHeaders(h: MsgHdrs, event: DeliveryEvent): MsgHdrs {
  h.set('Imkit-Event-Type', event.type);
  h.set('Imkit-Account', event.account);
  // The receive time (the body's `timestamp`), so every attempt carries the same headers.
  h.set('Imkit-Timestamp', new Date(event.receivedAt).toISOString());
  // With tracing on: the attempt's W3C Trace Context (docs/operations.md, "Tracing").
  if (event.traceparent !== undefined) h.set('traceparent', event.traceparent);
  if (event.tracestate !== undefined) h.set('tracestate', event.tracestate);
  return h;
}

export const nats: DestinationKind<'nats', typeof options> = {
  type: 'nats',
  options,
  describe: (config) => `${endpointOf(new URL(config.url))} ${config.subject}`,
  create: (config, deps) => new NatsDestination(config, deps),
};

/**
 * Why `subject` (placeholders already substituted) is not a subject JetStream can capture: tokens
 * must be non-empty, and a publish subject takes no whitespace and no wildcard.
 */
export function subjectProblem(subject: string): string | undefined {
  if (/\s/u.test(subject)) return 'a NATS subject takes no whitespace';
  if (/[*>]/.test(subject)) return 'a NATS subject to publish to takes no wildcard (* or >)';
  if (subject.split('.').some((token) => token === '')) {
    return 'a NATS subject is non-empty dot-separated tokens (no leading, trailing or double dot)';
  }
  return undefined;
}

function renderSample(template: string): string {
  return renderTemplate(template, { id: 'x', type: 'x', account: 'x', room: 'x', receivedAt: 0, body: '' });
}

/** What the client is given: the server, and the URL's credentials as options (never in `servers`). */
interface Endpoint {
  readonly server: string;
  readonly tls: boolean;
  readonly user?: string;
  readonly pass?: string;
  readonly token?: string;
}

export function parseNatsUrl(raw: string): Endpoint {
  const url = new URL(raw);
  const user = decodeURIComponent(url.username);
  const pass = decodeURIComponent(url.password);
  const server = url.host;
  const tls = url.protocol === 'tls:';
  if (user && url.password !== '') return { server, tls, user, pass };
  // `token@host`: one credential and no colon is NATS's token form.
  if (user) return { server, tls, token: user };
  return { server, tls };
}

function endpointOf(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

interface Link {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly headers: () => MsgHdrs;
}

class NatsDestination implements Destination {
  readonly type = 'nats';
  readonly id: string;
  private readonly endpoint: Endpoint;
  private readonly secrets: readonly string[];
  private readonly log: Logger;
  /** One connection per destination, shared by every send; replaced only once the client gives up on it. */
  private link: Promise<Link> | undefined;
  private closed = false;
  /** Streams whose duplicate window was checked once (best effort, for a warning). */
  private readonly checkedStreams = new Set<string>();

  constructor(
    private readonly config: NatsOptions & CommonDestinationConfig,
    private readonly deps: DestinationDeps,
  ) {
    this.id = config.id;
    this.endpoint = parseNatsUrl(config.url);
    this.secrets = [this.endpoint.pass, this.endpoint.token].filter((s): s is string => !!s);
    this.log = deps.logger;
  }

  async connect(): Promise<void> {
    // Callers need not await this, so a failure is logged here and the next send tries again.
    await this.linked().catch(() => undefined);
  }

  async send(event: DeliveryEvent, signals: readonly AbortSignal[]): Promise<SendOutcome> {
    if (this.closed) return { kind: 'retry', reason: 'destination closed' };
    // The type comes from the IMKIT server as sent; a header value cannot hold a line break.
    if (/[\r\n]/.test(event.type)) {
      return {
        kind: 'permanent',
        reason: 'the event type has a line break, which a NATS header cannot carry',
      };
    }
    const subject = renderTemplate(this.config.subject, event);
    const timeout = this.config.timeout;
    let link: Link | undefined;
    try {
      const result = await withDeadline(
        async () => {
          link = await this.linked();
          return link.js.publish(subject, event.body, {
            msgID: event.id,
            headers: this.headersFor(link, event),
            timeout,
          });
        },
        timeout,
        signals,
      );
      if (!result.ok) {
        if (result.why === 'aborted') return { kind: 'aborted' };
        return {
          kind: 'retry',
          reason: link ? `no PubAck within ${timeout} ms` : `not connected within ${timeout} ms`,
        };
      }
      this.checkDuplicateWindow(link!, result.value.stream);
      return delivered(result.value);
    } catch (err) {
      return this.classify(err, subject, event, link);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const pending = this.link;
    this.link = undefined;
    if (!pending) return;
    // A connect still in flight is bounded by the client's own `timeout` (the destination's).
    const link = await pending.catch(() => undefined);
    // No drain: we hold no subscription and nothing is in flight when the lane closes us, and a drain
    // would wait on a server that is down. A publish cut off here was reported aborted or retry.
    await link?.nc.close().catch(() => undefined);
  }

  private linked(): Promise<Link> {
    if (!this.link) {
      const pending = this.open();
      this.link = pending;
      pending.catch((cause: unknown) => {
        if (this.link === pending) this.link = undefined;
        const err = this.safeError(cause);
        this.log.warn({ err, server: this.endpoint.server }, 'nats: cannot connect');
      });
    }
    return this.link;
  }

  private async open(): Promise<Link> {
    const [{ connect, headers }, { jetstream, jetstreamManager }] = await Promise.all([
      import('@nats-io/transport-node'),
      import('@nats-io/jetstream'),
    ]);
    const { server, tls, user, pass, token } = this.endpoint;
    // The first connect is one attempt (the send that needs it reports a retry, the schedule paces the
    // next); once connected, the client reconnects by itself, forever, buffering what is published.
    const nc = await connect({
      servers: server,
      ...(tls ? { tls: {} } : {}),
      ...(user !== undefined ? { user, pass } : {}),
      ...(token !== undefined ? { token } : {}),
      name: `imkit-bridge-${this.config.id}`,
      timeout: this.config.timeout,
      reconnect: true,
      maxReconnectAttempts: -1,
      waitOnFirstConnect: false,
    });
    const link: Link = {
      nc,
      js: jetstream(nc),
      jsm: await jetstreamManager(nc, { checkAPI: false }),
      headers,
    };
    this.log.info({ server }, 'nats: connected');
    this.watch(nc);
    return link;
  }

  /** Logs the connection's life, and forgets it once closed so the next send connects anew. */
  private watch(nc: NatsConnection): void {
    const server = this.endpoint.server;
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'disconnect') this.log.warn({ server }, 'nats: disconnected; reconnecting');
        else if (status.type === 'reconnect') this.log.info({ server }, 'nats: reconnected');
        else if (status.type === 'error') {
          const err = this.safeError(status.error);
          this.log.warn({ err, server }, 'nats: error');
        }
      }
    })();
    void nc.closed().then((cause) => {
      if (this.closed) return;
      this.link = undefined;
      const err = cause ? this.safeError(cause) : undefined;
      this.log.warn({ err, server }, 'nats: connection closed; the next send connects again');
    });
  }

  private headersFor(link: Link, event: DeliveryEvent): MsgHdrs {
    return withEventHeaders(link.headers(), event);
  }

  private classify(err: unknown, subject: string, event: DeliveryEvent, link: Link | undefined): SendOutcome {
    const name = err instanceof Error ? err.name : '';
    const message = this.redact(err instanceof Error ? err.message : String(err));
    if (name === 'InvalidArgumentError' && /max_payload/.test(message)) {
      const limit = link?.nc.info?.max_payload;
      return {
        kind: 'permanent',
        reason:
          `message of ${Buffer.byteLength(event.body)} body bytes plus headers exceeds the server's max_payload` +
          (limit ? ` (${limit} bytes)` : ''),
      };
    }
    if (name === 'JetStreamApiError' && (err as { code?: unknown }).code === STREAM_MESSAGE_TOO_BIG) {
      return { kind: 'permanent', reason: `stream refused the message: ${message}` };
    }
    if (name === 'JetStreamNotEnabled') {
      return { kind: 'retry', reason: `no stream captures ${subject} (503 no responders)` };
    }
    if (name === 'TimeoutError')
      return { kind: 'retry', reason: `no PubAck within ${this.config.timeout} ms` };
    if (name === 'ClosedConnectionError' || name === 'DrainingConnectionError') {
      return { kind: 'retry', reason: 'connection closed' };
    }
    if (name === 'JetStreamApiError')
      return { kind: 'retry', reason: `stream refused the message: ${message}` };
    if (!link) return { kind: 'retry', reason: `not connected: ${message}` };
    return { kind: 'retry', reason: `publish failed: ${message}` };
  }

  /**
   * Once per stream: warns when the stream forgets message ids sooner than the bridge may repeat an
   * event, since a repeat after its duplicate window is stored twice. Needs `$JS.API` permission.
   */
  private checkDuplicateWindow(link: Link, stream: string): void {
    if (this.checkedStreams.has(stream)) return;
    this.checkedStreams.add(stream);
    link.jsm.streams
      .info(stream)
      .then((info) => {
        const windowMs = info.config.duplicate_window / 1e6;
        if (windowMs < this.deps.dedupWindowMs) {
          this.log.warn(
            { stream, duplicateWindowMs: windowMs, dedupWindowMs: this.deps.dedupWindowMs },
            'nats: the stream keeps message ids for less than dedupWindow; a repeat after that is stored twice',
          );
        }
      })
      .catch((cause: unknown) => {
        const err = this.safeError(cause);
        this.log.debug({ err, stream }, 'nats: cannot read the stream duplicate window');
      });
  }

  /** Client and server messages carry no credentials; this makes sure of it. */
  private redact(text: string): string {
    return this.secrets.reduce((out, secret) => out.split(secret).join('[redacted]'), text);
  }

  private safeError(err: unknown): Error {
    if (!(err instanceof Error)) return new Error(this.redact(String(err)));
    if (this.redact(err.message) === err.message) return err;
    const safe = new Error(this.redact(err.message));
    safe.name = err.name;
    return safe;
  }
}

const DELIVERED: SendOutcome = { kind: 'delivered' };

function delivered(ack: PubAck): SendOutcome {
  // A duplicate PubAck: the stream already holds this event id, stored by an earlier attempt or process.
  return ack.duplicate ? { kind: 'delivered', note: `duplicate of ${ack.stream} seq ${ack.seq}` } : DELIVERED;
}
