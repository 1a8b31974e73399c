import { Redis } from 'ioredis';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { waitFor } from '../support/redis.js';
import { World } from './world.js';

const ACCOUNTS = Array.from({ length: 150 }, (_, i) => `many-${String(i).padStart(3, '0')}`);

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

/** Checkpoint writes Redis has run (one `EVAL` per account written). */
async function checkpointWrites(): Promise<number> {
  const stats = await redis.info('commandstats');
  return Number(/^cmdstat_eval:calls=(\d+)/m.exec(stats)?.[1] ?? 0);
}

test('many accounts going live at once write each checkpoint a few times, not once per other account', async () => {
  const base = world.config();
  const template = (base.accounts as Record<string, unknown>[])[0]!;
  const accounts = ACCOUNTS.map((id) => ({ ...template, id, token: world.sim.issueToken(id) }));
  const bridge = await world.bridge({ ...base, accounts }, 'ingest');
  await waitFor(() => ACCOUNTS.every((a) => world.sim.connectedCount(a) === 1), {
    timeoutMs: 30_000,
    what: 'every account live',
  });
  await bridge.waitReady();
  // Going live and finishing its start-up catch-up each write that account's checkpoint, and the
  // periodic write (every 5 s) writes every live account's: a handful per account. Writing every live
  // account's each time one goes live is quadratic: over 5,000 for 150 accounts.
  expect(await checkpointWrites()).toBeLessThan(ACCOUNTS.length * 6);
  const written = await Promise.all(ACCOUNTS.map((a) => redis.get(`${world.prefix}:session:${a}:live-at`)));
  expect(written.every((at) => at !== null)).toBe(true);
});
