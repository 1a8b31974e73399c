import { afterEach, beforeEach, expect, test } from 'vitest';
import type { BridgeProcess } from '../support/bridge-process.js';
import { waitFor } from '../support/redis.js';
import { BOT, World } from './world.js';

let world: World;
beforeEach(async () => {
  world = await World.start();
});
afterEach(async () => world.close());

/**
 * Two replicas hold the account, so every message reaches the bridge at least twice: 40 messages
 * must make 40 requests, one per message, with the other copies skipped by the `deliverers`' claims.
 */
async function fortyChatsDeliveredOnce(deliverers: readonly BridgeProcess[]): Promise<void> {
  const chats = Array.from({ length: 40 }, (_, i) =>
    world.sim.sendMessage('r1', `message ${i}`, { members: [BOT, 'alice'], sender: 'alice' }),
  );
  await world.waitDelivered(40, 'chat message');
  const dedupPattern = /^imkit_bridge_events_deduplicated_total (\d+)/m;
  const skipped = async () =>
    (await Promise.all(deliverers.map((d) => world.metric(d, dedupPattern)))).reduce((a, b) => a + b);
  // At least: the second replica's start-up catch-up may fetch the same messages once more.
  await waitFor(async () => (await skipped()) >= 40, { what: '40 de-duplicated copies' });
  const requests = world.receiver.requests.filter((r) => JSON.parse(r.body).type === 'chat message');
  expect(requests).toHaveLength(40);
  expect(new Set(world.deliveredOfType('chat message').map((b) => (b.data as { _id: string })._id))).toEqual(
    new Set(chats.map((c) => c._id)),
  );
}

test('two ingest replicas on one account: every event is delivered exactly once', async () => {
  const config = world.config();
  const [a, b] = [await world.bridge(config, 'ingest'), await world.bridge(config, 'ingest')];
  const worker = await world.bridge(config, 'worker');
  await world.connected(2);
  await Promise.all([a.waitReady(), b.waitReady()]);
  // Both replicas queue every event; the worker skips whichever copy it reaches second.
  await fortyChatsDeliveredOnce([worker]);
});

test("two --role all replicas on one account (the chart's mode: all): every event is delivered exactly once", async () => {
  const config = world.config();
  const replicas = [await world.bridge(config), await world.bridge(config)];
  await world.connected(2);
  await Promise.all(replicas.map((r) => r.waitReady()));
  // Each replica sends what it landed itself; whichever claims an event second skips its copy.
  await fortyChatsDeliveredOnce(replicas);
});

test('kill -9 with events queued and the webhook down: after a restart every event is delivered', async () => {
  await world.receiver.close();
  const config = world.config();
  const first = await world.bridge(config);
  await world.connected();
  const rooms = world.emitTyping(30, 'k9');
  await waitFor(
    async () => {
      const status = JSON.parse((await first.get('/status')).body) as {
        destinations: { waiting: number; active: number; delayed: number }[];
      };
      const w = status.destinations[0]!;
      const failing = await world.metric(
        first,
        /imkit_bridge_deliveries_total\{destination="audit",outcome="retry"\} (\d+)/,
      );
      return w.waiting + w.active + w.delayed === 30 && failing > 0;
    },
    { what: 'all 30 events queued and deliveries failing' },
  );
  await first.kill9();

  await world.receiver.listen();
  await world.bridge(config);
  await waitFor(() => rooms.every((r) => world.deliveredRooms().has(r)), {
    timeoutMs: 30_000,
    what: 'all 30 delivered',
  });
  const ids = world.receiver.requests.map((r) => r.headers['webhook-id']);
  // Redeliveries after the crash carry the event id they had before it.
  expect(new Set(ids).size).toBe(30);
});

test('kill -9 in the middle of a direct delivery: a worker sends the event when its lease ends, same webhook-id', async () => {
  // One process ingests and delivers, so it sends the job itself; the receiver never answers that try.
  world.receiver.respondWith({ hang: true });
  const config = world.config({ webhook: { timeout: '30s' } });
  const first = await world.bridge(config);
  await world.connected();
  const [room] = world.emitTyping(1, 'lease');
  const [inFlight] = await waitFor(
    () => (world.receiver.requests.length === 1 ? world.receiver.requests : undefined),
    { what: 'the direct try in flight' },
  );
  await first.kill9();

  world.receiver.respondWith({ status: 204 });
  await world.bridge(config, 'worker');
  await waitFor(() => world.deliveredRooms().has(room!), {
    timeoutMs: 30_000,
    what: 'delivered by the worker',
  });
  const ids = world.receiver.requests.map((r) => r.headers['webhook-id']);
  expect(ids).toEqual([inFlight!.headers['webhook-id'], inFlight!.headers['webhook-id']]);
});

test('SIGTERM with slow in-flight deliveries exits 0 within the bound, and a restart delivers the rest', async () => {
  world.receiver.respondWith({ status: 204, delayMs: 8_000 });
  const config = world.config({ top: { shutdownTimeout: '1s' } });
  const bridge = await world.bridge(config);
  await world.connected();
  const rooms = world.emitTyping(5, 'term');
  await waitFor(() => world.receiver.requests.length >= 5, { what: 'deliveries in flight' });

  const took = await bridge.stop('SIGTERM');
  expect(bridge.exitCode).toBe(0);
  expect(took).toBeLessThan(6_000);

  world.receiver.respondWith({ status: 204 });
  await world.bridge(config);
  await waitFor(() => rooms.every((r) => world.deliveredRooms().has(r)), {
    timeoutMs: 30_000,
    what: 'all 5 delivered after restart',
  });
});

test('catch-up after a gap: messages sent while disconnected arrive once each, with a bridge.gap report', async () => {
  const config = world.config({ webhook: { events: ['*', 'bridge.*'] } });
  await world.bridge(config);
  await world.connected();
  const before = world.sim.sendMessage('r1', 'before the gap', { members: [BOT, 'alice'], sender: 'alice' });
  await world.waitDelivered(1, 'chat message');

  await world.sim.down({ abrupt: true });
  const missed = Array.from({ length: 25 }, (_, i) =>
    world.sim.storeMessage('r1', `missed ${i}`, { members: [BOT, 'alice'], sender: 'alice' }),
  );
  await world.sim.up();

  const gap = await waitFor(() => world.deliveredOfType('bridge.gap')[0], {
    timeoutMs: 30_000,
    what: 'bridge.gap',
  });
  expect(gap.data).toMatchObject({ account: BOT, catchUp: true, recovered: 25, complete: true });
  const chats = await world.waitDelivered(26, 'chat message');
  expect(chats.map((c) => (c.data as { _id: string })._id).sort()).toEqual(
    [before, ...missed].map((m) => m._id).sort(),
  );
  const chatRequests = world.receiver.requests.filter((r) => JSON.parse(r.body).type === 'chat message');
  expect(chatRequests).toHaveLength(26);
  expect(world.deliveredOfType('bridge.disconnected').length).toBeGreaterThanOrEqual(1);
});

test('messages sent while the only ingest process was down (kill -9) are caught up when it starts again', async () => {
  const config = world.config({ webhook: { events: ['*', 'bridge.gap'] } });
  const first = await world.bridge(config);
  await world.connected();
  const before = world.sim.sendMessage('r1', 'before the crash', {
    members: [BOT, 'alice'],
    sender: 'alice',
  });
  await world.waitDelivered(1, 'chat message');
  await first.kill9();

  const missed = Array.from({ length: 12 }, (_, i) =>
    world.sim.storeMessage('r1', `while no bridge ran ${i}`, { members: [BOT, 'alice'], sender: 'alice' }),
  );
  await world.bridge(config);

  const gap = await waitFor(() => world.deliveredOfType('bridge.gap')[0], {
    timeoutMs: 30_000,
    what: 'bridge.gap',
  });
  expect(gap.data).toMatchObject({ account: BOT, reason: 'restart', catchUp: true, recovered: 12 });
  const chats = await world.waitDelivered(13, 'chat message');
  expect(chats.map((c) => (c.data as { _id: string })._id).sort()).toEqual(
    [before, ...missed].map((m) => m._id).sort(),
  );
  expect(world.receiver.requests.filter((r) => JSON.parse(r.body).type === 'chat message')).toHaveLength(13);
});
