import { pino } from 'pino';
import { BridgeMetrics } from '../admin/metrics.js';
import type { AccountConfig, BridgeConfig } from '../config/schema.js';
import { createDecoder, type Decoder } from '../decode/decoder.js';
import { RAW_TYPES, restoreRaw, type RawType } from '../decode/raw.js';
import { RedisUnavailableError, UnknownQuarantineEntryError } from '../errors.js';
import { createLogger } from '../lifecycle/logger.js';
import { Enqueuer, type EnqueueResult } from '../queue/enqueuer.js';
import { quarantineKey } from '../queue/names.js';
import { producerConnection, redisSettings, type RedisClient } from '../queue/redis.js';
import { identifiedEvent } from '../route/event-id.js';
import { Router } from '../route/router.js';
import { destinationsOf, type DestinationConfig } from '../config/destinations.js';
import { audited, type Auditor } from './audit.js';
import {
  CONNECT_TIMEOUT_MS,
  firstError,
  readQuarantine,
  readyWithin,
  toQuarantine,
  type QuarantineEntry,
} from './dead-letters.js';
import {
  describeFilter,
  streamIdRange,
  typeMatches,
  type DeadLetterFilter,
  type FilterDescription,
} from './filter.js';
export { formatQuarantinePurge, formatQuarantineReplay } from './format.js';

/**
 * Entries read per round. Small: an entry holds a raw payload that may be several megabytes, and
 * the replay's own enqueue buffer holds one page.
 */
const PAGE = 50;
const CHAT_MESSAGE = 'chat message';
const STREAM_ID = /^\d+-\d+$/;

export interface QuarantineReplayResult {
  /** Decoded now and landed in the queue of every destination that wants them; removed. */
  readonly replayed: number;
  /** Decoded now, but no destination wants them (live, they would not be sent either); removed. */
  readonly unrouted: number;
  /** Still cannot be relayed; they stay in quarantine. */
  readonly stillFailing: number;
  /** Why, with how many entries each. */
  readonly reasons: Readonly<Record<string, number>>;
}

/** A filter on quarantine entries: their time in quarantine and IMKIT event name (filter.ts). */
export type QuarantineFilter = Omit<DeadLetterFilter, 'destination'>;

export interface QuarantinePurgeResult {
  /** Nothing was removed: `matched` is what would be. */
  readonly dryRun: boolean;
  readonly filter: FilterDescription;
  readonly matched: number;
  readonly removed: number;
}

/**
 * Decodes quarantined payloads again with the current config (limits, encoding, codec of their
 * account). One that now decodes is relayed as it would have been live: the same event id (from
 * the same content and its original receivedAt), the same body, through the ingest enqueue path.
 * It leaves the quarantine only once every queue that wants it holds it. Covers the entries that
 * match the filter as the stream stood when the replay began, or the one entry `id` (the filter
 * does not apply to it). With an auditor, logs who replayed what and how many.
 */
export async function replayQuarantine(
  config: BridgeConfig,
  options: QuarantineFilter & { id?: string; audit?: Auditor } = {},
): Promise<QuarantineReplayResult> {
  const { id, audit, ...filter } = options;
  if (id !== undefined && !STREAM_ID.test(id)) {
    throw new UnknownQuarantineEntryError(`"${id}" is not a quarantine entry id (STREAM ID in dlq list)`);
  }
  const replay = new QuarantineReplay(config);
  const what = { filter, ...(id !== undefined ? { id } : {}) };
  return audited(
    audit,
    'dlq replay --quarantine',
    what,
    () => replay.counts(),
    () =>
      withStream(config, async (connection, key) => {
        const window = id === undefined ? streamIdRange(filter) : { start: id, end: id };
        for await (const page of stablePages(connection, key, window)) {
          const wanted =
            id === undefined ? page.filter(([, flat]) => typeMatches(filter, eventOf(flat))) : page;
          const done = await replay.page(wanted);
          if (done.length > 0) await connection.xdel(key, ...done);
        }
        if (id !== undefined && replay.seen === 0) {
          throw new UnknownQuarantineEntryError(`no quarantine entry has id ${id}`);
        }
        return replay.result();
      }).finally(() => replay.close()),
  );
}

/**
 * Removes the quarantine entries that match the filter for good, as the stream stood when the purge
 * began; with `dryRun` it only counts them. With an auditor, logs who removed what and how many.
 */
export async function purgeQuarantine(
  config: BridgeConfig,
  options: QuarantineFilter & { dryRun?: boolean; audit?: Auditor } = {},
): Promise<QuarantinePurgeResult> {
  const { dryRun = false, audit, ...filter } = options;
  let matched = 0;
  let removed = 0;
  return audited(
    dryRun ? undefined : audit,
    'dlq purge --quarantine',
    { filter },
    () => ({ matched, removed }),
    () =>
      withStream(config, async (connection, key) => {
        for await (const page of stablePages(connection, key, streamIdRange(filter))) {
          const ids = page
            .filter(([, flat]) => typeMatches(filter, eventOf(flat)))
            .map(([streamId]) => streamId);
          matched += ids.length;
          if (!dryRun && ids.length > 0) removed += await connection.xdel(key, ...ids);
        }
        return { dryRun, filter: describeFilter(filter), matched, removed };
      }),
  );
}

/** Quarantine entries that match the filter, newest first: after skipping `offset`, up to `limit`. */
export async function listQuarantine(
  config: BridgeConfig,
  options: QuarantineFilter & { limit: number; offset?: number },
): Promise<{ total: number; entries: readonly QuarantineEntry[] }> {
  const { limit, offset = 0, ...filter } = options;
  return withStream(config, (connection, key) => readQuarantine(connection, key, filter, offset, limit));
}

/** One quarantine entry with its raw payload as stored, and how it was stored (raw.ts). */
export interface QuarantineDetail {
  readonly entry: QuarantineEntry;
  readonly raw: Buffer;
  readonly rawType: string;
}

/** The entry `streamId`, or undefined when there is none (or the id is not a stream id). */
export async function readQuarantineEntry(
  config: BridgeConfig,
  streamId: string,
): Promise<QuarantineDetail | undefined> {
  if (!STREAM_ID.test(streamId)) return undefined;
  return withStream(config, async (connection, key) => {
    const found = (await connection.xrange(key, streamId, streamId))[0];
    if (!found) return undefined;
    const fields = fieldsOf(found[1]);
    return {
      entry: toQuarantine(found[0], found[1]),
      raw: Buffer.from(fields.get('raw') ?? '', 'base64'),
      rawType: fields.get('rawType') ?? '',
    };
  });
}

/** Entries of a stream window, oldest first, up to the newest one there when reading began. */
async function* stablePages(
  connection: RedisClient,
  key: string,
  window: { start: string; end: string },
): AsyncGenerator<[string, string[]][]> {
  const last = (await connection.xrevrange(key, window.end, window.start, 'COUNT', 1))[0]?.[0];
  if (last === undefined) return;
  let start = window.start;
  while (true) {
    const page = await connection.xrange(key, start, last, 'COUNT', PAGE);
    if (page.length === 0) return;
    yield page;
    start = `(${page[page.length - 1]![0]}`;
  }
}

async function withStream<T>(
  config: BridgeConfig,
  fn: (connection: RedisClient, key: string) => Promise<T>,
): Promise<T> {
  const settings = redisSettings(config.redis);
  const connection = producerConnection(settings, 'imkit-bridge-dlq');
  const failed = firstError(connection, settings);
  try {
    await readyWithin(Promise.race([failed, ready(connection)]), CONNECT_TIMEOUT_MS, settings);
    return await fn(connection, quarantineKey(config.redis.prefix));
  } finally {
    connection.disconnect();
  }
}

/** One replay run: decoders per account, the enqueue path, and the counts. */
class QuarantineReplay {
  private readonly router: Router<DestinationConfig>;
  private readonly enqueuer: Enqueuer;
  private readonly decoders = new Map<string, Promise<Decoder>>();
  private readonly reasons: Record<string, number> = {};
  private replayed = 0;
  private unrouted = 0;
  seen = 0;

  constructor(private readonly config: BridgeConfig) {
    this.router = new Router(destinationsOf(config));
    this.enqueuer = new Enqueuer({
      redis: redisSettings(config.redis),
      prefix: config.redis.prefix,
      destinations: destinationsOf(config),
      dedupWindowMs: config.dedupWindow,
      bufferEvents: PAGE,
      // stdout carries the command's answer (possibly JSON); trouble goes to stderr.
      logger: createLogger({ level: 'warn', destination: pino.destination({ fd: 2, sync: true }) }),
      metrics: new BridgeMetrics(),
    });
  }

  /** Relays what decodes now; returns the stream ids that may leave the quarantine. */
  async page(entries: [string, string[]][]): Promise<string[]> {
    const attempts = await Promise.all(
      entries.map(async ([streamId, flat]) => ({ streamId, outcome: await this.attempt(fieldsOf(flat)) })),
    );
    const pending = attempts.filter((a) => a.outcome.kind === 'enqueued');
    if (pending.length > 0 && !(await this.enqueuer.drain(CONNECT_TIMEOUT_MS))) {
      throw new RedisUnavailableError(
        `Redis did not take the replayed events within ${CONNECT_TIMEOUT_MS} ms`,
      );
    }
    const done: string[] = [];
    for (const { streamId, outcome } of attempts) {
      this.seen++;
      if (outcome.kind === 'failed') {
        this.fail(outcome.reason);
      } else if (outcome.kind === 'unrouted') {
        this.unrouted++;
        done.push(streamId);
      } else if ((await outcome.landed).dropped) {
        this.fail('could not be written to Redis');
      } else {
        this.replayed++;
        done.push(streamId);
      }
    }
    return done;
  }

  result(): QuarantineReplayResult {
    return { ...this.counts(), reasons: { ...this.reasons } };
  }

  counts(): { replayed: number; unrouted: number; stillFailing: number } {
    const stillFailing = Object.values(this.reasons).reduce((n, count) => n + count, 0);
    return { replayed: this.replayed, unrouted: this.unrouted, stillFailing };
  }

  async close(): Promise<void> {
    await this.enqueuer.close();
  }

  private async attempt(fields: Map<string, string>): Promise<Outcome> {
    const account = this.config.accounts.find((a) => a.id === fields.get('account'));
    if (!account) return failed(`account "${fields.get('account') ?? ''}" is not configured`);
    const type = fields.get('event') ?? '';
    const receivedAt = Number(fields.get('receivedAt'));
    if (!Number.isFinite(receivedAt)) return failed('entry has no receivedAt');
    const rawType = fields.get('rawType');
    if (rawType !== undefined && !(RAW_TYPES as readonly string[]).includes(rawType)) {
      return failed(`unknown rawType "${rawType}"`);
    }
    let restored;
    try {
      restored = restoreRaw(Buffer.from(fields.get('raw') ?? '', 'base64'), rawType as RawType | undefined);
    } catch {
      return failed('stored payload is corrupt');
    }
    if (!restored.ok) return failed(restored.reason);
    const decoded = (await this.decoder(account)).decode(restored.raw);
    if (!decoded.ok) return failed(decoded.reason);
    // As live: an event the account does not relay, or that no destination wants, goes nowhere.
    const relayed = account.events.includes('*') || account.events.includes(type);
    const targets = relayed ? this.router.targets(account.id, type) : [];
    if (targets.length === 0) return { kind: 'unrouted' };
    const event = identifiedEvent(account.id, type, decoded.data, receivedAt, this.config.repeatWindow);
    return {
      kind: 'enqueued',
      landed: this.enqueuer.enqueue(event, targets, { markSeen: type === CHAT_MESSAGE }),
    };
  }

  private decoder(account: AccountConfig): Promise<Decoder> {
    let decoder = this.decoders.get(account.id);
    if (!decoder) {
      decoder = createDecoder(account, this.config.limits);
      this.decoders.set(account.id, decoder);
    }
    return decoder;
  }

  private fail(reason: string): void {
    this.reasons[reason] = (this.reasons[reason] ?? 0) + 1;
  }
}

type Outcome =
  | { kind: 'failed'; reason: string }
  | { kind: 'unrouted' }
  | { kind: 'enqueued'; landed: Promise<EnqueueResult> };

function failed(reason: string): Outcome {
  return { kind: 'failed', reason };
}

function eventOf(flat: string[]): string {
  return fieldsOf(flat).get('event') ?? '';
}

function fieldsOf(flat: string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(flat[i]!, flat[i + 1]!);
  return map;
}

function ready(connection: RedisClient): Promise<void> {
  if (connection.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => connection.once('ready', () => resolve()));
}
