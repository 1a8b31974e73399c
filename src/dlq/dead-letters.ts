import { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { destinationsOf } from '../config/destinations.js';
import type { BridgeConfig } from '../config/schema.js';
import { RedisUnavailableError, UnknownDestinationError } from '../errors.js';
import { attemptsOf, isBatch, type DeliveryEvent, type DeliveryJobData } from '../queue/job.js';
import { quarantineKey } from '../queue/names.js';
export { formatDeadLetters, formatReplay } from './format.js';
import { createProducerConnection, redisEndpoint } from '../queue/redis.js';
import { describeError } from '../lifecycle/describe-error.js';

/** Jobs read or replayed per Redis round of work, so a million dead letters never sit in memory at once. */
const PAGE = 500;
/** Entries `dlq list` shows per destination (and from quarantine) as text unless told otherwise; totals are always exact. */
export const DEFAULT_TEXT_LIMIT = 100;

/** How long `dlq list|replay` waits for Redis before giving up with a clear error. */
export const CONNECT_TIMEOUT_MS = 5000;

export interface DeadLetterEntry {
  readonly destination: string;
  /** Event id (a webhook's `webhook-id`, a broker message's id), the same after replay. */
  readonly id: string;
  readonly jobId: string;
  readonly type: string;
  readonly account: string;
  readonly attempts: number;
  /** Why the last attempt failed: `HTTP 410 Gone`, `HTTP 500`, `timeout after 15000 ms`, ... */
  readonly lastError: string;
  /** ISO time the job was dead-lettered. */
  readonly failedAt: string;
  /** ms since `failedAt`. */
  readonly age: number;
}

export interface DestinationDeadLetters {
  readonly destination: string;
  readonly type: string;
  /** Every dead letter of this destination, even when `entries` stops at the limit. */
  readonly total: number;
  /** Newest first. */
  readonly entries: readonly DeadLetterEntry[];
}

export interface QuarantineEntry {
  readonly streamId: string;
  readonly account: string;
  readonly event: string;
  readonly reason: string;
  readonly size: number;
  /** Hex SHA-256 of the raw bytes, as in the `bridge.quarantined` event (empty for entries from before 0.2). */
  readonly sha256: string;
  /** The ids read from the payload, as in `bridge.quarantined`. */
  readonly ids: Readonly<Record<string, unknown>>;
  /** ISO time the payload was received. */
  readonly receivedAt: string;
}

export interface DeadLetterList {
  /** Newest entries skipped in every section before `entries` begin. */
  readonly offset: number;
  readonly destinations: readonly DestinationDeadLetters[];
  readonly quarantine: { readonly total: number; readonly entries: readonly QuarantineEntry[] };
}

export interface ReplayResult {
  readonly destinations: readonly {
    readonly destination: string;
    readonly type: string;
    readonly replayed: number;
    readonly failed: number;
  }[];
  readonly replayed: number;
  readonly failed: number;
}

/**
 * Dead letters per destination and quarantined payloads, newest first: after skipping `offset` of each,
 * up to `limit` of each (every one without a limit). Read a page at a time.
 */
export async function listDeadLetters(
  config: BridgeConfig,
  options: { destination?: string; limit?: number; offset?: number; now?: number } = {},
): Promise<DeadLetterList> {
  const offset = options.offset ?? 0;
  const limit = options.limit ?? Infinity;
  const now = options.now ?? Date.now();
  return withQueues(config, options.destination, async (connection, queues) => {
    const destinations = await Promise.all(
      queues.map(async ({ destination, type, queue }) => {
        const total = await queue.getFailedCount();
        const entries: DeadLetterEntry[] = [];
        const stop = Math.min(total, offset + limit);
        for (let start = offset; start < stop; start += PAGE) {
          const end = Math.min(start + PAGE, stop) - 1;
          const jobs = await queue.getJobs(['failed'], start, end, false);
          for (const job of jobs) if (job) entries.push(...toEntries(destination, job, now));
          if (jobs.length < end - start + 1) break;
        }
        return { destination, type, total, entries };
      }),
    );
    const key = quarantineKey(config.redis.prefix);
    const [total, entries] = await Promise.all([
      connection.xlen(key),
      readQuarantine(connection, key, offset, limit),
    ]);
    return { offset, destinations, quarantine: { total, entries } };
  });
}

/** Newest first; a stream has no offset, so the skipped entries are read and passed over, a page at a time. */
async function readQuarantine(
  connection: Redis,
  key: string,
  offset: number,
  limit: number,
): Promise<QuarantineEntry[]> {
  const entries: QuarantineEntry[] = [];
  let skip = offset;
  let before = '+';
  while (entries.length < limit) {
    const page = await connection.xrevrange(key, before, '-', 'COUNT', PAGE);
    for (const [streamId, fields] of page) {
      if (skip > 0) skip--;
      else if (entries.length < limit) entries.push(toQuarantine(streamId, fields));
    }
    if (page.length < PAGE) break;
    before = `(${page.at(-1)![0]}`;
  }
  return entries;
}

/**
 * Moves dead letters back to waiting with a fresh attempt count, so delivery starts over with the
 * full schedule and the same job (hence the same event id). All of a destination (or of every
 * destination), or only the jobs of one event id.
 */
export async function replayDeadLetters(
  config: BridgeConfig,
  options: { destination?: string; id?: string } = {},
): Promise<ReplayResult> {
  return withQueues(config, options.destination, async (connection, queues) => {
    const destinations = [];
    for (const { destination, type, queue } of queues) {
      const counts = options.id
        ? await replayPages(queue, pagesOf(await jobsOfEvent(connection, queue, options.id)))
        : await replayFailedSet(connection, queue);
      destinations.push({ destination, type, ...counts });
    }
    return {
      destinations,
      replayed: destinations.reduce((n, d) => n + d.replayed, 0),
      failed: destinations.reduce((n, d) => n + d.failed, 0),
    };
  });
}

/**
 * The failed set as it stood when replay began, a page at a time. Replayed jobs leave the set, so
 * each page starts after the ones that could not be moved; jobs that fail again during the replay
 * have a newer score and are not picked up twice.
 */
async function replayFailedSet(
  connection: Redis,
  queue: Queue,
): Promise<{ replayed: number; failed: number }> {
  const until = Date.now();
  const total = { replayed: 0, failed: 0 };
  while (true) {
    const page = await connection.zrangebyscore(failedKey(queue), '-inf', until, 'LIMIT', total.failed, PAGE);
    if (page.length === 0) return total;
    const counts = await replayPages(queue, [page]);
    total.replayed += counts.replayed;
    total.failed += counts.failed;
  }
}

async function replayPages(
  queue: Queue,
  pages: Iterable<string[]>,
): Promise<{ replayed: number; failed: number }> {
  let replayed = 0;
  let failed = 0;
  for (const page of pages) {
    const results = await Promise.allSettled(
      page.map(async (jobId) => {
        const job = await Job.fromId<DeliveryJobData>(queue, jobId);
        if (!job) throw new Error(`job ${jobId} vanished`);
        // A fresh start: no earlier tries counted, and a job born dead must now really be sent.
        if (
          !isBatch(job.data) &&
          (job.data.attemptsBefore !== undefined || job.data.deadLetter !== undefined)
        ) {
          const { attemptsBefore: _tried, deadLetter: _dead, ...event } = job.data;
          await job.updateData(event);
        }
        await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      }),
    );
    for (const r of results) {
      if (r.status === 'fulfilled') replayed++;
      else failed++;
    }
  }
  return { replayed, failed };
}

function* pagesOf(ids: readonly string[]): Generator<string[]> {
  for (let i = 0; i < ids.length; i += PAGE) yield ids.slice(i, i + PAGE);
}

function failedKey(queue: Queue): string {
  return queue.toKey('failed');
}

/** Job ids of one event in the failed set (normally one per destination). */
async function jobsOfEvent(connection: Redis, queue: Queue, eventId: string): Promise<string[]> {
  // Job ids are `<event id>-<random>`; escape glob characters so the id matches literally.
  const pattern = `${eventId.replace(/[*?[\]\\]/g, '\\$&')}-*`;
  const found = new Set<string>();
  let cursor = '0';
  do {
    const [next, members] = await connection.zscan(failedKey(queue), cursor, 'MATCH', pattern, 'COUNT', PAGE);
    cursor = next;
    for (let i = 0; i < members.length; i += 2) found.add(members[i]!);
  } while (cursor !== '0');
  return [...found];
}

interface DestinationQueue {
  readonly destination: string;
  readonly type: string;
  readonly queue: Queue<DeliveryJobData>;
}

async function withQueues<T>(
  config: BridgeConfig,
  only: string | undefined,
  fn: (connection: Redis, queues: DestinationQueue[]) => Promise<T>,
): Promise<T> {
  const all = destinationsOf(config);
  if (only !== undefined && !all.some((d) => d.id === only)) {
    const ids = all.map((d) => d.id).join(', ') || 'none';
    throw new UnknownDestinationError(`no destination has id "${only}" (configured: ${ids})`);
  }
  const connection = createProducerConnection(config.redis.url, { name: 'imkit-bridge-dlq' });
  const failed = firstError(connection, config.redis.url);
  const queues = all
    .filter((d) => only === undefined || d.id === only)
    .map((d): DestinationQueue => {
      const queue = new Queue<DeliveryJobData>(d.jobQueue, { connection, prefix: config.redis.prefix });
      queue.on('error', () => {});
      return { destination: d.id, type: d.type, queue };
    });
  try {
    await readyWithin(
      Promise.race([failed, Promise.all(queues.map(({ queue }) => queue.waitUntilReady()))]),
      CONNECT_TIMEOUT_MS,
      config.redis.url,
    );
    return await fn(connection, queues);
  } finally {
    await Promise.allSettled(queues.map(({ queue }) => queue.close()));
    connection.disconnect();
  }
}

export async function readyWithin(ready: Promise<unknown>, ms: number, url: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unavailable(url, `no answer within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([ready, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A one-shot command does not wait out an outage: an error before the connection is ready is the answer. */
export function firstError(connection: Redis, url: string): Promise<never> {
  const failed = new Promise<never>((_, reject) =>
    connection.once('error', (err: unknown) => reject(unavailable(url, describeError(err)))),
  );
  failed.catch(() => {});
  connection.on('error', () => {});
  return failed;
}

function unavailable(url: string, cause: string): RedisUnavailableError {
  return new RedisUnavailableError(`cannot use Redis at ${redisEndpoint(url)}: ${cause}`);
}

/**
 * A dead letter is normally one event job. A batch job lands here only if it could not record its
 * outcome time after time (stalled past BullMQ's limit); its events are listed one by one.
 */
function toEntries(destination: string, job: Job<DeliveryJobData>, now: number): DeadLetterEntry[] {
  const failedAt = job.finishedOn ?? job.timestamp;
  const common = {
    destination,
    jobId: job.id ?? '',
    lastError: job.failedReason ?? '',
    failedAt: new Date(failedAt).toISOString(),
    age: Math.max(0, now - failedAt),
  };
  const entry = ({ id, type, account }: DeliveryEvent, attempts: number): DeadLetterEntry => ({
    ...common,
    id,
    type,
    account,
    attempts,
  });
  const data = job.data;
  return isBatch(data)
    ? data.events.map((event) => entry(event, job.attemptsMade))
    : [entry(data, attemptsOf(data, job.attemptsMade))];
}

function toQuarantine(streamId: string, fields: string[]): QuarantineEntry {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
  const receivedAt = Number(map.get('receivedAt'));
  return {
    streamId,
    account: map.get('account') ?? '',
    event: map.get('event') ?? '',
    reason: map.get('reason') ?? '',
    size: Number(map.get('size') ?? 0),
    sha256: map.get('sha256') ?? '',
    ids: parseIds(map.get('ids')),
    receivedAt: Number.isFinite(receivedAt) ? new Date(receivedAt).toISOString() : '',
  };
}

function parseIds(text: string | undefined): Record<string, unknown> {
  try {
    const ids: unknown = JSON.parse(text ?? '{}');
    return ids !== null && typeof ids === 'object' ? (ids as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
