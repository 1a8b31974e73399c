import { Redis } from 'ioredis';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { waitFor } from '../support/redis.js';
import { BOT, World } from './world.js';

const OTHER = 'other-bot';

let world: World;
let redis: Redis;
beforeEach(async () => {
  world = await World.start();
  redis = new Redis(world.redis.url);
});
afterEach(async () => {
  redis.disconnect();
  await world.close();
});

/** The account's session checkpoint in Redis (epoch ms), 0 when there is none. */
async function checkpoint(account: string): Promise<number> {
  return Number((await redis.get(`${world.prefix}:session:${account}:live-at`)) ?? 0);
}

/** A config with BOT and a second account whose catch-up is answered: it shows when the periodic checkpoint writer has run. */
function twoAccounts(): Record<string, unknown> {
  world.sim.addClient(OTHER);
  const config = world.config({ webhook: { events: ['chat message'] } });
  const accounts = config.accounts as Record<string, unknown>[];
  accounts.push({ ...accounts[0], id: OTHER, token: world.sim.issueToken(OTHER) });
  return config;
}

/**
 * With BOT's catch-up hanging, waits until a checkpoint written now would leave the missed messages
 * behind (a restart catches up from a few seconds before its checkpoint), checks BOT's did not move.
 */
async function checkpointHeld(held: number, lastMissed: number): Promise<void> {
  await waitFor(() => (world.sim.restCalls.get(BOT) ?? 0) > 0, { what: 'the catch-up under way' });
  await waitFor(async () => (await checkpoint(OTHER)) > lastMissed + 7_000, {
    timeoutMs: 20_000,
    what: "the other account's checkpoint written well after the missed messages",
  });
  expect(await checkpoint(BOT)).toBe(held);
}

test('kill -9 while the start-up catch-up hangs: the checkpoint stays put, and the next start delivers every missed message', async () => {
  const config = twoAccounts();
  const first = await world.bridge(config);
  await world.connected();
  world.sim.sendMessage('r1', 'before the crash', { members: [BOT, 'alice'], sender: 'alice' });
  await world.waitDelivered(1, 'chat message');
  await waitFor(() => checkpoint(BOT), { what: 'a first checkpoint' });
  await first.kill9();
  const before = await checkpoint(BOT);

  const missed = Array.from({ length: 12 }, (_, i) =>
    world.sim.storeMessage('r1', `while no bridge ran ${i}`, { members: [BOT, 'alice'], sender: 'alice' }),
  );
  const lastMissed = Math.max(...missed.map((m) => m.messageTimeMS));
  world.sim.restHeld.add(BOT);
  const second = await world.bridge(config);
  await checkpointHeld(before, lastMissed);
  await second.kill9();

  world.sim.restHeld.delete(BOT);
  await world.bridge(config);
  const chats = await world.waitDelivered(13, 'chat message');
  expect(chats.map((c) => (c.data as { _id: string })._id)).toEqual(
    expect.arrayContaining(missed.map((m) => m._id)),
  );
});

test('kill -9 while the catch-up after a disconnect hangs: the next start delivers every message missed in the gap', async () => {
  const config = twoAccounts();
  const first = await world.bridge(config);
  await world.connected();
  await waitFor(() => world.sim.connectedCount(OTHER) > 0, { what: 'the other account connected' });
  world.sim.sendMessage('r1', 'before the gap', { members: [BOT, 'alice'], sender: 'alice' });
  await world.waitDelivered(1, 'chat message');

  await world.sim.down({ abrupt: true });
  const missed = Array.from({ length: 12 }, (_, i) =>
    world.sim.storeMessage('r1', `during the gap ${i}`, { members: [BOT, 'alice'], sender: 'alice' }),
  );
  const lastMissed = Math.max(...missed.map((m) => m.messageTimeMS));
  world.sim.restHeld.add(BOT);
  const botConnected = /imkit_bridge_socket_connected\{account="audit-bot"\} (\d+)/;
  await waitFor(async () => (await world.metric(first, botConnected)) === 0, { what: 'the drop noticed' });
  // Not live: nothing moves the checkpoint any more until the gap is recovered.
  const held = await checkpoint(BOT);
  await world.sim.up();
  await checkpointHeld(held, lastMissed);
  await first.kill9();

  world.sim.restHeld.delete(BOT);
  await world.bridge(config);
  const chats = await world.waitDelivered(13, 'chat message');
  expect(chats.map((c) => (c.data as { _id: string })._id)).toEqual(
    expect.arrayContaining(missed.map((m) => m._id)),
  );
});
