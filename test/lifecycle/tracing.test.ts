import { expect, test } from 'vitest';
import { createLogger } from '../../src/lifecycle/logger.js';
import { startTracing, tracingEndpoint } from '../../src/lifecycle/tracing.js';

const ENDPOINT = 'http://collector:4318';

test.each([
  [{}, { off: 'no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' }],
  [
    { OTEL_SERVICE_NAME: 'x' },
    { off: 'no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' },
  ],
  [
    { OTEL_EXPORTER_OTLP_ENDPOINT: ' ' },
    { off: 'no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' },
  ],
  [{ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT }, { endpoint: ENDPOINT }],
  [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${ENDPOINT}/v1/traces` }, { endpoint: `${ENDPOINT}/v1/traces` }],
  [
    {
      OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:4318/v1/traces',
    },
    { endpoint: 'http://traces:4318/v1/traces' },
  ],
  [{ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_TRACES_EXPORTER: 'otlp' }, { endpoint: ENDPOINT }],
  [{ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_TRACES_EXPORTER: 'console, otlp' }, { endpoint: ENDPOINT }],
  [
    { OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_TRACES_EXPORTER: 'none' },
    { off: 'OTEL_TRACES_EXPORTER is "none" (only otlp is supported)' },
  ],
  [
    { OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_TRACES_EXPORTER: 'zipkin' },
    { off: 'OTEL_TRACES_EXPORTER is "zipkin" (only otlp is supported)' },
  ],
  [
    { OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_SDK_DISABLED: 'TRUE' },
    { off: 'OTEL_SDK_DISABLED is true' },
  ],
  [{ OTEL_EXPORTER_OTLP_ENDPOINT: ENDPOINT, OTEL_SDK_DISABLED: 'false' }, { endpoint: ENDPOINT }],
])('tracing decision for %o', (env, expected) => {
  expect(tracingEndpoint(env)).toEqual(expected);
});

test('with tracing off nothing is started and no tracer is handed to the pipeline', async () => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (line: string) => lines.push(line) } });
  expect(await startTracing({ OTEL_SERVICE_NAME: 'x' }, logger)).toBeUndefined();
  expect(lines).toEqual([]);
});
