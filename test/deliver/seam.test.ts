import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { BridgeMetrics } from '../../src/admin/metrics.js';
import { destinationsOf } from '../../src/config/destinations.js';
import type { BridgeConfig } from '../../src/config/schema.js';
import type { Destination, DestinationKind, SendOutcome } from '../../src/deliver/destination.js';
import { registerKind } from '../../src/deliver/registry.js';
import { listDeadLetters, replayDeadLetters } from '../../src/dlq/dead-letters.js';
import type { DeliveryEvent } from '../../src/queue/job.js';
import type { RelayedEvent } from '../../src/route/event.js';
import { waitFor } from '../support/redis.js';
import { eventId, redisSuite, startAllInOne, testConfig } from './fixtures.js';

/**
 * A kind that lives only in this test: it keeps what it is sent, and answers what `answer` says.
 * Nothing in delivery knows it; if the lane depended on the type, this would not work.
 */
const memory = {
  received: [] as DeliveryEvent[],
  answer: (_event: DeliveryEvent, _tries: number): SendOutcome => ({ kind: 'delivered' }),
  tries: new Map<string, number>(),
};
const options = z.strictObject({ label: z.string() });
const sendOne = async (event: DeliveryEvent): Promise<SendOutcome> => {
  const tries = (memory.tries.get(event.id) ?? 0) + 1;
  memory.tries.set(event.id, tries);
  const outcome = memory.answer(event, tries);
  if (outcome.kind === 'delivered') memory.received.push(event);
  return outcome;
};
const memoryKind: DestinationKind<'memory', typeof options> = {
  type: 'memory',
  options,
  describe: (o) => `memory ${o.label}`,
  create: (config): Destination => ({
    id: config.id,
    type: 'memory',
    connect: async () => {},
    send: sendOne,
    close: async () => {},
  }),
};
/** The same, with `sendMany`: every call's size is kept, so a test sees which path the lane took. */
const sendManyCalls: number[] = [];
const memoryManyKind: DestinationKind<'memory-many', typeof options> = {
  type: 'memory-many',
  options,
  describe: (o) => `memory ${o.label} (sendMany)`,
  create: (config): Destination => ({
    id: config.id,
    type: 'memory-many',
    connect: async () => {},
    send: async (event) => {
      sendManyCalls.push(0);
      return sendOne(event);
    },
    sendMany: async (events) => {
      sendManyCalls.push(events.length);
      return Promise.all(events.map(sendOne));
    },
    close: async () => {},
  }),
};

const redis = redisSuite();
let unregister: (() => void)[];
beforeAll(() => {
  unregister = [registerKind(memoryKind), registerKind(memoryManyKind)];
});
afterAll(() => unregister.forEach((u) => u()));

/** `--role all` with one destination of the test's kind and no webhook. */
function oneProcess(type = 'memory'): {
  config: BridgeConfig;
  send: (n: number, type?: string) => Promise<string[]>;
  metrics: BridgeMetrics;
} {
  const base = testConfig(redis.target(), []);
  const config = {
    ...base,
    destinations: [
      {
        id: 'mem',
        type,
        label: 'test',
        accounts: ['*'],
        events: ['*'],
        timeout: 2_000,
        concurrency: 4,
        retry: { schedule: [100, 200], jitter: 0 },
        breaker: { failures: 10, cooldown: 30_000 },
      },
    ],
  } as unknown as BridgeConfig;
  const { enqueuer, metrics } = startAllInOne(config, redis);
  const send = async (n: number, type = 'typing') => {
    const events: RelayedEvent[] = Array.from({ length: n }, (_, i) => ({
      id: eventId(),
      type,
      account: 'audit-bot',
      receivedAt: Date.now(),
      data: { room: `r${i}` },
    }));
    await Promise.all(events.map((e) => enqueuer.enqueue(e, destinationsOf(config))));
    return events.map((e) => e.id);
  };
  return { config, send, metrics };
}

const receivedIds = () => memory.received.map((e) => e.id).sort();
const outcomes = async (metrics: BridgeMetrics, outcome: string) =>
  (await metrics.deliveries.get()).values
    .filter((v) => v.labels.destination === 'mem' && v.labels.outcome === outcome)
    .reduce((n, v) => n + v.value, 0);

describe('a destination kind registered from outside delivery', () => {
  it('gets every event once, with the webhook body, through its own queue', async () => {
    memory.received.length = 0;
    memory.answer = () => ({ kind: 'delivered' });
    const { config, send, metrics } = oneProcess();
    expect(destinationsOf(config).map((d) => d.jobQueue)).toEqual(['destination-mem']);
    const ids = await send(20);
    await waitFor(async () => memory.received.length >= 20, { what: '20 events received' });
    expect(receivedIds()).toEqual([...ids].sort());
    const first = memory.received[0]!;
    expect(JSON.parse(first.body)).toMatchObject({ id: first.id, type: 'typing', account: 'audit-bot' });
    expect(await outcomes(metrics, 'delivered')).toBe(20);
  });

  it('retries a refused event on the schedule until it is taken', async () => {
    memory.received.length = 0;
    memory.answer = (_e, tries) => (tries < 3 ? { kind: 'retry', reason: 'not now' } : { kind: 'delivered' });
    const { send, metrics } = oneProcess();
    const ids = await send(3, 'chat message');
    await waitFor(async () => memory.received.length >= 3, { what: 'delivered on the third try' });
    expect(receivedIds()).toEqual([...ids].sort());
    // A retry is the event's own job: it still carries the room a `{room}` template needs.
    expect(memory.received.map((e) => e.room).sort()).toEqual(['r0', 'r1', 'r2']);
    expect(ids.map((id) => memory.tries.get(id))).toEqual([3, 3, 3]);
    expect(await outcomes(metrics, 'retry')).toBe(6);
  });

  it('dead-letters a permanent refusal at once; dlq lists it by destination and replays it', async () => {
    memory.received.length = 0;
    memory.answer = () => ({ kind: 'permanent', reason: 'too big for the test kind' });
    const { config, send } = oneProcess();
    const [id] = await send(1);
    const dead = async () => (await listDeadLetters(config, { destination: 'mem' })).destinations[0]!;
    await waitFor(async () => (await dead()).total === 1, { what: 'one dead letter' });
    const listed = await dead();
    expect(listed).toMatchObject({ destination: 'mem', type: 'memory', total: 1 });
    expect(listed.entries[0]).toMatchObject({ id, lastError: 'too big for the test kind', attempts: 1 });
    expect(memory.tries.get(id!)).toBe(1);

    memory.answer = () => ({ kind: 'delivered' });
    expect(await replayDeadLetters(config, { destination: 'mem' })).toMatchObject({ replayed: 1 });
    await waitFor(async () => memory.received.length === 1, { what: 'the replayed event delivered' });
    expect(memory.received[0]!.id).toBe(id);
    expect((await dead()).total).toBe(0);
  });
});

describe('a destination kind with sendMany', () => {
  it("gets a batch job's events in chunks of at most its concurrency, each once", async () => {
    memory.received.length = 0;
    sendManyCalls.length = 0;
    memory.answer = () => ({ kind: 'delivered' });
    const { send, metrics } = oneProcess('memory-many');
    const ids = await send(20);
    await waitFor(async () => memory.received.length >= 20, { what: '20 events received' });
    expect(receivedIds()).toEqual([...ids].sort());
    expect(sendManyCalls.length).toBeGreaterThan(0);
    expect(sendManyCalls.every((n) => n >= 1 && n <= 4)).toBe(true);
    expect(await outcomes(metrics, 'delivered')).toBe(20);
  });

  it('retries the one refused event of a chunk on its own until it is taken; the others are delivered once', async () => {
    memory.received.length = 0;
    sendManyCalls.length = 0;
    const { send, metrics } = oneProcess('memory-many');
    memory.answer = (event, tries) =>
      event.room === 'r1' && tries < 3 ? { kind: 'retry', reason: 'not now' } : { kind: 'delivered' };
    const ids = await send(3, 'chat message');
    await waitFor(async () => memory.received.length >= 3, { what: 'all three delivered' });
    expect(receivedIds()).toEqual([...ids].sort());
    expect(ids.map((id) => memory.tries.get(id))).toEqual([1, 3, 1]);
    // The batch's try went through sendMany; the retries are the event's own job, through send.
    expect(sendManyCalls.filter((n) => n === 0)).toHaveLength(2);
    expect(await outcomes(metrics, 'retry')).toBe(2);
    expect(await outcomes(metrics, 'delivered')).toBe(3);
  });

  it('dead-letters the one permanent refusal of a chunk at once and delivers the rest', async () => {
    memory.received.length = 0;
    const { config, send } = oneProcess('memory-many');
    memory.answer = (event) =>
      event.room === 'r2'
        ? { kind: 'permanent', reason: 'too big for the test kind' }
        : { kind: 'delivered' };
    const ids = await send(3, 'chat message');
    const dead = async () => (await listDeadLetters(config, { destination: 'mem' })).destinations[0]!;
    await waitFor(async () => (await dead()).total === 1 && memory.received.length >= 2, {
      what: 'one dead letter, two delivered',
    });
    expect(receivedIds()).toEqual([ids[0]!, ids[1]!].sort());
    expect((await dead()).entries[0]).toMatchObject({
      id: ids[2],
      lastError: 'too big for the test kind',
      attempts: 1,
    });
    expect(memory.tries.get(ids[2]!)).toBe(1);
  });
});
