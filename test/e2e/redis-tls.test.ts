import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BridgeProcess, runCli, writeConfig } from '../support/bridge-process.js';
import { waitFor } from '../support/redis.js';
import { TlsRedis } from '../support/redis-topologies.js';
import { BOT, World } from './world.js';

/** T1: Redis over TLS with a password. It relays; a wrong password or CA is a named problem, never a crash loop. */
const PASSWORD = 'tls-redis-secret-9f2';

let server: TlsRedis;
let world: World;

beforeAll(async () => {
  [server, world] = await Promise.all([
    TlsRedis.start({ password: PASSWORD, authClients: 'optional' }),
    World.start(),
  ]);
});
afterAll(async () => {
  await world?.close();
  await server?.close();
});

function redisBlock(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    url: server.url,
    password: '${env:REDIS_PASSWORD}',
    tls: { ca: server.certs.ca },
    prefix: world.prefix,
    ...overrides,
  };
}

async function bridgeWith(redis: Record<string, unknown>, password = PASSWORD) {
  const bridge = await BridgeProcess.start(writeConfig(world.config({ top: { redis } })), {
    env: { BOT_TOKEN: world.token, REDIS_PASSWORD: password },
  });
  world.bridges.push(bridge);
  return bridge;
}

async function readiness(bridge: BridgeProcess) {
  const res = await bridge.get('/readyz');
  return { status: res.status, reasons: (JSON.parse(res.body) as { reasons?: string[] }).reasons ?? [] };
}

describe('Redis over TLS with a password', () => {
  test('events are relayed end to end; config check and /status show TLS without the password', async () => {
    const file = writeConfig(world.config({ top: { redis: redisBlock() } }));
    const check = await runCli(['config', 'check', '--config', file], { env: { REDIS_PASSWORD: PASSWORD } });
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toContain(`redis: ${server.url} (TLS, password set)`);
    expect(check.stdout).not.toContain(PASSWORD);

    const bridge = await bridgeWith(redisBlock());
    await world.connected();
    await bridge.waitReady();
    const sent = [1, 2, 3].map((i) =>
      world.sim.sendMessage('tls-room', `over TLS ${i}`, { members: [BOT, 'alice'], sender: 'alice' }),
    );
    const bodies = await world.waitDelivered(sent.length, 'chat message');
    expect(bodies.map((b) => (b.data as { message: string }).message).sort()).toEqual(
      sent.map((m) => m.message).sort(),
    );
    const status = JSON.parse((await bridge.get('/status')).body) as { redis: Record<string, unknown> };
    expect(status.redis).toMatchObject({ topology: 'single', state: 'ok', endpoint: server.url });
    expect(JSON.stringify(status)).not.toContain(PASSWORD);
    await bridge.stop();
  });

  test('a wrong password: /readyz 503 naming WRONGPASS for 10 s, the process keeps running and holds events', async () => {
    const started = Date.now();
    const bridge = await bridgeWith(redisBlock(), 'not-the-password');
    await world.connected();
    await waitFor(async () => (await readiness(bridge)).reasons.some((r) => r.includes('WRONGPASS')), {
      timeoutMs: 10_000,
      what: '/readyz naming WRONGPASS',
    });
    world.sim.sendMessage('tls-room', 'held while Redis refuses us', {
      members: [BOT, 'alice'],
      sender: 'alice',
    });
    const until = Date.now() + 10_000;
    let buffered = 0;
    while (Date.now() < until) {
      const { status, reasons } = await readiness(bridge);
      expect(status).toBe(503);
      expect(reasons.join('\n')).toMatch(/^redis: .*WRONGPASS/m);
      expect(bridge.exitCode).toBeUndefined();
      const body = JSON.parse((await bridge.get('/status')).body) as {
        ingest?: { buffered: number };
        redis: { state: string; error?: string };
      };
      expect(body.redis).toMatchObject({ state: 'unreachable', error: expect.stringMatching(/WRONGPASS/) });
      buffered = Math.max(buffered, body.ingest?.buffered ?? 0);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(buffered).toBeGreaterThan(0);
    // Logged with the cause, and throttled: a line per 5 s per cause, not one per reconnect attempt.
    const named = bridge.records().filter((r) => /^redis: .*WRONGPASS/.test(String(r.msg)));
    expect(named.length).toBeGreaterThan(0);
    expect(named.length).toBeLessThanOrEqual(2 * Math.ceil((Date.now() - started) / 5_000) + 1);
    expect(bridge.logs.join('\n')).not.toContain('not-the-password');
    await bridge.stop('SIGKILL');
  });

  test('a CA that did not sign the server certificate is named as such in /readyz', async () => {
    const bridge = await bridgeWith(redisBlock({ tls: { ca: server.certs.otherCa } }));
    const reasons = await waitFor(
      async () => {
        const { reasons } = await readiness(bridge);
        return reasons.some((r) => r.includes('TLS')) ? reasons : undefined;
      },
      { timeoutMs: 10_000, what: '/readyz naming the certificate problem' },
    );
    expect(reasons.join('\n')).toMatch(
      /^redis: .*TLS: server certificate not trusted \(check redis\.tls\.ca\)/m,
    );
    expect(bridge.exitCode).toBeUndefined();
    await bridge.stop('SIGKILL');
  });

  test('dlq list with a wrong password exits 2 within 10 s naming WRONGPASS, without the password', async () => {
    const file = writeConfig(world.config({ top: { redis: redisBlock() } }));
    const started = Date.now();
    const result = await runCli(['dlq', 'list', '--config', file], {
      env: { REDIS_PASSWORD: 'wrong-dlq-secret' },
      timeoutMs: 20_000,
    });
    expect(result.code, result.stderr).toBe(2);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^fatal: cannot use Redis at rediss:\/\/127\.0\.0\.1:\d+: WRONGPASS/);
    expect(result.stderr).not.toContain('wrong-dlq-secret');
  });
});
