import { Job, Queue } from 'bullmq';
import { destinationsOf } from '../config/destinations.js';
import type { BridgeConfig } from '../config/schema.js';
import { RedisUnavailableError, UnknownDestinationError } from '../errors.js';
import { attemptsOf, eventsOf, isBatch, type DeliveryEvent, type DeliveryJobData } from '../queue/job.js';
import { quarantineKey } from '../queue/names.js';
export { formatDeadLetters, formatPurge, formatReplay } from './format.js';
import {
  masterFor,
  producerConnection,
  redisSettings,
  watchRedisErrors,
  type RedisClient,
  type RedisSettings,
} from '../queue/redis.js';
import { describeError } from '../lifecycle/describe-error.js';
import { replicaShortfall } from '../queue/replication.js';
import { audited, type Auditor } from './audit.js';
import {
  describeFilter,
  failedScoreRange,
  hasTypes,
  jobTypesMatch,
  streamIdRange,
  timeMatches,
  typeMatches,
  type BatchMatch,
  type DeadLetterFilter,
  type FilterDescription,
} from './filter.js';

/** Jobs read or replayed per Redis round of work, so a million dead letters never sit in memory at once. */
const PAGE = 500;
/** Quarantine entries read per round: each holds a raw payload, which may be several megabytes. */
const QUARANTINE_PAGE = 50;
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
  /** What was asked for; totals count only what matches it. */
  readonly filter: FilterDescription;
  readonly destinations: readonly DestinationDeadLetters[];
  readonly quarantine: { readonly total: number; readonly entries: readonly QuarantineEntry[] };
}

export interface PurgeResult {
  /** Nothing was removed: `matched` is what would be. */
  readonly dryRun: boolean;
  readonly filter: FilterDescription;
  readonly destinations: readonly {
    readonly destination: string;
    readonly type: string;
    readonly matched: number;
    readonly removed: number;
    readonly failed: number;
    readonly kept: number;
  }[];
  readonly matched: number;
  readonly removed: number;
  /** Matching dead letters that could not be removed. */
  readonly failed: number;
  /** Batch jobs left alone: only some of their events are of the filter's types. */
  readonly kept: number;
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
 * Dead letters per destination and quarantined payloads that match `filter`, newest first: after
 * skipping `offset` of each, up to `limit` of each (every one without a limit). A batch job counts as
 * one and shows only its events of the filter's types. Read a page at a time.
 */
export async function listDeadLetters(
  config: BridgeConfig,
  options: ListOptions = {},
): Promise<DeadLetterList> {
  const { limit = Infinity, offset = 0, ...filter } = options;
  return withQueues(config, filter.destination, async (connection, queues) => {
    const destinations = await listQueues(connection, queues, options);
    const quarantine = await readQuarantine(
      connection,
      quarantineKey(config.redis.prefix),
      filter,
      offset,
      limit,
    );
    return { offset, filter: describeFilter(filter), destinations, quarantine };
  });
}

type ListOptions = DeadLetterFilter & { limit?: number; offset?: number; now?: number };

/** `listDeadLetters` without the quarantine, whose entries hold raw payloads not worth reading here (the console). */
export async function listDestinationDeadLetters(
  config: BridgeConfig,
  options: ListOptions = {},
): Promise<Omit<DeadLetterList, 'quarantine'>> {
  const { offset = 0, ...filter } = options;
  return withQueues(config, filter.destination, async (connection, queues) => ({
    offset,
    filter: describeFilter(filter),
    destinations: await listQueues(connection, queues, options),
  }));
}

function listQueues(
  connection: RedisClient,
  queues: DestinationQueue[],
  options: ListOptions,
): Promise<DestinationDeadLetters[]> {
  const { limit = Infinity, offset = 0, now = Date.now(), ...filter } = options;
  return Promise.all(
    queues.map(async ({ destination, type, queue }) => ({
      destination,
      type,
      ...(await listFailed(connection, queue, filter, { offset, limit, now }, destination)),
    })),
  );
}

/** One dead letter as the console shows it: its entries plus the exact body each attempt sent. */
export interface DeadLetterDetail {
  readonly entries: readonly DeadLetterEntry[];
  /** Request bodies by event id, as serialised at ingest. */
  readonly bodies: Readonly<Record<string, string>>;
}

/** The dead letter `jobId` of `destination`, or undefined when it is not (or no longer) dead-lettered. */
export async function readDeadLetter(
  config: BridgeConfig,
  destination: string,
  jobId: string,
  now = Date.now(),
): Promise<DeadLetterDetail | undefined> {
  return withQueues(config, destination, async (connection, queues) => {
    const { queue } = queues[0]!;
    if ((await connection.zscore(failedKey(queue), jobId)) === null) return undefined;
    const job = await Job.fromId<DeliveryJobData>(queue, jobId);
    if (!job) return undefined;
    const bodies: Record<string, string> = {};
    for (const event of eventsOf(job.data)) bodies[event.id] = event.body;
    return { entries: toEntries(destination, job, now), bodies };
  });
}

/**
 * One destination's matching dead letters. Without a type filter the window's count is exact from
 * Redis and only the shown pages are read; with one, every job in the window is read (a page at a
 * time) to count the matches.
 */
async function listFailed(
  connection: RedisClient,
  queue: Queue<DeliveryJobData>,
  filter: DeadLetterFilter,
  page: { offset: number; limit: number; now: number },
  destination: string,
): Promise<{ total: number; entries: DeadLetterEntry[] }> {
  const { min, max } = failedScoreRange(filter);
  const entries: DeadLetterEntry[] = [];
  const show = (job: Job<DeliveryJobData>) =>
    entries.push(...toEntries(destination, job, page.now).filter((e) => typeMatches(filter, e.type)));
  const stop = page.offset + page.limit;
  if (!hasTypes(filter)) {
    const total = await connection.zcount(failedKey(queue), min, max);
    for (let start = page.offset; start < Math.min(total, stop); start += PAGE) {
      const ids = await connection.zrevrangebyscore(
        failedKey(queue),
        max,
        min,
        'LIMIT',
        start,
        Math.min(PAGE, stop - start),
      );
      for (const job of await jobsOf(queue, ids)) if (job) show(job);
      if (ids.length < PAGE) break;
    }
    return { total, entries };
  }
  let total = 0;
  for (let start = 0; ; start += PAGE) {
    const ids = await connection.zrevrangebyscore(failedKey(queue), max, min, 'LIMIT', start, PAGE);
    for (const job of await jobsOf(queue, ids)) {
      if (!job || !jobTypesMatch(filter, job.data, 'any')) continue;
      total++;
      if (total > page.offset && total <= stop) show(job);
    }
    if (ids.length < PAGE) return { total, entries };
  }
}

function jobsOf(
  queue: Queue<DeliveryJobData>,
  ids: readonly string[],
): Promise<(Job<DeliveryJobData> | undefined)[]> {
  return Promise.all(ids.map((id) => Job.fromId<DeliveryJobData>(queue, id)));
}

/**
 * Quarantine entries in the filter's window with its event types, newest first. A stream has no
 * offset, so skipped entries are read and passed over; without a filter XLEN is the total, with one
 * the window is read to the end to count it.
 */
export async function readQuarantine(
  connection: RedisClient,
  key: string,
  filter: DeadLetterFilter,
  offset: number,
  limit: number,
): Promise<{ total: number; entries: QuarantineEntry[] }> {
  const { start, end } = streamIdRange(filter);
  const filtered = hasTypes(filter) || filter.since !== undefined || filter.until !== undefined;
  const entries: QuarantineEntry[] = [];
  let matched = 0;
  let before = end;
  while (filtered || matched < offset + limit) {
    const page = await connection.xrevrange(key, before, start, 'COUNT', QUARANTINE_PAGE);
    for (const [streamId, fields] of page) {
      const entry = toQuarantine(streamId, fields);
      if (!typeMatches(filter, entry.event)) continue;
      matched++;
      if (matched > offset && entries.length < limit) entries.push(entry);
    }
    if (page.length < QUARANTINE_PAGE) break;
    before = `(${page.at(-1)![0]}`;
  }
  return { total: filtered ? matched : await connection.xlen(key), entries };
}

/**
 * Moves dead letters back to waiting with a fresh attempt count, so delivery starts over with the
 * full schedule and the same job (hence the same event id). Those that match the filter (a batch
 * job when any of its events does: filter.ts), or only the jobs of one event id among them. With an
 * auditor, logs who replayed what and how many.
 */
export async function replayDeadLetters(
  config: BridgeConfig,
  options: DeadLetterFilter & { id?: string; jobs?: readonly SelectedJob[]; audit?: Auditor } = {},
): Promise<ReplayResult> {
  const { id, jobs, audit, ...filter } = options;
  const destinations: ReplayResult['destinations'][number][] = [];
  const counts = () => ({
    replayed: destinations.reduce((n, d) => n + d.replayed, 0),
    failed: destinations.reduce((n, d) => n + d.failed, 0),
  });
  const what = {
    filter,
    ...(id !== undefined ? { id } : {}),
    ...(jobs ? { jobs: jobs.map((j) => `${j.destination}/${j.jobId}`) } : {}),
  };
  return audited(audit, 'dlq replay', what, counts, () =>
    withQueues(config, filter.destination, async (connection, queues) => {
      for (const { destination, type, queue } of queues) {
        const chosen = jobs?.filter((j) => j.destination === destination).map((j) => j.jobId);
        if (chosen?.length === 0) continue;
        const pass = new FailedSetPass(connection, queue, filter, 'any', replayJob);
        if (chosen) await pass.runIds(chosen);
        else if (id !== undefined) await pass.runIds(await jobsOfEvent(connection, queue, id));
        else await pass.run();
        destinations.push({ destination, type, replayed: pass.done, failed: pass.failed });
        if (pass.done > 0) await confirmReplicated(config, connection, queue, pass.done);
      }
      return { destinations, ...counts() };
    }),
  );
}

/** One dead letter picked by hand (the console's checkboxes): its destination and BullMQ job id. */
export interface SelectedJob {
  readonly destination: string;
  readonly jobId: string;
}

/** Attempts at WAIT before `dlq replay` gives up on `redis.waitReplicas`. */
const REPLAY_WAIT_ATTEMPTS = 5;

/**
 * With `redis.waitReplicas`, "replayed N" is said only once replicas hold the moves: a failover
 * could otherwise put the jobs back among the dead letters after the report.
 */
async function confirmReplicated(
  config: BridgeConfig,
  connection: RedisClient,
  queue: Queue<DeliveryJobData>,
  replayed: number,
): Promise<void> {
  const { waitReplicas, waitTimeoutMs } = redisSettings(config.redis);
  if (waitReplicas === 0) return;
  const node = masterFor(connection, `${config.redis.prefix}:${queue.name}:wait`);
  let short: string | undefined;
  for (let attempt = 0; attempt < REPLAY_WAIT_ATTEMPTS; attempt++) {
    short = await replicaShortfall(node, waitReplicas, waitTimeoutMs);
    if (short === undefined) return;
  }
  throw new RedisUnavailableError(
    `replayed ${replayed} dead letters of ${queue.name}, but ${short}: a failover now could undo the replay; run it again once the replicas are back`,
  );
}

/** A fresh start: no earlier tries counted, and a job born dead must now really be sent. */
async function replayJob(job: Job<DeliveryJobData>): Promise<void> {
  if (!isBatch(job.data) && (job.data.attemptsBefore !== undefined || job.data.deadLetter !== undefined)) {
    const { attemptsBefore: _tried, deadLetter: _dead, ...event } = job.data;
    await job.updateData(event);
  }
  await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
}

/**
 * Removes the dead letters that match the filter for good (a batch job only when all its events do:
 * filter.ts). With `dryRun` it only counts them. With an auditor, logs who removed what and how many.
 */
export async function purgeDeadLetters(
  config: BridgeConfig,
  options: DeadLetterFilter & { dryRun?: boolean; audit?: Auditor } = {},
): Promise<PurgeResult> {
  const { dryRun = false, audit, ...filter } = options;
  const destinations: PurgeResult['destinations'][number][] = [];
  const counts = () => ({
    matched: destinations.reduce((n, d) => n + d.matched, 0),
    removed: destinations.reduce((n, d) => n + d.removed, 0),
    failed: destinations.reduce((n, d) => n + d.failed, 0),
    kept: destinations.reduce((n, d) => n + d.kept, 0),
  });
  return audited(dryRun ? undefined : audit, 'dlq purge', { filter }, counts, () =>
    withQueues(config, filter.destination, async (connection, queues) => {
      for (const { destination, type, queue } of queues) {
        const pass = new FailedSetPass(connection, queue, filter, 'every', dryRun ? undefined : removeJob);
        await pass.run();
        destinations.push({
          destination,
          type,
          matched: pass.matched,
          removed: pass.done,
          failed: pass.failed,
          kept: pass.kept,
        });
      }
      return { dryRun, filter: describeFilter(filter), destinations, ...counts() };
    }),
  );
}

async function removeJob(job: Job<DeliveryJobData>): Promise<void> {
  await job.remove();
}

/**
 * One replay or purge over a destination's failed set: the jobs that match, each handed to `act`
 * (none without one: a dry run), a page at a time.
 */
class FailedSetPass {
  /** Jobs that match the filter. */
  matched = 0;
  /** Matching jobs `act` moved out of the failed set. */
  done = 0;
  /** Matching jobs `act` could not move (or that vanished meanwhile). */
  failed = 0;
  /** Batch jobs left alone because only some of their events are of the filter's types. */
  kept = 0;

  constructor(
    private readonly connection: RedisClient,
    private readonly queue: Queue<DeliveryJobData>,
    private readonly filter: DeadLetterFilter,
    private readonly match: BatchMatch,
    private readonly act: ((job: Job<DeliveryJobData>) => Promise<void>) | undefined,
  ) {}

  /**
   * The window of the failed set as it stood when the pass began, oldest first. Jobs `act` moves
   * leave the set, so each page starts after the ones that stayed; jobs that fail again meanwhile
   * have a newer score and are not met twice.
   */
  async run(): Promise<void> {
    const { min, max } = failedScoreRange(this.filter, Date.now());
    let stayed = 0;
    while (true) {
      const ids = await this.connection.zrangebyscore(failedKey(this.queue), min, max, 'LIMIT', stayed, PAGE);
      if (ids.length === 0) return;
      stayed += ids.length - (await this.page(ids));
    }
  }

  async runIds(ids: readonly string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += PAGE) await this.page(ids.slice(i, i + PAGE));
  }

  /** Returns how many of `ids` left the failed set. */
  private async page(ids: readonly string[]): Promise<number> {
    const results = await Promise.allSettled(
      ids.map(async (jobId) => {
        const job = await Job.fromId<DeliveryJobData>(this.queue, jobId);
        if (!job) throw new Error(`job ${jobId} vanished`);
        if (!this.selects(job)) return false;
        this.matched++;
        if (!this.act) return false;
        await this.act(job);
        return true;
      }),
    );
    let left = 0;
    for (const r of results) {
      if (r.status === 'rejected') this.failed++;
      else if (r.value) left++;
    }
    this.done += left;
    return left;
  }

  private selects(job: Job<DeliveryJobData>): boolean {
    if (!timeMatches(this.filter, job.finishedOn ?? job.timestamp)) return false;
    if (jobTypesMatch(this.filter, job.data, this.match)) return true;
    if (jobTypesMatch(this.filter, job.data, 'any')) this.kept++;
    return false;
  }
}

function failedKey(queue: Queue): string {
  return queue.toKey('failed');
}

/** Job ids of one event in the failed set (normally one per destination). */
async function jobsOfEvent(connection: RedisClient, queue: Queue, eventId: string): Promise<string[]> {
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
  fn: (connection: RedisClient, queues: DestinationQueue[]) => Promise<T>,
): Promise<T> {
  const all = destinationsOf(config);
  if (only !== undefined && !all.some((d) => d.id === only)) {
    const ids = all.map((d) => d.id).join(', ') || 'none';
    throw new UnknownDestinationError(`no destination has id "${only}" (configured: ${ids})`);
  }
  const settings = redisSettings(config.redis);
  const connection = producerConnection(settings, 'imkit-bridge-dlq');
  const failed = firstError(connection, settings);
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
      settings,
    );
    return await fn(connection, queues);
  } finally {
    await Promise.allSettled(queues.map(({ queue }) => queue.close()));
    connection.disconnect();
  }
}

export async function readyWithin(
  ready: Promise<unknown>,
  ms: number,
  settings: RedisSettings,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unavailable(settings, `no answer within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([ready, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A one-shot command does not wait out an outage: an error before the connection is ready is the
 * answer, explained like `/readyz` explains it (WRONGPASS, a certificate, no master of that name).
 */
export function firstError(connection: RedisClient, settings: RedisSettings): Promise<never> {
  const problem = watchRedisErrors(connection, settings);
  const failed = new Promise<never>((_, reject) => {
    const fail = (err: unknown) => reject(unavailable(settings, problem() ?? describeError(err)));
    // Not a Cluster's 'node error': one seed or replica down is not the cluster down.
    connection.once('error', fail);
  });
  failed.catch(() => {});
  return failed;
}

function unavailable(settings: RedisSettings, cause: string): RedisUnavailableError {
  return new RedisUnavailableError(`cannot use Redis at ${settings.endpoint()}: ${cause}`);
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

export function toQuarantine(streamId: string, fields: string[]): QuarantineEntry {
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
