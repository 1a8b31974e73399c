import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { BridgeMetrics } from '../../src/admin/metrics.js';
import type { DestinationConfig } from '../../src/config/destinations.js';
import type { AccountConfig } from '../../src/config/schema.js';
import { createDecoder } from '../../src/decode/decoder.js';
import { createLogger } from '../../src/lifecycle/logger.js';
import { Enqueuer, type EnqueuerOptions, type OverflowReport } from '../../src/queue/enqueuer.js';
import { MAX_BATCH_EVENTS, eventsOf, type DeliveryEvent, type DeliveryJobData } from '../../src/queue/job.js';
import { quarantineKey, queueName, seenKey, waitListKey } from '../../src/queue/names.js';
import { requestBody } from '../../src/route/body.js';
import type { RelayedEvent } from '../../src/route/event.js';
import { eventIdentity } from '../../src/route/event-id.js';
import { RedisServer, testRedis, waitFor } from '../support/redis.js';
import { redisSettingsFromUrl } from '../../src/queue/redis.js';

const logger = createLogger({ level: 'silent' });

function webhook(id: string, schedule = [10, 20, 30]): DestinationConfig {
  return {
    id,
    url: `http://127.0.0.1:9/${id}`,
    accounts: ['*'],
    events: ['*'],
    retry: { schedule, jitter: 0 },
    jobQueue: queueName(id),
  } as unknown as DestinationConfig;
}
const hooks = [webhook('a'), webhook('b', [5])];

function event(i: number, account = 'bot'): RelayedEvent {
  const data = {
    _id: `m${i}`,
    messageType: 'text',
    messageTimeMS: 1_700_000_000_000 + i,
    message: `héllo "${i}" \u2028 😀`,
  };
  const receivedAt = 1_764_000_000_000 + i;
  return {
    ...eventIdentity(account, 'chat message', data, receivedAt, 5_000),
    type: 'chat message',
    account,
    receivedAt,
    data,
  };
}

const counter = (c: { get(): Promise<{ values: { value: number }[] }> }) =>
  c.get().then((m) => m.values.reduce((sum, v) => sum + v.value, 0));

/** Job ids in a queue's wait list, oldest first (BullMQ LPUSHes, so the list is newest first). */
async function waiting(redis: Redis, prefix: string, webhookId: string): Promise<string[]> {
  return (await redis.lrange(waitListKey(prefix, webhookId), 0, -1)).reverse();
}

async function jobData(
  redis: Redis,
  prefix: string,
  webhookId: string,
  jobId: string,
): Promise<DeliveryJobData> {
  return JSON.parse(
    (await redis.hget(`${prefix}:${queueName(webhookId)}:${jobId}`, 'data')) ?? 'null',
  ) as DeliveryJobData;
}

/** Events queued for a webhook, oldest first, taken out of their batch jobs. */
async function queuedEvents(redis: Redis, prefix: string, webhookId: string): Promise<DeliveryEvent[]> {
  const events: DeliveryEvent[] = [];
  for (const jobId of await waiting(redis, prefix, webhookId))
    events.push(...eventsOf(await jobData(redis, prefix, webhookId, jobId)));
  return events;
}

/** An Enqueuer with the tests' defaults; `open` collects it for closing after the test. */
function newEnqueuer(
  open: Enqueuer[],
  { redisUrl, ...options }: { redisUrl: string } & Pick<EnqueuerOptions, 'prefix'> & Partial<EnqueuerOptions>,
): { enqueuer: Enqueuer; metrics: BridgeMetrics } {
  const metrics = new BridgeMetrics();
  const enqueuer = new Enqueuer({
    redis: redisSettingsFromUrl(redisUrl, options.prefix),
    destinations: hooks,
    dedupWindowMs: 60_000,
    bufferEvents: 10_000,
    logger,
    metrics,
    ...options,
  });
  open.push(enqueuer);
  return { enqueuer, metrics };
}

describe('Enqueuer on a shared Redis', () => {
  let redisEnv: Awaited<ReturnType<typeof testRedis>>;
  let redis: Redis;
  const open: Enqueuer[] = [];
  let n = 0;

  function make(overrides: Partial<EnqueuerOptions> = {}): {
    enqueuer: Enqueuer;
    metrics: BridgeMetrics;
    prefix: string;
  } {
    const prefix = overrides.prefix ?? `${redisEnv.prefix}-${n++}`;
    return { ...newEnqueuer(open, { redisUrl: redisEnv.url, ...overrides, prefix }), prefix };
  }

  beforeAll(async () => {
    redisEnv = await testRedis();
    redis = new Redis(redisEnv.url);
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((o) => o.close()));
  });
  afterAll(async () => {
    redis.disconnect();
    await redisEnv.close();
  });

  it('lands each event once per target queue, in order, in batch jobs with the body and options delivery needs', async () => {
    const { enqueuer, prefix } = make();
    const events = Array.from({ length: 300 }, (_, i) => event(i));
    const results = await Promise.all(
      events.map((e, i) => enqueuer.enqueue(e, i % 3 === 0 ? [hooks[0]!] : hooks)),
    );
    expect(results.every((r) => r.fresh)).toBe(true);
    expect(enqueuer.ready).toBe(true);

    const a = await queuedEvents(redis, prefix, 'a');
    const b = await queuedEvents(redis, prefix, 'b');
    expect(a.map((e) => e.id)).toEqual(events.map((e) => e.id));
    expect(b.map((e) => e.id)).toEqual(events.filter((_, i) => i % 3 !== 0).map((e) => e.id));
    expect(b[0]).toEqual({
      id: events[1]!.id,
      type: 'chat message',
      account: 'bot',
      receivedAt: events[1]!.receivedAt,
      body: requestBody(events[1]!),
    });
    // Enqueued in one tick, so batched: full jobs but for the last, none over the cap.
    const jobIds = await waiting(redis, prefix, 'a');
    expect(jobIds).toHaveLength(Math.ceil(events.length / MAX_BATCH_EVENTS));

    const connection = new Redis(redisEnv.url, { maxRetriesPerRequest: null });
    const queue = new Queue(queueName('b'), { connection, prefix });
    const job = await queue.getJob((await waiting(redis, prefix, 'b'))[0]!);
    expect(job?.name).toBe('batch');
    // A batch job is retried (not dead-lettered) while its outcome cannot be recorded; its failed set is kept.
    expect(job?.opts).toMatchObject({ removeOnComplete: true, removeOnFail: false });
    expect(job?.opts.attempts).toBeGreaterThan(1000);
    await queue.close();
    await connection.quit();
  });

  it('two replicas on the same events: each queues them, each event is fresh for exactly one, and stays seen for the window', async () => {
    const prefix = `${redisEnv.prefix}-race`;
    const one = make({ prefix });
    const two = make({ prefix });
    const events = Array.from({ length: 500 }, (_, i) => event(i));
    const [r1, r2] = await Promise.all([
      Promise.all(events.map((e) => one.enqueuer.enqueue(e, hooks))),
      Promise.all(events.map((e) => two.enqueuer.enqueue(e, hooks))),
    ]);
    // Delivery de-duplicates (test/deliver/dedup.test.ts); here both replicas' copies are in Redis.
    for (const hook of hooks) {
      const ids = (await queuedEvents(redis, prefix, hook.id)).map((e) => e.id);
      expect(ids).toHaveLength(2 * events.length);
      expect(new Set(ids)).toEqual(new Set(events.map((e) => e.id)));
    }
    expect(events.filter((_, i) => r1[i]!.fresh !== r2[i]!.fresh)).toHaveLength(events.length);

    const again = await Promise.all(events.map((e) => one.enqueuer.enqueue(e, hooks)));
    expect(again.some((r) => r.fresh)).toBe(false);
    const ttl = await redis.pttl(seenKey(prefix, events[0]!.id));
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('quarantines every malformed payload with its raw bytes and counts it', async () => {
    const { enqueuer, metrics, prefix } = make();
    const account = { id: 'bot', encoding: 'base64' } as AccountConfig;
    const decoder = await createDecoder(account, {
      maxPayloadBytes: 4096,
      maxJsonDepth: 16,
      bufferEvents: 10,
    });
    const malformed: unknown[] = [
      'not base64!',
      Buffer.from('{"a":').toString('base64'),
      Buffer.from([0xff, 0xfe]).toString('base64'),
      'A'.repeat(8192),
      Buffer.from('['.repeat(100_000)).toString('base64'),
      [1, 2],
      7,
      false,
      null,
      undefined,
      Buffer.from([0, 1, 2, 255]),
    ];
    const expectedRaw: Buffer[] = [];
    await Promise.all(
      malformed.map((raw, i) => {
        const result = decoder.decode(raw);
        if (result.ok) throw new Error(`payload ${i} was accepted`);
        expectedRaw.push(result.raw);
        return enqueuer.quarantine({
          account: 'bot',
          event: 'chat message',
          reason: result.reason,
          raw: result.raw,
          rawType: result.rawType,
          sha256: `sha-${i}`,
          ids: result.ids,
          receivedAt: 1000 + i,
        });
      }),
    );
    expect(await counter(metrics.decodeFailures)).toBe(malformed.length);
    const entries = await redis.xrange(quarantineKey(prefix), '-', '+');
    expect(entries).toHaveLength(malformed.length);
    entries.forEach(([, flat], i) => {
      const fields = Object.fromEntries(
        Array.from({ length: flat.length / 2 }, (_, j) => [flat[2 * j], flat[2 * j + 1]]),
      );
      expect(Buffer.from(fields.raw!, 'base64')).toEqual(expectedRaw[i]);
      expect(fields).toMatchObject({
        account: 'bot',
        event: 'chat message',
        receivedAt: String(1000 + i),
        size: String(expectedRaw[i]!.length),
        sha256: `sha-${i}`,
        ids: '{}',
      });
      expect(fields.reason).toBeTruthy();
    });
    // The base64 of Buffer [0,1,2,255] and the JSON of [1,2] are what was kept.
    expect(expectedRaw[10]).toEqual(Buffer.from([0, 1, 2, 255]));
    expect(expectedRaw[5]!.toString()).toBe('[1,2]');
    // ...and what kind of value they were, so a replay can rebuild it.
    const rawTypes = entries.map(([, flat]) => flat[flat.indexOf('rawType') + 1]);
    expect(rawTypes).toEqual([
      ...Array<string>(5).fill('string'),
      ...Array<string>(4).fill('json'),
      'none',
      'binary',
    ]);
  });

  it('at a steady few hundred events/s, shares jobs between events instead of one job each', async () => {
    const { enqueuer, prefix } = make();
    const events = Array.from({ length: 120 }, (_, i) => event(i, 'steady'));
    const pending: Promise<{ fresh: boolean }>[] = [];
    // One event per millisecond or so, each in its own event-loop turn.
    for (const e of events) {
      pending.push(enqueuer.enqueue(e, [hooks[0]!]));
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(pending);
    expect((await queuedEvents(redis, prefix, 'a')).map((e) => e.id)).toEqual(events.map((e) => e.id));
    // Each write waits for the next ones a few ms; a slower machine only makes jobs fuller.
    expect((await waiting(redis, prefix, 'a')).length).toBeLessThan(events.length / 2);
  });

  it('leaves no seen marker in Redis for an event enqueued with markSeen: false', async () => {
    const { enqueuer, prefix } = make();
    const e = event(8);
    expect(await enqueuer.enqueue(e, [hooks[0]!], { markSeen: false })).toEqual({ fresh: false });
    expect(await redis.exists(seenKey(prefix, e.id))).toBe(0);
    expect((await queuedEvents(redis, prefix, 'a')).map((q) => q.id)).toEqual([e.id]);
    // Marked later, it is fresh then: nothing had claimed it as seen.
    expect(await enqueuer.enqueue(e, [hooks[0]!])).toEqual({ fresh: true });
  });

  it('stores the exact request body, serialised once at ingest', async () => {
    const { enqueuer, prefix } = make();
    const e = event(7);
    expect(await enqueuer.enqueue(e, [hooks[0]!])).toEqual({ fresh: true });
    const [stored] = await queuedEvents(redis, prefix, 'a');
    expect(stored!.body).toBe(requestBody(e));
    expect(JSON.parse(stored!.body)).toEqual({
      id: e.id,
      type: e.type,
      timestamp: new Date(e.receivedAt).toISOString(),
      account: 'bot',
      data: e.data,
    });
  });

  it("carries a non-chat event's repeat key to delivery in the job, never in the body", async () => {
    const { enqueuer, prefix } = make();
    const data = { room: 'r1', message: 'typing' };
    const receivedAt = 1_764_000_000_000;
    const typing: RelayedEvent = {
      ...eventIdentity('bot', 'typing', data, receivedAt, 5_000),
      type: 'typing',
      account: 'bot',
      receivedAt,
      data,
    };
    expect(typing.repeatKey).toBeDefined();
    await enqueuer.enqueue(typing, [hooks[0]!]);
    const [stored] = await queuedEvents(redis, prefix, 'a');
    expect(stored).toMatchObject({ id: typing.id, repeatKey: typing.repeatKey });
    expect(stored!.body).not.toContain(typing.repeatKey);
  });

  it('is a no-op for events without targets, and resolves dropped after close (twice is safe)', async () => {
    const { enqueuer } = make();
    expect(await enqueuer.enqueue(event(1), [])).toEqual({ fresh: false });
    await enqueuer.close();
    await enqueuer.close();
    expect(await enqueuer.enqueue(event(2), hooks)).toEqual({ fresh: false, dropped: true });
  });

  it('batches: thousands of events take a few dozen round trips per queue (throughput is logged)', async () => {
    const { enqueuer, prefix } = make({ bufferEvents: 50_000 });
    const addBulk = vi.spyOn(Queue.prototype, 'addBulk');
    const total = 6_000;
    const events = Array.from({ length: total }, (_, i) => event(i, 'perf'));
    const started = performance.now();
    const pending: Promise<{ fresh: boolean }>[] = [];
    // Arrive in bursts of 100 per tick, like a busy socket.
    for (let i = 0; i < total; i += 100) {
      for (const e of events.slice(i, i + 100)) pending.push(enqueuer.enqueue(e, hooks));
      await new Promise((r) => setImmediate(r));
    }
    const results = await Promise.all(pending);
    const seconds = (performance.now() - started) / 1000;
    const roundTrips = addBulk.mock.calls.length;
    addBulk.mockRestore();
    console.log(
      `enqueue throughput: ${Math.round(total / seconds)} events/s (${total} events x ${hooks.length} webhooks ` +
        `in ${seconds.toFixed(2)} s, ${roundTrips} addBulk calls)`,
    );
    expect(results.every((r) => r.fresh)).toBe(true);
    expect(await queuedEvents(redis, prefix, 'b')).toHaveLength(total);
    // At least 100 events per round trip per queue on average; per-event writes would be 12 000.
    expect(roundTrips).toBeGreaterThanOrEqual(hooks.length);
    expect(roundTrips).toBeLessThanOrEqual((total / 100) * hooks.length);
  });
});

describe('Enqueuer while Redis is down', () => {
  let server: RedisServer;
  let redis: Redis;
  const open: Enqueuer[] = [];

  beforeAll(async () => {
    server = await RedisServer.start();
    redis = new Redis(server.url, { maxRetriesPerRequest: null });
    redis.on('error', () => {});
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((e) => e.close()));
  });
  afterAll(async () => {
    redis.disconnect();
    await server.close();
  });

  it('buffers in order while Redis is stopped, reports not ready, and flushes everything when it returns', async () => {
    const prefix = 'outage';
    const { enqueuer, metrics } = newEnqueuer(open, { redisUrl: server.url, prefix });
    const events = Array.from({ length: 600 }, (_, i) => event(i));
    const landed: Promise<unknown>[] = [];
    const quarantined = enqueuer.quarantine({
      account: 'bot',
      event: 'x',
      reason: 'invalid JSON',
      raw: Buffer.from('{'),
      rawType: 'string',
      sha256: 'x',
      ids: {},
      receivedAt: 1,
    });
    for (const e of events.slice(0, 200)) landed.push(enqueuer.enqueue(e, hooks));
    await Promise.all(landed);
    await quarantined;

    await server.stop();
    await waitFor(() => !enqueuer.ready, { what: 'ready to turn false' });
    // Events keep arriving for about two seconds while Redis is away, a few at a time.
    const readiness: boolean[] = [];
    for (let i = 200; i < 600; i += 10) {
      for (const e of events.slice(i, i + 10)) landed.push(enqueuer.enqueue(e, hooks));
      await new Promise((r) => setTimeout(r, 50));
      readiness.push(enqueuer.ready);
    }
    expect(readiness.every((r) => !r)).toBe(true);
    expect(enqueuer.buffered).toBe(400);
    expect((await metrics.ingestBuffered.get()).values[0]!.value).toBe(400);
    await server.startProcess();
    await waitFor(() => enqueuer.ready, { what: 'ready again', timeoutMs: 15_000 });
    expect(await enqueuer.drain(15_000)).toBe(true);
    await Promise.all(landed);
    expect((await metrics.ingestBuffered.get()).values[0]!.value).toBe(0);

    for (const hook of hooks) {
      const ids = (await queuedEvents(redis, prefix, hook.id)).map((e) => e.id);
      expect(ids).toEqual(events.map((e) => e.id));
    }
    expect(await redis.xlen(quarantineKey(prefix))).toBe(1);
  });

  it('starts while Redis is down and lands everything once it comes up', async () => {
    await server.stop();
    const prefix = 'late-start';
    const { enqueuer, metrics } = newEnqueuer(open, { redisUrl: server.url, prefix, bufferEvents: 1000 });
    const events = Array.from({ length: 50 }, (_, i) => event(i));
    const landed = Promise.all(events.map((e) => enqueuer.enqueue(e, hooks)));
    const quarantined = enqueuer.quarantine({
      account: 'bot',
      event: 'room',
      reason: 'invalid base64',
      raw: Buffer.from('%%'),
      rawType: 'string',
      sha256: 'x',
      ids: {},
      receivedAt: 5,
    });
    expect(await enqueuer.drain(300)).toBe(false);
    expect(enqueuer.ready).toBe(false);
    expect(enqueuer.buffered).toBe(51);
    await server.startProcess();
    expect(await enqueuer.drain(15_000)).toBe(true);
    expect((await landed).every((r) => r.fresh)).toBe(true);
    expect(await quarantined).toEqual({ fresh: true });
    expect((await queuedEvents(redis, prefix, 'a')).map((e) => e.id)).toEqual(events.map((e) => e.id));
    expect(await redis.xlen(quarantineKey(prefix))).toBe(1);
    expect(await counter(metrics.decodeFailures)).toBe(1);
  });

  it('with a tiny buffer, drops the newest events and reports the dropped interval once Redis is back', async () => {
    const reports: OverflowReport[] = [];
    const prefix = 'overflow';
    const { enqueuer, metrics } = newEnqueuer(open, {
      redisUrl: server.url,
      prefix,
      bufferEvents: 20,
      onOverflow: (r) => reports.push(r),
    });
    await waitFor(() => enqueuer.ready, { what: 'connected' });
    await server.stop();
    const first = enqueuer.enqueue(event(-1), hooks);
    await waitFor(() => !enqueuer.ready, { what: 'not ready' });

    const events = Array.from({ length: 50 }, (_, i) => event(i));
    const other = Array.from({ length: 5 }, (_, i) => event(100 + i, 'other'));
    const results = await Promise.all(
      [...events, ...other].map((e) => {
        const p = enqueuer.enqueue(e, hooks);
        return Promise.race([p, new Promise((r) => setTimeout(() => r('pending'), 200))]);
      }),
    );
    // The first 19 (the buffer already holds one) wait for Redis; everything after is dropped.
    expect(results.filter((r) => r === 'pending')).toHaveLength(19);
    expect(results.slice(19).every((r) => (r as { dropped?: boolean }).dropped === true)).toBe(true);
    expect(await counter(metrics.ingestOverflow)).toBe(36);
    expect(reports).toEqual([]);

    await server.startProcess();
    await waitFor(() => reports.length === 2, { what: 'overflow reports', timeoutMs: 15_000 });
    expect(reports).toEqual([
      { account: 'bot', from: events[19]!.receivedAt, to: events[49]!.receivedAt, dropped: 31 },
      { account: 'other', from: other[0]!.receivedAt, to: other[4]!.receivedAt, dropped: 5 },
    ]);
    expect(await enqueuer.drain(10_000)).toBe(true);
    expect(await first).toEqual({ fresh: true });
    const ids = (await queuedEvents(redis, prefix, 'a')).map((e) => e.id);
    expect(ids).toEqual([event(-1), ...events.slice(0, 19)].map((e) => e.id));
  });
});
