import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { runCli, writeConfig } from '../support/bridge-process.js';
import { waitFor } from '../support/redis.js';
import { BOT, World } from './world.js';

/** One payload per server-to-client event in the IMKIT reference's event table. */
const EVENT_TABLE: [string, unknown][] = [
  ['room', { _id: 'r1', name: 'Launch', members: ['audit-bot', 'alice'], lastMessage: { _id: 'm0' } }],
  ['lastRead', { roomID: 'r1', memberID: 'alice', messageID: 'm1' }],
  ['typing', { room: 'r1', message: 'typing', sender: 'alice' }],
  ['ai_streaming', { room: 'r1', sender: 'bot-ai', text: 'Thinking… 🤔', messageId: 'm9' }],
  ['roomPref', { room: 'r1', folder: 'work', hidden: false, muted: true, sticky: false, tags: ['a'] }],
  ['myPrefChange', { key: 'theme', data: { dark: true } }],
  ['myPrefDelete', 'theme'],
  ['invitation', { _id: 'inv1', room: 'r2', inviter: 'alice', invitee: 'audit-bot' }],
  ['cancelInvitation', { room: 'r2' }],
  ['userDeleteMessages', { room: 'r1', messages: ['m1', 'm2'], isUserDeleteAllMessagesInRoom: false }],
  ['messageDeleted', { room: 'r1', messageID: '_all' }],
];

let world: World;
beforeEach(async () => {
  world = await World.start();
});
afterEach(async () => world.close());

describe.each([
  ['one process (--role all)', ['all']],
  ['separate ingest and worker processes', ['ingest', 'worker']],
] as const)('every IMKIT event reaches the webhook signed and unchanged: %s', (_name, roles) => {
  test('socket event -> Redis -> signed webhook for the whole event table', async () => {
    for (const role of roles) await world.bridge(world.config(), role);
    await world.connected();

    const chat = world.sim.sendMessage('r1', 'hello "world" 👋\n\u2028مرحبا', {
      members: [BOT, 'alice'],
      sender: 'alice',
    });
    for (const [event, payload] of EVENT_TABLE) world.sim.emit(BOT, event, payload);

    const bodies = await world.waitDelivered(EVENT_TABLE.length + 1);
    const byType = new Map(bodies.map((b) => [b.type, b]));
    expect(byType.get('chat message')?.data).toEqual(chat);
    for (const [event, payload] of EVENT_TABLE) {
      expect(byType.get(event), event).toMatchObject({ account: BOT, data: payload });
      expect(byType.get(event)!.id).toMatch(/^evt_[a-z2-7]{26}$/);
    }
    for (const body of bodies) expect(Date.parse(body.timestamp)).toBeGreaterThan(Date.now() - 60_000);
  });
});

test('malformed payloads are quarantined and shown by dlq list, the process stays healthy and the next event flows', async () => {
  const bridge = await world.bridge(world.config());
  await world.connected();
  const garbage: unknown[] = [
    '%%%not base64%%%',
    Buffer.from('{"broken json').toString('base64'),
    42,
    [1, 2],
    true,
  ];
  for (const raw of garbage) world.sim.emitRaw(BOT, 'chat message', raw);
  world.sim.emit(BOT, 'lastRead', { roomID: 'r1', memberID: 'alice', messageID: 'after-garbage' });

  const [after] = await world.waitDelivered(1, 'lastRead');
  expect(after!.data).toMatchObject({ messageID: 'after-garbage' });
  expect((await bridge.get('/healthz')).status).toBe(200);

  const metrics = await waitFor(async () => {
    const text = (await bridge.get('/metrics')).body;
    return /imkit_bridge_decode_failures_total\{account="audit-bot"\} 5\b/.test(text) ? text : undefined;
  });
  expect(metrics).toContain('imkit_bridge_decode_failures_total');

  const dlq = await runCli(['dlq', 'list', '--json', '--config', writeConfig(world.config())], {
    env: { BOT_TOKEN: 't' },
  });
  expect(dlq.code).toBe(0);
  const listed = JSON.parse(dlq.stdout) as {
    quarantine: { total: number; entries: { account: string; event: string; reason: string }[] };
  };
  expect(listed.quarantine.total).toBe(5);
  for (const entry of listed.quarantine.entries)
    expect(entry).toMatchObject({ account: BOT, event: 'chat message' });
});

test('admin endpoints: /readyz says why it is not ready, /status shows the account, /metrics has every series', async () => {
  world.sim.rejectAllTokens = true;
  const bridge = await world.bridge(world.config());
  const notReady = await waitFor(async () => {
    const res = await bridge.get('/readyz');
    return res.status === 503 && res.body.includes('account audit-bot: not authenticated') ? res : undefined;
  });
  expect(JSON.parse(notReady.body)).toMatchObject({ ready: false });
  const status = JSON.parse((await bridge.get('/status')).body) as {
    accounts: { id: string; state: string; lastError?: string }[];
  };
  expect(status.accounts[0]).toMatchObject({ id: BOT });
  expect(['backing-off', 'connecting', 'authenticating']).toContain(status.accounts[0]!.state);
  expect(JSON.stringify(status)).not.toContain(world.token);

  world.sim.rejectAllTokens = false;
  await bridge.waitReady(20_000);
  world.sim.emit(BOT, 'typing', { room: 'r1', message: 'typing' });
  await world.waitDelivered(1, 'typing');
  const metrics = (await bridge.get('/metrics')).body;
  for (const name of [
    'imkit_bridge_events_received_total{account="audit-bot",type="typing"} 1',
    'imkit_bridge_events_deduplicated_total',
    'imkit_bridge_decode_failures_total',
    'imkit_bridge_socket_connected{account="audit-bot"} 1',
    'imkit_bridge_reconnects_total{account="audit-bot",reason="auth_failed"}',
    'imkit_bridge_deliveries_total{destination="audit",outcome="delivered"}',
    'imkit_bridge_delivery_duration_seconds_bucket',
    'imkit_bridge_event_latency_seconds_bucket',
    'imkit_bridge_queue_jobs{destination="audit",state="waiting"}',
  ]) {
    expect(metrics, name).toContain(name);
  }
  for (const record of bridge.records()) expect(JSON.stringify(record)).not.toContain(world.token);
});

test('a 410 dead-letters at once; dlq list shows it and dlq replay delivers it with the same webhook-id', async () => {
  world.receiver.enqueue({ status: 410 });
  const config = world.config();
  const bridge = await world.bridge(config);
  await world.connected();
  world.sim.emit(BOT, 'lastRead', { roomID: 'r1', memberID: 'alice', messageID: 'gone-once' });
  const deadPattern = /imkit_bridge_deliveries_total\{destination="audit",outcome="dead"\} 1\b/;
  await waitFor(async () => deadPattern.test((await bridge.get('/metrics')).body), {
    what: 'one dead letter',
  });
  expect(world.receiver.requests).toHaveLength(1);
  const eventId = String(world.receiver.requests[0]!.headers['webhook-id']);

  const file = writeConfig(config);
  const env = { BOT_TOKEN: 't' };
  const list = await runCli(['dlq', 'list', '--config', file], { env });
  expect(list.code).toBe(0);
  expect(list.stdout).toContain(eventId);
  expect(list.stdout).toContain('410');

  const replay = await runCli(
    ['dlq', 'replay', '--config', file, '--webhook', 'audit', '--id', eventId, '--json'],
    { env },
  );
  expect(replay.code).toBe(0);
  expect(JSON.parse(replay.stdout)).toMatchObject({ replayed: 1 });
  await world.waitDelivered(1, 'lastRead');
  expect(world.receiver.requests.map((r) => r.headers['webhook-id'])).toEqual([eventId, eventId]);

  const unknown = await runCli(['dlq', 'list', '--config', file, '--webhook', 'ghost'], { env });
  expect(unknown.code).toBe(1);
  const named = await runCli(['dlq', 'list', '--config', file, '--destination', 'ghost'], { env });
  expect(named.code).toBe(1);
  expect(named.stderr).toContain('no destination has id "ghost"');
  const listed = await runCli(['dlq', 'list', '--config', file, '--destination', 'audit'], { env });
  expect(listed.stdout).toContain('destination audit (http): 0 dead-lettered');
  const clash = await runCli(
    ['dlq', 'list', '--config', file, '--destination', 'audit', '--webhook', 'other'],
    { env },
  );
  expect(clash.code).toBe(1);
  expect(clash.stderr).toContain('--webhook is an alias of --destination');
});
