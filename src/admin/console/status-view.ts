/**
 * What the console reads from `/status` (AdminSource.status()), narrowed from its JSON shape. A field
 * that is missing (a worker-only process has no accounts, Redis away leaves no counts) reads as
 * undefined and shows as a dash.
 */
export interface AccountView {
  readonly id: string;
  readonly state: string;
  readonly since?: string;
  readonly lastEventAt?: string;
  readonly reconnects?: number;
  readonly lastError?: string;
}

export interface DestinationView {
  readonly id: string;
  readonly type: string;
  /** Where it sends, as `config check` shows it (no credentials). */
  readonly target: string;
  readonly waiting?: number;
  readonly active?: number;
  readonly delayed?: number;
  readonly dead?: number;
  readonly breaker?: string;
  readonly running?: boolean;
  readonly inFlight?: number;
  readonly lastError?: { readonly at: string; readonly message: string };
}

export interface StatusView {
  readonly version: string;
  readonly role: string;
  readonly uptimeSeconds?: number;
  /** `/status.redis`: reachability, topology (single, sentinel, cluster) and the explained problem. */
  readonly redis: string;
  readonly redisTopology?: string;
  readonly redisError?: string;
  readonly buffered?: number;
  readonly accounts: readonly AccountView[];
  readonly destinations: readonly DestinationView[];
}

type Json = Record<string, unknown>;

function object(value: unknown): Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : {};
}

function list(value: unknown): Json[] {
  return Array.isArray(value) ? value.map(object) : [];
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function count(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

export function statusView(status: unknown): StatusView {
  const s = object(status);
  const ingest = object(s.ingest);
  const redis = object(s.redis);
  return {
    version: text(s.version) ?? '',
    role: text(s.role) ?? '',
    uptimeSeconds: count(s.uptimeSeconds),
    redis: text(redis.state) ?? 'unknown',
    redisTopology: text(redis.topology),
    redisError: text(redis.error),
    buffered: count(ingest.buffered),
    accounts: list(s.accounts).map((a) => ({
      id: text(a.id) ?? '',
      state: text(a.state) ?? '',
      since: text(a.since),
      lastEventAt: text(a.lastEventAt),
      reconnects: count(a.reconnects),
      lastError: text(a.lastError),
    })),
    destinations: list(s.destinations).map((d) => {
      const lastError = object(d.lastError);
      const message = text(lastError.message);
      return {
        id: text(d.id) ?? '',
        type: text(d.type) ?? '',
        target: text(d.target) ?? '',
        waiting: count(d.waiting),
        active: count(d.active),
        delayed: count(d.delayed),
        dead: count(d.dead),
        breaker: text(d.breaker),
        running: typeof d.running === 'boolean' ? d.running : undefined,
        inFlight: count(d.inFlight),
        lastError: message === undefined ? undefined : { at: text(lastError.at) ?? '', message },
      };
    }),
  };
}
