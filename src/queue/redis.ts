import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { BridgeConfig } from '../config/schema.js';
import { formatDuration } from '../config/duration.js';
import { describeError } from '../lifecycle/describe-error.js';
import { keySlot } from './slot.js';

export { keySlot } from './slot.js';

/** What the bridge talks to: one server or a Sentinel-managed master (`Redis`), or a Redis Cluster. BullMQ takes both. */
export type RedisClient = Redis | Cluster;

export type RedisTopology = 'single' | 'sentinel' | 'cluster';

export interface RedisAddress {
  readonly host: string;
  readonly port: number;
}

/** PEM text read from `redis.tls` at config load. */
export interface RedisTls {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/**
 * `redis:` resolved once: which topology, where, and how to authenticate. Every connection the bridge
 * opens (queues, workers, checkpoints, quarantine, membership, the CLI) is made from it.
 */
export interface RedisSettings {
  readonly topology: RedisTopology;
  readonly prefix: string;
  /** Replicas that must hold what ingest landed before it forgets it (0: not waited for). */
  readonly waitReplicas: number;
  readonly waitTimeoutMs: number;
  /** single: the server; sentinel: the sentinels; cluster: the seed nodes. */
  readonly addresses: readonly RedisAddress[];
  /** sentinel: the master's name. */
  readonly name?: string;
  /** single and sentinel (cluster has only db 0). */
  readonly db: number;
  readonly username?: string;
  /** For data nodes and sentinels alike. */
  readonly password?: string;
  /** Set with rediss:// URLs; an empty object trusts the system CAs. */
  readonly tls?: RedisTls;
  /** One line without secrets: `sentinel "mymaster" via 3 sentinels (TLS, password set)`. */
  describe(): string;
  /** Where, for messages: `redis://127.0.0.1:6379/0`, `sentinel "mymaster"`, `cluster 10.0.0.1:6379, …`. */
  endpoint(): string;
}

/** Reconnect forever: 50 ms doubling to 2 s. Redis outages end; the bridge must outlive them. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 6), 2_000);
}

const CONNECT_TIMEOUT_MS = 5_000;
/** A Redis that accepts the TCP connection but stops answering must not stall ingest forever (above waitTimeout's 2 s cap). */
const COMMAND_TIMEOUT_MS = 5_000;
const SLOTS_REFRESH_TIMEOUT_MS = 2_000;

const resolved = new WeakMap<BridgeConfig['redis'], RedisSettings>();

/** Resolves `config.redis` (already validated by the schema) into the settings every connection is made from. */
export function redisSettings(redis: BridgeConfig['redis']): RedisSettings {
  let settings = resolved.get(redis);
  if (!settings) resolved.set(redis, (settings = resolve(redis)));
  return settings;
}

function resolve(redis: BridgeConfig['redis']): RedisSettings {
  const urls = redis.url !== undefined ? [redis.url] : (redis.sentinels ?? redis.cluster ?? []);
  const topology: RedisTopology = redis.sentinels ? 'sentinel' : redis.cluster ? 'cluster' : 'single';
  const parsed = urls.map((u) => new URL(u));
  const first = parsed[0];
  const fromUrl = (part: string | undefined) => (part ? decodeURIComponent(part) : undefined);
  const password = redis.password ?? fromUrl(first?.password);
  const username = fromUrl(first?.username);
  const secure = first?.protocol === 'rediss:';
  const tls: RedisTls | undefined = secure
    ? Object.freeze({
        ...(redis.tls?.ca ? { ca: redis.tls.ca.pem } : {}),
        ...(redis.tls?.cert ? { cert: redis.tls.cert.pem } : {}),
        ...(redis.tls?.key ? { key: redis.tls.key.pem } : {}),
      })
    : undefined;
  const addresses = parsed.map((u) => Object.freeze({ host: hostOf(u), port: Number(u.port || 6379) }));
  const db = topology === 'cluster' ? 0 : Number(first?.pathname.replace(/^\//, '') || 0);
  const where = addresses.map((a) => `${a.host}:${a.port}`);
  const endpoint = () => {
    if (topology === 'single') return redisEndpoint(redis.url!);
    if (topology === 'sentinel') return `sentinel "${redis.name}" via ${where.join(', ')}`;
    return `cluster ${where.join(', ')}`;
  };
  const describe = () => {
    const notes = [...(secure ? ['TLS'] : []), ...(password !== undefined ? ['password set'] : [])];
    const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
    const what =
      topology === 'single'
        ? redisEndpoint(redis.url!)
        : topology === 'sentinel'
          ? `sentinel "${redis.name}" via ${plural(where.length, 'sentinel')} (${where.join(', ')})`
          : `cluster via ${plural(where.length, 'seed node')} (${where.join(', ')})`;
    const wait =
      redis.waitReplicas > 0
        ? `, waitReplicas ${redis.waitReplicas} within ${formatDuration(redis.waitTimeout)}`
        : '';
    return `${what}${notes.length > 0 ? ` (${notes.join(', ')})` : ''}${wait}`;
  };
  return Object.freeze({
    topology,
    prefix: redis.prefix,
    waitReplicas: redis.waitReplicas,
    waitTimeoutMs: redis.waitTimeout,
    addresses: Object.freeze(addresses),
    ...(redis.name !== undefined ? { name: redis.name } : {}),
    db,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(tls ? { tls } : {}),
    describe,
    endpoint,
  });
}

/** Settings for one server at `url` with the defaults of everything else (tools, tests, benchmarks). */
export function redisSettingsFromUrl(url: string, prefix = 'imkit-bridge'): RedisSettings {
  return resolve({ url, prefix, waitReplicas: 0, waitTimeout: 500 });
}

/** `[::1]` in a URL is `::1` to a socket. */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

/**
 * Producer side (ingest enqueues, quarantine, checkpoints, admin reads, the CLI): per BullMQ's
 * production notes, fail fast while Redis is away so the caller can buffer and report not-ready
 * instead of hanging. Never throws and never waits: a wrong password is a reason, not a crash.
 */
export function producerConnection(
  settings: RedisSettings,
  name: string,
  /** A destination's client: connects on first use, and bounds connect and commands by its own timeout. */
  options: { lazyConnect?: boolean; timeoutMs?: number } = {},
): RedisClient {
  return connect(settings, name, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: options.timeoutMs ?? COMMAND_TIMEOUT_MS,
    ...(options.timeoutMs !== undefined ? { connectTimeout: options.timeoutMs } : {}),
    ...(options.lazyConnect ? { lazyConnect: true } : {}),
  });
}

/**
 * Worker side (BullMQ Workers, QueueEvents): blocking commands must wait out outages, which BullMQ
 * requires as `maxRetriesPerRequest: null` (on Cluster it reads it from `redisOptions`).
 */
export function workerConnection(settings: RedisSettings, name: string): RedisClient {
  return connect(settings, name, { maxRetriesPerRequest: null });
}

function connect(settings: RedisSettings, name: string, role: RedisOptions): RedisClient {
  const node: RedisOptions = {
    retryStrategy: reconnectDelay,
    connectTimeout: CONNECT_TIMEOUT_MS,
    connectionName: name,
    ...(settings.username !== undefined ? { username: settings.username } : {}),
    ...(settings.password !== undefined ? { password: settings.password } : {}),
    ...(settings.tls ? { tls: { ...settings.tls } } : {}),
    ...role,
  };
  const { lazyConnect, ...perNode } = node;
  if (settings.topology === 'cluster') {
    const options: ClusterOptions = {
      enableOfflineQueue: role.enableOfflineQueue ?? true,
      clusterRetryStrategy: reconnectDelay,
      slotsRefreshTimeout: SLOTS_REFRESH_TIMEOUT_MS,
      ...(lazyConnect ? { lazyConnect } : {}),
      redisOptions: perNode,
    };
    return new Cluster(
      settings.addresses.map((a): ClusterNode => ({ ...a })),
      options,
    );
  }
  if (settings.topology === 'sentinel') {
    return new Redis({
      ...node,
      db: settings.db,
      sentinels: settings.addresses.map((a) => ({ ...a })),
      name: settings.name!,
      ...(settings.username !== undefined ? { sentinelUsername: settings.username } : {}),
      ...(settings.password !== undefined ? { sentinelPassword: settings.password } : {}),
      ...(settings.tls ? { sentinelTLS: { ...settings.tls }, enableTLSForSentinelMode: true } : {}),
      sentinelRetryStrategy: reconnectDelay,
      // Follow a +switch-master at once: without it, a graceful failover left the client on the demoted
      // master for about 10 s, and most writes of that window were lost (docs/design/redis-topologies.md).
      failoverDetector: true,
    });
  }
  const [address] = settings.addresses;
  return new Redis({ ...node, host: address!.host, port: address!.port, db: settings.db });
}

/**
 * The connection to the node that holds `key` (its slot's master) on Cluster; the client itself
 * otherwise. WAIT must go there: it answers only for writes made on its own connection.
 *
 * Undefined while the slot map is unknown or names a node the client has dropped (a dead master).
 * Then, and whenever the node named has no live connection, the map is refreshed, so that a retry
 * finds the promoted replica. ioredis refreshes it only when a command is redirected or fails, and
 * a writer that asks here first sends none: a map read during the failover, before the promotion,
 * stayed stale for good and ingest stalled. A refresh can also reach a node that has not yet heard
 * of the failover and name the dead master again, which then waits unconnected in the pool (nodes
 * connect lazily): hence the second condition. ioredis runs one refresh at a time.
 */
export function masterFor(client: RedisClient, key: string): Redis | undefined {
  if (!(client instanceof Cluster)) return client;
  const address = client.slots[keySlot(key)]?.[0];
  const node =
    address === undefined
      ? undefined
      : client.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === address);
  if (node?.status !== 'ready') client.refreshSlotsCache();
  return node;
}

/** How long a specific cause (WRONGPASS, a certificate) outranks the generic texts that follow it. */
const SPECIFIC_FOR_MS = 10_000;

export interface RedisErrorContext {
  readonly settings: Pick<RedisSettings, 'topology' | 'name' | 'tls'>;
  /** What a cluster slot holds, for messages (`destination audit`). */
  readonly slotOwner?: (slot: number) => string | undefined;
  /** The sentinels' own errors seen since the last attempt (`failed to connect to sentinel …`). */
  readonly sentinelErrors?: readonly string[];
}

export interface ExplainedRedisError {
  readonly reason: string;
  /** Names a cause (password, certificate, master name); a generic text must not replace it. */
  readonly specific: boolean;
}

/**
 * One stable line for an ioredis error: the generic texts ("Connection is closed", "All sentinels
 * are unreachable. Retrying from scratch after 40ms") are rewritten into their cause, and retry
 * delays are dropped so that log throttling sees the same text every time.
 */
export function explainRedisError(err: unknown, context: RedisErrorContext): ExplainedRedisError {
  const text = describeError(err).replace(/ after \d+ ?ms\.?/g, '.');
  const last = (err as { lastNodeError?: unknown } | null)?.lastNodeError;
  const lastText = last === undefined ? '' : describeError(last);
  const both = lastText ? `${text} ${lastText}` : text;
  const specific = (reason: string) => ({ reason, specific: true });
  const node = (err as { node?: string } | null)?.node;
  const at = node ? `${node}: ` : '';

  const noMaster = /No such master with that name/.exec(both);
  if (noMaster) return specific(`sentinels: no master named "${context.settings.name ?? '?'}"`);
  if (/WRONGPASS|NOAUTH|invalid username-password/i.test(both))
    return specific(`${at}${/(WRONGPASS|NOAUTH)[^\n]*/.exec(both)?.[0]?.trim() ?? text}`);
  if (/cluster support disabled/.test(both))
    return specific('redis.cluster points at a server without cluster mode');
  const moved = /MOVED (\d+) (\S+)/.exec(both);
  if (/Too many Cluster redirections/.test(text) && moved) {
    const owner = context.slotOwner?.(Number(moved[1]));
    return specific(
      `cluster: slot ${moved[1]}${owner ? ` (${owner})` : ''} has no reachable master (${moved[2]})`,
    );
  }
  if (/CLUSTERDOWN/.test(both)) return specific('cluster down (a shard has no master; failover pending?)');
  if (
    /SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|CERT_SIGNATURE_FAILURE|self.signed certificate|unable to verify the first certificate/i.test(
      both,
    )
  )
    return specific(`${at}TLS: server certificate not trusted (check redis.tls.ca)`);
  if (/ERR_TLS_CERT_ALTNAME_INVALID|altnames/i.test(both))
    return specific(`${at}TLS: address not in the certificate (announced IPs need SANs)`);
  if (/CERTIFICATE_REQUIRED|certificate required/i.test(both))
    return specific(`${at}TLS: server requires a client certificate (redis.tls.cert/key)`);
  if (/CERT_HAS_EXPIRED|certificate has expired/i.test(both))
    return specific(`${at}TLS: server certificate has expired`);
  if (/All sentinels are unreachable/.test(text) && (context.sentinelErrors?.length ?? 0) > 0)
    return { reason: `sentinels unreachable: ${sentinelCauses(context.sentinelErrors!)}`, specific: false };
  if (/ECONNRESET/.test(both) && !context.settings.tls)
    return { reason: `${at}${text}; is the port TLS-only? (rediss:// vs redis://)`, specific: false };
  if (/ETIMEDOUT|wrong version number|WRONG_VERSION_NUMBER/i.test(both) && context.settings.tls)
    return { reason: `${at}${text}; is the port plain? (rediss:// vs redis://)`, specific: false };
  if (/ClusterAllFailedError|Failed to refresh slots cache/.test(both) && lastText)
    return { reason: `cluster: no seed node answered (${lastText})`, specific: false };
  return { reason: `${at}${text}`, specific: false };
}

/** `s1:26379 ECONNREFUSED, s2:26379 ECONNREFUSED` from `failed to connect to sentinel s1:26379 because connect ECONNREFUSED …`. */
function sentinelCauses(errors: readonly string[]): string {
  const byAddress = new Map<string, string>();
  for (const e of errors) {
    const m = /sentinel (\S+) because (.*)$/.exec(e);
    if (!m) continue;
    const code = /\b(E[A-Z]{3,}|WRONGPASS|NOAUTH)\b/.exec(m[2]!)?.[1] ?? m[2]!;
    byAddress.set(m[1]!, code);
  }
  if (byAddress.size === 0) return errors[errors.length - 1] ?? 'unknown';
  return [...byAddress].map(([address, code]) => `${address} ${code}`).join(', ');
}

/**
 * Keeps the current problem of a client, explained (see `explainRedisError`) and without retry
 * counters; a specific cause (WRONGPASS, a certificate) is kept for 10 s over the generic texts that
 * follow it. Forgotten once the client is ready. Also takes the place of an empty 'error' listener,
 * which ioredis requires to avoid logging to stderr.
 */
export function watchRedisErrors(
  client: RedisClient,
  settings: RedisSettings,
  options: {
    slotOwner?: (slot: number) => string | undefined;
    /** Called with each problem as it is recorded (repeats included), and with undefined once ready. */
    onProblem?: (reason: string | undefined) => void;
  } = {},
): () => string | undefined {
  let latest: ExplainedRedisError | undefined;
  let latestAt = 0;
  let sentinelErrors: string[] = [];
  const record = (err: unknown, nodeKey?: string) => {
    const withNode =
      nodeKey && typeof err === 'object' && err !== null ? Object.assign(err, { node: nodeKey }) : err;
    const explained = explainRedisError(withNode, {
      settings,
      sentinelErrors,
      ...(options.slotOwner ? { slotOwner: options.slotOwner } : {}),
    });
    const now = Date.now();
    if (!explained.specific && latest?.specific && now - latestAt < SPECIFIC_FOR_MS) return;
    latest = explained;
    latestAt = now;
    options.onProblem?.(explained.reason);
  };
  client.on('error', (err: unknown) => {
    record(err);
    sentinelErrors = [];
  });
  client.on('sentinelError', (err: unknown) => {
    sentinelErrors.push(describeError(err));
    if (sentinelErrors.length > 10) sentinelErrors.shift();
  });
  client.on('node error', (err: unknown, key: string) => record(err, key));
  client.on('ready', () => {
    if (latest !== undefined) options.onProblem?.(undefined);
    latest = undefined;
    sentinelErrors = [];
  });
  return () => latest?.reason;
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
 * would copy every script BullMQ defined on the connection onto itself, per call. On Cluster all
 * keys of one call must share a slot.
 */
export function perKeyFlagScript(
  connection: RedisClient,
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
