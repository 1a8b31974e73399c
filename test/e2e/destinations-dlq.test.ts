import { afterEach, beforeEach, expect, test } from 'vitest';
import { runCli, writeConfig } from '../support/bridge-process.js';
import { sharedNatsUrl } from '../support/nats-server.js';
import { waitFor } from '../support/redis.js';
import { NatsSink } from './sinks.js';
import { BOT, World } from './world.js';

let world: World;
let sink: NatsSink;

beforeEach(async () => {
  world = await World.start();
  const url = sharedNatsUrl();
  // The stream refuses messages over 1 KiB: a permanent failure for a larger event.
  sink = await NatsSink.create('audit-stream', url, { servers: new URL(url).host }, { maxMsgSize: 1024 });
});
afterEach(async () => {
  await world.close();
  await sink.close();
});

interface Listed {
  destinations: {
    destination: string;
    type: string;
    total: number;
    entries: { id: string; lastError: string }[];
  }[];
}

test('an event over the stream max_msg_size is dead-lettered; dlq list and replay by --destination (and --webhook) deliver it once the limit is raised', async () => {
  const config = world.config({ top: { webhooks: [], destinations: [sink.entry()] } });
  const bridge = await world.bridge(config);
  await world.connected();

  const big = world.sim.sendMessage('r1', 'x'.repeat(3_000), { members: [BOT, 'alice'], sender: 'alice' });
  world.sim.emit(BOT, 'lastRead', { roomID: 'r1', memberID: 'alice', messageID: big._id });
  const deadPattern = /imkit_bridge_deliveries_total\{destination="audit-stream",outcome="dead"\} 1\b/;
  await waitFor(async () => deadPattern.test((await bridge.get('/metrics')).body), {
    timeoutMs: 20_000,
    what: 'one dead letter',
  });
  // The small event behind it went through: a permanent failure is not an outage.
  const before = await waitFor(async () => {
    const landed = await sink.landed();
    return landed.some((l) => l.where.endsWith('.lastRead.none')) ? landed : undefined;
  });
  expect(before.filter((l) => l.where.includes('.chat_message.'))).toEqual([]);

  const file = writeConfig(config);
  const env = { BOT_TOKEN: 't' };
  const listed = await runCli(['dlq', 'list', '--config', file, '--destination', 'audit-stream', '--json'], {
    env,
  });
  expect(listed.code, listed.stderr).toBe(0);
  const { destinations } = JSON.parse(listed.stdout) as Listed;
  expect(destinations).toHaveLength(1);
  expect(destinations[0]).toMatchObject({ destination: 'audit-stream', type: 'nats', total: 1 });
  const dead = destinations[0]!.entries[0]!;
  expect(dead.lastError).toMatch(/stream refused the message/);

  const alias = await runCli(['dlq', 'list', '--config', file, '--webhook', 'audit-stream'], { env });
  expect(alias.code, alias.stderr).toBe(0);
  expect(alias.stdout).toContain('destination audit-stream (nats): 1 dead-lettered');
  expect(alias.stdout).toContain(dead.id);

  await sink.setMaxMsgSize(-1);
  const replay = await runCli(
    ['dlq', 'replay', '--config', file, '--destination', 'audit-stream', '--json'],
    { env },
  );
  expect(replay.code, replay.stderr).toBe(0);
  expect(JSON.parse(replay.stdout)).toMatchObject({ replayed: 1, failed: 0 });

  const chat = await waitFor(
    async () => (await sink.landed()).find((l) => l.where.includes('.chat_message.')),
    { timeoutMs: 20_000, what: 'the replayed event in the stream' },
  );
  expect(chat.id).toBe(dead.id);
  expect(JSON.parse(chat.body)).toMatchObject({ id: dead.id, type: 'chat message', data: { _id: big._id } });

  const after = await runCli(['dlq', 'list', '--config', file, '--destination', 'audit-stream', '--json'], {
    env,
  });
  expect((JSON.parse(after.stdout) as Listed).destinations[0]!.total).toBe(0);
});
