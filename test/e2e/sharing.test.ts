import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { BridgeProcess } from '../support/bridge-process.js';
import { waitFor } from '../support/redis.js';
import { World, type WebhookBody } from './world.js';

const LEASE_MS = 3_000;
const ACCOUNTS = Array.from({ length: 30 }, (_, i) => `shard-${String(i).padStart(2, '0')}`);

let world: World;
let traffic: NodeJS.Timeout | undefined;
const sent = new Set<string>();

beforeEach(async () => {
  world = await World.start();
  sent.clear();
});
afterEach(async () => {
  clearInterval(traffic);
  traffic = undefined;
  await world.close();
});

/** 30 accounts (or `ids`), each with its own room, shared by ingest processes with `copies`. */
function shardedConfig(copies: number, ids: readonly string[] = ACCOUNTS): Record<string, unknown> {
  const base = world.config({ webhook: { events: ['chat message', 'bridge.gap'] } });
  const template = (base.accounts as Record<string, unknown>[])[0]!;
  const accounts = ids.map((id) => {
    world.sim.addClient(id);
    return { ...template, id, token: world.sim.issueToken(id) };
  });
  return { ...base, accounts, ingest: { copies, lease: `${LEASE_MS}ms` }, shutdownTimeout: '10s' };
}

async function ingestProcesses(config: Record<string, unknown>, n: number): Promise<BridgeProcess[]> {
  return Promise.all(Array.from({ length: n }, () => world.bridge(config, 'ingest')));
}

interface Sharing {
  member: string;
  held: string[];
  members: { id: string }[];
}

async function sharing(bridge: BridgeProcess): Promise<Sharing> {
  const status = JSON.parse((await bridge.get('/status')).body) as { ingest: { sharing: Sharing } };
  return status.ingest.sharing;
}

/** Every account has exactly `copies` authenticated sockets and the processes' held lists say the same. */
async function placed(bridges: BridgeProcess[], copies: number): Promise<Map<string, string[]> | undefined> {
  if (!ACCOUNTS.every((a) => world.sim.connectedCount(a) === copies)) return undefined;
  const holders = new Map<string, string[]>();
  for (const bridge of bridges) {
    const { member, held } = await sharing(bridge);
    for (const account of held) holders.set(account, [...(holders.get(account) ?? []), member]);
  }
  return ACCOUNTS.every((a) => holders.get(a)?.length === copies) ? holders : undefined;
}

/** `imkit_bridge_accounts_under_copies` summed over `bridges`: each account is checked by one process. */
async function underCopies(bridges: BridgeProcess[]): Promise<number> {
  const values = await Promise.all(
    bridges.map((b) => world.metric(b, /^imkit_bridge_accounts_under_copies (\d+)$/m)),
  );
  return values.reduce((a, b) => a + b, 0);
}

/** A chat message to every account every 250 ms, ids recorded. */
function startTraffic(): void {
  let round = 0;
  traffic = setInterval(() => {
    round++;
    for (const account of ACCOUNTS) {
      const message = world.sim.sendMessage(`room-${account}`, `m${round}`, {
        members: [account, 'alice'],
        sender: 'alice',
      });
      sent.add(message._id);
    }
  }, 250);
}

/** Stops the traffic and waits until every message sent was delivered; no message twice. */
async function everyMessageDeliveredOnce(): Promise<void> {
  clearInterval(traffic);
  traffic = undefined;
  const chatIds = () =>
    world
      .deliveredOfType('chat message')
      .map((body) => (body.data as { _id: string })._id)
      .filter((id) => sent.has(id));
  await waitFor(() => new Set(chatIds()).size === sent.size, {
    timeoutMs: 30_000,
    what: `all ${sent.size} chat messages delivered`,
  });
  const accepted = world.receiver.requests.filter((r) => r.status !== undefined && r.status < 300);
  const chats = accepted
    .map((r) => JSON.parse(r.body) as WebhookBody)
    .filter((b) => b.type === 'chat message');
  expect(chats.length).toBe(new Set(chats.map((b) => b.id)).size);
}

const accountsOfHolder = (holders: Map<string, string[]>, member: string) =>
  ACCOUNTS.filter((a) => holders.get(a)!.includes(member));

/**
 * As `placed`, once every process holds some accounts: the first processes to join hold everything
 * until a later one is a member, and the accounts that rank it highest move to it.
 */
async function spread(bridges: BridgeProcess[], copies: number): Promise<Map<string, string[]> | undefined> {
  const holders = await placed(bridges, copies);
  if (!holders) return undefined;
  const members = await Promise.all(bridges.map(async (b) => (await sharing(b)).member));
  return members.every((m) => accountsOfHolder(holders, m).length > 0) ? holders : undefined;
}

const authsSince = (at: number) =>
  new Set(world.sim.auths.filter((r) => r.ok && r.at >= at).map((r) => r.clientId!));

describe('ingest.copies: accounts shared among ingest processes', () => {
  test('copies 1: one socket per account, spread over three processes; copies 2: two, never on one process', async () => {
    const one = await ingestProcesses(shardedConfig(1), 3);
    const holders = await waitFor(() => spread(one, 1), {
      timeoutMs: 20_000,
      what: 'one holder per account, every process holding some',
    });
    const members = await Promise.all(one.map(async (b) => (await sharing(b)).member));
    for (const member of members) expect(accountsOfHolder(holders, member).length).toBeGreaterThan(0);
    for (const bridge of one) await bridge.waitReady();
    await Promise.all(one.map((b) => b.stop()));

    const two = await ingestProcesses(
      { ...shardedConfig(2), redis: { url: world.redis.url, prefix: 'two' } },
      3,
    );
    const pairs = await waitFor(() => placed(two, 2), { timeoutMs: 20_000, what: 'two holders per account' });
    for (const account of ACCOUNTS) expect(new Set(pairs.get(account)).size).toBe(2);
  });

  test('kill -9 of a process under traffic: its accounts are held again within the lease, and no message is lost', async () => {
    const config = shardedConfig(1);
    await world.bridge(config, 'worker');
    const bridges = await ingestProcesses(config, 3);
    const holders = await waitFor(() => spread(bridges, 1), { timeoutMs: 20_000, what: 'accounts placed' });
    startTraffic();
    await waitFor(() => world.deliveredOfType('chat message').length >= 30, { what: 'traffic flowing' });
    await waitFor(async () => (await underCopies(bridges)) === 0, { what: 'no account under copies' });
    const victim = bridges[0]!;
    const survivors = bridges.slice(1);
    const victimAccounts = accountsOfHolder(holders, (await sharing(victim)).member);
    const killedAt = Date.now();
    await victim.kill9();
    // The survivors see the victim stop renewing long before its lease ends, and count its accounts.
    const under = await waitFor(() => underCopies(survivors), {
      timeoutMs: LEASE_MS + 5_000,
      intervalMs: 100,
      what: 'accounts under copies after the kill',
    });
    expect(under).toBeLessThanOrEqual(victimAccounts.length);
    await waitFor(() => placed(survivors, 1), {
      timeoutMs: LEASE_MS + 10_000,
      what: 'every account held again',
    });
    expect(Date.now() - killedAt).toBeLessThan(LEASE_MS + 10_000);
    await waitFor(async () => (await underCopies(survivors)) === 0, { what: 'none under copies again' });
    await everyMessageDeliveredOnce();
    // The messages sent while nobody held them came over REST, and the gap says so; each gap is
    // sent after what its catch-up landed, so it may arrive after the last chat message.
    const takeovers = () =>
      new Set(
        world
          .deliveredOfType('bridge.gap')
          .filter((b) => (b.data as { reason: string }).reason === 'takeover')
          .map((b) => b.account),
      );
    await waitFor(() => takeovers().size >= victimAccounts.length, {
      timeoutMs: 15_000,
      what: 'a takeover gap for every account of the killed process',
    }).catch(() => undefined);
    expect(takeovers()).toEqual(new Set(victimAccounts));
  });

  test('a process holding nothing is ready once it is a member', async () => {
    const two = ACCOUNTS.slice(0, 2);
    const bridges = await ingestProcesses(shardedConfig(1, two), 3);
    await waitFor(() => two.every((a) => world.sim.connectedCount(a) === 1), {
      timeoutMs: 20_000,
      what: 'both accounts held once',
    });
    const shares = await Promise.all(bridges.map(sharing));
    const idle = bridges.filter((_, i) => shares[i]!.held.length === 0);
    // Two accounts with one copy each: at least one of three processes holds none.
    expect(idle.length).toBeGreaterThan(0);
    for (const bridge of idle) {
      await bridge.waitReady();
      expect((await sharing(bridge)).members).toHaveLength(3);
    }
  });

  test('SIGTERM, a fourth process joining and a rolling restart: nothing lost, never uncovered, only moved accounts reconnect', async () => {
    const config = shardedConfig(1);
    await world.bridge(config, 'worker');
    const bridges = await ingestProcesses(config, 3);
    let holders = await waitFor(() => spread(bridges, 1), { timeoutMs: 20_000, what: 'accounts placed' });
    startTraffic();
    let uncovered = 0;
    const sampler = setInterval(() => {
      uncovered += ACCOUNTS.filter((a) => world.sim.connectedCount(a) < 1).length;
    }, 50);
    try {
      // A fourth process joins and takes a share; only that share reconnects.
      let since = Date.now();
      const joiner = await world.bridge(config, 'ingest');
      bridges.push(joiner);
      await joiner.waitReady();
      holders = await waitFor(() => spread(bridges, 1), { timeoutMs: 10_000, what: 'placed on four' });
      const joinerAccounts = accountsOfHolder(holders, (await sharing(joiner)).member);
      expect(joinerAccounts.length).toBeGreaterThan(0);
      expect([...authsSince(since)].sort()).toEqual(joinerAccounts.sort());

      // SIGTERM: only the leaver's accounts get a new session.
      const leaver = bridges.shift()!;
      const leaverAccounts = accountsOfHolder(holders, (await sharing(leaver)).member);
      since = Date.now();
      expect(await leaver.stop()).toBeLessThan(10_000);
      expect(leaver.exitCode).toBe(0);
      holders = await waitFor(() => placed(bridges, 1), { timeoutMs: 10_000, what: 'placed on three' });
      expect([...authsSince(since)].sort()).toEqual(leaverAccounts.sort());

      // Rolling restart, one by one: start the new one, wait until it is ready, stop the old one.
      for (const old of [...bridges]) {
        const next = await world.bridge(config, 'ingest');
        await next.waitReady();
        expect(await old.stop()).toBeLessThan(10_000);
        bridges.splice(bridges.indexOf(old), 1, next);
        await waitFor(() => placed(bridges, 1), { timeoutMs: 10_000, what: 'placed after a restart' });
      }
    } finally {
      clearInterval(sampler);
    }
    expect(uncovered).toBe(0);
    await everyMessageDeliveredOnce();
  });

  test('a Redis restart longer than the lease: no account is dropped, and all are placed again afterwards', async () => {
    const config = shardedConfig(1);
    const bridges = await ingestProcesses(config, 3);
    await waitFor(() => placed(bridges, 1), { timeoutMs: 20_000, what: 'accounts placed' });
    let uncovered = 0;
    const sampler = setInterval(() => {
      uncovered += ACCOUNTS.filter((a) => world.sim.connectedCount(a) < 1).length;
    }, 50);
    try {
      await world.redis.restart({ downMs: LEASE_MS + 1_000 });
      await waitFor(() => placed(bridges, 1), { timeoutMs: 10_000, what: 'placed after the restart' });
    } finally {
      clearInterval(sampler);
    }
    expect(uncovered).toBe(0);
    // Accounts stay held through the outage, so placement can be seen before every member has
    // renewed into the restarted Redis: wait for the membership to be whole again.
    const everyoneSeesThree = async () => {
      const members = await Promise.all(bridges.map(async (b) => (await sharing(b)).members.length));
      return members.every((n) => n === 3) || undefined;
    };
    await waitFor(everyoneSeesThree, { timeoutMs: 10_000, what: 'all three members after the restart' });
  });
});
