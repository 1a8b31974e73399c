import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Destination, SendOutcome } from '../../src/deliver/destination.js';
import { amqp } from '../../src/deliver/destinations/amqp.js';
import type { DeliveryEvent } from '../../src/queue/job.js';
import { RabbitAdmin, amqpUrl, uniqueName } from '../support/rabbitmq.js';
import { waitFor } from '../support/redis.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { redisSettingsFromUrl } from '../../src/queue/redis.js';

const logLines: string[] = [];
const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });

let admin: RabbitAdmin;
const destinations: Destination[] = [];
const proxies: TcpProxy[] = [];

beforeAll(async () => {
  admin = await RabbitAdmin.open();
});

afterEach(async () => {
  for (const proxy of proxies.splice(0)) await proxy.close();
  for (const destination of destinations.splice(0)) await destination.close();
});

afterAll(async () => {
  await admin.close();
});

function create(options: Record<string, unknown>, timeout = 2_000): Destination {
  const parsed = amqp.options.parse({ url: amqpUrl(), ...options });
  const destination = amqp.create(
    { ...parsed, id: 'crm', timeout, concurrency: 8 },
    { logger, bridgeRedis: redisSettingsFromUrl('redis://127.0.0.1:6379'), dedupWindowMs: 600_000 },
  );
  destinations.push(destination);
  return destination;
}

/** The machine's RabbitMQ behind a fault proxy, and the URL that goes through it. */
async function proxied(): Promise<{ proxy: TcpProxy; url: string }> {
  const direct = new URL(amqpUrl());
  const proxy = await TcpProxy.start(Number(direct.port || 5672), direct.hostname);
  proxies.push(proxy);
  direct.port = String(proxy.port);
  return { proxy, url: direct.toString() };
}

let seq = 0;
function event(overrides: Partial<DeliveryEvent> = {}): DeliveryEvent {
  const id = `evt_${process.pid}_${++seq}`;
  const body = JSON.stringify({ id, type: 'chat message', data: { text: `héllo ${seq} 😀 "quoted"\n` } });
  return { id, type: 'chat message', account: 'crm-bot', receivedAt: 1_700_000_000_987, body, ...overrides };
}

function events(count: number): DeliveryEvent[] {
  return Array.from({ length: count }, () => event());
}

/** What the lane does with a retry, without its schedule: send again, until delivered (bounded). */
async function deliver(destination: Destination, ev: DeliveryEvent, reasons: string[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const outcome = await destination.send(ev, []);
    if (outcome.kind === 'delivered') return;
    if (outcome.kind !== 'retry') throw new Error(`unexpected outcome ${JSON.stringify(outcome)}`);
    reasons.push(outcome.reason);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${ev.id} not delivered in 30 s; last reason: ${reasons.at(-1)}`);
}

/** Delivers `all` with `workers` sends at a time; `during(delivered)` runs after each delivery. */
async function deliverAll(
  destination: Destination,
  all: readonly DeliveryEvent[],
  during: (delivered: number) => void | Promise<void> = () => {},
  workers = 8,
): Promise<string[]> {
  const reasons: string[] = [];
  const queue = [...all];
  let delivered = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (let ev = queue.shift(); ev !== undefined; ev = queue.shift()) {
        await deliver(destination, ev, reasons);
        await during(++delivered);
      }
    }),
  );
  return reasons;
}

/** Waits until `queue` has held `count` distinct message ids, and returns every message taken. */
async function collect(queue: string, count: number) {
  const taken: Awaited<ReturnType<RabbitAdmin['drain']>> = [];
  await waitFor(
    async () => {
      taken.push(...(await admin.drain(queue)));
      return new Set(taken.map((m) => m.properties.messageId as string)).size >= count;
    },
    { what: `${count} messages in ${queue}` },
  );
  return taken;
}

async function boundQueue(args: Record<string, unknown> = {}): Promise<{ exchange: string; queue: string }> {
  const exchange = await admin.exchange(uniqueName('x'));
  const queue = await admin.queue(uniqueName('q'), args);
  await admin.bind(queue, exchange);
  return { exchange, queue };
}

function expectRetry(outcome: SendOutcome, reason: RegExp): void {
  expect(outcome).toMatchObject({ kind: 'retry' });
  expect((outcome as { reason: string }).reason).toMatch(reason);
}

describe('amqp destination: the message contract', () => {
  it('publishes every event once with the SPEC properties, the header and the exact body', async () => {
    const { exchange, queue } = await boundQueue();
    const destination = create({ exchange });
    const sent = [
      ...events(40),
      event({ type: 'message edited' }),
      event({ type: 'bridge.gap', account: 'a.b*c>d e#é' }),
    ];
    const reasons = await deliverAll(destination, sent);
    expect(reasons).toEqual([]);

    const taken = await collect(queue, sent.length);
    expect(taken).toHaveLength(sent.length);
    const byId = new Map(taken.map((m) => [m.properties.messageId as string, m]));
    for (const ev of sent) {
      const message = byId.get(ev.id)!;
      expect(message.content.equals(Buffer.from(ev.body))).toBe(true);
      expect(message.properties).toMatchObject({
        deliveryMode: 2,
        contentType: 'application/json',
        messageId: ev.id,
        type: ev.type,
        timestamp: 1_700_000_000,
        appId: 'imkit-bridge',
        headers: { 'imkit-account': ev.account },
      });
      expect(message.fields.exchange).toBe(exchange);
    }
    expect(byId.get(sent[0]!.id)!.fields.routingKey).toBe('imkit.crm-bot.chat_message');
    expect(byId.get(sent.at(-2)!.id)!.fields.routingKey).toBe('imkit.crm-bot.message_edited');
    // A value can add no key separator or wildcard: one code point, one underscore.
    expect(byId.get(sent.at(-1)!.id)!.fields.routingKey).toBe('imkit.a_b_c_d_e__.bridge_gap');
  });

  it('adds traceparent and tracestate to the headers of a traced event only', async () => {
    const queue = await admin.queue(uniqueName('q'));
    const direct = create({ exchange: '', routingKey: queue });
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const plain = event();
    const traced = { ...event(), traceparent, tracestate: 'vendor=opaque' };
    expect(await deliverAll(direct, [plain, traced])).toEqual([]);
    const byId = new Map((await collect(queue, 2)).map((m) => [m.properties.messageId as string, m]));
    expect(byId.get(traced.id)!.properties.headers).toEqual({
      'imkit-account': traced.account,
      traceparent,
      tracestate: 'vendor=opaque',
    });
    expect(byId.get(plain.id)!.properties.headers).toEqual({ 'imkit-account': plain.account });
  });

  it('publishes to the default exchange with a queue name as the key, and renders {room}', async () => {
    const queue = await admin.queue(uniqueName('q'));
    const direct = create({ exchange: '', routingKey: queue });
    const ev = event();
    expect(await direct.send(ev, [])).toEqual({ kind: 'delivered' });
    const [message] = await collect(queue, 1);
    expect(message!.properties.messageId).toBe(ev.id);
    expect(message!.fields.routingKey).toBe(queue);

    const { exchange, queue: rooms } = await boundQueue();
    const byRoom = create({ exchange, routingKey: 'rooms.{room}.{account}' });
    const inRoom = event({ room: 'room:1/é 😀' });
    const noRoom = event({ type: 'typing' });
    expect(await byRoom.send(inRoom, [])).toEqual({ kind: 'delivered' });
    expect(await byRoom.send(noRoom, [])).toEqual({ kind: 'delivered' });
    const keys = new Map((await collect(rooms, 2)).map((m) => [m.properties.messageId, m.fields.routingKey]));
    expect(keys.get(inRoom.id)).toBe('rooms.room_1____.crm-bot');
    expect(keys.get(noRoom.id)).toBe('rooms.none.crm-bot');
  });

  it('gives up at once (permanent) on an event whose routing key renders over 255 bytes', async () => {
    const { exchange } = await boundQueue();
    const outcome = await create({ exchange }).send(event({ account: 'a'.repeat(300) }), []);
    expect(outcome).toMatchObject({ kind: 'permanent', reason: expect.stringMatching(/over AMQP's 255/) });
  });
});

describe('amqp destination: what the broker refuses is retried', () => {
  it('retries an unroutable event (returned), and delivers it once a queue is bound', async () => {
    const exchange = await admin.exchange(uniqueName('x'));
    const destination = create({ exchange });
    const ev = event();
    expectRetry(await destination.send(ev, []), /unroutable/);

    const queue = await admin.queue(uniqueName('q'));
    await admin.bind(queue, exchange);
    expect(await destination.send(ev, [])).toEqual({ kind: 'delivered' });
    expect((await collect(queue, 1)).map((m) => m.properties.messageId)).toEqual([ev.id]);
  });

  it('retries while the exchange does not exist (channel closed, 404), and delivers once it does', async () => {
    const exchange = uniqueName('x');
    const destination = create({ exchange });
    const ev = event();
    expectRetry(await destination.send(ev, []), /NOT_FOUND/);

    await admin.exchange(exchange);
    const queue = await admin.queue(uniqueName('q'));
    await admin.bind(queue, exchange);
    expect(await destination.send(ev, [])).toEqual({ kind: 'delivered' });
    expect((await collect(queue, 1)).map((m) => m.properties.messageId)).toEqual([ev.id]);
  });

  it('retries a nacked event (a full queue that rejects publishes), and delivers it once there is room', async () => {
    const { exchange, queue } = await boundQueue({ 'x-max-length': 1, 'x-overflow': 'reject-publish' });
    const destination = create({ exchange });
    const [first, second] = events(2) as [DeliveryEvent, DeliveryEvent];
    expect(await destination.send(first, [])).toEqual({ kind: 'delivered' });
    expectRetry(await destination.send(second, []), /nacked/);

    expect((await admin.drain(queue)).map((m) => m.properties.messageId)).toEqual([first.id]);
    expect(await destination.send(second, [])).toEqual({ kind: 'delivered' });
    expect((await collect(queue, 1)).map((m) => m.properties.messageId)).toEqual([second.id]);
  });
});

describe('amqp destination: a broker path that fails mid-stream loses nothing', () => {
  it('a cut connection: the publishes in flight are retried on a new connection', async () => {
    const { proxy, url } = await proxied();
    const { exchange, queue } = await boundQueue();
    const destination = create({ url, exchange });
    const sent = events(120);
    let cut = false;
    const reasons = await deliverAll(destination, sent, async (delivered) => {
      if (delivered !== 40 || cut) return;
      cut = true;
      // Hold the publishes in flight, then reset the path under them.
      proxy.freeze();
      await new Promise((resolve) => setTimeout(resolve, 200));
      proxy.drop();
    });

    expect(reasons.length).toBeGreaterThan(0);
    expect(reasons.every((r) => /closed|connection/i.test(r))).toBe(true);
    const ids = new Set((await collect(queue, sent.length)).map((m) => m.properties.messageId));
    expect(sent.filter((ev) => !ids.has(ev.id))).toEqual([]);
  });

  it('a refusing broker: retried at once, delivered when it accepts again', async () => {
    const { proxy, url } = await proxied();
    const { exchange, queue } = await boundQueue();
    const destination = create({ url, exchange }, 5_000);
    const before = events(10);
    expect(await deliverAll(destination, before)).toEqual([]);

    await proxy.refuse();
    const during = event();
    // The first send may still meet the reset of the old connection; the next ones are refused.
    const reasons: string[] = [];
    const started = Date.now();
    for (let i = 0; i < 3 && !reasons.some((r) => /ECONNREFUSED/.test(r)); i++) {
      const outcome = await destination.send(during, []);
      expect(outcome.kind).toBe('retry');
      reasons.push((outcome as { reason: string }).reason);
    }
    expect(reasons.at(-1)).toMatch(/cannot connect to amqp:\/\/127\.0\.0\.1:\d+\/: connect ECONNREFUSED/);
    expect(Date.now() - started).toBeLessThan(5_000);

    await proxy.accept();
    expect(await destination.send(during, [])).toEqual({ kind: 'delivered' });
    const ids = new Set((await collect(queue, 11)).map((m) => m.properties.messageId));
    expect([...before, during].filter((ev) => !ids.has(ev.id))).toEqual([]);
  });

  it('a frozen path: no confirm within the timeout is a retry, and the next send uses a new connection', async () => {
    const { proxy, url } = await proxied();
    const { exchange, queue } = await boundQueue();
    const destination = create({ url, exchange }, 1_500);
    const before = events(5);
    expect(await deliverAll(destination, before)).toEqual([]);

    proxy.freeze();
    const during = event();
    const started = Date.now();
    expectRetry(await destination.send(during, []), /no publisher confirm within 1500 ms/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
    expect(Date.now() - started).toBeLessThan(3_000);

    // Connections made after the freeze flow: the destination must not wait on the frozen one.
    expect(await destination.send(during, [])).toEqual({ kind: 'delivered' });
    const ids = new Set((await collect(queue, 6)).map((m) => m.properties.messageId));
    expect([...before, during].filter((ev) => !ids.has(ev.id))).toEqual([]);
  });

  it('is aborted promptly by a signal, even while the broker does not answer', async () => {
    const { proxy, url } = await proxied();
    const { exchange } = await boundQueue();
    const destination = create({ url, exchange }, 10_000);
    expect(await destination.send(event(), [])).toEqual({ kind: 'delivered' });

    proxy.freeze();
    const shutdown = new AbortController();
    const started = Date.now();
    setTimeout(() => shutdown.abort(), 100);
    expect(await destination.send(event(), [new AbortController().signal, shutdown.signal])).toEqual({
      kind: 'aborted',
    });
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(await destination.send(event(), [shutdown.signal])).toEqual({ kind: 'aborted' });
  });
  it('closes promptly when its connection dies during the close handshake', async () => {
    const { proxy, url } = await proxied();
    const { exchange } = await boundQueue();
    const destination = create({ url, exchange }, 10_000);
    expect(await destination.send(event(), [])).toEqual({ kind: 'delivered' });

    proxy.freeze();
    const started = Date.now();
    const closing = destination.close();
    proxy.drop();
    await closing;
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('amqp destination: credentials', () => {
  it('never shows the URL password in an outcome, describe() or a log line', async () => {
    const password = 'Pa55-word-never-shown';
    const direct = new URL(amqpUrl());
    const url = `amqp://guest:${password}@${direct.host}/`;
    const options = amqp.options.parse({ url, exchange: 'imkit' });
    expect(amqp.describe(options)).toBe(`amqp://${direct.host}/ exchange "imkit" key imkit.{account}.{type}`);

    const destination = create({ url, exchange: 'imkit' });
    await destination.connect();
    const outcome = await destination.send(event(), []);
    expectRetry(outcome, /ACCESS_REFUSED/);
    expect(JSON.stringify(outcome)).not.toContain(password);

    // The dropped-connection path logs too: a working connection through a proxy, then a cut.
    const { proxy, url: through } = await proxied();
    const working = create({ url: through, exchange: (await boundQueue()).exchange });
    expect(await working.send(event(), [])).toEqual({ kind: 'delivered' });
    proxy.drop();
    await waitFor(() => logLines.some((line) => line.includes('amqp connection dropped')), {
      what: 'the drop log',
    });

    expect(logLines.some((line) => line.includes('not connected yet'))).toBe(true);
    expect(logLines.filter((line) => line.includes(password))).toEqual([]);
  });
});

describe('amqp destination: options', () => {
  const issues = (input: Record<string, unknown>) =>
    amqp.options.safeParse(input).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];

  it('defaults the routing key and accepts the default exchange', () => {
    expect(amqp.options.parse({ url: 'amqps://broker:5671/prod', exchange: '' })).toEqual({
      url: 'amqps://broker:5671/prod',
      exchange: '',
      routingKey: 'imkit.{account}.{type}',
    });
  });

  it('names the field of a bad URL, a missing exchange, a bad template, an over-long key, an unknown key', () => {
    expect(issues({ url: 'http://broker/', exchange: 'x' })).toEqual([
      'url: must be an amqp:// or amqps:// URL',
    ]);
    expect(issues({ url: 'amqp://broker/' })).toEqual([
      'exchange: required: the exchange to publish to ("" for the default exchange)',
    ]);
    expect(issues({ url: 'amqp://broker/', exchange: 'my exchange' })[0]).toMatch(
      /^exchange: may contain only/,
    );
    expect(issues({ url: 'amqp://broker/', exchange: 'x', routingKey: 'imkit.{acount}' })[0]).toMatch(
      /^routingKey: unknown placeholder \{acount\}/,
    );
    expect(
      issues({ url: 'amqp://broker/', exchange: 'x', routingKey: `${'k'.repeat(250)}.{account}.abcdef` }),
    ).toEqual(['routingKey: is over 255 bytes without its placeholders']);
    expect(issues({ url: 'amqp://broker/', exchange: 'x', subject: 'a' })[0]).toMatch(/subject/);
  });
});
