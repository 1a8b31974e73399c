import { createHash } from 'node:crypto';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { eventIdentity } from '../../src/route/event-id.js';
import { runCli, writeConfig } from '../support/bridge-process.js';
import type { ReceivedRequest } from '../support/receiver.js';
import { waitFor } from '../support/redis.js';
import { BOT, SECRET, World, type WebhookBody } from './world.js';

let world: World;
beforeEach(async () => {
  world = await World.start();
});
afterEach(async () => world.close());

/** A value exactly `depth` containers deep. */
function nested(depth: number): unknown {
  let value: unknown = {};
  for (let i = 1; i < depth; i++) value = { d: value };
  return value;
}

/** What the simulator sends on a base64 socket, and its SHA-256 as the bridge reports it. */
function wire(payload: unknown): { base64: string; sha256: string } {
  const base64 = Buffer.from(JSON.stringify(payload), 'utf8').toString('base64');
  return { base64, sha256: createHash('sha256').update(base64).digest('hex') };
}

/** Three webhooks on one receiver, told apart by path. */
function webhooks(): Record<string, unknown>[] {
  const hook = (id: string, events: string[]) => ({
    id,
    url: `${world.receiver.url}/${id}`,
    secret: SECRET,
    events,
    timeout: '2s',
    retry: { schedule: ['200ms'] },
  });
  return [hook('named', ['bridge.quarantined']), hook('lifecycle', ['bridge.*']), hook('all', ['*'])];
}

function bodiesAt(path: string): { request: ReceivedRequest; body: WebhookBody }[] {
  return world.receiver.requests
    .filter((r) => r.url === `/hook/${path}` && r.verified === true && r.status === 204)
    .map((request) => ({ request, body: JSON.parse(request.body) as WebhookBody }));
}

test('a 0.9 MB JSON chat message over a base64 socket is delivered with the default limits', async () => {
  await world.bridge(world.config());
  await world.connected();
  const text = 'large message 😀 '.repeat(50_000);
  const sent = world.sim.sendMessage('r1', text, { members: [BOT, 'alice'], sender: 'alice' });
  const json = Buffer.byteLength(JSON.stringify(sent));
  expect(json).toBeGreaterThan(900_000);
  // Its base64 is over 1 MiB: the size that used to be measured.
  expect(wire(sent).base64.length).toBeGreaterThan(1_048_576);

  const [delivered] = await world.waitDelivered(1, 'chat message');
  expect(delivered!.data).toEqual(sent);
});

test('a payload past the limits is reported as bridge.quarantined to webhooks that name it or bridge.*, not "*"; the deepest allowed payload is delivered', async () => {
  const maxJsonDepth = 1000;
  await world.bridge(world.config({ top: { webhooks: webhooks(), limits: { maxJsonDepth } } }));
  await world.connected();

  // The deepest payloads the config allows, as a chat message and as another event (whose id
  // hashes the whole payload), relayed end to end.
  const deepest = {
    _id: 'm-max',
    room: 'r1',
    messageType: 'text',
    messageTimeMS: 1,
    extra: nested(maxJsonDepth - 1),
  };
  const deepestRoom = { _id: 'r-max', extra: nested(maxJsonDepth - 1) };
  world.sim.emit(BOT, 'chat message', deepest);
  world.sim.emit(BOT, 'room', deepestRoom);
  // One level deeper: quarantined. Its text must not reach anyone, only its ids.
  const tooDeep = {
    _id: 'm-deep',
    room: 'r1',
    message: 'private words',
    sender: { _id: 'alice', nickname: 'Alice Private' },
    extra: nested(maxJsonDepth),
  };
  const { base64, sha256 } = wire(tooDeep);
  world.sim.emit(BOT, 'chat message', tooDeep);

  const quarantined = (path: string) => bodiesAt(path).filter((b) => b.body.type === 'bridge.quarantined');
  await waitFor(() => quarantined('named').length >= 1 && quarantined('lifecycle').length >= 1, {
    what: 'bridge.quarantined at both subscribers',
    timeoutMs: 20_000,
  });
  const [named] = quarantined('named');
  expect(named!.body).toMatchObject({ type: 'bridge.quarantined', account: BOT });
  expect(named!.body.data).toEqual({
    account: BOT,
    event: 'chat message',
    reason: 'nesting too deep',
    size: base64.length,
    sha256,
    ids: { _id: 'm-deep', room: 'r1', sender: { _id: 'alice' } },
  });
  expect(named!.request.body).not.toContain('private');
  expect(named!.request.body).not.toContain('Private');
  expect(quarantined('lifecycle')[0]!.body).toEqual(named!.body);

  await waitFor(() => bodiesAt('all').length >= 2, { what: 'both deepest payloads', timeoutMs: 20_000 });
  const all = bodiesAt('all').map((b) => b.body);
  expect(all.find((b) => b.type === 'chat message')?.data).toEqual(deepest);
  expect(all.find((b) => b.type === 'room')?.data).toEqual(deepestRoom);
  // "*" means IMKIT events: after the quarantine and a later event, still no bridge.quarantined there.
  world.sim.emit(BOT, 'typing', { room: 'r1', sender: 'alice' });
  await waitFor(() => bodiesAt('all').some((b) => b.body.type === 'typing'), { what: 'typing' });
  expect(bodiesAt('all').map((b) => b.body.type)).not.toContain('bridge.quarantined');
});

test('dlq replay --quarantine relays what decodes under raised limits with the body it would have had, and keeps and reports the rest', async () => {
  const low = world.config({ top: { limits: { maxJsonDepth: 16 } } });
  await world.bridge(low);
  await world.connected();
  const fits = world.sim.sendMessage('r1', nested(20), { members: [BOT, 'alice'], sender: 'alice' });
  const stillDeep = world.sim.sendMessage('r1', nested(100), { members: [BOT, 'alice'], sender: 'alice' });
  world.sim.emitRaw(BOT, 'chat message', '%%%not base64%%%');

  const env = { BOT_TOKEN: 't' };
  const listed = async (file: string) => {
    const out = await runCli(['dlq', 'list', '--json', '--config', file], { env });
    expect(out.code, out.stderr).toBe(0);
    return (
      JSON.parse(out.stdout) as {
        quarantine: {
          total: number;
          entries: { streamId: string; reason: string; receivedAt: string; ids: object }[];
        };
      }
    ).quarantine;
  };
  const before = await waitFor(
    async () => {
      const q = await listed(writeConfig(low));
      return q.total === 3 ? q : undefined;
    },
    { what: 'three quarantine entries' },
  );
  const entryOfFits = before.entries.find((e) => JSON.stringify(e.ids).includes(fits._id))!;
  expect(entryOfFits.reason).toBe('nesting too deep');
  expect(world.deliveredOfType('chat message')).toHaveLength(0);

  const raised = writeConfig(world.config({ top: { limits: { maxJsonDepth: 64 } } }));
  const replay = await runCli(['dlq', 'replay', '--quarantine', '--json', '--config', raised], { env });
  expect(replay.code, replay.stderr).toBe(0);
  expect(JSON.parse(replay.stdout)).toEqual({
    replayed: 1,
    unrouted: 0,
    stillFailing: 2,
    reasons: { 'nesting too deep': 1, 'invalid base64': 1 },
  });

  const [delivered] = await world.waitDelivered(1, 'chat message');
  expect(delivered).toEqual({
    id: eventIdentity(BOT, 'chat message', fits, 0, 5_000).id,
    type: 'chat message',
    timestamp: entryOfFits.receivedAt,
    account: BOT,
    data: fits,
  });
  const after = await listed(raised);
  expect(after.total).toBe(2);
  expect(after.entries.map((e) => e.streamId)).not.toContain(entryOfFits.streamId);
  expect(JSON.stringify(after.entries)).toContain(stillDeep._id);

  // Text output names what still fails; a second run finds nothing new to relay.
  const again = await runCli(['dlq', 'replay', '--quarantine', '--config', raised], { env });
  expect(again.code, again.stderr).toBe(0);
  expect(again.stdout).toContain('replayed 0 quarantined payload(s)');
  expect(again.stdout).toContain('2 still fail and stay in quarantine');
  expect(again.stdout).toContain('nesting too deep: 1');
  expect(world.deliveredOfType('chat message')).toHaveLength(1);
});
