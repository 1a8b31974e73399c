import { z } from 'zod';
import type { Logger } from '../../lifecycle/logger.js';
import type { DeliveryEvent } from '../../queue/job.js';
import { withDeadline } from '../deadline.js';
import type {
  BridgeKeyspace,
  CommonDestinationConfig,
  Destination,
  DestinationDeps,
  DestinationKind,
  SendOutcome,
} from '../destination.js';
import { renderTemplate, templateProblem } from '../template.js';
import { RedisTarget, sharesBridgeKeyspace, targetDescription, targetRedisUrl } from './redis-target.js';

const options = z.strictObject({
  url: targetRedisUrl,
  stream: z
    .string()
    .min(1)
    .superRefine((template, ctx) => {
      const problem = templateProblem(template);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .default('imkit:events'),
  maxLen: z.number().int().min(1).optional(),
});

type RedisStreamOptions = z.output<typeof options>;

/** The stream entry's field names, in order; `streamValues` gives an event's values in the same order. */
const FIELD_NAMES = ['id', 'type', 'account', 'timestamp', 'body'] as const;
/** With tracing on, the attempt's W3C Trace Context follows the fixed fields. */
const TRACE_FIELD_NAMES = ['traceparent', 'tracestate'] as const;

/**
 * For each event in turn, the de-duplication marker and the entry in one script, so the target Redis
 * itself keeps a second copy out, whichever bridge process sends it (an event twice in one call is
 * added once). KEYS: the stream, then one marker per event. ARGV: window ms, maxLen or '', then per
 * event the number of its values and the values in FIELD_NAMES then TRACE_FIELD_NAMES order (only
 * values travel: the names live in the script). Returns per event 1, entry id when added, or 0,
 * entry id when the marker says the event is already in.
 */
const ADD_EACH_ONCE = `
local stream, ttl, maxLen = KEYS[1], ARGV[1], ARGV[2]
local names = { ${[...FIELD_NAMES, ...TRACE_FIELD_NAMES].map((name) => `'${name}'`).join(', ')} }
local out = {}
local at = 3
for i = 2, #KEYS do
  local marker = KEYS[i]
  local count = tonumber(ARGV[at])
  local first = at + 1
  at = first + count
  local prev = redis.call('GET', marker)
  if prev then
    out[#out + 1] = 0
    out[#out + 1] = prev
  else
    local entry = {}
    for f = 1, count do
      entry[2 * f - 1] = names[f]
      entry[2 * f] = ARGV[first + f - 1]
    end
    local id
    if maxLen ~= '' then
      id = redis.call('XADD', stream, 'MAXLEN', '~', maxLen, '*', unpack(entry))
    else
      id = redis.call('XADD', stream, '*', unpack(entry))
    end
    redis.call('SET', marker, id, 'PX', ttl)
    out[#out + 1] = 1
    out[#out + 1] = id
  end
end
return out
`;
const SCRIPT_NAME = 'imkitStreamAddEachOnce';

/**
 * Where the marker of `eventId` in `stream` lives. Independent of the bridge's key prefix, so two
 * deployments writing one stream still add an event once; the `{stream}` hash tag keeps it in the
 * stream's slot under Cluster (a stream name cannot contain braces: templates reject them).
 */
export function streamMarkerKey(stream: string, eventId: string): string {
  return `imkit-dedup:{${stream}}:${eventId}`;
}

/**
 * The stream entry's values in FIELD_NAMES order, then the trace context when there is one.
 * `timestamp` is the receive time, the same on every attempt.
 */
function streamValues(event: DeliveryEvent): string[] {
  const values = [event.id, event.type, event.account, new Date(event.receivedAt).toISOString(), event.body];
  if (event.traceparent !== undefined) {
    values.push(event.traceparent);
    if (event.tracestate !== undefined) values.push(event.tracestate);
  }
  return values;
}

/** The stream entry's fields, in order, as XADD takes them. */
export function streamFields(event: DeliveryEvent): string[] {
  const names = [...FIELD_NAMES, ...TRACE_FIELD_NAMES];
  return streamValues(event).flatMap((value, i) => [names[i]!, value]);
}

/**
 * A stream on the bridge's own Redis must stay out of the bridge's keys (`<redis.prefix>:…`). For
 * the config's cross-field check; `path` is relative to the destination's entry.
 */
export function redisStreamKeyspaceProblem(
  config: RedisStreamOptions,
  bridge: BridgeKeyspace,
): { path: string[]; message: string } | undefined {
  if (!sharesBridgeKeyspace(config.url, bridge)) return undefined;
  if (!config.stream.startsWith(`${bridge.prefix}:`)) return undefined;
  return {
    path: ['stream'],
    message: `must not start with "${bridge.prefix}:" on the bridge's own Redis (the bridge's keys live there)`,
  };
}

/**
 * Runs ADD_EACH_ONCE with one array: the number of keys, the keys, then the arguments (ioredis
 * flattens it; a batch's few hundred arguments are not spread into a call).
 */
type AddEachOnce = (numberOfKeysKeysAndArgs: (string | number)[]) => Promise<(number | string)[]>;

class RedisStreamDestination implements Destination {
  readonly type = 'redis-stream';
  readonly deduplicates = true;
  readonly id: string;
  private readonly log: Logger;
  private readonly target: RedisTarget;
  private readonly addEachOnce: AddEachOnce;
  private readonly maxLen: string;
  /** Streams already reported as holding another type, so a misconfiguration is logged once each. */
  private readonly wrongType = new Set<string>();

  constructor(
    private readonly config: RedisStreamOptions & CommonDestinationConfig,
    private readonly deps: DestinationDeps,
  ) {
    this.id = config.id;
    this.log = deps.logger;
    this.target = new RedisTarget(
      config.url ?? deps.bridgeRedis,
      config.timeout,
      `imkit-bridge-${config.id}`,
      this.log,
    );
    this.target.client.defineCommand(SCRIPT_NAME, { lua: ADD_EACH_ONCE });
    const command = (this.target.client as unknown as Record<string, AddEachOnce>)[SCRIPT_NAME]!;
    this.addEachOnce = command.bind(this.target.client);
    this.maxLen = config.maxLen === undefined ? '' : String(config.maxLen);
  }

  connect(): Promise<void> {
    return this.target.connect();
  }

  async send(event: DeliveryEvent, signals: readonly AbortSignal[]): Promise<SendOutcome> {
    const [outcome] = await this.addToStream(renderTemplate(this.config.stream, event), [event], signals);
    return outcome!;
  }

  /** One script call per stream the events go to (usually one): its keys must share a Cluster slot. */
  async sendMany(events: readonly DeliveryEvent[], signals: readonly AbortSignal[]): Promise<SendOutcome[]> {
    const byStream = new Map<string, number[]>();
    events.forEach((event, i) => {
      const stream = renderTemplate(this.config.stream, event);
      const indexes = byStream.get(stream);
      if (indexes) indexes.push(i);
      else byStream.set(stream, [i]);
    });
    const outcomes: SendOutcome[] = [];
    await Promise.all(
      [...byStream].map(async ([stream, indexes]) => {
        const added = await this.addToStream(
          stream,
          indexes.map((i) => events[i]!),
          signals,
        );
        indexes.forEach((index, i) => (outcomes[index] = added[i]!));
      }),
    );
    return outcomes;
  }

  private async addToStream(
    stream: string,
    events: readonly DeliveryEvent[],
    signals: readonly AbortSignal[],
  ): Promise<SendOutcome[]> {
    const every = (outcome: SendOutcome) => events.map(() => outcome);
    try {
      const result = await withDeadline(
        async (signal): Promise<SendOutcome[]> => {
          const unusable = await this.target.unusable(signal);
          if (unusable !== undefined) return every({ kind: 'retry', reason: unusable });
          const args: (string | number)[] = [events.length + 1, stream];
          for (const event of events) args.push(streamMarkerKey(stream, event.id));
          args.push(this.deps.dedupWindowMs, this.maxLen);
          for (const event of events) {
            const values = streamValues(event);
            args.push(values.length, ...values);
          }
          const reply = await this.addEachOnce(args);
          const short = await this.target.replicated(stream);
          if (short !== undefined) return every({ kind: 'retry', reason: short });
          return events.map((_, i): SendOutcome => {
            const entryId = String(reply[2 * i + 1]);
            return reply[2 * i] === 1
              ? { kind: 'delivered', note: `entry ${entryId}` }
              : { kind: 'delivered', note: `duplicate of ${entryId}`, duplicate: true };
          });
        },
        this.config.timeout,
        signals,
      );
      if (result.ok) return result.value;
      if (result.why === 'aborted') return every({ kind: 'aborted' });
      return every({ kind: 'retry', reason: `timeout after ${this.config.timeout} ms` });
    } catch (err) {
      // The script stops at the failing command; events added before it keep their markers, so
      // their retries find them already in.
      const reason = this.target.reason(err);
      if (reason.includes('WRONGTYPE')) return every(this.wrongTypeRetry(stream, reason));
      return every({ kind: 'retry', reason });
    }
  }

  close(): Promise<void> {
    return this.target.close();
  }

  /** Refused like any other error (retried), but an operator's mistake: said loudly, once per stream. */
  private wrongTypeRetry(stream: string, reason: string): SendOutcome {
    if (!this.wrongType.has(stream)) {
      this.wrongType.add(stream);
      this.log.error(
        { stream },
        'the key of this stream holds another type; events wait until it is removed',
      );
    }
    return { kind: 'retry', reason: `WRONGTYPE: key "${stream}" is not a stream (${reason})` };
  }
}

export const redisStreamKind: DestinationKind<'redis-stream', typeof options> = {
  type: 'redis-stream',
  options,
  describe: (config) =>
    `${targetDescription(config.url)} stream ${config.stream}` +
    (config.maxLen === undefined ? '' : ` (maxLen ~${config.maxLen})`),
  create: (config, deps) => new RedisStreamDestination(config, deps),
  keyspaceProblem: redisStreamKeyspaceProblem,
};
