import { z } from 'zod';
import type { Logger } from '../../lifecycle/logger.js';
import type { DeliveryEvent } from '../../queue/job.js';
import { withDeadline } from '../deadline.js';
import type {
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

/**
 * The de-duplication marker and the entry in one script, so the target Redis itself keeps a second
 * copy out, whichever bridge process sends it. KEYS: stream, marker. ARGV: window ms, maxLen or '',
 * then the entry's field/value pairs. Returns {1, entry id} when added, {0, entry id} when the
 * marker says the event is already in.
 */
const ADD_ONCE = `
local prev = redis.call('GET', KEYS[2])
if prev then return {0, prev} end
local id
if ARGV[2] ~= '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
else
  id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
end
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {1, id}
`;
const SCRIPT_NAME = 'imkitStreamAddOnce';

/**
 * Where the marker of `eventId` in `stream` lives. Independent of the bridge's key prefix, so two
 * deployments writing one stream still add an event once; the `{stream}` hash tag keeps it in the
 * stream's slot under Cluster (a stream name cannot contain braces: templates reject them).
 */
export function streamMarkerKey(stream: string, eventId: string): string {
  return `imkit-dedup:{${stream}}:${eventId}`;
}

/** The stream entry's fields, in order. `timestamp` is the receive time, the same on every attempt. */
export function streamFields(event: DeliveryEvent): string[] {
  return [
    'id',
    event.id,
    'type',
    event.type,
    'account',
    event.account,
    'timestamp',
    new Date(event.receivedAt).toISOString(),
    'body',
    event.body,
  ];
}

/**
 * A stream on the bridge's own Redis must stay out of the bridge's keys (`<redis.prefix>:…`). For
 * the config's cross-field check; `path` is relative to the destination's entry.
 */
export function redisStreamKeyspaceProblem(
  config: RedisStreamOptions,
  bridge: { readonly url: string; readonly prefix: string },
): { path: string[]; message: string } | undefined {
  if (!sharesBridgeKeyspace(config.url, bridge.url)) return undefined;
  if (!config.stream.startsWith(`${bridge.prefix}:`)) return undefined;
  return {
    path: ['stream'],
    message: `must not start with "${bridge.prefix}:" on the bridge's own Redis (the bridge's keys live there)`,
  };
}

type AddOnce = (
  stream: string,
  marker: string,
  windowMs: number,
  maxLen: string,
  ...fields: string[]
) => Promise<[number, string]>;

class RedisStreamDestination implements Destination {
  readonly type = 'redis-stream';
  readonly id: string;
  private readonly log: Logger;
  private readonly target: RedisTarget;
  private readonly addOnce: AddOnce;
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
      config.url ?? deps.bridgeRedisUrl,
      config.timeout,
      `imkit-bridge-${config.id}`,
      this.log,
    );
    this.target.client.defineCommand(SCRIPT_NAME, { numberOfKeys: 2, lua: ADD_ONCE });
    const command = (this.target.client as unknown as Record<string, AddOnce>)[SCRIPT_NAME]!;
    this.addOnce = command.bind(this.target.client);
    this.maxLen = config.maxLen === undefined ? '' : String(config.maxLen);
  }

  connect(): Promise<void> {
    return this.target.connect();
  }

  async send(event: DeliveryEvent, signals: readonly AbortSignal[]): Promise<SendOutcome> {
    const stream = renderTemplate(this.config.stream, event);
    try {
      const result = await withDeadline(
        async (signal): Promise<SendOutcome> => {
          const unusable = await this.target.unusable(signal);
          if (unusable !== undefined) return { kind: 'retry', reason: unusable };
          const [added, entryId] = await this.addOnce(
            stream,
            streamMarkerKey(stream, event.id),
            this.deps.dedupWindowMs,
            this.maxLen,
            ...streamFields(event),
          );
          return { kind: 'delivered', note: added === 1 ? `entry ${entryId}` : `duplicate of ${entryId}` };
        },
        this.config.timeout,
        signals,
      );
      if (result.ok) return result.value;
      if (result.why === 'aborted') return { kind: 'aborted' };
      return { kind: 'retry', reason: `timeout after ${this.config.timeout} ms` };
    } catch (err) {
      const reason = this.target.reason(err);
      if (reason.includes('WRONGTYPE')) return this.wrongTypeRetry(stream, reason);
      return { kind: 'retry', reason };
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
