import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { credentialsToHeader } from './headers.js';
import { KINDS, type AnyKind } from '../deliver/registry.js';
import { duration, httpUrl, requiredDuration } from './fields.js';

const redisUrl = z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' });
/** WAIT blocks the ingest connection; its bound stays well under the 5 s command timeout. */
const MIN_WAIT_TIMEOUT_MS = 10;
const MAX_WAIT_TIMEOUT_MS = 2_000;
const MAX_WAIT_REPLICAS = 5;

/** A PEM file, read at load: a missing or unreadable file is a config problem, not a connection error later. */
const pemFile = z
  .string()
  .min(1, 'must not be empty')
  .transform((file, ctx): { readonly file: string; readonly pem: string } => {
    try {
      return { file, pem: readFileSync(file, 'utf8') };
    } catch (err) {
      ctx.addIssue({
        code: 'custom',
        message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      });
      return z.NEVER;
    }
  });

/**
 * `redis:`: exactly one of `url` (one server), `sentinels` + `name` (Redis Sentinel) or `cluster`
 * (seed nodes), with an optional password and TLS for every node; docs/configuration.md.
 */
const redis = z
  .strictObject({
    url: redisUrl.optional(),
    sentinels: z.array(redisUrl).min(1, 'list at least one sentinel').optional(),
    name: z.string().min(1, 'must not be empty').optional(),
    cluster: z.array(redisUrl).min(1, 'list at least one seed node').optional(),
    password: z.string().min(1, 'must not be empty').optional(),
    tls: z
      .strictObject({ ca: pemFile.optional(), cert: pemFile.optional(), key: pemFile.optional() })
      .optional(),
    waitReplicas: z.number().int().min(0).max(MAX_WAIT_REPLICAS).default(0),
    waitTimeout: duration('500ms').refine(
      (ms) => ms >= MIN_WAIT_TIMEOUT_MS && ms <= MAX_WAIT_TIMEOUT_MS,
      `must be between ${MIN_WAIT_TIMEOUT_MS}ms and ${MAX_WAIT_TIMEOUT_MS / 1000}s`,
    ),
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, ".", "_" or "-"')
      .default('imkit-bridge'),
  })
  .superRefine((value, ctx) => topologyProblems(value, ctx), { when: () => true });
const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'use 1-64 letters, digits, ".", "_" or "-"');

export const DEFAULT_RETRY_SCHEDULE = ['5s', '5m', '30m', '2h', '5h', '10h', '10h'];
const DEFAULT_REPEAT_WINDOW = '5s';
/** Under a Redis failover (about 3 s) a shorter lease would look like every member expiring at once. */
const MIN_LEASE_MS = 3_000;
const MAX_LEASE_MS = 600_000;
const MAX_COPIES = 64;
/**
 * REST catch-ups running at once per ingest process. A takeover of thousands of accounts starts a
 * catch-up for each; the checkpoints stay held until each has run, so waiting costs nothing but time.
 */
const DEFAULT_CATCH_UP_CONCURRENCY = 16;

/** `all`, or how many live ingest processes hold each account; a numeric string (from `${env:}`) counts. */
const copies = z.union([z.literal('all'), z.number(), z.string()]).transform((value, ctx): 'all' | number => {
  if (value === 'all') return value;
  const n = typeof value === 'number' ? value : /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_COPIES) {
    ctx.addIssue({ code: 'custom', message: `must be 'all' or a whole number from 1 to ${MAX_COPIES}` });
    return z.NEVER;
  }
  return n;
});

const account = z
  .strictObject({
    id: z.string().min(1, 'must not be empty'),
    token: z.string().min(1).optional(),
    tokenFile: z.string().min(1).optional(),
    issueToken: z.boolean().optional(),
    deviceId: z.string().min(1).optional(),
    encoding: z.enum(['none', 'base64', 'custom']).default('base64'),
    codec: z.string().min(1).optional(),
    events: z.array(z.string().min(1)).min(1).default(['*']),
    heartbeatTimeout: duration('30s'),
    catchUp: z.boolean().default(true),
  })
  .superRefine(
    (value, ctx) => {
      const sources = [value.token, value.tokenFile, value.issueToken ? true : undefined].filter(
        (s) => s !== undefined,
      );
      if (sources.length !== 1) {
        ctx.addIssue({
          code: 'custom',
          path: ['token'],
          message: `exactly one of token, tokenFile or issueToken: true is required (found ${sources.length})`,
        });
      }
      if (value.encoding === 'custom' && !value.codec) {
        ctx.addIssue({ code: 'custom', path: ['codec'], message: 'is required when encoding is custom' });
      }
      if (value.encoding !== 'custom' && value.codec) {
        ctx.addIssue({ code: 'custom', path: ['codec'], message: 'is only used with encoding: custom' });
      }
    },
    { when: () => true },
  )
  .transform((value) => ({ ...value, deviceId: value.deviceId ?? `imkit-bridge-${value.id}` }));

const concurrency = z.number().int().min(1).max(1000);
/**
 * Sends in flight per broker destination per process. A broker acknowledges in a fraction of a
 * millisecond to a few, on one connection, so the lane's permits (not CPU) bounded throughput at
 * 16: a NATS burst ran at 0.54 of a naive publisher at 16, 0.77 at 128 and 0.84 at 512, p99 at
 * 500/s unchanged (docs/performance.md).
 */
const BROKER_CONCURRENCY = 512;

/** Keys every destination has, whatever its type: which events it takes, pacing, retries, breaker. */
const laneKeys = {
  id: name,
  accounts: z.array(z.string().min(1)).min(1).default(['*']),
  events: z.array(z.string().min(1)).min(1).default(['*']),
  timeout: duration('15s'),
  concurrency: concurrency.default(16),
  rateLimit: z.strictObject({ max: z.number().int().min(1), duration: requiredDuration }).optional(),
  retry: z
    .strictObject({
      schedule: z.array(requiredDuration).max(50).prefault(DEFAULT_RETRY_SCHEDULE),
      jitter: z.number().min(0).max(1).default(0.2),
    })
    .prefault({}),
  breaker: z
    .strictObject({
      failures: z.number().int().min(1).default(10),
      cooldown: duration('30s'),
    })
    .prefault({}),
};

/** A `webhooks:` entry: the http kind's keys and the lane keys; credentials in the URL become a header. */
const webhook = KINDS.http.options.extend(laneKeys).transform(credentialsToHeader);

/** The kinds `destinations:` takes: every registered kind but http, which `webhooks:` lists. */
const brokerKinds = (Object.values(KINDS) as AnyKind[]).filter((kind) => kind.type !== KINDS.http.type);
const brokerTypes = brokerKinds.map((kind) => kind.type);

/** A `destinations:` entry: its kind's keys (by `type`) and the lane keys. */
const destination = z.discriminatedUnion(
  'type',
  brokerKinds.map((kind) =>
    kind.options.extend({
      type: z.literal(kind.type),
      ...laneKeys,
      concurrency: concurrency.default(BROKER_CONCURRENCY),
    }),
  ) as [z.ZodObject<{ type: z.ZodLiteral<string> } & typeof laneKeys>],
  {
    error: (issue) =>
      issue.code === 'invalid_union'
        ? `must be one of ${brokerTypes.join(', ') || '(none registered)'}; http destinations go under webhooks:`
        : undefined,
  },
);

export const configSchema = z
  .strictObject({
    redis,
    server: z
      .strictObject({
        host: z.string().min(1).default('0.0.0.0'),
        port: z.number().int().min(0).max(65535).default(9464),
        // Probes, a Prometheus scrape and an operator need a handful; the cap bounds the file handles
        // an idle-connection flood can take from webhook delivery.
        maxConnections: z.number().int().min(4).max(10_000).default(64),
        // Headers and body of a request must arrive within this; an idle connection is closed after it.
        requestTimeout: duration('5s').refine((ms) => ms >= 100, 'must be at least 100ms'),
        adminToken: z.string().min(16, 'use at least 16 characters').optional(),
        // A console login lasts this long; sessions live in memory only (a restart ends them).
        sessionTimeout: duration('8h').refine((ms) => ms >= 60_000, 'must be at least 1m'),
      })
      .prefault({}),
    imkit: z.strictObject({
      url: httpUrl,
      clientKey: z.string().min(1).optional(),
      apiKey: z.string().min(1).optional(),
    }),
    accounts: z.array(account).min(1, 'configure at least one account'),
    webhooks: z.array(webhook).default([]),
    destinations: z.array(destination).default([]),
    dedupWindow: duration('10m'),
    repeatWindow: duration(DEFAULT_REPEAT_WINDOW).refine((ms) => ms > 0, 'must be more than 0'),
    shutdownTimeout: duration('25s'),
    ingest: z
      .strictObject({
        copies: copies.default('all'),
        lease: duration('15s').refine(
          (ms) => ms >= MIN_LEASE_MS && ms <= MAX_LEASE_MS,
          `must be between ${MIN_LEASE_MS / 1000}s and ${MAX_LEASE_MS / 60_000}m`,
        ),
        catchUpConcurrency: z.number().int().min(1).max(1000).default(DEFAULT_CATCH_UP_CONCURRENCY),
      })
      .prefault({}),
    limits: z
      .strictObject({
        // Defaults and their reasons: docs/operations.md "Payload limits and quarantine".
        maxPayloadBytes: z.number().int().min(1024).default(4_194_304),
        // At most 1000: the body is serialised recursively (JSON.stringify), which fails near 4000.
        maxJsonDepth: z.number().int().min(2).max(1000).default(256),
        bufferEvents: z.number().int().min(1).default(50_000),
      })
      .prefault({}),
    log: z
      .strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info') })
      .prefault({}),
  })
  // Runs even when other fields failed, so one `config check` lists every problem; hence the guards.
  .superRefine(
    (config, ctx) => {
      const accounts: unknown[] = Array.isArray(config.accounts) ? config.accounts : [];
      const accountIds = new Set<string>();
      accounts.forEach((a, i) => {
        const { id, issueToken } = (a ?? {}) as { id?: unknown; issueToken?: unknown };
        if (typeof id !== 'string') return;
        if (accountIds.has(id)) {
          ctx.addIssue({
            code: 'custom',
            path: ['accounts', i, 'id'],
            message: `duplicate account id "${id}"`,
          });
        }
        accountIds.add(id);
        if (issueToken === true && !config.imkit?.apiKey) {
          ctx.addIssue({
            code: 'custom',
            path: ['accounts', i, 'issueToken'],
            message: 'needs imkit.apiKey to issue tokens',
          });
        }
      });
      // Ids name queues, metrics and `dlq --destination`: unique across both lists.
      const firstPathOf = new Map<string, string>();
      for (const list of ['webhooks', 'destinations'] as const) {
        const entries: unknown[] = Array.isArray(config[list]) ? config[list] : [];
        entries.forEach((entry, i) => {
          const { id, accounts: names } = (entry ?? {}) as { id?: unknown; accounts?: unknown };
          if (typeof id === 'string') {
            const first = firstPathOf.get(id);
            if (first !== undefined) {
              ctx.addIssue({
                code: 'custom',
                path: [list, i, 'id'],
                message: `duplicate destination id "${id}" (also ${first})`,
              });
            } else firstPathOf.set(id, `${list}[${i}].id`);
          }
          if (list === 'destinations') keyspaceProblems(entry, i, config.redis, ctx);
          if (!Array.isArray(names)) return;
          names.forEach((name, j) => {
            if (typeof name === 'string' && name !== '*' && !accountIds.has(name)) {
              ctx.addIssue({
                code: 'custom',
                path: [list, i, 'accounts', j],
                message: `no account has id "${name}"`,
              });
            }
          });
        });
      }
    },
    { when: () => true },
  )
  .superRefine(
    ({ repeatWindow, dedupWindow }, ctx) => {
      // A copy is recognised by a record kept for dedupWindow: a longer repeat window would outlive it.
      if (typeof repeatWindow === 'number' && typeof dedupWindow === 'number' && repeatWindow > dedupWindow) {
        ctx.addIssue({
          code: 'custom',
          path: ['repeatWindow'],
          message: `must not be longer than dedupWindow (${dedupWindow} ms); unset, it is ${DEFAULT_REPEAT_WINDOW}`,
        });
      }
    },
    { when: () => true },
  );

interface RedisShape {
  url?: unknown;
  sentinels?: unknown;
  name?: unknown;
  cluster?: unknown;
  password?: unknown;
  tls?: unknown;
  prefix?: unknown;
}

/** One problem per line: which topology, and whether its URLs, name, password and TLS agree. */
function topologyProblems(redis: RedisShape, ctx: z.core.$RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: 'custom', path, message });
  const chosen = (['url', 'sentinels', 'cluster'] as const).filter((key) => redis[key] !== undefined);
  if (chosen.length !== 1) {
    const found = chosen.length === 0 ? 'none' : chosen.join(' and ');
    issue([], `exactly one of url, sentinels or cluster is required (found ${found})`);
  }
  if (redis.sentinels !== undefined && redis.name === undefined)
    issue(['name'], "is required with sentinels: the master's name the sentinels know");
  if (redis.sentinels === undefined && redis.name !== undefined)
    issue(['name'], 'is only used with sentinels');
  const urls = (key: 'url' | 'sentinels' | 'cluster'): [number | undefined, URL][] => {
    const value = redis[key];
    const list = Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
    return list.flatMap((u, i) => {
      if (typeof u !== 'string' || !URL.canParse(u)) return [];
      return [[Array.isArray(value) ? i : undefined, new URL(u)]];
    });
  };
  const all = [...urls('url'), ...urls('sentinels'), ...urls('cluster')];
  const schemes = new Set(all.map(([, u]) => u.protocol));
  for (const key of ['sentinels', 'cluster'] as const) {
    if (new Set(urls(key).map(([, u]) => u.protocol)).size > 1)
      issue([key], 'mixes redis:// and rediss://; use one scheme for every node');
    const passwords = new Set(
      urls(key).flatMap(([, u]) => (u.password ? [decodeURIComponent(u.password)] : [])),
    );
    if (
      typeof redis.password === 'string'
        ? [...passwords].some((p) => p !== redis.password)
        : passwords.size > 1
    )
      issue(
        [key],
        'carries credentials that differ from redis.password; set the password once, in redis.password',
      );
  }
  for (const [i, url] of urls('cluster')) {
    if (url.pathname !== '' && url.pathname !== '/')
      issue(['cluster', i!], 'takes no /db: a cluster has only database 0');
  }
  for (const [i, url] of urls('sentinels')) {
    if (url.pathname !== '' && url.pathname !== '/')
      issue(['sentinels', i!], 'takes no /db: the database is that of the master, not of a sentinel');
  }
  const tls = (redis.tls ?? undefined) as { cert?: unknown; key?: unknown } | undefined;
  if (tls !== undefined && schemes.size > 0 && !schemes.has('rediss:'))
    issue(['tls'], 'needs rediss:// URLs (TLS is chosen by the scheme)');
  if (tls && (tls.cert === undefined) !== (tls.key === undefined))
    issue(
      ['tls', tls.cert === undefined ? 'cert' : 'key'],
      'cert and key come together (a client certificate)',
    );
}

/** A destination that writes to the bridge's own Redis must keep out of the bridge's keys. */
function keyspaceProblems(
  entry: unknown,
  index: number,
  redis: RedisShape | undefined,
  ctx: z.core.$RefinementCtx,
): void {
  const { type } = (entry ?? {}) as { type?: unknown };
  const kind = brokerKinds.find((k) => k.type === type);
  if (!kind?.keyspaceProblem || typeof redis?.prefix !== 'string') return;
  const bridge = bridgeKeyspace(redis);
  if (!bridge) return;
  // Checked only on an entry whose own keys are valid (their defaults applied); the rest is reported anyway.
  const options = z.object(kind.options.shape).safeParse(entry);
  if (!options.success) return;
  const problem = kind.keyspaceProblem(options.data, { ...bridge, prefix: redis.prefix });
  if (problem)
    ctx.addIssue({
      code: 'custom',
      path: ['destinations', index, ...problem.path],
      message: problem.message,
    });
}

/** Where the bridge's own keys live, as a destination sees it (`sharesBridgeKeyspace`). */
function bridgeKeyspace(redis: RedisShape): { url?: string; cluster?: boolean } | undefined {
  if (typeof redis.url === 'string') return { url: redis.url };
  if (Array.isArray(redis.cluster)) return { cluster: true };
  return Array.isArray(redis.sentinels) ? {} : undefined;
}

type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export type BridgeConfig = DeepReadonly<z.output<typeof configSchema>>;
export type AccountConfig = BridgeConfig['accounts'][number];
export type WebhookConfig = BridgeConfig['webhooks'][number];
/** The keys every destination has, whatever its type (durations in ms). */
export type LaneConfig = DeepReadonly<z.output<z.ZodObject<typeof laneKeys>>>;
