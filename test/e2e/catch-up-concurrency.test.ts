import { afterEach, beforeEach, expect, test } from 'vitest';
import { waitFor } from '../support/redis.js';
import { World } from './world.js';

const ACCOUNTS = Array.from({ length: 12 }, (_, i) => `catchup-${String(i).padStart(2, '0')}`);
const CAP = 2;

let world: World;
beforeEach(async () => {
  world = await World.start();
});
afterEach(async () => {
  await world.close();
});

test('many accounts catching up at once: at most ingest.catchUpConcurrency REST catch-ups run at a time, and every missed message arrives', async () => {
  const base = world.config({ webhook: { events: ['chat message'] } });
  const template = (base.accounts as Record<string, unknown>[])[0]!;
  const accounts = ACCOUNTS.map((id) => ({ ...template, id, token: world.sim.issueToken(id) }));
  const config = { ...base, accounts, ingest: { catchUpConcurrency: CAP } };
  const first = await world.bridge(config);
  await first.waitReady();
  // A clean stop writes every account's checkpoint: the next start catches every account up from it.
  expect(await first.stop()).toBeLessThan(10_000);

  const missed = ACCOUNTS.map(
    (account) =>
      world.sim.storeMessage(`room-${account}`, 'while no bridge ran', { members: [account, 'alice'] })._id,
  );
  world.sim.restDelayMs = 300;
  await world.bridge(config);
  await waitFor(
    () => {
      const got = new Set(world.deliveredOfType('chat message').map((b) => (b.data as { _id: string })._id));
      return missed.every((id) => got.has(id));
    },
    { timeoutMs: 30_000, what: 'every missed message delivered' },
  );
  // Twelve catch-ups were due at once; the cap held, and it was reached.
  expect(world.sim.restInFlight.max).toBe(CAP);
});
