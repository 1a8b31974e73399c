import { Redis, type RedisOptions } from 'ioredis';
import { describeError } from '../lifecycle/describe-error.js';

/** Reconnect forever: 50 ms doubling to 2 s. Redis outages end; the bridge must outlive them. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 6), 2_000);
}

/**
 * Producer side (ingest enqueues, quarantine, admin reads): per BullMQ's production notes, fail
 * fast while Redis is away so the caller can buffer and report not-ready instead of hanging.
 */
export function createProducerConnection(url: string, options: { name?: string } = {}): Redis {
  return new Redis(url, {
    ...common(options.name),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A Redis that accepts the TCP connection but stops answering must not stall ingest forever.
    commandTimeout: 5_000,
  });
}

/**
 * Worker side (BullMQ Workers, QueueEvents): blocking commands must wait out outages, which BullMQ
 * requires as `maxRetriesPerRequest: null`.
 */
export function createWorkerConnection(url: string, options: { name?: string } = {}): Redis {
  return new Redis(url, { ...common(options.name), maxRetriesPerRequest: null });
}

function common(name: string | undefined): RedisOptions {
  return {
    retryStrategy: reconnectDelay,
    connectTimeout: 5_000,
    ...(name ? { connectionName: name } : {}),
  };
}

/**
 * Keeps the latest connection error of a client, described in one line (`connect ECONNREFUSED
 * 127.0.0.1:6379`, `WRONGPASS …`, a certificate error): a command that fails while Redis is away
 * only says "Connection is closed". Forgotten once the client is ready again. Also takes the place
 * of an empty 'error' listener, which ioredis requires to avoid logging to stderr.
 */
export function trackConnectionErrors(connection: Redis): () => string | undefined {
  let latest: string | undefined;
  connection.on('error', (err: unknown) => (latest = describeError(err)));
  connection.on('ready', () => (latest = undefined));
  return () => latest;
}

/** `redis[s]://host:port/db` without user or password, for messages. */
export function redisEndpoint(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return 'the configured Redis URL';
  }
}

/**
 * A Lua script that answers 1 or 0 per item (a key, or an event with several keys), defined once
 * per connection (sent as EVALSHA). One command for a whole batch of items: an ioredis pipeline
 * would copy every script BullMQ defined on the connection onto itself, per call.
 */
export function perKeyFlagScript(
  connection: Redis,
  name: string,
  lua: string,
): (keys: readonly string[], ...args: (string | number)[]) => Promise<boolean[]> {
  if (!(name in connection)) connection.defineCommand(name, { lua });
  const command = (connection as unknown as Record<string, (...args: unknown[]) => Promise<number[]>>)[name]!;
  return async (keys, ...args) => {
    if (keys.length === 0) return [];
    const replies = await command.call(connection, keys.length, ...keys, ...args);
    return replies.map((reply) => reply === 1);
  };
}
