import { Redis } from 'ioredis';
import { z } from 'zod';
import { DestinationUnreachableError } from '../../errors.js';
import { describeError } from '../../lifecycle/describe-error.js';
import type { Logger } from '../../lifecycle/logger.js';
import type { BridgeKeyspace } from '../destination.js';
import {
  masterFor,
  producerConnection,
  reconnectDelay,
  redisEndpoint,
  type RedisClient,
  type RedisSettings,
} from '../../queue/redis.js';
import { replicaShortfall } from '../../queue/replication.js';

/** `url` of a destination that writes to Redis; absent means the bridge's own Redis. */
export const targetRedisUrl = z
  .url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' })
  .optional();

/** Where a destination writes, safe to show: the endpoint without credentials. */
export function targetDescription(url: string | undefined): string {
  return url === undefined ? "the bridge's Redis" : redisEndpoint(url);
}

/**
 * True when a destination's `url` (absent: the bridge's Redis) is the bridge's own keyspace: same
 * host, port and database. Two names for one server (`localhost`, `127.0.0.1`) are not recognised;
 * nor is a sentinel's or a cluster node's address named directly.
 */
export function sharesBridgeKeyspace(
  url: string | undefined,
  bridge: Omit<BridgeKeyspace, 'prefix'>,
): boolean {
  if (url === undefined) return true;
  if (bridge.url === undefined) return false;
  const a = keyspaceOf(url);
  return a !== undefined && a === keyspaceOf(bridge.url);
}

function keyspaceOf(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    const db = Number(parsed.pathname.replace(/^\//, '') || '0');
    return `${parsed.hostname.toLowerCase()}:${parsed.port || '6379'}/${db}`;
  } catch {
    return undefined;
  }
}

/**
 * The Redis a destination writes to, on a client of its own: it reconnects forever, fails fast
 * between reconnect attempts (a send then retries at once instead of waiting out its timeout),
 * bounds every command by the destination's `timeout`, and never lets a credential out in a reason
 * or a log line.
 */
export class RedisTarget {
  readonly client: RedisClient;
  private readonly secrets: readonly string[];
  private lastError: string | undefined;
  private outageLogged = false;
  private attempt: Promise<void> | undefined;
  /** The bridge's `waitReplicas` and `waitTimeout`, when the destination writes into the bridge's own Redis. */
  private readonly wait: { replicas: number; timeoutMs: number } | undefined;

  /** `target`: the destination's own `url`, or the bridge's Redis settings when it names none. */
  constructor(
    target: string | RedisSettings,
    timeoutMs: number,
    connectionName: string,
    private readonly log: Logger,
  ) {
    this.wait =
      typeof target !== 'string' && target.waitReplicas > 0
        ? { replicas: target.waitReplicas, timeoutMs: target.waitTimeoutMs }
        : undefined;
    if (typeof target === 'string') {
      this.secrets = credentialsOf(target);
      this.client = new Redis(target, {
        lazyConnect: true,
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        commandTimeout: timeoutMs,
        connectTimeout: timeoutMs,
        retryStrategy: reconnectDelay,
        connectionName,
      });
    } else {
      this.secrets = target.password === undefined ? [] : [target.password];
      this.client = producerConnection(target, connectionName, { lazyConnect: true, timeoutMs });
    }
    // ioredis reports every failed reconnect: one warning per outage, one info when it ends.
    this.client.on('error', (err: unknown) => {
      this.lastError = this.redact(describeError(err));
      if (this.outageLogged) return;
      this.outageLogged = true;
      // Not the client's error itself: ioredis attaches a failed AUTH's arguments (the password) to it.
      const unreachable = new DestinationUnreachableError(this.lastError);
      this.log.warn({ err: unreachable }, 'destination Redis unreachable; reconnecting, events wait');
    });
    this.client.on('ready', () => {
      this.lastError = undefined;
      if (this.outageLogged) this.log.info('destination Redis reachable again');
      this.outageLogged = false;
    });
  }

  /** Starts connecting; resolves once connected or once the first attempt failed (already logged). */
  async connect(): Promise<void> {
    if (this.client.status !== 'wait') return;
    await this.client.connect().catch(() => {});
  }

  /**
   * Undefined once the client can take a command, else why not. Waits (bounded by `signal`) only
   * while a connection attempt is under way; between attempts it answers at once.
   */
  async unusable(signal: AbortSignal): Promise<string | undefined> {
    const status = this.client.status;
    if (status === 'ready') return undefined;
    if (status === 'wait') void this.connect();
    else if (status !== 'connecting' && status !== 'connect') return this.notConnected();
    await untilAborted(this.attemptSettled(), signal);
    return this.client.status === 'ready' ? undefined : this.notConnected();
  }

  /**
   * After a write to `key` in the bridge's own Redis with `redis.waitReplicas`: undefined once enough
   * replicas hold this client's writes, else why not (the send is retried; its write is idempotent).
   * On Cluster the target key's shard is not the job's, so the job could complete while the write
   * it reports is lost in a failover. WAIT goes on the node connection that made the write.
   */
  async replicated(key: string): Promise<string | undefined> {
    if (!this.wait) return undefined;
    return replicaShortfall(masterFor(this.client, key), this.wait.replicas, this.wait.timeoutMs);
  }

  /** A command's failure in one line, credentials removed. */
  reason(err: unknown): string {
    return this.redact(describeError(err));
  }

  async close(): Promise<void> {
    if (this.client.status === 'ready') await this.client.quit().catch(() => {});
    this.client.disconnect();
  }

  /**
   * Resolves when the connection attempt under way is ready or has failed. One set of client
   * listeners per attempt, however many sends wait on it.
   */
  private attemptSettled(): Promise<void> {
    this.attempt ??= new Promise<void>((resolve) => {
      const done = () => {
        this.client.off('ready', done);
        this.client.off('close', done);
        this.client.off('end', done);
        this.attempt = undefined;
        resolve();
      };
      this.client.once('ready', done);
      this.client.once('close', done);
      this.client.once('end', done);
    });
    return this.attempt;
  }

  private notConnected(): string {
    return `not connected: ${this.lastError ?? this.client.status}`;
  }

  private redact(text: string): string {
    return this.secrets.reduce((out, secret) => out.split(secret).join('***'), text);
  }
}

/** Resolves when `signal` fires (at once if it has), or with `promise`, whichever comes first. */
function untilAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    void promise.then(done);
  });
}

/** The URL's password, raw and decoded; the user name too when it stands alone (a token). */
function credentialsOf(url: string): string[] {
  try {
    const parsed = new URL(url);
    const secret = parsed.password || parsed.username;
    return [secret, safeDecode(secret)].filter(
      (value, i, all) => value.length > 0 && all.indexOf(value) === i,
    );
  } catch {
    return [];
  }
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
