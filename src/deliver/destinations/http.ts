import { Pool, errors as undiciErrors } from 'undici';
import { z } from 'zod';
import { httpUrl, safeUrl } from '../../config/fields.js';
import { webhookHeaders } from '../../config/headers.js';
import type { DeliveryEvent } from '../../queue/job.js';
import { USER_AGENT } from '../../version.js';
import { parseRetryAfter } from '../backoff.js';
import { withDeadline } from '../deadline.js';
import type { CommonDestinationConfig, Destination, DestinationKind, SendOutcome } from '../destination.js';
import { WebhookSigner } from '../signature.js';

/** Bytes of a response body kept for logs and `status()`; the rest is read and discarded. */
const SNIPPET_BYTES = 4096;
/** Past this much discarded body the connection is dropped instead of drained. */
const MAX_DRAIN_BYTES = 1_048_576;

/** Standard Webhooks secrets: `whsec_` followed by base64 of at least 24 bytes. */
const webhookSecret = z.string().refine((value) => {
  const body = value.startsWith('whsec_') ? value.slice(6) : '';
  return body.length > 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(body) && Buffer.from(body, 'base64').length >= 24;
}, 'must be whsec_ followed by base64 of at least 24 random bytes');

const options = z.strictObject({
  url: httpUrl,
  secret: z.union([webhookSecret, z.array(webhookSecret).min(1)]).optional(),
  headers: webhookHeaders.default({}),
});

export type HttpOptions = z.output<typeof options>;
type HttpConfig = HttpOptions & CommonDestinationConfig;

/** Signed HTTP POSTs (Standard Webhooks): the `webhooks:` list of the config. */
export const http: DestinationKind<'http', typeof options> = {
  type: 'http',
  options,
  describe: (config) => safeUrl(config.url),
  create: (config) => new HttpDestination(config),
};

/**
 * Sends one webhook's events: a keep-alive pool to its origin, the request signed per Standard
 * Webhooks, one deadline over connect + headers + body, and a capped read of the response.
 */
class HttpDestination implements Destination {
  readonly type = 'http';
  readonly id: string;
  private readonly pool: Pool;
  private readonly signer: WebhookSigner;
  private readonly path: string;
  private closed = false;

  constructor(private readonly webhook: HttpConfig) {
    this.id = webhook.id;
    const url = new URL(webhook.url);
    this.path = `${url.pathname}${url.search}`;
    this.pool = new Pool(url.origin, {
      connections: webhook.concurrency,
      keepAliveTimeout: 30_000,
      // The overall deadline below is the real bound; these stop a stuck socket even if it misfires.
      connect: { timeout: webhook.timeout },
      headersTimeout: webhook.timeout,
      bodyTimeout: webhook.timeout,
    });
    this.signer = new WebhookSigner(webhook.secret);
  }

  /** The pool connects on the first request. */
  async connect(): Promise<void> {}

  /** 2xx: delivered; 410: permanent; 429/503: retry after `Retry-After`; anything else: retry. */
  async send(event: DeliveryEvent, signals: readonly AbortSignal[]): Promise<SendOutcome> {
    const timestamp = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      // Validated by the config: no header the bridge sets or the HTTP client manages (config/headers.ts).
      ...this.webhook.headers,
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      'webhook-id': event.id,
      'webhook-timestamp': String(timestamp),
    };
    if (this.signer.enabled) headers['webhook-signature'] = this.signer.sign(event.id, timestamp, event.body);
    // With tracing on: the attempt's W3C Trace Context, so the receiver's spans join the event's trace.
    if (event.traceparent !== undefined) headers.traceparent = event.traceparent;
    if (event.tracestate !== undefined) headers.tracestate = event.tracestate;

    try {
      const answer = await withDeadline(
        async (signal) => {
          const response = await this.pool.request({
            path: this.path,
            method: 'POST',
            headers,
            body: event.body,
            signal,
          });
          return { response, snippet: await readCapped(response.body) };
        },
        this.webhook.timeout,
        signals,
      );
      if (!answer.ok) {
        return answer.why === 'aborted'
          ? { kind: 'aborted' }
          : { kind: 'retry', reason: `timeout after ${this.webhook.timeout} ms` };
      }
      const { response, snippet } = answer.value;
      const status = response.statusCode;
      if (status >= 200 && status < 300) return { kind: 'delivered' };
      if (status === 410) return { kind: 'permanent', reason: 'HTTP 410 Gone', status, response: snippet };
      const waitMs =
        status === 429 || status === 503 ? parseRetryAfter(response.headers['retry-after']) : undefined;
      return {
        kind: 'retry',
        reason: `HTTP ${status}`,
        status,
        response: snippet,
        ...(waitMs !== undefined ? { waitMs } : {}),
      };
    } catch (err) {
      if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) {
        return { kind: 'retry', reason: `timeout after ${this.webhook.timeout} ms` };
      }
      const code = (err as { code?: string }).code;
      const message = err instanceof Error ? err.message : String(err);
      return { kind: 'retry', reason: `network error: ${code ? `${code} ` : ''}${message}` };
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.destroy();
  }
}

/** Keeps the first SNIPPET_BYTES as text and discards the rest, so a huge or endless body costs nothing. */
async function readCapped(body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown }): Promise<string> {
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (keptBytes < SNIPPET_BYTES) {
      const part = chunk.subarray(0, SNIPPET_BYTES - keptBytes);
      kept.push(part);
      keptBytes += part.length;
    }
    if (total > MAX_DRAIN_BYTES) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(kept).toString('utf8');
}
