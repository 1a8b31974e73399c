import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { BridgeMetrics } from '../../src/admin/metrics.js';
import { Membership, type MembershipView } from '../../src/lifecycle/membership.js';
import { createLogger } from '../../src/lifecycle/logger.js';
import { RedisServer, waitFor } from '../support/redis.js';
import { redisSettingsFromUrl } from '../../src/queue/redis.js';

const LEASE = 3_000;

let redis: RedisServer;
const started: Membership[] = [];
const logLines: Record<string, unknown>[] = [];
const logger = createLogger({
  level: 'info',
  destination: new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  }),
});

beforeAll(async () => {
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis?.close();
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((m) => m.close()));
});

/** A started member on its own prefix `prefix`, as an ingest process would run it. */
function member(prefix: string, host = 'host-a'): { membership: Membership; metrics: BridgeMetrics } {
  const metrics = new BridgeMetrics();
  const membership = new Membership({
    redis: redisSettingsFromUrl(redis.url, prefix),
    prefix,
    lease: LEASE,
    host,
    logger,
    metrics,
  });
  started.push(membership);
  membership.start();
  return { membership, metrics };
}

const ids = (view: MembershipView | undefined) => (view?.members.map((m) => m.id) ?? []).sort();

async function changes(metrics: BridgeMetrics, change: string): Promise<number> {
  const { values } = await metrics.membershipChanges.get();
  return values.find((v) => v.labels.change === change)?.value ?? 0;
}

let prefixes = 0;
const freshPrefix = () => `m${process.pid}-${++prefixes}`;

describe('membership in Redis', () => {
  test('members see each other within a tick or two and are synced; a leave is seen at the next tick', async () => {
    const prefix = freshPrefix();
    const a = member(prefix);
    const b = member(prefix, 'host-b');
    const both = [a.membership.id, b.membership.id].sort();
    for (const m of [a.membership, b.membership]) {
      await waitFor(() => m.view()?.synced && ids(m.view()).join() === both.join(), {
        timeoutMs: 4 * m.tickMs,
        what: 'both members in the view',
      });
    }
    expect(a.membership.id).not.toBe(b.membership.id);
    expect(await changes(a.metrics, 'join')).toBe(1);

    expect(await b.membership.leave()).toBe(true);
    await waitFor(() => ids(a.membership.view()).join() === a.membership.id, {
      timeoutMs: 3 * a.membership.tickMs,
      what: 'the leaver gone from the view',
    });
    expect(await changes(b.metrics, 'leave')).toBe(1);
    expect(await changes(a.metrics, 'expire')).toBe(0);
  });

  test('a member that stops renewing is gone after the lease, and its host rejoins only after a settle', async () => {
    const prefix = freshPrefix();
    const survivor = member(prefix, 'host-a');
    const crashed = member(prefix, 'host-b');
    await waitFor(() => survivor.membership.view()?.members.length === 2, { what: 'two members' });
    await crashed.membership.close(); // no leave: as after kill -9
    const stoppedAt = Date.now();
    await waitFor(() => survivor.membership.view()?.members.length === 1, {
      timeoutMs: LEASE + 3 * survivor.membership.tickMs,
      what: 'the crashed member expired',
    });
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(LEASE - survivor.membership.tickMs);
    expect(await changes(survivor.metrics, 'expire')).toBe(1);

    // The same host comes back (a crash loop): eligible only a lease after it joined.
    const back = member(prefix, 'host-b');
    const seen = await waitFor(
      () => survivor.membership.view()?.members.find((m) => m.id === back.membership.id),
      { what: 'the returning member' },
    );
    expect(seen.eligibleAt - seen.joinedAt).toBe(LEASE);
    // A host with no expiry record is eligible at once.
    const fresh = member(prefix, 'host-c');
    const seenFresh = await waitFor(
      () => survivor.membership.view()?.members.find((m) => m.id === fresh.membership.id),
      { what: 'the new member' },
    );
    expect(seenFresh.eligibleAt).toBe(seenFresh.joinedAt);
  });

  test('held sets: an account counts as held by its targets only once each target reports it live', async () => {
    const prefix = freshPrefix();
    const a = member(prefix, 'host-a');
    const b = member(prefix, 'host-b');
    await waitFor(() => a.membership.view()?.members.length === 2, { what: 'two members' });
    b.membership.reportHeld(new Set(['acc-1', 'acc-2']));
    const targets = new Map([
      ['acc-1', [b.membership.id]],
      ['acc-2', [a.membership.id, b.membership.id]],
      ['acc-3', [b.membership.id]],
    ]);
    await waitFor(async () => (await a.membership.confirmHeld(targets)).has('acc-1'), {
      timeoutMs: 3 * a.membership.tickMs,
      what: 'acc-1 confirmed',
    });
    expect([...(await a.membership.confirmHeld(targets))]).toEqual(['acc-1']);
    a.membership.reportHeld(new Set(['acc-2']));
    await waitFor(async () => (await a.membership.confirmHeld(targets)).has('acc-2'), {
      timeoutMs: 3 * a.membership.tickMs,
      what: 'acc-2 confirmed',
    });
  });

  test('a Redis restart longer than the lease expires nobody: leases are extended and members resync', async () => {
    const prefix = freshPrefix();
    const a = member(prefix, 'host-a');
    const b = member(prefix, 'host-b');
    await waitFor(() => a.membership.view()?.synced && a.membership.view()?.members.length === 2, {
      what: 'two synced members',
    });
    const unsynced: boolean[] = [];
    a.membership.on('tick', (view) => unsynced.push(!view.synced));
    await redis.restart({ downMs: LEASE + 1_000 });
    expect(unsynced).toContain(true);
    for (const m of [a, b]) {
      await waitFor(() => m.membership.view()?.synced, { timeoutMs: 5_000, what: 'resynced' });
      expect(ids(m.membership.view())).toEqual([a.membership.id, b.membership.id].sort());
    }
    // Past another full lease (Redis time), both are still there and nobody counted an expiry.
    const resyncedAt = a.membership.view()!.now;
    await waitFor(() => a.membership.view()!.now > resyncedAt + LEASE, {
      timeoutMs: 2 * LEASE,
      what: 'a lease',
    });
    expect(a.membership.view()?.members).toHaveLength(2);
    expect((await changes(a.metrics, 'expire')) + (await changes(b.metrics, 'expire'))).toBe(0);
    expect(logLines.some((l) => String(l.msg).includes('every lease extended'))).toBe(true);
  });
});
