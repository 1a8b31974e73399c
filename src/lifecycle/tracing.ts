import type { AttemptResult, Next } from '../deliver/outcome.js';
import type { RelayedEvent } from '../route/event.js';
import type { Logger } from './logger.js';

/**
 * W3C Trace Context of one span: what an event carries in its job (so a delivery in another process,
 * after any number of retries or a dead-letter replay, joins the event's trace) and what a delivery
 * attempt puts in the request or message headers.
 */
export interface TraceContext {
  readonly traceparent: string;
  readonly tracestate?: string;
}

/** Fields a log line written while a span is active carries, so logs and traces join on the ids. */
export interface TraceLogFields {
  readonly trace_id: string;
  readonly span_id: string;
}

/** Where an event came from: an IMKIT socket, REST catch-up, or the bridge itself (`bridge.*`). */
export type EventSource = 'socket' | 'catch-up' | 'bridge';

/** The destination a delivery attempt goes to. */
export interface TracedDestination {
  readonly id: string;
  readonly type: string;
}

/**
 * The bridge's traces (docs/operations.md, "Tracing"): one trace per event, with a span for its
 * receipt, one for its landing in Redis and one per delivery attempt per destination. Only exists
 * while tracing is on; everywhere else the pipeline holds `undefined` and pays one check.
 */
export interface EventTracer {
  /**
   * The receipt span (`imkit.receive`), from `receivedAt` to now (decode, id and routing), ended at
   * once; returns the landing span (`imkit.land`), ended by `landed`.
   */
  received(event: RelayedEvent, source: EventSource, destinations: number): LandingTrace;
  /** A delivery attempt's span (`imkit.deliver`), a child of the receipt span whose context the job carries. */
  attempt(receipt: TraceContext, destination: TracedDestination, attempt: number): AttemptTrace;
  /** Exports what is still buffered and stops; the caller bounds the wait. */
  close(): Promise<void>;
}

export interface LandingTrace {
  /** The receipt span's context: what the event's jobs carry. */
  readonly context: TraceContext;
  /** `dropped`: the event never reached Redis (buffer full, or shutdown). */
  landed(dropped: boolean): void;
}

export interface AttemptTrace {
  /** This attempt's context: what goes to the far end in `traceparent` / `tracestate`. */
  readonly context: TraceContext;
  readonly log: TraceLogFields;
  /** `next`: what the lane decided from `result`. */
  end(result: AttemptResult, next: Next): void;
}

/**
 * Tracing is on when the standard OpenTelemetry variables name an OTLP endpoint and nothing turns it
 * off: `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER` without `otlp` (e.g. `none`). Returns
 * the endpoint (for the start log line) or why tracing is off.
 */
export function tracingEndpoint(env: NodeJS.ProcessEnv): { endpoint: string } | { off: string } {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return { off: 'OTEL_SDK_DISABLED is true' };
  const exporters = (env.OTEL_TRACES_EXPORTER ?? 'otlp')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '');
  if (exporters.length > 0 && !exporters.includes('otlp'))
    return { off: `OTEL_TRACES_EXPORTER is "${env.OTEL_TRACES_EXPORTER}" (only otlp is supported)` };
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (!endpoint) return { off: 'no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' };
  return { endpoint };
}

/**
 * Starts the OpenTelemetry SDK when `env` asks for traces, else resolves undefined without loading
 * any of it: the SDK is imported here, on demand, and nowhere else. Traces are an aid, not the job:
 * a tracing set-up that cannot start is logged and the bridge runs without it.
 */
export async function startTracing(env: NodeJS.ProcessEnv, logger: Logger): Promise<EventTracer | undefined> {
  const decision = tracingEndpoint(env);
  if ('off' in decision) return undefined;
  const log = logger.child({ component: 'tracing' });
  try {
    const { OtelEventTracer } = await import('./tracing-sdk.js');
    return OtelEventTracer.start(env, decision.endpoint, log);
  } catch (err) {
    log.error({ err }, 'tracing cannot start; running without it');
    return undefined;
  }
}
