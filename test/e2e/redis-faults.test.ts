import { afterEach, beforeEach, expect, test } from 'vitest';
import { waitFor } from '../support/redis.js';
import { BOT, World } from './world.js';

let world: World;
beforeEach(async () => {
  world = await World.start();
});
afterEach(async () => world.close());

test('Redis stopped for a few seconds while events arrive: all of them are delivered afterwards', async () => {
  const bridge = await world.bridge(world.config());
  await world.connected();
  await bridge.waitReady();

  await world.redis.stop();
  const rooms = world.emitTyping(50, 'redis-down');
  await waitFor(async () => (await bridge.get('/readyz')).status === 503, {
    what: 'not ready while Redis is down',
  });
  await world.redis.startProcess();

  await waitFor(() => rooms.every((r) => world.deliveredRooms().has(r)), {
    timeoutMs: 30_000,
    what: 'all 50 delivered',
  });
  await bridge.waitReady();
  expect(world.receiver.requests.filter((r) => JSON.parse(r.body).type === 'typing')).toHaveLength(50);
});

test('ingest buffer overflow while Redis is down: reported as bridge.gap, and catch-up refills the dropped messages', async () => {
  const config = world.config({
    webhook: { events: ['*', 'bridge.*'] },
    top: { limits: { bufferEvents: 10 } },
  });
  const bridge = await world.bridge(config);
  await world.connected();
  await bridge.waitReady();

  await world.redis.stop();
  const sent = Array.from({ length: 40 }, (_, i) =>
    world.sim.sendMessage('r1', `while redis is down ${i}`, { members: [BOT, 'alice'], sender: 'alice' }),
  );
  await waitFor(
    async () => /imkit_bridge_ingest_buffer_overflow_total 30\b/.test((await bridge.get('/metrics')).body),
    {
      what: '30 events over the 10-event buffer',
    },
  );
  await world.redis.startProcess();

  const gap = await waitFor(() => world.deliveredOfType('bridge.gap')[0], {
    timeoutMs: 30_000,
    what: 'bridge.gap',
  });
  expect(gap.data).toMatchObject({
    account: BOT,
    reason: 'buffer-overflow',
    dropped: 30,
    catchUp: true,
    recovered: 30,
  });
  const chats = await world.waitDelivered(40, 'chat message');
  expect(new Set(chats.map((c) => (c.data as { _id: string })._id))).toEqual(new Set(sent.map((m) => m._id)));
});

test('Redis killed with SIGKILL mid-stream (AOF, fsync always) and restarted: every event is delivered', async () => {
  const bridge = await world.bridge(world.config());
  await world.connected();
  await bridge.waitReady();

  const rooms: string[] = [];
  for (let i = 0; i < 10; i++) {
    rooms.push(...world.emitTyping(10, `crash-${i}`));
    if (i === 4) await world.redis.stop({ kill9: true });
    await new Promise((r) => setImmediate(r));
  }
  await world.redis.startProcess();

  await waitFor(() => rooms.every((r) => world.deliveredRooms().has(r)), {
    timeoutMs: 30_000,
    what: 'all 100 delivered',
  });
  await bridge.waitReady();
});
