import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BridgeMetrics } from '../../src/admin/metrics.js';
import type { DestinationConfig } from '../../src/config/destinations.js';
import { createLogger } from '../../src/lifecycle/logger.js';
import { Enqueuer, type DirectDelivery, type EnqueueResult } from '../../src/queue/enqueuer.js';
import { eventsOf, type DeliveryJobData } from '../../src/queue/job.js';
import { queueName, waitListKey } from '../../src/queue/names.js';
import { redisSettingsFromUrl } from '../../src/queue/redis.js';
import type { RelayedEvent } from '../../src/route/event.js';
import { eventIdentity } from '../../src/route/event-id.js';
import { SentinelGroup } from '../support/redis-topologies.js';
import { waitFor } from '../support/redis.js';

// redis.waitReplicas: what ingest landed stays in memory until a replica holds it, and is landed
// again (as a new job) when the connection that wrote it may have lost it.

const logger = createLogger({ level: 'silent' });
const hook = { id: 'a', jobQueue: queueName('a') } as unknown as DestinationConfig;

function event(i: number): RelayedEvent {
  const data = { _id: `m${i}`, messageType: 'text', messageTimeMS: 1_700_000_000_000 + i, message: `m${i}` };
  const receivedAt = 1_764_000_000_000 + i;
  return {
    ...eventIdentity('bot', 'chat message', data, receivedAt, 5_000),
    type: 'chat message',
    account: 'bot',
    receivedAt,
    data,
  };
}

const total = (c: { get(): Promise<{ values: { value: number }[] }> }) =>
  c.get().then((m) => m.values.reduce((sum, v) => sum + v.value, 0));

/** A stand-in for a delivery lane in the same process: records what it was told to send. */
function recordingLane(): DirectDelivery & { delivered: string[]; cancelled: number } {
  const lane = {
    leaseMs: 60_000,
    delivered: [] as string[],
    cancelled: 0,
    reserve: () => ({
      deliver: (jobId: string) => void lane.delivered.push(jobId),
      cancel: () => void lane.cancelled++,
    }),
  };
  return lane;
}

describe('Enqueuer with waitReplicas 1', () => {
  let group: SentinelGroup;
  let master: Redis;
  let n = 0;
  const open: Enqueuer[] = [];

  beforeAll(async () => {
    group = await SentinelGroup.start({ replicas: 1, sentinels: 0 });
    master = group.client();
  });
  afterEach(async () => {
    group.thaw();
    await Promise.all(open.splice(0).map((e) => e.close(2_000)));
  });
  afterAll(async () => {
    master.disconnect();
    await group.close();
  });

  function make(lane?: DirectDelivery) {
    const prefix = `rep${n++}`;
    const metrics = new BridgeMetrics();
    const enqueuer = new Enqueuer({
      redis: {
        ...redisSettingsFromUrl(`redis://127.0.0.1:${group.master}`, prefix),
        waitReplicas: 1,
        waitTimeoutMs: 200,
      },
      prefix,
      destinations: [hook],
      dedupWindowMs: 60_000,
      bufferEvents: 1_000,
      logger,
      metrics,
      ...(lane ? { directDelivery: () => lane } : {}),
    });
    open.push(enqueuer);
    return { enqueuer, metrics, prefix };
  }

  async function queuedIds(prefix: string): Promise<string[][]> {
    const jobs = await master.lrange(waitListKey(prefix, 'a'), 0, -1);
    const delayed = await master.zrange(`${prefix}:${queueName('a')}:delayed`, 0, -1);
    const out: string[][] = [];
    for (const id of [...jobs, ...delayed]) {
      const data = JSON.parse(
        (await master.hget(`${prefix}:${queueName('a')}:${id}`, 'data'))!,
      ) as DeliveryJobData;
      out.push(eventsOf(data).map((e) => e.id));
    }
    return out;
  }

  it('holds an event the master took until a replica has it, and says why it is not ready', async () => {
    const lane = recordingLane();
    const { enqueuer, metrics, prefix } = make(lane);
    await waitFor(() => enqueuer.ready, { what: 'enqueuer ready' });
    await group.freezeReplication();
    let result: EnqueueResult | undefined;
    void enqueuer.enqueue(event(1), [hook]).then((r) => (result = r));
    await waitFor(async () => (await total(metrics.redisWaitShortfalls)) > 0, { what: 'a WAIT shortfall' });
    // The master holds the job, but nothing is released: not resolved, still buffered, not sent.
    expect(await queuedIds(prefix)).toEqual([[event(1).id]]);
    expect(result).toBeUndefined();
    expect(enqueuer.buffered).toBe(1);
    expect(enqueuer.oldestBuffered().get('bot')).toBe(event(1).receivedAt);
    expect(lane.delivered).toEqual([]);
    expect(enqueuer.ready).toBe(false);
    expect(enqueuer.problem).toBe(
      '0 of 1 replicas acknowledged within 200ms (waitReplicas); 1 events held in memory',
    );
    expect(await total(metrics.ingestUnconfirmed)).toBe(1);

    group.thaw();
    await waitFor(() => result, { what: 'the event to be confirmed' });
    expect(result).toEqual({ fresh: true });
    expect(enqueuer.buffered).toBe(0);
    expect(lane.delivered).toHaveLength(1);
    expect(enqueuer.problem).toBeUndefined();
    expect(enqueuer.ready).toBe(true);
    expect(await total(metrics.redisRelanded)).toBe(0);
    expect(
      (await metrics.redisWaitDuration.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value,
    ).toBeGreaterThan(0);
  });

  it('lands a write again, as a new job, when the connection that made it closed before a replica confirmed it', async () => {
    const lane = recordingLane();
    const { enqueuer, metrics, prefix } = make(lane);
    await waitFor(() => enqueuer.ready, { what: 'enqueuer ready' });
    await group.freezeReplication();
    let result: EnqueueResult | undefined;
    void enqueuer.enqueue(event(2), [hook]).then((r) => (result = r));
    await waitFor(async () => (await total(metrics.redisWaitShortfalls)) > 0, { what: 'a WAIT shortfall' });
    // As a failover does: the connection drops; whatever it wrote may be on a master that is gone.
    await master.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    await waitFor(async () => (await total(metrics.redisRelanded)) > 0, { what: 'a re-landing' });
    group.thaw();
    await waitFor(() => result, { what: 'the event to be confirmed', timeoutMs: 15_000 });
    const jobs = await queuedIds(prefix);
    // Two jobs carry the event: the first landing (it survived here) and the re-landing, under a
    // fresh id so that delivery's claim sends it once. Only the confirmed one was sent directly.
    expect(jobs).toEqual([[event(2).id], [event(2).id]]);
    expect(lane.cancelled).toBe(1);
    expect(lane.delivered).toHaveLength(1);
    expect(await total(metrics.redisRelanded)).toBe(1);
  });
});
