import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect } from 'vitest';
import type { z } from 'zod';
import { createLogger, type Logger } from '../../src/lifecycle/logger.js';
import type {
  CommonDestinationConfig,
  Destination,
  DestinationKind,
  SendOutcome,
} from '../../src/deliver/destination.js';
import type { DeliveryEvent } from '../../src/queue/job.js';
import { RedisServer } from '../support/redis.js';
import { redisSettingsFromUrl } from '../../src/queue/redis.js';

/** Events shaped as ingest makes them: the webhook body serialised once, with awkward content. */
export function deliveryEvents(count: number, options: { types?: readonly string[] } = {}): DeliveryEvent[] {
  const run = randomBytes(4).toString('hex');
  const types = options.types ?? ['chat message', 'edit message', 'bridge.gap'];
  const base = Date.parse('2026-03-01T12:00:00.000Z');
  return Array.from({ length: count }, (_, i) => {
    const type = types[i % types.length]!;
    const id = `evt_${run}_${i}`;
    const receivedAt = base + i * 7;
    const room = type === 'chat message' ? `room ${i % 3}/é` : undefined;
    const data = { message: `héllo 😀 "${i}"\n\t\\`, room, n: i, nested: { a: [1, 2.5, null] } };
    const body = JSON.stringify({
      id,
      type,
      timestamp: new Date(receivedAt).toISOString(),
      account: 'audit-bot',
      data,
    });
    return { id, type, account: 'audit-bot', receivedAt, body, ...(room === undefined ? {} : { room }) };
  });
}

/** A logger whose every line (after pino's redaction) is kept for assertions. */
export function capturedLogger(): { logger: Logger; text(): string } {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (line: string) => lines.push(line) } });
  return { logger, text: () => lines.join('') };
}

export const silentLogger = (): Logger => createLogger({ level: 'silent' });

export const TEN_MINUTES = 600_000;

/** A destination of `kind` as the seam makes one: options parsed by the kind's schema, common keys added. */
export function destinationOf<T extends string, O extends z.ZodObject>(
  kind: DestinationKind<T, O>,
  raw: Record<string, unknown>,
  deps: { logger?: Logger; bridgeRedisUrl: string; dedupWindowMs?: number },
  common: Partial<CommonDestinationConfig> = {},
): Destination {
  const options = kind.options.parse(raw) as z.output<O>;
  return kind.create(
    { ...options, id: 'dest-test', timeout: 2_000, concurrency: 8, ...common },
    {
      logger: deps.logger ?? silentLogger(),
      bridgeRedis: redisSettingsFromUrl(deps.bridgeRedisUrl),
      dedupWindowMs: deps.dedupWindowMs ?? TEN_MINUTES,
    },
  );
}

/** What the lane does with a retry, reduced to its bones: send again shortly, until delivered. */
export async function sendUntilDelivered(
  destination: Destination,
  event: DeliveryEvent,
  deadlineMs = 20_000,
): Promise<SendOutcome> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const outcome = await destination.send(event, []);
    if (outcome.kind !== 'retry' || Date.now() > deadline) return outcome;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs `work` over `items` with at most `width` at a time. */
export async function inParallel<T, R>(
  items: readonly T[],
  width: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await work(items[i]!);
      }
    }),
  );
  return results;
}

/** A plain client for reading what landed (and for setting traps). */
export function reader(url: string): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  return client;
}

/**
 * With the target Redis paused for writes (`CLIENT PAUSE WRITE`), a send is cut off by the caller's
 * signal (aborted, promptly), by its own 400 ms timeout (retry), and at once by a signal that has
 * already fired; once Redis answers again, `slow` and `later` are sent until delivered.
 */
export async function expectCutOffWhilePaused(
  redis: Redis,
  destination: Destination,
  [slow, later, early]: readonly [DeliveryEvent, DeliveryEvent, DeliveryEvent],
): Promise<void> {
  await redis.call('CLIENT', 'PAUSE', '10000', 'WRITE');
  try {
    const controller = new AbortController();
    const started = Date.now();
    const pending = destination.send(slow, [controller.signal]);
    setTimeout(() => controller.abort(), 50);
    expect(await pending).toEqual({ kind: 'aborted' });
    expect(Date.now() - started).toBeLessThan(350);

    const timedStart = Date.now();
    expect(await destination.send(later, [])).toEqual({ kind: 'retry', reason: 'timeout after 400 ms' });
    expect(Date.now() - timedStart).toBeLessThan(1_500);

    expect(await destination.send(early, [AbortSignal.abort()])).toEqual({ kind: 'aborted' });
  } finally {
    await redis.call('CLIENT', 'UNPAUSE');
  }
  // What was cut off may still have landed; sending it again adds nothing.
  expect(await sendUntilDelivered(destination, slow)).toMatchObject({ kind: 'delivered' });
  expect(await sendUntilDelivered(destination, later)).toMatchObject({ kind: 'delivered' });
}

/**
 * A private redis-server for the suite with a user `bridge-user` whose password is `password`;
 * `url(pw)` is the URL a destination dials with `pw`.
 */
export function passwordTarget(password: string): { readonly server: RedisServer; url(pw: string): string } {
  let server: RedisServer | undefined;
  beforeAll(async () => {
    server = await RedisServer.start();
    const admin = reader(server.url);
    await admin.call('ACL', 'SETUSER', 'bridge-user', 'on', `>${password}`, '~*', '&*', '+@all');
    admin.disconnect();
  });
  afterAll(async () => {
    await server?.close();
  });
  return {
    get server() {
      return server!;
    },
    url: (pw) => `redis://bridge-user:${pw}@127.0.0.1:${server!.port}`,
  };
}

/**
 * A wrong password and a stopped target are retries whose reasons and log lines name the cause
 * (WRONGPASS, the error code) and never the password. `make` builds a destination for a URL.
 */
export async function expectPasswordNeverShown(
  target: ReturnType<typeof passwordTarget>,
  password: string,
  make: (url: string, logger: Logger) => Destination,
): Promise<void> {
  const logs = capturedLogger();
  const [first, second] = deliveryEvents(2);

  const refused = make(target.url(`${password}-wrong`), logs.logger);
  await refused.connect();
  const refusal = await refused.send(first!, []);
  expect(refusal).toMatchObject({ kind: 'retry' });

  const good = make(target.url(password), logs.logger);
  expect(await good.send(first!, [])).toMatchObject({ kind: 'delivered' });
  await target.server.stop();
  const down = await good.send(second!, []);
  expect(down).toMatchObject({ kind: 'retry' });
  await target.server.startProcess();

  for (const text of [JSON.stringify([refusal, down]), logs.text()]) expect(text).not.toContain(password);
  expect(logs.text()).toContain('WRONGPASS');
  expect(logs.text()).toContain('BRIDGE_ERR_DESTINATION_UNREACHABLE');
}
