import { afterAll, beforeAll, expect, test } from 'vitest';
import { runCli, writeConfig } from '../support/bridge-process.js';
import { waitFor } from '../support/redis.js';
import { SentinelGroup } from '../support/redis-topologies.js';
import { BOT, World } from './world.js';

/** Sentinel smoke: the bridge finds the master through the sentinels and relays; a wrong name is named. */
let group: SentinelGroup;
let world: World;

beforeAll(async () => {
  [group, world] = await Promise.all([SentinelGroup.start({ replicas: 1, sentinels: 3 }), World.start()]);
}, 60_000);
afterAll(async () => {
  await world?.close();
  await group?.close();
});

test('relays through the master the sentinels name, and /status shows that master', async () => {
  const config = world.config({
    top: { redis: { sentinels: group.sentinelUrls, name: group.name, prefix: world.prefix } },
  });
  const check = await runCli(['config', 'check', '--config', writeConfig(config)], {
    env: { BOT_TOKEN: world.token },
  });
  expect(check.code, check.stderr).toBe(0);
  expect(check.stdout).toContain(`redis: sentinel "${group.name}" via 3 sentinels`);

  const bridge = await world.bridge(config);
  await world.connected();
  await bridge.waitReady(20_000);
  const sent = Array.from({ length: 10 }, (_, i) =>
    world.sim.sendMessage('sentinel-room', `via sentinel ${i}`, { members: [BOT, 'alice'], sender: 'alice' }),
  );
  const bodies = await world.waitDelivered(sent.length, 'chat message');
  expect(bodies.map((b) => (b.data as { _id: string })._id).sort()).toEqual(sent.map((m) => m._id).sort());

  // /status names the master by the server's own address (the group reaches it through a proxy).
  const master = group.client(group.master);
  try {
    const info = (await master.call('CLIENT', 'INFO')) as string;
    const status = JSON.parse((await bridge.get('/status')).body) as { redis: Record<string, unknown> };
    expect(status.redis).toMatchObject({
      topology: 'sentinel',
      state: 'ok',
      master: /\bladdr=(\S+)/.exec(info)![1],
    });
    // The queue is on the master itself, not merely somewhere the client could reach.
    expect(await master.exists(`${world.prefix}:webhook-audit:meta`)).toBe(1);
  } finally {
    master.disconnect();
  }
}, 60_000);

test('a master name the sentinels do not know: /readyz names it, the process keeps running', async () => {
  const config = world.config({
    top: { redis: { sentinels: group.sentinelUrls, name: 'no-such-master', prefix: world.prefix } },
  });
  const bridge = await world.bridge(config, 'worker');
  const reasons = await waitFor(
    async () => {
      const body = JSON.parse((await bridge.get('/readyz')).body) as { reasons?: string[] };
      return body.reasons?.some((r) => r.includes('no master named')) ? body.reasons : undefined;
    },
    { timeoutMs: 10_000, what: '/readyz naming the unknown master' },
  );
  expect(reasons).toContain('redis: sentinels: no master named "no-such-master"');
  expect(bridge.exitCode).toBeUndefined();
  await bridge.stop('SIGKILL');
}, 30_000);
