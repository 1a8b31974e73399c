import { afterEach, beforeEach, expect, test } from 'vitest';
import type { BridgeProcess } from '../support/bridge-process.js';
import { waitFor } from '../support/redis.js';
import { BOT, World, type WebhookBody } from './world.js';

/** One typing event, the same content every time, as IMKIT sends when someone keeps typing. */
const TYPING = { room: 'r1', message: 'typing', sender: 'alice' };

let world: World;
beforeEach(async () => {
  world = await World.start();
});
afterEach(async () => world.close());

function typingRequests() {
  return world.receiver.requests.filter((r) => (JSON.parse(r.body) as WebhookBody).type === 'typing');
}

/**
 * Emits the same typing event `count` times, each once the previous one is delivered and more than
 * two repeat windows after it was received: genuine repeats, not copies.
 */
async function emitRepeats(count: number, windowMs: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    world.sim.emit(BOT, 'typing', TYPING);
    const [last] = await waitFor(
      () => {
        const bodies = world.deliveredOfType('typing');
        return bodies.length === i + 1 ? bodies.slice(-1) : undefined;
      },
      { what: `repeat ${i + 1} delivered` },
    );
    const after = Date.parse(last!.timestamp) + 2 * windowMs;
    await waitFor(() => Date.now() > after, { what: 'the repeat window over' });
  }
}

async function deduplicated(bridge: BridgeProcess): Promise<number> {
  return world.metric(bridge, /^imkit_bridge_events_deduplicated_total (\d+)/m);
}

test('the same non-chat event emitted 8 times, further apart than repeatWindow, is delivered 8 times with 8 webhook-ids', async () => {
  const windowMs = 250;
  const bridge = await world.bridge(world.config({ top: { repeatWindow: `${windowMs}ms` } }));
  await world.connected();
  await bridge.waitReady();
  await emitRepeats(8, windowMs);
  const requests = typingRequests();
  expect(requests).toHaveLength(8);
  expect(new Set(requests.map((r) => r.headers['webhook-id'])).size).toBe(8);
  for (const r of requests) expect((JSON.parse(r.body) as WebhookBody).data).toEqual(TYPING);
});

test('two ingest replicas: each copy pair is one delivery, each later repeat a new one, and a burst within repeatWindow is one', async () => {
  // Both replicas stamp a copy within moments of each other; a second leaves room for a loaded machine.
  const windowMs = 1_000;
  const config = world.config({ top: { repeatWindow: `${windowMs}ms` } });
  const replicas = [await world.bridge(config, 'ingest'), await world.bridge(config, 'ingest')];
  const worker = await world.bridge(config, 'worker');
  await world.connected(2);
  await Promise.all(replicas.map((r) => r.waitReady()));

  await emitRepeats(8, windowMs);
  // Every emission reached both replicas: 16 copies queued, 8 sent, 8 skipped.
  await waitFor(async () => (await deduplicated(worker)) === 8, { what: '8 copies skipped' });
  expect(new Set(typingRequests().map((r) => r.headers['webhook-id'])).size).toBe(8);

  for (let i = 0; i < 3; i++) world.sim.emit(BOT, 'typing', TYPING);
  // 6 copies of one event: one sent, five skipped.
  await waitFor(async () => (await deduplicated(worker)) === 13, { what: 'the burst de-duplicated' });
  const requests = typingRequests();
  expect(requests).toHaveLength(9);
  expect(new Set(requests.map((r) => r.headers['webhook-id'])).size).toBe(9);
});
