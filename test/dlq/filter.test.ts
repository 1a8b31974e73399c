import { UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { Auditor } from '../../src/dlq/audit.js';
import { listDeadLetters, purgeDeadLetters, replayDeadLetters } from '../../src/dlq/dead-letters.js';
import { parseFilter } from '../../src/dlq/filter.js';
import { purgeQuarantine, replayQuarantine } from '../../src/dlq/quarantine.js';
import { InvalidFilterError } from '../../src/errors.js';
import { createLogger } from '../../src/lifecycle/logger.js';
import { eventsOf, type DeliveryEvent } from '../../src/queue/job.js';
import { quarantineKey, queueName } from '../../src/queue/names.js';
import { WebhookReceiver } from '../support/receiver.js';
import { waitFor } from '../support/redis.js';
import { SECRET_A, TestProducer, redisSuite, startDelivery, testConfig } from '../deliver/fixtures.js';

const redis = redisSuite();
const HOUR = 3_600_000;

/** An auditor whose lines the test reads. */
function memoryAuditor(who: string): Auditor & { lines: () => Record<string, unknown>[] } {
  const written: string[] = [];
  const logger = createLogger({
    level: 'info',
    destination: { write: (line: string) => written.push(line) },
  });
  return { who, logger, lines: () => written.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** Webhooks `hook` and `other` answering 410, so every event is dead-lettered at once, as its own job. */
async function deadLetterSetup() {
  const receiver = await WebhookReceiver.start({ secret: SECRET_A });
  receiver.respondWith({ status: 410 });
  redis.defer(() => receiver.close());
  const config = testConfig(redis.target(), [
    { id: 'hook', url: receiver.url, secret: SECRET_A },
    { id: 'other', url: receiver.url, secret: SECRET_A },
  ]);
  const { producer } = startDelivery(config, redis);
  let dead = 0;
  /** Dead-letters the events and returns the time the last of them failed. */
  const kill = async (...events: [string, string][]) => {
    const added = await Promise.all(events.map(([hook, type]) => producer.add(hook, { type })));
    dead += events.length;
    const failed = async () =>
      (await producer.queue('hook').getFailedCount()) + (await producer.queue('other').getFailedCount());
    await waitFor(async () => (await failed()) === dead, { what: `${dead} dead letters` });
    return added;
  };
  return { receiver, config, producer, kill };
}

const idsOf = (list: Awaited<ReturnType<typeof listDeadLetters>>, destination: string) =>
  list.destinations
    .find((d) => d.destination === destination)!
    .entries.map((e) => e.id)
    .sort();
const sorted = (events: { id: string }[]) => events.map((e) => e.id).sort();

describe('a dead-letter filter', () => {
  it('selects by dead-letter time (since inclusive, until exclusive) and type in list, replay and purge', async () => {
    const { receiver, config, producer, kill } = await deadLetterSetup();
    const [chatA1, chatA2, typingA, otherA] = await kill(
      ['hook', 'chat message'],
      ['hook', 'chat message'],
      ['hook', 'typing'],
      ['other', 'chat message'],
    );
    const failedAt = async () =>
      new Map(
        (await listDeadLetters(config)).destinations.flatMap((d) =>
          d.entries.map((e) => [e.id, Date.parse(e.failedAt)] as const),
        ),
      );
    const lastA = Math.max(...(await failedAt()).values());
    await waitFor(() => Date.now() > lastA, { what: 'the clock past the first dead letters' });
    const [chatB, readB] = await kill(['hook', 'chat message'], ['hook', 'read']);
    const times = await failedAt();
    const firstB = Math.min(times.get(chatB!.id)!, times.get(readB!.id)!);
    expect(firstB).toBeGreaterThan(lastA);

    // since is inclusive: the first dead letter of B is in; until is exclusive: it is out.
    const sinceB = await listDeadLetters(config, { since: firstB });
    expect(idsOf(sinceB, 'hook')).toEqual(sorted([chatB!, readB!]));
    expect(sinceB.destinations.map((d) => d.total)).toEqual([2, 0]);
    const beforeB = await listDeadLetters(config, { until: firstB });
    expect(idsOf(beforeB, 'hook')).toEqual(sorted([chatA1!, chatA2!, typingA!]));
    expect(idsOf(beforeB, 'other')).toEqual([otherA!.id]);
    const atA = times.get(typingA!.id)!;
    expect(idsOf(await listDeadLetters(config, { since: atA, until: atA + 1 }), 'hook')).toContain(
      typingA!.id,
    );
    expect(idsOf(await listDeadLetters(config, { until: atA }), 'hook')).not.toContain(typingA!.id);

    // Types, alone and combined with a window and a destination.
    const chats = await listDeadLetters(config, { types: ['chat message'] });
    expect(chats.destinations.map((d) => d.total)).toEqual([3, 1]);
    expect(idsOf(chats, 'hook')).toEqual(sorted([chatA1!, chatA2!, chatB!]));
    const others = await listDeadLetters(config, { types: ['typing', 'read'] });
    expect(idsOf(others, 'hook')).toEqual(sorted([typingA!, readB!]));
    const chatsOfB = await listDeadLetters(config, {
      destination: 'hook',
      types: ['chat message'],
      since: firstB,
    });
    expect(chatsOfB.destinations).toHaveLength(1);
    expect(chatsOfB.destinations[0]!.total).toBe(1);
    expect(idsOf(chatsOfB, 'hook')).toEqual([chatB!.id]);
    expect(chatsOfB.filter).toEqual({
      destination: 'hook',
      types: ['chat message'],
      since: new Date(firstB).toISOString(),
    });
    // Paging counts only what matches.
    const paged = await listDeadLetters(config, {
      destination: 'hook',
      types: ['chat message'],
      limit: 2,
      offset: 1,
    });
    expect(paged.destinations[0]!.total).toBe(3);
    expect(paged.destinations[0]!.entries).toHaveLength(2);

    // A relative time: `1m` ago, seen from a while after the dead letters.
    const relative = (since: string, now: number) =>
      listDeadLetters(config, { ...parseFilter({ since }, now) });
    expect((await relative('1m', lastA + 59_000)).destinations[0]!.total).toBe(5);
    expect((await relative('1m', firstB + 60_000)).destinations[0]!.total).toBe(2);
    const lastB = Math.max(times.get(chatB!.id)!, times.get(readB!.id)!);
    expect((await relative('1m', lastB + 60_001)).destinations[0]!.total).toBe(0);

    // Replay the chat messages of the first outage: exactly those are sent again, the rest stay dead.
    receiver.respondWith({ status: 204 });
    const replayer = memoryAuditor('alice');
    const replayed = await replayDeadLetters(config, {
      types: ['chat message'],
      until: firstB,
      audit: replayer,
    });
    expect(replayed).toMatchObject({ replayed: 3, failed: 0 });
    await waitFor(() => [chatA1!, chatA2!, otherA!].every((e) => receiver.deliveredIds().includes(e.id)), {
      what: 'the replayed chat messages delivered',
    });
    const left = await listDeadLetters(config);
    expect(idsOf(left, 'hook')).toEqual(sorted([typingA!, chatB!, readB!]));
    expect(left.destinations[1]!.total).toBe(0);
    expect(receiver.deliveredIds()).not.toContain(chatB!.id);
    expect(replayer.lines()).toEqual([
      expect.objectContaining({
        audit: 'dlq replay',
        who: 'alice',
        filter: { types: ['chat message'], until: new Date(firstB).toISOString() },
        replayed: 3,
        failed: 0,
      }),
    ]);

    // Purge: a dry run only counts; the real one removes what matches and nothing else.
    const purger = memoryAuditor('bob');
    const dry = await purgeDeadLetters(config, { since: firstB, dryRun: true, audit: purger });
    expect(dry).toMatchObject({ dryRun: true, matched: 2, removed: 0 });
    expect(dry.destinations.map((d) => [d.destination, d.matched])).toEqual([
      ['hook', 2],
      ['other', 0],
    ]);
    expect(
      (await producer.queue('hook').getFailedCount()) + (await producer.queue('other').getFailedCount()),
    ).toBe(3);
    expect(purger.lines()).toEqual([]);
    const purged = await purgeDeadLetters(config, { since: firstB, audit: purger });
    expect(purged).toMatchObject({ dryRun: false, matched: 2, removed: 2, failed: 0 });
    expect(idsOf(await listDeadLetters(config), 'hook')).toEqual([typingA!.id]);
    expect(purger.lines()).toEqual([
      expect.objectContaining({
        audit: 'dlq purge',
        who: 'bob',
        filter: { since: new Date(firstB).toISOString() },
        matched: 2,
        removed: 2,
      }),
    ]);
  });

  it('reads ISO times and durations ago, and refuses anything else', () => {
    const now = Date.parse('2026-05-02T06:00:00Z');
    expect(parseFilter({ since: '2h', until: '90s' }, now)).toEqual({
      since: now - 2 * HOUR,
      until: now - 90_000,
    });
    expect(parseFilter({ since: '1d' }, now).since).toBe(now - 24 * HOUR);
    expect(parseFilter({ since: '2026-05-01T22:00:00Z', until: '2026-05-02T01:30+02:00' })).toEqual({
      since: Date.parse('2026-05-01T22:00:00Z'),
      until: Date.parse('2026-05-01T23:30:00Z'),
    });
    // Without an offset: local time, the date alone included.
    expect(parseFilter({ since: '2026-05-01' }).since).toBe(new Date(2026, 4, 1).getTime());
    expect(parseFilter({ since: '2026-05-01 22:15' }).since).toBe(new Date(2026, 4, 1, 22, 15).getTime());
    expect(parseFilter({ types: ['typing', 'typing', 'chat message'] }).types).toEqual([
      'typing',
      'chat message',
    ]);
    expect(parseFilter({ types: [] })).toEqual({});

    for (const since of ['yesterday', '5000', '2h ago', '2026-13-45', '']) {
      expect(() => parseFilter({ since }), since).toThrow(InvalidFilterError);
    }
    expect(() => parseFilter({ since: '1h', until: '2h' }, now)).toThrow(/since .* must be before until/);
    expect(() => parseFilter({ since: '2026-05-01T00:00Z', until: '2026-05-01T00:00Z' })).toThrow(
      InvalidFilterError,
    );
    expect(() => parseFilter({ types: [' '] })).toThrow(
      expect.objectContaining({ code: 'BRIDGE_ERR_DLQ_FILTER' }),
    );
  });
});

describe('a batch job in the failed set with events of several types', () => {
  it('is replayed whole when any of its events matches, purged only when all do', async () => {
    const config = testConfig(redis.target(), [{ id: 'hook', url: 'http://127.0.0.1:1/hook' }]);
    const producer = new TestProducer(config);
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    redis.defer(async () => {
      await producer.close();
      connection.disconnect();
    });
    const mixed = await producer.addBatch('hook', [{ type: 'chat message' }, { type: 'typing' }]);
    await producer.addBatch('hook', [{ type: 'typing' }, { type: 'typing' }]);
    // Stalled past BullMQ's limit: how a batch job reaches the failed set.
    const worker = new Worker(
      queueName('hook'),
      async () => {
        throw new UnrecoverableError('job stalled more than allowable limit');
      },
      { connection, prefix: config.redis.prefix },
    );
    await waitFor(async () => (await producer.queue('hook').getFailedCount()) === 2, {
      what: 'failed batches',
    });
    await worker.close();

    const chats = (await listDeadLetters(config, { types: ['chat message'] })).destinations[0]!;
    expect(chats.total).toBe(1);
    expect(chats.entries.map((e) => e.id)).toEqual([mixed[0]!.id]);
    expect((await listDeadLetters(config, { types: ['typing'] })).destinations[0]!.total).toBe(2);

    expect(await purgeDeadLetters(config, { types: ['chat message'] })).toMatchObject({
      matched: 0,
      removed: 0,
      kept: 1,
    });
    expect(await purgeDeadLetters(config, { types: ['typing'] })).toMatchObject({
      matched: 1,
      removed: 1,
      kept: 1,
    });
    const left = (await listDeadLetters(config)).destinations[0]!;
    expect([left.total, left.entries.map((e) => e.id)]).toEqual([1, mixed.map((e) => e.id)]);

    expect((await replayDeadLetters(config, { types: ['chat message'] })).replayed).toBe(1);
    const waiting = await producer.queue('hook').getJobs(['waiting']);
    expect(waiting.flatMap((job) => eventsOf(job.data)).map((e: DeliveryEvent) => e.id)).toEqual(
      mixed.map((e) => e.id),
    );
    expect(await producer.queue('hook').getFailedCount()).toBe(0);
  });
});

describe('quarantine entries by time and event name', () => {
  it('lists, purges (dry run first) and replays the entries of a window or an event', async () => {
    const config = testConfig(redis.target(), [
      { id: 'chats', url: 'http://127.0.0.1:1/hook', events: ['chat message'] },
    ]);
    const connection = new Redis(redis.url);
    redis.defer(async () => connection.disconnect());
    const key = quarantineKey(config.redis.prefix);
    const t0 = 1_795_600_000_000;
    // Stream ids carry the time they were quarantined; written here at known times.
    const add = (at: number, event: string) =>
      connection.xadd(
        key,
        `${at}-0`,
        'account',
        'audit-bot',
        'event',
        event,
        'reason',
        'invalid base64',
        'raw',
        'AAE=',
        'receivedAt',
        String(at),
        'size',
        '2',
      );
    await add(t0, 'chat message');
    await add(t0 + 1000, 'typing');
    await add(t0 + 2000, 'chat message');
    await add(t0 + 3000, 'read');
    const ids = async () => (await connection.xrange(key, '-', '+')).map(([id]) => id);

    const window = await listDeadLetters(config, { since: t0 + 1000, until: t0 + 3000 });
    expect(window.quarantine.total).toBe(2);
    expect(window.quarantine.entries.map((e) => e.streamId)).toEqual([`${t0 + 2000}-0`, `${t0 + 1000}-0`]);
    const chats = await listDeadLetters(config, { types: ['chat message'], limit: 1 });
    expect(chats.quarantine.total).toBe(2);
    expect(chats.quarantine.entries.map((e) => e.streamId)).toEqual([`${t0 + 2000}-0`]);

    const auditor = memoryAuditor('carol');
    const dry = await purgeQuarantine(config, {
      since: t0 + 1000,
      until: t0 + 3000,
      dryRun: true,
      audit: auditor,
    });
    expect(dry).toMatchObject({ dryRun: true, matched: 2, removed: 0 });
    expect(await ids()).toHaveLength(4);
    expect(auditor.lines()).toEqual([]);

    const purged = await purgeQuarantine(config, { since: t0 + 1000, until: t0 + 2000, audit: auditor });
    expect(purged).toMatchObject({ matched: 1, removed: 1 });
    expect(await ids()).toEqual([`${t0}-0`, `${t0 + 2000}-0`, `${t0 + 3000}-0`]);
    expect(auditor.lines()).toEqual([
      expect.objectContaining({
        audit: 'dlq purge --quarantine',
        who: 'carol',
        filter: { since: new Date(t0 + 1000).toISOString(), until: new Date(t0 + 2000).toISOString() },
        removed: 1,
      }),
    ]);

    // Replay by event name touches only those entries (these still fail, so they stay).
    const replayed = await replayQuarantine(config, { types: ['read'], audit: auditor });
    expect(replayed).toMatchObject({ replayed: 0, stillFailing: 1 });
    expect(await ids()).toHaveLength(3);

    expect(await purgeQuarantine(config, { types: ['chat message'] })).toMatchObject({ removed: 2 });
    expect(await ids()).toEqual([`${t0 + 3000}-0`]);
  });
});
