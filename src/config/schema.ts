import { z } from 'zod';
import { credentialsToHeader } from './headers.js';
import { KINDS, type AnyKind } from '../deliver/registry.js';
import { duration, httpUrl, requiredDuration } from './fields.js';

const redisUrl = z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' });
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
    redis: z.strictObject({
      url: redisUrl,
      prefix: z
        .string()
        .regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, ".", "_" or "-"')
        .default('imkit-bridge'),
    }),
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

/** A destination that writes to the bridge's own Redis must keep out of the bridge's keys. */
function keyspaceProblems(
  entry: unknown,
  index: number,
  redis: { url?: unknown; prefix?: unknown } | undefined,
  ctx: z.core.$RefinementCtx,
): void {
  const { type } = (entry ?? {}) as { type?: unknown };
  const kind = brokerKinds.find((k) => k.type === type);
  if (!kind?.keyspaceProblem || typeof redis?.url !== 'string' || typeof redis.prefix !== 'string') return;
  // Checked only on an entry whose own keys are valid (their defaults applied); the rest is reported anyway.
  const options = z.object(kind.options.shape).safeParse(entry);
  if (!options.success) return;
  const problem = kind.keyspaceProblem(options.data, { url: redis.url, prefix: redis.prefix });
  if (problem)
    ctx.addIssue({
      code: 'custom',
      path: ['destinations', index, ...problem.path],
      message: problem.message,
    });
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
