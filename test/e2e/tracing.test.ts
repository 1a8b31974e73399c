import { Redis } from 'ioredis';
import { afterEach, beforeEach, expect, test } from 'vitest';
import type { BridgeProcess, Role } from '../support/bridge-process.js';
import { BridgeProcess as Bridge, runCli, writeConfig } from '../support/bridge-process.js';
import { OtlpReceiver, type ExportedSpan } from '../support/otlp-receiver.js';
import { freePort, waitFor } from '../support/redis.js';
import { BOT, World } from './world.js';

const STREAM = 'traced:events';
/** Spans are exported in batches every 100 ms instead of 5 s, so the test does not wait. */
const FAST_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '100' };

let world: World;
let otlp: OtlpReceiver;
let stream: Redis;
beforeEach(async () => {
  [world, otlp] = await Promise.all([World.start(), OtlpReceiver.start()]);
  stream = new Redis(world.redis.url, { lazyConnect: true });
});
afterEach(async () => {
  stream.disconnect();
  await Promise.all([world.close(), otlp.close()]);
});

/** The world's webhook plus a redis-stream destination on the bridge's own Redis. */
function config(): Record<string, unknown> {
  return world.config({
    top: { destinations: [{ id: 'audit-stream', type: 'redis-stream', stream: STREAM, timeout: '2s' }] },
  });
}

async function start(roles: readonly Role[], env: NodeJS.ProcessEnv): Promise<BridgeProcess[]> {
  const file = writeConfig(config());
  const bridges: BridgeProcess[] = [];
  for (const role of roles) {
    const bridge = await Bridge.start(file, { role, env: { BOT_TOKEN: world.token, ...env } });
    world.bridges.push(bridge);
    bridges.push(bridge);
  }
  await world.connected();
  return bridges;
}

/** Stream entries as field maps, by event id. */
async function streamEntries(): Promise<Map<string, Record<string, string>>> {
  const entries = new Map<string, Record<string, string>>();
  for (const [, flat] of await stream.xrange(STREAM, '-', '+')) {
    const fields: Record<string, string> = {};
    for (let i = 0; i < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
    entries.set(fields.id!, fields);
  }
  return entries;
}

/** `00-<trace id>-<span id>-<flags>` split up. */
function parseTraceparent(value: unknown): { traceId: string; spanId: string } {
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(String(value));
  expect(match, `traceparent ${String(value)}`).not.toBeNull();
  return { traceId: match![1]!, spanId: match![2]! };
}

function attempts(spans: readonly ExportedSpan[], destination: string): ExportedSpan[] {
  return spans
    .filter((s) => s.name === 'imkit.deliver' && s.attributes['imkit.destination.id'] === destination)
    .sort(
      (a, b) =>
        Number(a.attributes['imkit.delivery.attempt']) - Number(b.attributes['imkit.delivery.attempt']),
    );
}

test('ingest and worker processes: one trace per event from receipt through landing to every delivery attempt, retries and a dead-letter replay included; the trace context reaches the webhook, the stream and the logs', async () => {
  let gone = true;
  let flakyTries = 0;
  world.receiver.respondWith((req) => {
    const text = (JSON.parse(req.body) as { data: { message?: string } }).data.message;
    if (text === 'flaky') return flakyTries++ === 0 ? { status: 500, body: 'try again' } : { status: 204 };
    if (text === 'gone') return gone ? { status: 410 } : { status: 204 };
    return { status: 204 };
  });
  const [ingest, worker] = await start(['ingest', 'worker'], {
    ...FAST_EXPORT,
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
    OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-key=k1',
    OTEL_SERVICE_NAME: 'bridge-under-test',
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test',
  });

  const members = { members: [BOT, 'alice'], sender: 'alice' };
  world.sim.sendMessage('r1', 'flaky', members);
  world.sim.sendMessage('r1', 'gone', members);
  const [flaky] = await world.waitDelivered(1, 'chat message');
  const flakyId = flaky!.id;

  // The flaky event: its own trace, with receipt, landing and every attempt at both destinations.
  const spans = await waitFor(
    () => {
      const trace = otlp.trace(flakyId);
      return attempts(trace, 'audit').length === 2 && attempts(trace, 'audit-stream').length === 1
        ? trace
        : undefined;
    },
    { timeoutMs: 30_000, what: 'the flaky event’s spans' },
  );
  const receipt = spans.find((s) => s.name === 'imkit.receive')!;
  const landing = spans.find((s) => s.name === 'imkit.land')!;
  expect(receipt).toMatchObject({
    parentSpanId: '',
    attributes: { 'imkit.account': BOT, 'imkit.event.type': 'chat message', 'imkit.event.source': 'socket' },
  });
  expect(receipt.attributes['imkit.destinations']).toBe(2);
  expect(landing.parentSpanId).toBe(receipt.spanId);
  expect(landing.status.code ?? 0).not.toBe(2);
  const [failed, delivered] = attempts(spans, 'audit');
  const [streamed] = attempts(spans, 'audit-stream');
  for (const span of [failed!, delivered!, streamed!]) expect(span.parentSpanId).toBe(receipt.spanId);
  expect(failed!.attributes).toMatchObject({
    'imkit.destination.type': 'http',
    'imkit.delivery.attempt': 1,
    'imkit.delivery.outcome': 'retry',
    'imkit.delivery.next': 'retry',
    'http.response.status_code': 500,
    'error.type': 'BRIDGE_ERR_DELIVERY_RETRY',
  });
  expect(failed!.status).toMatchObject({ code: 2, message: 'HTTP 500' });
  expect(failed!.events.map((e) => e.name)).toContain('exception');
  expect(delivered!.attributes).toMatchObject({
    'imkit.delivery.attempt': 2,
    'imkit.delivery.outcome': 'delivered',
  });
  expect(streamed!.attributes).toMatchObject({
    'imkit.destination.type': 'redis-stream',
    'imkit.delivery.outcome': 'delivered',
  });
  // Receipt and landing come from the ingest process, the attempts from the worker: one resource each.
  expect(receipt.resource).toMatchObject({
    'service.name': 'bridge-under-test',
    'deployment.environment': 'test',
  });
  expect(otlp.requestHeaders.every((h) => h['x-collector-key'] === 'k1')).toBe(true);

  // The webhook saw each attempt's own context; the stream entry carries its attempt's.
  const requests = world.receiver.requestsFor(flakyId);
  expect(requests).toHaveLength(2);
  expect(requests.map((r) => parseTraceparent(r.headers.traceparent))).toEqual(
    [failed!, delivered!].map((s) => ({ traceId: s.traceId, spanId: s.spanId })),
  );
  const entry = (await streamEntries()).get(flakyId);
  expect(parseTraceparent(entry?.traceparent)).toEqual({
    traceId: streamed!.traceId,
    spanId: streamed!.spanId,
  });

  // The worker's retry line names the failed attempt's span.
  const retryLine = worker!
    .records()
    .find((r) => r.msg === 'delivery failed; will retry' && r.eventId === flakyId);
  expect(retryLine).toMatchObject({ trace_id: failed!.traceId, span_id: failed!.spanId });

  // The gone event: another trace; dead-lettered, replayed, then delivered in that same trace.
  const file = writeConfig(config());
  const dead = await waitFor(
    async () => {
      const listed = await runCli(['dlq', 'list', '--config', file, '--destination', 'audit', '--json'], {
        env: { BOT_TOKEN: 't' },
      });
      const ids = (JSON.parse(listed.stdout) as { destinations: { entries: { id: string }[] }[] })
        .destinations[0]!.entries;
      return ids.length === 1 ? ids[0]!.id : undefined;
    },
    { timeoutMs: 30_000, what: 'the gone event dead-lettered' },
  );
  gone = false;
  const replay = await runCli(['dlq', 'replay', '--config', file, '--destination', 'audit', '--json'], {
    env: { BOT_TOKEN: 't' },
  });
  expect(replay.code, replay.stderr).toBe(0);
  await world.waitDelivered(2, 'chat message');
  const goneSpans = await waitFor(
    () => {
      const trace = otlp.trace(dead);
      return attempts(trace, 'audit').length === 2 ? trace : undefined;
    },
    { timeoutMs: 30_000, what: 'the replayed event’s spans' },
  );
  expect(goneSpans[0]!.traceId).not.toBe(receipt.traceId);
  expect(attempts(goneSpans, 'audit').map((s) => s.attributes['imkit.delivery.outcome'])).toEqual([
    'permanent',
    'delivered',
  ]);
  expect(attempts(goneSpans, 'audit')[0]!.attributes['imkit.delivery.next']).toBe('dead');
  const replayed = world.receiver.requestsFor(dead).at(-1)!;
  expect(parseTraceparent(replayed.headers.traceparent).traceId).toBe(goneSpans[0]!.traceId);

  // Shutdown exports what is left and the processes exit cleanly; the SDK had nothing to complain about.
  expect(await ingest!.stop()).toBeLessThan(10_000);
  expect(await worker!.stop()).toBeLessThan(10_000);
  expect([ingest!.exitCode, worker!.exitCode]).toEqual([0, 0]);
  for (const bridge of [ingest!, worker!]) {
    expect(bridge.records().filter((r) => String(r.msg).startsWith('tracing'))).toEqual([
      expect.objectContaining({
        msg: 'tracing on: exporting spans over OTLP/HTTP',
        service: 'bridge-under-test',
      }),
    ]);
  }
}, 120_000);

test.each([
  ['no OTEL_* variables', (): NodeJS.ProcessEnv => ({})],
  [
    'an endpoint and OTEL_TRACES_EXPORTER=none',
    () => ({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint, OTEL_TRACES_EXPORTER: 'none' }),
  ],
  [
    'an endpoint and OTEL_SDK_DISABLED=true',
    () => ({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint, OTEL_SDK_DISABLED: 'true' }),
  ],
])(
  'tracing off with %s: no trace context on the webhook or in the stream, nothing exported',
  async (_name, env) => {
    const [bridge] = await start(['all'], { ...FAST_EXPORT, ...env() });
    world.sim.sendMessage('r1', 'untraced', { members: [BOT, 'alice'], sender: 'alice' });
    const [body] = await world.waitDelivered(1, 'chat message');
    const entry = await waitFor(async () => (await streamEntries()).get(body!.id), {
      what: 'the stream entry',
    });

    expect(world.receiver.requestsFor(body!.id)[0]!.headers.traceparent).toBeUndefined();
    expect(Object.keys(entry)).toEqual(['id', 'type', 'account', 'timestamp', 'body']);
    expect(bridge!.records().some((r) => 'trace_id' in r)).toBe(false);
    // A stop flushes whatever a tracer would have buffered: after it, nothing can still arrive.
    await bridge!.stop();
    expect(bridge!.exitCode).toBe(0);
    expect(otlp.requestHeaders).toHaveLength(0);
  },
);

test('a collector that is away costs nothing but spans: events are delivered and the failed exports are logged', async () => {
  const [bridge] = await start(['all'], {
    ...FAST_EXPORT,
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await freePort()}`,
  });
  expect(bridge!.records().find((r) => r.msg === 'tracing on: exporting spans over OTLP/HTTP')).toMatchObject(
    {
      service: 'imkit-bridge',
    },
  );
  world.sim.sendMessage('r1', 'nobody collects this', { members: [BOT, 'alice'], sender: 'alice' });
  const [body] = await world.waitDelivered(1, 'chat message');
  expect(world.receiver.requestsFor(body!.id)[0]!.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-/);
  await waitFor(
    () => bridge!.records().some((r) => r.level === 40 && String(r.msg).startsWith('tracing: ')),
    {
      timeoutMs: 15_000,
      what: 'a logged export failure',
    },
  );
  await bridge!.stop();
  expect(bridge!.exitCode).toBe(0);
});

test('OTEL_TRACES_SAMPLER=always_off: the trace context still reaches the webhook, marked not sampled, and nothing is exported', async () => {
  const [bridge] = await start(['all'], {
    ...FAST_EXPORT,
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint,
    OTEL_TRACES_SAMPLER: 'always_off',
  });
  world.sim.sendMessage('r1', 'unsampled', { members: [BOT, 'alice'], sender: 'alice' });
  const [body] = await world.waitDelivered(1, 'chat message');
  expect(world.receiver.requestsFor(body!.id)[0]!.headers.traceparent).toMatch(
    /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/,
  );
  await bridge!.stop();
  expect(bridge!.exitCode).toBe(0);
  expect(otlp.spans).toEqual([]);
});
