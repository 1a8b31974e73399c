import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { keySlot, masterFor, producerConnection, redisSettings } from '../../src/queue/redis.js';
import { runCli, writeConfig } from '../support/bridge-process.js';
import { freePort, waitFor } from '../support/redis.js';
import { ClusterGroup, type ClusterNode } from '../support/redis-topologies.js';
import { BOT, SECRET, World } from './world.js';

/** C1: on a three-master cluster, three destinations land on three shards and everything is delivered. */
let cluster: ClusterGroup;
let world: World;

beforeAll(async () => {
  [cluster, world] = await Promise.all([
    ClusterGroup.start({ masters: 3, replicasPerMaster: 0 }),
    World.start(),
  ]);
}, 60_000);
afterAll(async () => {
  await world?.close();
  await cluster?.close();
});

const ownerOf = (masters: ClusterNode[], slot: number) =>
  masters.find((m) => m.slots.some(([from, to]) => slot >= from && slot <= to));

/** One destination id per master: tags do not spread by themselves, so the test picks ids that do. */
function idsOnEveryMaster(masters: ClusterNode[]): Map<number, string> {
  const picked = new Map<number, string>();
  for (let i = 0; picked.size < masters.length && i < 1000; i++) {
    const id = `shard-${i}`;
    const owner = ownerOf(masters, keySlot(`{webhook-${id}}`));
    if (owner && !picked.has(owner.port)) picked.set(owner.port, id);
  }
  return picked;
}

test('three destinations on three masters: each queue lives on its own shard, and every event reaches all three', async () => {
  const masters = (await cluster.layout()).filter((n) => n.role === 'master');
  expect(masters).toHaveLength(3);
  const byMaster = idsOnEveryMaster(masters);
  expect(byMaster.size).toBe(3);
  for (const [port, id] of byMaster) expect(await cluster.masterOf(`{webhook-${id}}`)).toBe(port);

  const ids = [...byMaster.values()];
  const config = world.config({
    top: {
      redis: { cluster: cluster.urls, prefix: world.prefix },
      webhooks: ids.map((id) => ({
        id,
        url: `${world.receiver.url}?to=${id}`,
        secret: SECRET,
        timeout: '2s',
      })),
    },
  });
  const check = await runCli(['config', 'check', '--config', writeConfig(config)], {
    env: { BOT_TOKEN: world.token },
  });
  expect(check.code, check.stderr).toBe(0);
  const slots = await Promise.all(ids.map((id) => cluster.keySlot(`{webhook-${id}}`)));
  expect(check.stdout).toContain(
    `destination queues: ${ids.map((id, i) => `${id}→slot ${slots[i]}`).join(', ')}`,
  );

  const bridge = await world.bridge(config);
  await world.connected();
  await bridge.waitReady(20_000);
  const sent = Array.from({ length: 30 }, (_, i) =>
    world.sim.sendMessage(`cluster-room-${i % 4}`, `across shards ${i}`, {
      members: [BOT, 'alice'],
      sender: 'alice',
    }),
  );
  const deliveredTo = (id: string) =>
    new Set(
      world.receiver.requests
        .filter((r) => r.url.endsWith(`?to=${id}`) && r.status !== undefined && r.status < 300 && r.verified)
        .map((r) => (JSON.parse(r.body) as { data: { _id: string } }).data._id),
    );
  await waitFor(() => ids.every((id) => deliveredTo(id).size >= sent.length), {
    timeoutMs: 30_000,
    what: `${sent.length} messages at each of ${ids.length} destinations`,
  });
  for (const id of ids) expect([...deliveredTo(id)].sort()).toEqual(sent.map((m) => m._id).sort());

  // Every key of a destination's queue (jobs, lists, claims) is on the master that owns its slot, and nowhere else.
  for (const [port, id] of byMaster) {
    for (const master of masters) {
      const node = new Redis({ host: '127.0.0.1', port: master.port, lazyConnect: true });
      try {
        const keys = await node.keys(`${world.prefix}:{webhook-${id}}:*`);
        if (master.port === port) expect(keys.length, `keys of ${id} on its master`).toBeGreaterThan(0);
        else expect(keys, `keys of ${id} on another master`).toEqual([]);
      } finally {
        node.disconnect();
      }
    }
  }

  // Seen markers and checkpoints work on Cluster too: nothing stays buffered, the checkpoint advances.
  await bridge.waitReady(10_000);
  const client = new Cluster(cluster.urls.map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) })));
  try {
    const checkpoint = await waitFor(
      async () => Number(await client.get(`${world.prefix}:{sessions}:${BOT}:live-at`)) || undefined,
      { timeoutMs: 12_000, what: 'the checkpoint in the {sessions} slot' },
    );
    expect(checkpoint).toBeGreaterThan(Date.now() - 60_000);
    // Chat messages are marked seen in the slot of their first destination.
    const first = masters.find((m) => byMaster.get(m.port) === ids[0])!;
    const node = new Redis({ host: '127.0.0.1', port: first.port, lazyConnect: true });
    const markers = await node
      .keys(`${world.prefix}:{webhook-${ids[0]}}:seen:*`)
      .finally(() => node.disconnect());
    expect(markers).toHaveLength(sent.length);
  } finally {
    client.disconnect();
  }

  // The dlq commands read every destination's queue on its shard, even with a seed node down.
  const deadSeed = `redis://127.0.0.1:${await freePort()}`;
  const withDeadSeed = {
    ...config,
    redis: { cluster: [deadSeed, ...cluster.urls], prefix: world.prefix },
  };
  const dlq = await runCli(['dlq', 'list', '--json', '--config', writeConfig(withDeadSeed)], {
    env: { BOT_TOKEN: world.token },
  });
  expect(dlq.code, dlq.stderr).toBe(0);
  const listed = JSON.parse(dlq.stdout) as { destinations: { destination: string; total: number }[] };
  expect(listed.destinations.map((d) => [d.destination, d.total])).toEqual(ids.map((id) => [id, 0]));

  const status = JSON.parse((await bridge.get('/status')).body) as {
    redis: { topology: string; state: string; nodes: { address: string; role: string; slots: string[] }[] };
    destinations: { id: string; slot: number; node: string }[];
  };
  expect(status.redis).toMatchObject({ topology: 'cluster', state: 'ok' });
  expect(status.redis.nodes.filter((n) => n.role === 'master' && n.slots.length > 0)).toHaveLength(3);
  for (const [port, id] of byMaster) {
    expect(status.destinations.find((d) => d.id === id)).toMatchObject({
      slot: keySlot(`{webhook-${id}}`),
      node: `127.0.0.1:${port}`,
    });
  }
}, 90_000);

test('masterFor answers the connection of the master that owns a key, for WAIT on the node that took the write', async () => {
  const settings = redisSettings({ cluster: cluster.urls, prefix: 'mf', waitReplicas: 0, waitTimeout: 500 });
  const client = producerConnection(settings, 'imkit-bridge-test');
  try {
    await waitFor(() => client.status === 'ready', { timeoutMs: 10_000, what: 'cluster client ready' });
    const keys = Array.from({ length: 20 }, (_, i) => `mf:{webhook-k${i}}:wait`);
    for (const key of keys) {
      const node = masterFor(client, key);
      expect(node, key).toBeDefined();
      expect(node!.options.port, key).toBe(await cluster.masterOf(key));
      // The node connection is the one that serves the key's slot: a write through it is accepted.
      await node!.set(key, '1');
    }
  } finally {
    client.disconnect();
  }
});
