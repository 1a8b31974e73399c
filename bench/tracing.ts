/**
 * `npm run bench -- --trace`: the bridge once more with tracing on, exporting to an OTLP/HTTP
 * receiver in the bench process, so its cost shows next to the same bridge with tracing off.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Spans per event with one destination: receipt, landing, one delivery attempt. */
export const SPANS_PER_EVENT = 3;

/**
 * Takes `POST /v1/traces` (OTLP/JSON) and counts the spans without parsing the JSON, so what the
 * receiver costs the bench process stays small next to what the bridge pays for producing them.
 */
export class SpanCounter {
  spans = 0;
  requests = 0;
  bytes = 0;
  private port = 0;

  private constructor(private readonly server: Server) {}

  static async start(): Promise<SpanCounter> {
    const server = createServer();
    const counter = new SpanCounter(server);
    server.on('request', (req, res) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (text += chunk));
      req.on('end', () => {
        counter.requests++;
        counter.bytes += Buffer.byteLength(text);
        counter.spans += text.split('"spanId":').length - 1;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    counter.port = (server.address() as AddressInfo).port;
    return counter;
  }

  /** The environment that turns tracing on in a bridge process, exporting here. */
  env(): NodeJS.ProcessEnv {
    return {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${this.port}`,
      OTEL_SERVICE_NAME: 'imkit-bridge-bench',
    };
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

interface Figures {
  readonly throughput: { eventsPerSecond: number; cpuMsPer1kBy: { relay: number } };
  readonly latency: { p50Ms: number; p99Ms: number; cpuMsPer1k: number };
}

/** One line: what turning tracing on cost the bridge, and whether every span arrived. */
export function tracingCost(off: Figures, on: Figures, counter: SpanCounter, events: number): string {
  const pct = (a: number, b: number) => `${b >= a ? '+' : ''}${Math.round(((b - a) / a) * 100)}%`;
  return (
    `tracing on vs off: burst ${on.throughput.eventsPerSecond} vs ${off.throughput.eventsPerSecond} events/s ` +
    `(${pct(off.throughput.eventsPerSecond, on.throughput.eventsPerSecond)}), ` +
    `CPU ms/1k in the burst ${on.throughput.cpuMsPer1kBy.relay} vs ${off.throughput.cpuMsPer1kBy.relay} ` +
    `(${pct(off.throughput.cpuMsPer1kBy.relay, on.throughput.cpuMsPer1kBy.relay)}), ` +
    `at the fixed rate ${on.latency.cpuMsPer1k} vs ${off.latency.cpuMsPer1k}; ` +
    `p50 ${on.latency.p50Ms} vs ${off.latency.p50Ms} ms, p99 ${on.latency.p99Ms} vs ${off.latency.p99Ms} ms; ` +
    `spans exported ${counter.spans} of ${events * SPANS_PER_EVENT} (${SPANS_PER_EVENT} per event), ` +
    `${counter.requests} requests, ${Math.round(counter.bytes / 1024 / 1024)} MiB`
  );
}
