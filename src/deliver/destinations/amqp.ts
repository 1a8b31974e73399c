import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
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

/** AMQP 0-9-1 caps exchange names and routing keys (short strings) at 255 bytes. */
const SHORT_STRING_BYTES = 255;

const options = z.strictObject({
  url: z.url({ protocol: /^amqps?$/, error: 'must be an amqp:// or amqps:// URL' }),
  exchange: z
    .string({ error: 'required: the exchange to publish to ("" for the default exchange)' })
    .refine(
      (name) => /^[A-Za-z0-9_.:-]*$/.test(name),
      'may contain only letters, digits, "-", "_", "." and ":"',
    )
    .refine((name) => name.length <= SHORT_STRING_BYTES, `must be at most ${SHORT_STRING_BYTES} characters`),
  routingKey: z
    .string()
    .default('imkit.{account}.{type}')
    .superRefine((key, ctx) => {
      const problem = templateProblem(key);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
      else if (literalBytes(key) > SHORT_STRING_BYTES) {
        ctx.addIssue({
          code: 'custom',
          message: `is over ${SHORT_STRING_BYTES} bytes without its placeholders`,
        });
      }
    }),
});

export type AmqpOptions = z.output<typeof options>;
export type AmqpConfig = AmqpOptions & CommonDestinationConfig;

/** The message properties of the contract (docs/destinations/amqp.md), for one event. */
export function publishOptions(event: DeliveryEvent): Options.Publish {
  return {
    mandatory: true,
    persistent: true,
    contentType: 'application/json',
    messageId: event.id,
    type: event.type,
    // Receive time, not send time: every retry and every copy of the event carries the same one.
    timestamp: Math.floor(event.receivedAt / 1000),
    appId: 'imkit-bridge',
    headers: {
      'imkit-account': event.account,
      // With tracing on: the attempt's W3C Trace Context (docs/operations.md, "Tracing").
      ...(event.traceparent !== undefined ? { traceparent: event.traceparent } : {}),
      ...(event.tracestate !== undefined ? { tracestate: event.tracestate } : {}),
    },
  };
}

export const amqp: DestinationKind<'amqp', typeof options> = {
  type: 'amqp',
  options,
  describe: (o) => `${safeUrl(o.url)} exchange "${o.exchange}" key ${o.routingKey}`,
  create: (config, deps) => new AmqpDestination(config, deps),
};

/**
 * Publishes each event to a RabbitMQ exchange on one connection and one confirm channel, opened on
 * first use and shared by every send of this destination. An event is delivered once the broker has
 * confirmed it and not returned it as unroutable; anything else is a retry. A connection or channel
 * that closes is dropped and the next send opens a new one; so is one that let a confirm run past the
 * deadline, since its state is unknown (a frozen link would otherwise be noticed only at heartbeat).
 */
export class AmqpDestination implements Destination {
  readonly type = 'amqp';
  readonly id: string;
  private readonly log: Logger;
  private readonly target: string;
  private link: Link | undefined;
  private dialing: Promise<Link | string> | undefined;
  private closed = false;

  constructor(
    private readonly config: AmqpConfig,
    deps: DestinationDeps,
  ) {
    this.id = config.id;
    this.log = deps.logger;
    this.target = safeUrl(config.url);
  }

  /** Opens the link ahead of the first send; a failure is only logged, as sends open it again. */
  async connect(): Promise<void> {
    const opened = await withDeadline(() => this.open(), this.config.timeout, []);
    if (this.closed || (opened.ok && opened.value instanceof Link)) return;
    const why = opened.ok ? String(opened.value) : `not within ${this.config.timeout} ms`;
    this.log.warn({ target: this.target, why }, 'amqp destination not connected yet');
  }

  async send(event: DeliveryEvent, signals: readonly AbortSignal[]): Promise<SendOutcome> {
    const routingKey = renderTemplate(this.config.routingKey, event);
    if (Buffer.byteLength(routingKey) > SHORT_STRING_BYTES) {
      return {
        kind: 'permanent',
        reason: `routing key is ${Buffer.byteLength(routingKey)} bytes, over AMQP's ${SHORT_STRING_BYTES}`,
      };
    }
    let used: Link | undefined;
    const result = await withDeadline(
      async () => {
        const link = await this.open();
        if (typeof link === 'string') return retry(`cannot connect to ${this.target}: ${link}`);
        used = link;
        return link.publish(this.config.exchange, routingKey, event);
      },
      this.config.timeout,
      signals,
    );
    if (result.ok) {
      const outcome = result.value;
      return outcome.kind === 'retry' ? retry(this.scrub(outcome.reason)) : outcome;
    }
    if (result.why === 'aborted') return { kind: 'aborted' };
    if (used !== undefined) this.drop(used, 'a confirm did not come in time');
    return retry(
      used === undefined
        ? `no connection to ${this.target} within ${this.config.timeout} ms`
        : `no publisher confirm within ${this.config.timeout} ms`,
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    const link = this.link ?? (await this.dialing);
    this.link = undefined;
    // A frozen broker never answers the close handshake: give it the send deadline, no more.
    if (link instanceof Link) await withDeadline(() => link.close(), this.config.timeout, []);
  }

  /**
   * The open link, or the one being opened (a single dial shared by concurrent sends), or why none
   * could be opened.
   */
  private open(): Promise<Link | string> {
    if (this.link !== undefined && !this.link.ended) return Promise.resolve(this.link);
    if (this.closed) return Promise.resolve('destination closed');
    this.dialing ??= this.dial().then((link) => {
      this.dialing = undefined;
      if (link instanceof Link) this.link = link;
      return link;
    });
    return this.dialing;
  }

  private async dial(): Promise<Link | string> {
    const client = await import('amqplib');
    let model: ChannelModel;
    try {
      model = await client.connect(withHeartbeat(this.config.url, this.config.timeout), {
        // Bounds the TCP connect and the opening handshake; amqplib lifts it once open.
        timeout: this.config.timeout,
        clientProperties: { connection_name: `imkit-bridge ${this.id}` },
      });
    } catch (err) {
      return this.scrub(err);
    }
    const link = new Link(model, this.log, (why) => this.drop(link, why));
    let failed: string | undefined;
    try {
      const channel = await withDeadline(() => model.createConfirmChannel(), this.config.timeout, []);
      if (channel.ok) link.attach(channel.value);
      else failed = `no confirm channel within ${this.config.timeout} ms`;
    } catch (err) {
      failed = `no confirm channel: ${this.scrub(err)}`;
    }
    if (failed === undefined && this.closed) failed = 'destination closed';
    if (failed !== undefined) {
      void link.close();
      return failed;
    }
    this.log.info({ target: this.target }, 'amqp destination connected');
    return link;
  }

  /** Forgets `link` (the next send opens a new one) and closes it without waiting. */
  private drop(link: Link, why: string): void {
    if (link.ended) return;
    link.ended = true;
    if (this.link === link) this.link = undefined;
    if (!this.closed) this.log.warn({ target: this.target, why: this.scrub(why) }, 'amqp connection dropped');
    void link.close();
  }

  /** A client's or broker's message with the URL's password taken out, should one ever echo it. */
  private scrub(err: unknown): string {
    const text = err instanceof Error ? err.message : String(err);
    const password = new URL(this.config.url).password;
    if (password === '') return text;
    return [password, decodeURIComponent(password)].reduce((t, p) => t.split(p).join('[redacted]'), text);
  }
}

/**
 * One connection and its confirm channel. RabbitMQ sends a mandatory message's basic.return before
 * its basic.ack, and amqplib emits 'return' while reading that frame, before it runs the confirm
 * callback for the ack, so a return is always recorded before the callback that must see it.
 */
class Link {
  /** Set once the destination stops using this link; it is then being closed or is closed. */
  ended = false;
  private gone = false;
  private channel: ConfirmChannel | undefined;
  /**
   * Ids of returned (unroutable) messages whose confirm callback has not run yet. Keyed by event id:
   * the lane's delivery claim lets only one send of an event run at a time.
   */
  private readonly returned = new Set<string>();
  /** Why the channel or connection closed, as the broker or client said it. */
  private closeReason = 'channel closed';

  constructor(
    private readonly model: ChannelModel,
    log: Logger,
    private readonly onEnd: (why: string) => void,
  ) {
    // An 'error' without a listener would throw out of amqplib's frame handling and end the process.
    model.on('error', (err: Error) => (this.closeReason = `connection error: ${err.message}`));
    model.on('close', () => {
      this.gone = true;
      this.onEnd(this.closeReason);
    });
    // A resource alarm: publishes wait, and show as confirm timeouts until the broker unblocks.
    model.on('blocked', (reason: string) => log.warn({ reason }, 'amqp connection blocked by the broker'));
    model.on('unblocked', () => log.info('amqp connection unblocked'));
  }

  attach(channel: ConfirmChannel): void {
    this.channel = channel;
    channel.on('error', (err: Error) => (this.closeReason = `channel closed: ${err.message}`));
    channel.on('close', () => this.onEnd(this.closeReason));
    channel.on('return', (message: Message) => {
      const id = message.properties.messageId as unknown;
      if (typeof id === 'string') this.returned.add(id);
    });
  }

  publish(exchange: string, routingKey: string, event: DeliveryEvent): Promise<SendOutcome> {
    const channel = this.channel;
    if (channel === undefined || this.ended) return Promise.resolve(retry(this.closeReason));
    return new Promise((resolve) => {
      const confirmed = (err: unknown) => {
        const returned = this.returned.delete(event.id);
        if (err !== null && err !== undefined) {
          const nacked = err instanceof Error && err.message === 'message nacked';
          resolve(
            retry(
              nacked
                ? 'nacked by the broker (a queue refused it, e.g. full with reject-publish)'
                : this.closeReason,
            ),
          );
        } else if (returned) {
          resolve(
            retry(
              `unroutable (returned, NO_ROUTE): no queue bound to exchange "${exchange}" for key "${routingKey}"`,
            ),
          );
        } else {
          resolve({ kind: 'delivered' });
        }
      };
      try {
        channel.publish(exchange, routingKey, Buffer.from(event.body), publishOptions(event), confirmed);
      } catch (err) {
        // amqplib throws synchronously when the channel closed between open() and now.
        resolve(retry(`${this.closeReason}: ${err instanceof Error ? err.message : String(err)}`));
      }
    });
  }

  /**
   * Settles when the connection is closed, by the handshake or otherwise: amqplib never settles a
   * close() whose socket dies while it waits for the broker's CloseOk.
   */
  async close(): Promise<void> {
    this.ended = true;
    if (this.gone) return;
    await new Promise<void>((resolve) => {
      this.model.once('close', () => resolve());
      this.model.close().then(resolve, () => resolve());
    });
  }
}

function retry(reason: string): SendOutcome {
  return { kind: 'retry', reason };
}

/** The URL as safe to show: scheme, host and vhost, no user, password or query. */
function safeUrl(raw: string): string {
  const url = new URL(raw);
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/**
 * Heartbeats as long as the send deadline, unless the URL asks for its own: a link that died silently
 * is then closed within about two deadlines even when no send is waiting on it.
 */
function withHeartbeat(raw: string, timeoutMs: number): string {
  const url = new URL(raw);
  if (!url.searchParams.has('heartbeat'))
    url.searchParams.set('heartbeat', String(Math.max(1, Math.ceil(timeoutMs / 1000))));
  return url.toString();
}

function literalBytes(template: string): number {
  return Buffer.byteLength(template.replace(/\{(account|type|room)\}/g, ''));
}
