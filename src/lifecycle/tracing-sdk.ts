import {
  DiagLogLevel,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  defaultTextMapGetter,
  defaultTextMapSetter,
  diag,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator, getNumberFromEnv } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
} from '@opentelemetry/sdk-trace';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
} from '@opentelemetry/semantic-conventions';
import { safeUrl } from '../config/fields.js';
import type { AttemptResult, Next } from '../deliver/outcome.js';
import { DeliveryPermanentError, DeliveryRetryableError } from '../errors.js';
import type { RelayedEvent } from '../route/event.js';
import { VERSION } from '../version.js';
import { LogThrottle } from './log-throttle.js';
import type { Logger } from './logger.js';
import type {
  AttemptTrace,
  EventSource,
  EventTracer,
  LandingTrace,
  TraceContext,
  TracedDestination,
} from './tracing.js';

/**
 * The OpenTelemetry SDK behind `EventTracer`, loaded only when tracing is on (tracing.ts). Spans are
 * built with explicit parents rather than an active context: a batch job's events belong to as many
 * traces as it has events, and no async context manager is needed (or paid for) that way.
 */
export class OtelEventTracer implements EventTracer {
  private readonly propagator = new W3CTraceContextPropagator();

  private constructor(
    private readonly provider: TracerProvider,
    private readonly tracer: Tracer,
  ) {}

  /**
   * The exporter reads its endpoint, headers, timeout and compression from the `OTEL_EXPORTER_OTLP_*`
   * variables itself; the resource takes `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.
   */
  static start(env: NodeJS.ProcessEnv, endpoint: string, log: Logger): OtelEventTracer {
    OtelEventTracer.reportSdkProblems(log);
    const resource = defaultResource()
      .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'imkit-bridge', [ATTR_SERVICE_VERSION]: VERSION }))
      .merge(detectResources({ detectors: [envDetector] }));
    const provider = new TracerProvider({
      resource,
      sampler: samplerFrom(env),
      spanProcessors: [
        new BatchSpanProcessor({
          exporter: new OTLPTraceExporter(),
          ...numberFromEnv('OTEL_BSP_SCHEDULE_DELAY', 'scheduledDelayMillis'),
          ...numberFromEnv('OTEL_BSP_EXPORT_TIMEOUT', 'exportTimeoutMillis'),
          ...numberFromEnv('OTEL_BSP_MAX_QUEUE_SIZE', 'maxQueueSize'),
          ...numberFromEnv('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 'maxExportBatchSize'),
        }),
      ],
    });
    const service = resource.attributes[ATTR_SERVICE_NAME];
    log.info({ endpoint: safeEndpoint(endpoint), service }, 'tracing on: exporting spans over OTLP/HTTP');
    return new OtelEventTracer(provider, provider.getTracer('imkit-bridge', VERSION));
  }

  received(event: RelayedEvent, source: EventSource, destinations: number): LandingTrace {
    const receipt = this.tracer.startSpan(
      'imkit.receive',
      {
        kind: source === 'bridge' ? SpanKind.INTERNAL : SpanKind.CONSUMER,
        startTime: event.receivedAt,
        attributes: {
          'imkit.account': event.account,
          'imkit.event.type': event.type,
          'imkit.event.id': event.id,
          'imkit.event.source': source,
          'imkit.destinations': destinations,
        },
      },
      ROOT_CONTEXT,
    );
    receipt.end();
    const parent = trace.setSpan(ROOT_CONTEXT, receipt);
    const landing = this.tracer.startSpan(
      'imkit.land',
      {
        kind: SpanKind.PRODUCER,
        attributes: { 'imkit.event.id': event.id, 'imkit.destinations': destinations },
      },
      parent,
    );
    return {
      context: this.contextOf(parent),
      landed: (dropped) => {
        if (dropped)
          landing.setStatus({ code: SpanStatusCode.ERROR, message: 'not landed: buffer full or shutdown' });
        landing.end();
      },
    };
  }

  attempt(receipt: TraceContext, destination: TracedDestination, attempt: number): AttemptTrace {
    const parent = this.propagator.extract(ROOT_CONTEXT, receipt, defaultTextMapGetter);
    const span = this.tracer.startSpan(
      'imkit.deliver',
      {
        kind: destination.type === 'http' ? SpanKind.CLIENT : SpanKind.PRODUCER,
        attributes: {
          'imkit.destination.id': destination.id,
          'imkit.destination.type': destination.type,
          'imkit.delivery.attempt': attempt,
        },
      },
      parent,
    );
    const { traceId, spanId } = span.spanContext();
    return {
      context: this.contextOf(trace.setSpan(ROOT_CONTEXT, span)),
      log: { trace_id: traceId, span_id: spanId },
      end: (result, next) => endAttempt(span, result, next),
    };
  }

  async close(): Promise<void> {
    await this.provider.shutdown();
  }

  private contextOf(context: Context): TraceContext {
    const carrier: { traceparent?: string; tracestate?: string } = {};
    this.propagator.inject(context, carrier, defaultTextMapSetter);
    return carrier.tracestate
      ? { traceparent: carrier.traceparent!, tracestate: carrier.tracestate }
      : { traceparent: carrier.traceparent! };
  }

  /**
   * An export that fails (collector away) or spans dropped (queue full) say so in the bridge's log,
   * once per cause per 5 s; numbers in a message (a count of dropped spans) do not make a new cause.
   */
  private static reportSdkProblems(log: Logger): void {
    const throttle = new LogThrottle();
    const write = (message: string, ...args: unknown[]) =>
      throttle.log(message.replace(/\d+/g, 'N'), (repeats) =>
        log.warn({ detail: args.map((arg) => describe(arg)), ...repeats }, `tracing: ${message}`),
      );
    const ignore = () => {};
    diag.setLogger(
      { error: write, warn: write, info: ignore, debug: ignore, verbose: ignore },
      { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
    );
  }
}

/** Outcome, status and error of one attempt; `next` says whether it was the event's last. */
function endAttempt(span: Span, result: AttemptResult, next: Next): void {
  const attributes: Attributes = { 'imkit.delivery.outcome': result.kind, 'imkit.delivery.next': next.step };
  if ((result.kind === 'retry' || result.kind === 'permanent') && result.status !== undefined)
    attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = result.status;
  if (result.kind === 'retry' || result.kind === 'permanent') {
    const details = { status: result.status, response: result.response };
    const err =
      result.kind === 'retry'
        ? new DeliveryRetryableError(result.reason, details)
        : new DeliveryPermanentError(result.reason, details);
    attributes[ATTR_ERROR_TYPE] = err.code;
    span.recordException({ name: err.name, code: err.code, message: result.reason });
    span.setStatus({ code: SpanStatusCode.ERROR, message: result.reason });
  } else if (result.kind === 'delivered' && result.note !== undefined) {
    attributes['imkit.delivery.note'] = result.note;
  }
  span.setAttributes(attributes);
  span.end();
}

/**
 * `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` as the specification names them; the trace SDK
 * no longer reads them itself. Every trace starts at the bridge, so the parent-based variants
 * behave as their root samplers.
 */
function samplerFrom(env: NodeJS.ProcessEnv): Sampler {
  const name = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase() ?? 'parentbased_always_on';
  const arg = Number(env.OTEL_TRACES_SAMPLER_ARG ?? '1');
  const ratio = Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : 1;
  const root = name.endsWith('always_off')
    ? new AlwaysOffSampler()
    : name.endsWith('traceidratio')
      ? new TraceIdRatioBasedSampler(ratio)
      : new AlwaysOnSampler();
  return name.startsWith('parentbased_') ? new ParentBasedSampler({ root }) : root;
}

function numberFromEnv<K extends string>(name: string, key: K): Partial<Record<K, number>> {
  const value = getNumberFromEnv(name);
  return value !== undefined && value > 0 ? ({ [key]: value } as Record<K, number>) : {};
}

/** The endpoint without credentials or query, for the log. */
function safeEndpoint(endpoint: string): string {
  try {
    return safeUrl(endpoint);
  } catch {
    return '(not a URL)';
  }
}

function describe(arg: unknown): string {
  if (arg instanceof Error) return arg.message;
  return typeof arg === 'string' ? arg : (JSON.stringify(arg) ?? String(arg));
}
