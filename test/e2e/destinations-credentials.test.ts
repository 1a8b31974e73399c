import { Redis } from 'ioredis';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { runCli, writeConfig, type BridgeProcess } from '../support/bridge-process.js';
import { NatsServer } from '../support/nats-server.js';
import { amqpUrl } from '../support/rabbitmq.js';
import { RedisServer, waitFor } from '../support/redis.js';
import { AmqpSink, BullmqSink, NatsSink, RedisStreamSink, type Sink } from './sinks.js';
import { World } from './world.js';

/** Secrets with characters a URL must encode, so both spellings are looked for. */
const NATS_PASSWORD = 'n@ts-pw:s3cret/1';
const NATS_TOKEN = 'nats-token-s3cret-2';
const AMQP_PASSWORD = 'amqp-wr0ng:pw@3';
const REDIS_PASSWORD = 'r3dis-pw-s3cret-4';
const WRONG_REDIS_PASSWORD = 'r3dis-wr0ng-s3cret-5';
const SECRETS = [NATS_PASSWORD, NATS_TOKEN, AMQP_PASSWORD, REDIS_PASSWORD, WRONG_REDIS_PASSWORD].flatMap(
  (s) => [s, encodeURIComponent(s)],
);

let world: World;
let nats: NatsServer;
let target: RedisServer;
let sinks: Sink[];

beforeEach(async () => {
  [world, nats, target] = await Promise.all([
    World.start(),
    NatsServer.start({ user: { name: 'bridge', password: NATS_PASSWORD } }),
    RedisServer.start(),
  ]);
  const admin = new Redis(target.url);
  await admin.config('SET', 'requirepass', REDIS_PASSWORD);
  admin.disconnect();
  const rabbit = new URL(amqpUrl());
  rabbit.password = encodeURIComponent(AMQP_PASSWORD);
  const natsWith = (auth: string) => `nats://${auth}@127.0.0.1:${nats.port}`;
  const redisWith = (password: string) => `redis://:${encodeURIComponent(password)}@127.0.0.1:${target.port}`;
  const reader = `redis://:${REDIS_PASSWORD}@127.0.0.1:${target.port}`;
  sinks = [
    // Right credentials: events flow.
    await NatsSink.create(
      'nats-user',
      natsWith(`bridge:${encodeURIComponent(NATS_PASSWORD)}`),
      nats.clientOptions,
    ),
    new RedisStreamSink('redis-pass', reader, redisWith(REDIS_PASSWORD)),
    // Wrong ones: every attempt fails, and the failure is logged and shown.
    await NatsSink.create('nats-token', natsWith(NATS_TOKEN), nats.clientOptions),
    await AmqpSink.create('amqp-wrong', rabbit.toString()),
    new BullmqSink('bullmq-wrong', reader, redisWith(WRONG_REDIS_PASSWORD)),
  ];
});
afterEach(async () => {
  await world.close();
  await Promise.all(sinks.map((s) => s.close()));
  await Promise.all([nats.close(), target.close()]);
});

async function statusText(bridge: BridgeProcess): Promise<string> {
  return (await bridge.get('/status')).body;
}

test('broker credentials in URLs never appear in logs (debug), /status, /metrics, config check or dlq list', async () => {
  const config = world.config({
    top: { webhooks: [], destinations: sinks.map((s) => s.entry()), log: { level: 'debug' } },
  });
  const bridge = await world.bridge(config);
  await world.connected();
  const rooms = world.emitTyping(3, 'cred');

  for (const sink of sinks.slice(0, 2)) {
    await waitFor(
      async () => {
        const landed = await sink.landed();
        return rooms.every((r) => landed.some((l) => l.body.includes(`"${r}"`)));
      },
      { timeoutMs: 20_000, what: `3 events through ${sink.id}` },
    );
  }
  const failing = ['nats-token', 'amqp-wrong', 'bullmq-wrong'];
  const status = await waitFor(
    async () => {
      const body = JSON.parse(await statusText(bridge)) as {
        destinations: { id: string; lastError?: { message: string } }[];
      };
      const errors = body.destinations.filter((d) => failing.includes(d.id) && d.lastError !== undefined);
      return errors.length === failing.length ? body : undefined;
    },
    { timeoutMs: 20_000, what: 'a lastError on every destination with wrong credentials' },
  );
  // The failures say why, so the check below is about real error text.
  const reasons = status.destinations.map((d) => `${d.id}: ${d.lastError?.message ?? ''}`).join('\n');
  expect(reasons).toMatch(/amqp-wrong: .*(ACCESS_REFUSED|403)/);
  expect(reasons).toMatch(/bullmq-wrong: .*WRONGPASS/);
  expect(reasons).toMatch(/nats-token: .*(auth|Authorization)/i);

  const file = writeConfig(config);
  const env = { BOT_TOKEN: world.token };
  const check = await runCli(['config', 'check', '--config', file], { env });
  expect(check.code, check.stderr).toBe(0);
  for (const sink of sinks) expect(check.stdout).toContain(sink.id);
  const dlq = await runCli(['dlq', 'list', '--config', file], { env });
  expect(dlq.code, dlq.stderr).toBe(0);

  const seen = {
    logs: bridge.logs.join('\n'),
    status: await statusText(bridge),
    metrics: (await bridge.get('/metrics')).body,
    configCheck: check.stdout + check.stderr,
    dlqList: dlq.stdout + dlq.stderr,
  };
  expect(seen.logs).toMatch(/ACCESS_REFUSED|WRONGPASS/);
  for (const [where, text] of Object.entries(seen)) {
    for (const secret of SECRETS) expect(text.includes(secret), `${where} shows ${secret}`).toBe(false);
  }
});
