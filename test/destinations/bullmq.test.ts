import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Destination } from '../../src/deliver/destination.js';
import { bullmqKeyspaceProblem, bullmqKind } from '../../src/deliver/destinations/bullmq.js';
import type { Logger } from '../../src/lifecycle/logger.js';
import { RedisServer, waitFor } from '../support/redis.js';
import {
  passwordTarget,
  expectPasswordNeverShown,
  expectCutOffWhilePaused,
  deliveryEvents,
  destinationOf,
  inParallel,
  reader,
  sendUntilDelivered,
} from './redis-fixtures.js';

let server: RedisServer;
let redis: Redis;
const opened: Destination[] = [];
const queues: Queue[] = [];

function bullmqDestination(
  raw: Record<string, unknown>,
  options: { logger?: Logger; timeout?: number } = {},
): Destination {
  const destination = destinationOf(
    bullmqKind,
    raw,
    { bridgeRedisUrl: server.url, ...(options.logger ? { logger: options.logger } : {}) },
    options.timeout === undefined ? {} : { timeout: options.timeout },
  );
  opened.push(destination);
  return destination;
}

/** The consumer's view of a queue. */
function consumerQueue(name: string, url = server.url, prefix = 'bull'): Queue {
  const queue = new Queue(name, { connection: { url }, prefix });
  queues.push(queue);
  return queue;
}

const uniqueQueue = () => `q-${Math.random().toString(36).slice(2, 10)}`;

beforeAll(async () => {
  server = await RedisServer.start();
  redis = reader(server.url);
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((d) => d.close()));
  await Promise.all(queues.splice(0).map((q) => q.close()));
});

afterAll(async () => {
  redis.disconnect();
  await server.close();
});

describe('bullmq destination', () => {
  it('puts a traced event’s context where BullMQ telemetry reads a producer’s, and leaves the data the body', async () => {
    const name = uniqueQueue();
    const destination = bullmqDestination({ queue: name });
    const [plain, traced] = deliveryEvents(2);
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    for (const e of [plain!, { ...traced!, traceparent, tracestate: 'vendor=opaque' }])
      expect((await destination.send(e, [])).kind).toBe('delivered');

    const queue = consumerQueue(name);
    const [untracedJob, tracedJob] = await Promise.all([queue.getJob(plain!.id), queue.getJob(traced!.id)]);
    expect(untracedJob?.opts.telemetry).toBeUndefined();
    expect(JSON.parse(tracedJob!.opts.telemetry!.metadata!)).toEqual({
      traceparent,
      tracestate: 'vendor=opaque',
    });
    expect(JSON.stringify(tracedJob?.data)).toBe(traced!.body);
  });
  it("adds one job per event, named after its type, with the parsed body as data and the event id as job id, that the consumer's worker reads", async () => {
    const name = uniqueQueue();
    const destination = bullmqDestination({ queue: name });
    await destination.connect();
    const events = deliveryEvents(120);

    const outcomes = await inParallel(events, 16, (e) => destination.send(e, []));
    expect(outcomes.every((o) => o.kind === 'delivered')).toBe(true);

    const queue = consumerQueue(name);
    expect(await queue.getJobCounts('waiting')).toEqual({ waiting: 120 });
    for (const event of events) {
      const job = await queue.getJob(event.id);
      expect(job?.name).toBe(event.type);
      // The data is the body, value for value: serialised again it is the webhook body, byte for byte.
      expect(JSON.stringify(job?.data)).toBe(event.body);
    }

    // A repeat is ignored while the job is kept.
    const again = await inParallel(events, 16, (e) => destination.send(e, []));
    expect(again.every((o) => o.kind === 'delivered')).toBe(true);
    expect(await queue.getJobCounts('waiting')).toEqual({ waiting: 120 });

    const seen: string[] = [];
    const worker = new Worker(
      name,
      async (job) => {
        seen.push(`${job.id}|${job.name}|${(job.data as { type: string }).type}`);
      },
      { connection: { url: server.url, maxRetriesPerRequest: null }, prefix: 'bull', concurrency: 8 },
    );
    try {
      await waitFor(() => seen.length >= 120, { what: '120 jobs processed' });
    } finally {
      await worker.close();
    }
    expect(seen.sort()).toEqual(events.map((e) => `${e.id}|${e.type}|${e.type}`).sort());
  });

  it('writes under its prefix', async () => {
    const name = uniqueQueue();
    const destination = bullmqDestination({ queue: name, prefix: 'consumer' });
    const [event] = deliveryEvents(1);
    expect(await destination.send(event!, [])).toMatchObject({ kind: 'delivered' });
    expect(await redis.exists(`consumer:${name}:${event!.id}`)).toBe(1);
    expect(await consumerQueue(name, server.url, 'consumer').getJobCounts('waiting')).toEqual({ waiting: 1 });
  });

  it('adds each event once when two bridge processes deliver the same events at the same time', async () => {
    const name = uniqueQueue();
    const first = bullmqDestination({ queue: name });
    const second = bullmqDestination({ queue: name });
    const events = deliveryEvents(300);

    const [a, b] = await Promise.all([
      inParallel(events, 8, (e) => first.send(e, [])),
      inParallel([...events].reverse(), 8, (e) => second.send(e, [])),
    ]);
    expect([...a, ...b].every((o) => o.kind === 'delivered')).toBe(true);

    const jobs = await consumerQueue(name).getJobs(['waiting'], 0, -1);
    expect(jobs).toHaveLength(300);
    expect(new Set(jobs.map((j) => j.id))).toEqual(new Set(events.map((e) => e.id)));
  });

  it('reports a retry while the target refuses writes (OOM), and delivers once it has room', async () => {
    const name = uniqueQueue();
    const destination = bullmqDestination({ queue: name });
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
    expect(await consumerQueue(name).getJobCounts('waiting')).toEqual({ waiting: 1 });
  });

  it('is cut off by a caller signal (aborted) and by its timeout (retry) when the target hangs', async () => {
    const name = uniqueQueue();
    const destination = bullmqDestination({ queue: name }, { timeout: 400 });
    const [warm, slow, later, early] = deliveryEvents(4);
    // The queue is made on first use; make it before Redis hangs.
    expect(await destination.send(warm!, [])).toMatchObject({ kind: 'delivered' });
    await expectCutOffWhilePaused(redis, destination, [slow!, later!, early!]);
    const jobs = await consumerQueue(name).getJobs(['waiting'], 0, -1);
    expect(jobs.map((j) => j.id).sort()).toEqual([warm!.id, slow!.id, later!.id].sort());
  });
});

describe('bullmq destination against a target that dies', () => {
  let target: RedisServer;

  beforeAll(async () => {
    target = await RedisServer.start();
  });

  afterAll(async () => {
    await target.close();
  });

  it('retries within its timeout while the target is down, and after a kill -9 and restart loses nothing and adds nothing twice', async () => {
    const name = uniqueQueue();
    const destination = bullmqDestination({ url: target.url, queue: name }, { timeout: 1_000 });
    await destination.connect();
    const events = deliveryEvents(90);
    const delivered = new Set<string>();

    for (const event of events.slice(0, 30)) {
      expect((await destination.send(event, [])).kind).toBe('delivered');
      delivered.add(event.id);
    }
    await target.stop({ kill9: true });

    const started = Date.now();
    expect((await destination.send(events[30]!, [])).kind).toBe('retry');
    expect(Date.now() - started).toBeLessThan(1_500);

    const restart = new Promise((r) => setTimeout(r, 500)).then(() => target.startProcess());
    const outcomes = await inParallel(events.slice(30), 8, async (event) => {
      const result = await sendUntilDelivered(destination, event);
      if (result.kind === 'delivered') delivered.add(event.id);
      return result;
    });
    await restart;
    expect(outcomes.every((o) => o.kind === 'delivered')).toBe(true);

    const queue = consumerQueue(name, target.url);
    const ids = (await queue.getJobs(['waiting'], 0, -1)).map((j) => j.id);
    expect(ids).toHaveLength(90);
    expect(new Set(ids)).toEqual(delivered);
    for (const event of events) expect((await destination.send(event, [])).kind).toBe('delivered');
    expect(await queue.getJobCounts('waiting')).toEqual({ waiting: 90 });
  });
});

describe('bullmq credentials', () => {
  const PASSWORD = 'pw-Qb77-secret';
  const target = passwordTarget(PASSWORD);

  it('never shows the password of its URL in describe(), an outcome or a log line', async () => {
    expect(bullmqKind.describe(bullmqKind.options.parse({ url: target.url(PASSWORD), queue: 'jobs' }))).toBe(
      `redis://127.0.0.1:${target.server.port} BullMQ queue bull:jobs`,
    );
    const name = uniqueQueue();
    await expectPasswordNeverShown(target, PASSWORD, (url, logger) =>
      bullmqDestination({ url, queue: name }, { logger }),
    );
  });
});

describe('bullmq config', () => {
  it('requires a queue without ":" and a redis URL, naming the field', () => {
    const problems = (raw: Record<string, unknown>) =>
      bullmqKind.options.safeParse(raw).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(problems({})?.[0]).toMatch(/^queue: /);
    expect(problems({ queue: 'a:b' })).toEqual(['queue: must not contain ":"']);
    expect(problems({ queue: 'jobs', url: 'amqp://x' })).toEqual([
      'url: must be a redis:// or rediss:// URL',
    ]);
    expect(bullmqKind.options.parse({ queue: 'jobs' })).toEqual({ queue: 'jobs', prefix: 'bull' });
  });

  it("refuses the bridge's own prefix on the bridge's own Redis", () => {
    const bridge = { url: 'redis://127.0.0.1:6379', prefix: 'imkit-bridge' };
    const parse = (raw: Record<string, unknown>) => bullmqKind.options.parse({ queue: 'jobs', ...raw });
    expect(bullmqKeyspaceProblem(parse({ prefix: 'imkit-bridge' }), bridge)).toMatchObject({
      path: ['prefix'],
    });
    expect(
      bullmqKeyspaceProblem(parse({ url: 'redis://u:p@127.0.0.1:6379/0', prefix: 'imkit-bridge' }), bridge),
    ).toBeDefined();
    expect(bullmqKeyspaceProblem(parse({}), bridge)).toBeUndefined();
    expect(
      bullmqKeyspaceProblem(parse({ url: 'redis://other:6379', prefix: 'imkit-bridge' }), bridge),
    ).toBeUndefined();
  });
});
