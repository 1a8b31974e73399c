import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Destination } from '../../src/deliver/destination.js';
import type { Logger } from '../../src/lifecycle/logger.js';
import {
  redisStreamKeyspaceProblem,
  redisStreamKind,
  streamFields,
} from '../../src/deliver/destinations/redis-stream.js';
import { RedisServer } from '../support/redis.js';
import {
  passwordTarget,
  expectPasswordNeverShown,
  expectCutOffWhilePaused,
  capturedLogger,
  deliveryEvents,
  destinationOf,
  inParallel,
  reader,
  sendUntilDelivered,
} from './redis-fixtures.js';

type Entry = [string, string[]];

let server: RedisServer;
let redis: Redis;
const opened: Destination[] = [];

function streamDestination(
  raw: Record<string, unknown>,
  options: { logger?: Logger; timeout?: number } = {},
): Destination {
  const destination = destinationOf(
    redisStreamKind,
    raw,
    { bridgeRedisUrl: server.url, ...(options.logger ? { logger: options.logger } : {}) },
    options.timeout === undefined ? {} : { timeout: options.timeout },
  );
  opened.push(destination);
  return destination;
}

const uniqueStream = () => `t:${Math.random().toString(36).slice(2, 10)}`;

beforeAll(async () => {
  server = await RedisServer.start();
  redis = reader(server.url);
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((d) => d.close()));
});

afterAll(async () => {
  redis.disconnect();
  await server.close();
});

describe('redis-stream destination', () => {
  it('adds every event once with exactly the fields id, type, account, timestamp, body (body byte-equal)', async () => {
    const stream = uniqueStream();
    const destination = streamDestination({ stream });
    await destination.connect();
    const events = deliveryEvents(200);

    const outcomes = await inParallel(events, 16, (e) => destination.send(e, []));
    expect(outcomes.every((o) => o.kind === 'delivered')).toBe(true);

    const entries = (await redis.xrange(stream, '-', '+')) as Entry[];
    expect(entries).toHaveLength(200);
    const byId = new Map(entries.map(([, fields]) => [fields[1], fields]));
    for (const event of events) {
      expect(byId.get(event.id)).toEqual([
        'id',
        event.id,
        'type',
        event.type,
        'account',
        'audit-bot',
        'timestamp',
        new Date(event.receivedAt).toISOString(),
        'body',
        event.body,
      ]);
    }

    // Every retry of a delivered event (a lost reply, a replay) is recognised and adds nothing.
    const again = await inParallel(events, 16, (e) => destination.send(e, []));
    expect(again.every((o) => o.kind === 'delivered')).toBe(true);
    expect(await redis.xlen(stream)).toBe(200);
  });

  it('renders the stream name per event, awkward values made safe, and keeps each marker in its stream slot', async () => {
    const destination = streamDestination({ stream: 'imkit:{account}:{type}:{room}' });
    const [chat, gap] = deliveryEvents(2, { types: ['chat message', 'bridge.gap'] });
    const awkward = { ...chat!, account: 'a b:c{d}é', room: 'r/1 😀' };
    expect(await destination.send(awkward, [])).toMatchObject({ kind: 'delivered' });
    expect(await destination.send(gap!, [])).toMatchObject({ kind: 'delivered' });

    const chatStream = 'imkit:a_b_c_d__:chat_message:r_1__';
    const gapStream = 'imkit:audit-bot:bridge_gap:none';
    expect(await redis.xlen(chatStream)).toBe(1);
    expect(await redis.xlen(gapStream)).toBe(1);
    // The hash tag of the marker is the stream's name: one slot under Cluster, so one script.
    expect(await redis.exists(`imkit-dedup:{${chatStream}}:${awkward.id}`)).toBe(1);
    expect(await redis.pttl(`imkit-dedup:{${gapStream}}:${gap!.id}`)).toBeGreaterThan(590_000);
  });

  it('trims the stream approximately to maxLen, keeping the newest entries', async () => {
    const stream = uniqueStream();
    const destination = streamDestination({ stream, maxLen: 100 });
    const events = deliveryEvents(1000);
    for (const event of events) expect((await destination.send(event, [])).kind).toBe('delivered');

    const length = await redis.xlen(stream);
    // MAXLEN ~ trims whole radix-tree nodes (100 entries each by default): never below maxLen.
    expect(length).toBeGreaterThanOrEqual(100);
    expect(length).toBeLessThan(300);
    const [last] = (await redis.xrevrange(stream, '+', '-', 'COUNT', 1)) as Entry[];
    expect(last![1][1]).toBe(events.at(-1)!.id);
  });

  it('adds each event once when two bridge processes deliver the same events at the same time', async () => {
    const stream = uniqueStream();
    const first = streamDestination({ stream });
    const second = streamDestination({ stream });
    const events = deliveryEvents(300);

    const [a, b] = await Promise.all([
      inParallel(events, 8, (e) => first.send(e, [])),
      inParallel([...events].reverse(), 8, (e) => second.send(e, [])),
    ]);
    expect([...a, ...b].every((o) => o.kind === 'delivered')).toBe(true);

    const entries = (await redis.xrange(stream, '-', '+')) as Entry[];
    expect(entries).toHaveLength(300);
    expect(new Set(entries.map(([, f]) => f[1])).size).toBe(300);
  });

  it('reports a retry when the key holds another type, says so once, and delivers once it is gone', async () => {
    const stream = uniqueStream();
    await redis.set(stream, 'not a stream');
    const logs = capturedLogger();
    const destination = streamDestination({ stream }, { logger: logs.logger });
    const [event] = deliveryEvents(1);

    const outcome = await destination.send(event!, []);
    expect(outcome).toMatchObject({ kind: 'retry', reason: expect.stringContaining('WRONGTYPE') });
    await destination.send(event!, []);
    expect(logs.text().match(/holds another type/g)).toHaveLength(1);

    await redis.del(stream);
    expect(await destination.send(event!, [])).toMatchObject({ kind: 'delivered' });
    expect(await redis.xlen(stream)).toBe(1);
  });

  it('reports a retry while the target refuses writes (OOM), and delivers once it has room', async () => {
    const stream = uniqueStream();
    const destination = streamDestination({ stream });
    const [event] = deliveryEvents(1);
    await redis.config('SET', 'maxmemory', '1');
    try {
      expect(await destination.send(event!, [])).toMatchObject({
        kind: 'retry',
        reason: expect.stringContaining('OOM'),
      });
    } finally {
      await redis.config('SET', 'maxmemory', '0');
    }
    expect(await destination.send(event!, [])).toMatchObject({ kind: 'delivered' });
    expect(await redis.xlen(stream)).toBe(1);
  });

  it('is cut off by a caller signal (aborted) and by its timeout (retry) when the target hangs', async () => {
    const stream = uniqueStream();
    const destination = streamDestination({ stream }, { timeout: 400 });
    await destination.connect();
    const [slow, later, early] = deliveryEvents(3);
    await expectCutOffWhilePaused(redis, destination, [slow!, later!, early!]);
    const ids = ((await redis.xrange(stream, '-', '+')) as Entry[]).map(([, f]) => f[1]);
    expect(ids.sort()).toEqual([slow!.id, later!.id].sort());
  });
});

describe("redis-stream sendMany (a batch job's events in one script call)", () => {
  it('answers each event in order, adds an id repeated in the chunk once, and splits by rendered stream', async () => {
    const destination = streamDestination({ stream: 't:{type}' });
    const events = deliveryEvents(30, { types: ['chat message', 'bridge.gap'] });
    const chunk = [...events, events[0]!, events[1]!];

    const outcomes = await destination.sendMany!(chunk, []);
    expect(outcomes.map((o) => o.kind)).toEqual(chunk.map(() => 'delivered'));
    expect(outcomes[0]).toMatchObject({ note: expect.stringMatching(/^entry /) });
    const repeat = outcomes[30] as { note: string };
    expect(repeat.note).toBe((outcomes[0] as { note: string }).note.replace('entry', 'duplicate of'));

    const chat = (await redis.xrange('t:chat_message', '-', '+')) as Entry[];
    const gap = (await redis.xrange('t:bridge_gap', '-', '+')) as Entry[];
    expect(chat.map(([, f]) => f[1])).toEqual(
      events.filter((e) => e.type === 'chat message').map((e) => e.id),
    );
    expect(gap.map(([, f]) => f[1])).toEqual(events.filter((e) => e.type === 'bridge.gap').map((e) => e.id));
    expect(chat[0]![1]).toEqual(streamFields(events[0]!));
    await redis.del('t:chat_message', 't:bridge_gap');
  });

  it('appends the trace context fields to traced events only, in one call with untraced ones', async () => {
    const stream = uniqueStream();
    const destination = streamDestination({ stream });
    const [plain, traced, withState] = deliveryEvents(3);
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const chunk = [
      plain!,
      { ...traced!, traceparent },
      { ...withState!, traceparent, tracestate: 'vendor=opaque' },
    ];

    const outcomes = await destination.sendMany!(chunk, []);
    expect(outcomes.map((o) => o.kind)).toEqual(['delivered', 'delivered', 'delivered']);
    const entries = ((await redis.xrange(stream, '-', '+')) as Entry[]).map(([, f]) => f);
    expect(entries).toEqual(chunk.map(streamFields));
    expect(entries[0]).not.toContain('traceparent');
    expect(entries[1]!.slice(-2)).toEqual(['traceparent', traceparent]);
    expect(entries[2]!.slice(-4)).toEqual(['traceparent', traceparent, 'tracestate', 'vendor=opaque']);
  });

  it('adds each event once when two destinations send the same chunk at the same time, and after send', async () => {
    const stream = uniqueStream();
    const first = streamDestination({ stream });
    const second = streamDestination({ stream });
    const events = deliveryEvents(200);

    const [a, b] = await Promise.all([
      first.sendMany!(events, []),
      second.sendMany!([...events].reverse(), []),
    ]);
    expect([...a, ...b].every((o) => o.kind === 'delivered')).toBe(true);
    expect(await first.send(events[7]!, [])).toMatchObject({ note: expect.stringMatching(/^duplicate of /) });

    const entries = (await redis.xrange(stream, '-', '+')) as Entry[];
    expect(entries).toHaveLength(200);
    expect(new Set(entries.map(([, f]) => f[1])).size).toBe(200);
  });

  it('is aborted for every event by a caller signal when the target hangs, and the events land once later', async () => {
    const stream = uniqueStream();
    const destination = streamDestination({ stream }, { timeout: 2_000 });
    await destination.connect();
    const events = deliveryEvents(20);
    await redis.call('CLIENT', 'PAUSE', '10000', 'WRITE');
    try {
      const controller = new AbortController();
      const started = Date.now();
      const pending = destination.sendMany!(events, [controller.signal]);
      setTimeout(() => controller.abort(), 50);
      expect(await pending).toEqual(events.map(() => ({ kind: 'aborted' })));
      expect(Date.now() - started).toBeLessThan(1_500);
      expect(await destination.sendMany!(events, [AbortSignal.abort()])).toEqual(
        events.map(() => ({ kind: 'aborted' })),
      );
    } finally {
      await redis.call('CLIENT', 'UNPAUSE');
    }
    const outcomes = await destination.sendMany!([...events, ...events], []);
    expect(outcomes.every((o) => o.kind === 'delivered')).toBe(true);
    expect(await redis.xlen(stream)).toBe(20);
  });
});

describe('redis-stream destination against a target that dies', () => {
  let target: RedisServer;

  beforeAll(async () => {
    target = await RedisServer.start();
  });

  afterAll(async () => {
    await target.close();
  });

  it('retries within its timeout while the target is down, and after a kill -9 and restart loses nothing and adds nothing twice', async () => {
    const stream = uniqueStream();
    const destination = streamDestination({ url: target.url, stream }, { timeout: 1_000 });
    await destination.connect();
    const events = deliveryEvents(90);
    const delivered = new Set<string>();

    for (const event of events.slice(0, 30)) {
      expect((await destination.send(event, [])).kind).toBe('delivered');
      delivered.add(event.id);
    }
    await target.stop({ kill9: true });

    const started = Date.now();
    const outcome = await destination.send(events[30]!, []);
    expect(outcome.kind).toBe('retry');
    expect(Date.now() - started).toBeLessThan(1_500);

    // Sends go on (as the lane's retries do) while the target comes back.
    const restart = new Promise((r) => setTimeout(r, 500)).then(() => target.startProcess());
    const outcomes = await inParallel(events.slice(30), 8, async (event) => {
      const result = await sendUntilDelivered(destination, event);
      if (result.kind === 'delivered') delivered.add(event.id);
      return result;
    });
    await restart;
    expect(outcomes.every((o) => o.kind === 'delivered')).toBe(true);

    const check = reader(target.url);
    try {
      const ids = ((await check.xrange(stream, '-', '+')) as Entry[]).map(([, f]) => f[1]!);
      expect(ids).toHaveLength(90);
      expect(new Set(ids)).toEqual(delivered);
      // The markers survived the crash (AOF): a replay of everything adds nothing.
      for (const event of events) expect((await destination.send(event, [])).kind).toBe('delivered');
      expect(await check.xlen(stream)).toBe(90);
    } finally {
      check.disconnect();
    }
  });

  it('sendMany answers retry for every event within its timeout while the target is stopped', async () => {
    const stream = uniqueStream();
    const destination = streamDestination({ url: target.url, stream }, { timeout: 1_000 });
    await destination.connect();
    const events = deliveryEvents(40);
    await target.stop();
    try {
      const started = Date.now();
      const outcomes = await destination.sendMany!(events, []);
      expect(Date.now() - started).toBeLessThan(1_500);
      expect(outcomes).toHaveLength(40);
      expect(outcomes.every((o) => o.kind === 'retry')).toBe(true);
    } finally {
      await target.startProcess();
    }
  });
});

describe('redis-stream credentials', () => {
  const PASSWORD = 'pw-Zx81-secret';
  const target = passwordTarget(PASSWORD);

  it('never shows the password of its URL in describe(), an outcome or a log line', async () => {
    const describe = redisStreamKind.describe(
      redisStreamKind.options.parse({ url: target.url(PASSWORD), stream: 'audit' }),
    );
    expect(describe).toBe(`redis://127.0.0.1:${target.server.port} stream audit`);
    const stream = uniqueStream();
    await expectPasswordNeverShown(target, PASSWORD, (url, logger) =>
      streamDestination({ url, stream }, { logger }),
    );
  });
});

describe('redis-stream config', () => {
  it('rejects a bad URL scheme, a bad template and a bad maxLen, naming the field', () => {
    const problems = (raw: Record<string, unknown>) =>
      redisStreamKind.options.safeParse(raw).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(problems({ url: 'http://127.0.0.1:6379' })).toEqual(['url: must be a redis:// or rediss:// URL']);
    expect(problems({ stream: 'imkit:{acount}' })?.[0]).toMatch(/^stream: unknown placeholder \{acount\}/);
    expect(problems({ maxLen: 0 })?.[0]).toMatch(/^maxLen: /);
    expect(problems({ streams: 'x' })?.[0]).toMatch(/streams/);
    expect(redisStreamKind.options.parse({})).toEqual({ stream: 'imkit:events' });
  });

  it("keeps a stream on the bridge's own Redis out of the bridge's keys", () => {
    const bridge = { url: 'redis://127.0.0.1:6379/0', prefix: 'imkit-bridge' };
    const parse = (raw: Record<string, unknown>) => redisStreamKind.options.parse(raw);
    expect(redisStreamKeyspaceProblem(parse({ stream: 'imkit-bridge:events' }), bridge)).toMatchObject({
      path: ['stream'],
    });
    expect(
      redisStreamKeyspaceProblem(
        parse({ url: 'redis://:pw@127.0.0.1:6379', stream: 'imkit-bridge:x' }),
        bridge,
      ),
    ).toBeDefined();
    expect(redisStreamKeyspaceProblem(parse({ stream: 'imkit:events' }), bridge)).toBeUndefined();
    expect(
      redisStreamKeyspaceProblem(
        parse({ url: 'redis://127.0.0.1:6379/1', stream: 'imkit-bridge:x' }),
        bridge,
      ),
    ).toBeUndefined();
  });
});

it('many sends waiting on one connection attempt share it (no listener pile-up) and each retries at its timeout', async () => {
  // A server that accepts and never answers keeps the client's first attempt under way.
  const sockets: Socket[] = [];
  const silent = createServer((socket) => void sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const warnings: string[] = [];
  const onWarning = (warning: Error) => void warnings.push(warning.name);
  process.on('warning', onWarning);
  try {
    const { port } = silent.address() as AddressInfo;
    const destination = streamDestination({ url: `redis://127.0.0.1:${port}` }, { timeout: 300 });
    const outcomes = await Promise.all(deliveryEvents(40).map((event) => destination.send(event, [])));
    expect(new Set(outcomes.map((o) => o.kind))).toEqual(new Set(['retry']));
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings).not.toContain('MaxListenersExceededWarning');
  } finally {
    process.off('warning', onWarning);
    for (const socket of sockets) socket.destroy();
    silent.close();
  }
});
