import { pino } from 'pino';
import type { Redis } from 'ioredis';
import { BridgeMetrics } from '../admin/metrics.js';
import type { AccountConfig, BridgeConfig } from '../config/schema.js';
import { createDecoder, type Decoder } from '../decode/decoder.js';
import { RAW_TYPES, restoreRaw, type RawType } from '../decode/raw.js';
import { RedisUnavailableError, UnknownQuarantineEntryError } from '../errors.js';
import { createLogger } from '../lifecycle/logger.js';
import { Enqueuer, type EnqueueResult } from '../queue/enqueuer.js';
import { quarantineKey } from '../queue/names.js';
import { createProducerConnection } from '../queue/redis.js';
import { identifiedEvent } from '../route/event-id.js';
import { Router } from '../route/router.js';
import { destinationsOf, type DestinationConfig } from '../config/destinations.js';
import { CONNECT_TIMEOUT_MS, firstError, readyWithin } from './dead-letters.js';
export { formatQuarantineReplay } from './format.js';

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

/**
 * Decodes quarantined payloads again with the current config (limits, encoding, codec of their
 * account). One that now decodes is relayed as it would have been live: the same event id (from
 * the same content and its original receivedAt), the same body, through the ingest enqueue path.
 * It leaves the quarantine only once every queue that wants it holds it. Covers the stream as it
 * stood when the replay began, or the one entry `id`.
 */
export async function replayQuarantine(
  config: BridgeConfig,
  options: { id?: string } = {},
): Promise<QuarantineReplayResult> {
  if (options.id !== undefined && !STREAM_ID.test(options.id)) {
    throw new UnknownQuarantineEntryError(
      `"${options.id}" is not a quarantine entry id (STREAM ID in dlq list)`,
    );
  }
  const key = quarantineKey(config.redis.prefix);
  const connection = createProducerConnection(config.redis.url, { name: 'imkit-bridge-dlq' });
  const failed = firstError(connection, config.redis.url);
  const replay = new QuarantineReplay(config);
  try {
    await readyWithin(Promise.race([failed, ready(connection)]), CONNECT_TIMEOUT_MS, config.redis.url);
    const end = options.id ?? (await connection.xrevrange(key, '+', '-', 'COUNT', 1))[0]?.[0];
    if (end === undefined) return replay.result();
    let start = options.id ?? '-';
    while (true) {
      const page = await connection.xrange(key, start, end, 'COUNT', PAGE);
      if (page.length === 0) break;
      const done = await replay.page(page);
      if (done.length > 0) await connection.xdel(key, ...done);
      start = `(${page[page.length - 1]![0]}`;
    }
    if (options.id !== undefined && replay.seen === 0) {
      throw new UnknownQuarantineEntryError(`no quarantine entry has id ${options.id}`);
    }
    return replay.result();
  } finally {
    await replay.close();
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
      redisUrl: config.redis.url,
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
    const stillFailing = Object.values(this.reasons).reduce((n, count) => n + count, 0);
    return { replayed: this.replayed, unrouted: this.unrouted, stillFailing, reasons: { ...this.reasons } };
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

function fieldsOf(flat: string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(flat[i]!, flat[i + 1]!);
  return map;
}

function ready(connection: Redis): Promise<void> {
  if (connection.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => connection.once('ready', () => resolve()));
}
