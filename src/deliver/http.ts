import { Pool, errors as undiciErrors } from 'undici';
import type { WebhookConfig } from '../config/schema.js';
import type { DeliveryEvent } from '../queue/job.js';
import { USER_AGENT } from '../version.js';
import { parseRetryAfter } from './backoff.js';
import { DeliveryAbortedError, DeliveryPermanentError, DeliveryRetryableError } from '../errors.js';
import { WebhookSigner } from './signature.js';

/** Bytes of a response body kept for logs and `status()`; the rest is read and discarded. */
const SNIPPET_BYTES = 4096;
/** Past this much discarded body the connection is dropped instead of drained. */
const MAX_DRAIN_BYTES = 1_048_576;

export interface DeliveryResult {
  readonly status: number;
}

/**
 * Sends one webhook's events: a keep-alive pool to its origin, the request signed per Standard
 * Webhooks, one deadline over connect + headers + body, and a capped read of the response.
 */
export class WebhookSender {
  private readonly pool: Pool;
  private readonly signer: WebhookSigner;
  private readonly path: string;
  private closed = false;

  constructor(private readonly webhook: WebhookConfig) {
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

  /**
   * Resolves on 2xx; throws DeliveryPermanentError on 410, DeliveryAbortedError when one of `signals`
   * fired, DeliveryRetryableError on anything else.
   */
  async send(event: DeliveryEvent, ...signals: (AbortSignal | undefined)[]): Promise<DeliveryResult> {
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

    // One controller per attempt, aborted by the deadline or by a caller's signal. AbortSignal.timeout
    // plus AbortSignal.any per delivery cost about ten times as much (a timer that outlives the request,
    // dependents piling up on the long-lived shutdown signal) and showed in the benchmark's profile.
    const controller = new AbortController();
    const abort = () => controller.abort();
    let timedOut = false;
    const deadline = setTimeout(() => {
      timedOut = true;
      abort();
    }, this.webhook.timeout);
    const callers = signals.filter((s): s is AbortSignal => s !== undefined);
    for (const s of callers) {
      if (s.aborted) abort();
      else s.addEventListener('abort', abort, { once: true });
    }
    try {
      const response = await this.pool.request({
        path: this.path,
        method: 'POST',
        headers,
        body: event.body,
        signal: controller.signal,
      });
      const snippet = await readCapped(response.body);
      const status = response.statusCode;
      if (status >= 200 && status < 300) return { status };
      if (status === 410) {
        throw new DeliveryPermanentError('HTTP 410 Gone', { status, responseSnippet: snippet });
      }
      const retryAfterMs =
        status === 429 || status === 503 ? parseRetryAfter(response.headers['retry-after']) : undefined;
      throw new DeliveryRetryableError(`HTTP ${status}`, { status, retryAfterMs, responseSnippet: snippet });
    } catch (err) {
      if (err instanceof DeliveryPermanentError || err instanceof DeliveryRetryableError) throw err;
      if (callers.some((s) => s.aborted)) throw new DeliveryAbortedError('delivery aborted', { cause: err });
      if (
        timedOut ||
        err instanceof undiciErrors.HeadersTimeoutError ||
        err instanceof undiciErrors.BodyTimeoutError
      ) {
        throw new DeliveryRetryableError(`timeout after ${this.webhook.timeout} ms`, {}, { cause: err });
      }
      const code = (err as { code?: string }).code;
      const message = err instanceof Error ? err.message : String(err);
      throw new DeliveryRetryableError(
        `network error: ${code ? `${code} ` : ''}${message}`,
        {},
        { cause: err },
      );
    } finally {
      clearTimeout(deadline);
      for (const s of callers) s.removeEventListener('abort', abort);
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
