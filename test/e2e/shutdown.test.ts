import { createServer } from 'node:net';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { runCli, writeConfig, type BridgeProcess } from '../support/bridge-process.js';
import { waitFor } from '../support/redis.js';
import { BOT, World } from './world.js';

/** What the process may take beyond `shutdownTimeout`: process exit, log flush. */
const EXIT_MARGIN_MS = 1_500;
const SHUTDOWN_TIMEOUT_MS = 6_000;

let world: World;
beforeEach(async () => {
  world = await World.start();
});
afterEach(async () => world.close());

async function buffered(bridge: BridgeProcess, count: number): Promise<void> {
  await waitFor(
    async () => (await world.metric(bridge, /^imkit_bridge_ingest_buffer_events (\d+)/m)) === count,
    { what: `${count} events buffered in memory` },
  );
}

function lossRecord(bridge: BridgeProcess): Record<string, unknown> | undefined {
  return bridge.records().find((r) => (r.level as number) >= 50 && typeof r.lost === 'object');
}

test('SIGTERM with Redis down and nothing buffered exits 0 at once', async () => {
  const bridge = await world.bridge(world.config({ top: { shutdownTimeout: `${SHUTDOWN_TIMEOUT_MS}ms` } }));
  await world.connected();
  await bridge.waitReady();
  await world.redis.stop();
  await waitFor(async () => (await bridge.get('/readyz')).status === 503, { what: 'not ready' });

  const took = await bridge.stop('SIGTERM');
  expect(bridge.exitCode).toBe(0);
  // Nothing is buffered and nothing is in flight: no phase of the shutdown has anything to wait for.
  expect(took).toBeLessThan(SHUTDOWN_TIMEOUT_MS / 4);
});

test('SIGTERM with Redis down and events buffered exits 2 within the bound, and names the loss', async () => {
  const bridge = await world.bridge(world.config({ top: { shutdownTimeout: `${SHUTDOWN_TIMEOUT_MS}ms` } }));
  await world.connected();
  await bridge.waitReady();
  await world.redis.stop();
  world.emitTyping(5, 'lost');
  await buffered(bridge, 5);

  const took = await bridge.stop('SIGTERM');
  expect(bridge.exitCode).toBe(2);
  expect(took).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
  expect(lossRecord(bridge)).toMatchObject({ lost: { [BOT]: 5 } });
});

test('SIGTERM with Redis down, events buffered and a webhook that hangs: the process exits within shutdownTimeout', async () => {
  world.receiver.respondWith({ hang: true });
  const bridge = await world.bridge(
    world.config({ webhook: { timeout: '60s' }, top: { shutdownTimeout: `${SHUTDOWN_TIMEOUT_MS}ms` } }),
  );
  await world.connected();
  await bridge.waitReady();
  world.emitTyping(3, 'in-flight');
  await waitFor(() => world.receiver.requests.length >= 3, { what: 'deliveries in flight' });
  await world.redis.stop();
  world.emitTyping(4, 'buffered');
  await buffered(bridge, 4);

  const took = await bridge.stop('SIGTERM');
  expect(bridge.exitCode).toBe(2);
  expect(took).toBeLessThan(SHUTDOWN_TIMEOUT_MS + EXIT_MARGIN_MS);
  expect(lossRecord(bridge)).toMatchObject({ lost: { [BOT]: 4 } });
});

test('a bridge that cannot start writes its fatal line, with the cause, before it exits 2', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const { port } = taken.address() as { port: number };
  try {
    const config = world.config({ top: { server: { host: '127.0.0.1', port } } });
    const run = await runCli(['run', '--config', writeConfig(config)], { env: { BOT_TOKEN: world.token } });
    expect(run.code).toBe(2);
    const lines = run.stdout.split('\n').filter((l) => l.startsWith('{'));
    const fatal = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r.level === 60);
    expect(fatal).toMatchObject({ msg: 'cannot start', err: { code: 'EADDRINUSE' } });
  } finally {
    taken.close();
  }
});
