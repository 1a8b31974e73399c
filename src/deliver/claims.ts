import type { DeliveryEvent } from '../queue/job.js';
import { claimKey, repeatKeyName } from '../queue/names.js';
import { perKeyFlagScript, type RedisClient } from '../queue/redis.js';

/**
 * KEYS: one claim key per event, then one repeat record per event that has a repeat key, in order.
 * ARGV: owner, dedupWindow, repeatWindow, then per event with a repeat record its position (1-based),
 * id and receivedAt. A chat message takes no arguments of its own: its claim key names it. Per
 * event, one reply: 1 deliver, 0 skip.
 *
 * A repeat record naming another id received within repeatWindow of this copy means the copy is
 * the same event received across a slot boundary: skip. Otherwise the claim decides: free, or
 * already ours (a job run again after a crash), means deliver and record this occurrence; held by
 * another job means that job delivers it. Only a claimed occurrence is recorded, so skipped copies
 * never extend the window. An id twice in one job (one socket received it twice in one flush) is
 * sent once.
 */
const CLAIM_SCRIPT = `
local owner, ttl, window = ARGV[1], ARGV[2], tonumber(ARGV[3])
local records = (#ARGV - 3) / 3
local events = #KEYS - records
local repeats = {}
for j = 1, records do
  local b = 3 + (j - 1) * 3
  repeats[tonumber(ARGV[b + 1])] = { key = KEYS[events + j], id = ARGV[b + 2], at = ARGV[b + 3] }
end
local out, granted = {}, {}
for i = 1, events do
  local key = KEYS[i]
  local r = repeats[i]
  local copy = false
  if r then
    local last = redis.call('GET', r.key)
    if last then
      local lastAt, lastId = string.match(last, '^(%S+) (.+)$')
      copy = lastId ~= r.id and math.abs(tonumber(r.at) - tonumber(lastAt)) < window
    end
  end
  if copy or granted[key] then
    out[i] = 0
  else
    -- A free claim (the usual case) is taken in one command; only a held one is read.
    if redis.call('SET', key, owner, 'NX', 'PX', ttl) or redis.call('GET', key) == owner then
      out[i] = 1
    else
      out[i] = 0
    end
    if out[i] == 1 then
      granted[key] = true
      if r then redis.call('SET', r.key, r.at .. ' ' .. r.id, 'PX', ttl) end
    end
  end
end
return out
`;

/** What the claim reads of an event. */
export type ClaimedEvent = Pick<DeliveryEvent, 'id' | 'receivedAt' | 'repeatKey'>;

/**
 * De-duplication of one destination's events, at delivery: the first job to reach an event inside
 * `dedupWindow` owns it, and a non-chat event whose content was claimed under another id received
 * within `repeatWindow` of it is a copy. Ingest replicas may each queue the same event; only one
 * job sends it (docs/architecture.md, "Ids and de-duplication").
 */
export class DeliveryClaims {
  private readonly run: ReturnType<typeof perKeyFlagScript>;

  constructor(
    connection: RedisClient,
    private readonly prefix: string,
    /** The destination's queue name, which its keys hang under. */
    private readonly queue: string,
    private readonly windows: { readonly dedupMs: number; readonly repeatMs: number },
  ) {
    this.run = perKeyFlagScript(connection, 'imkitBridgeClaim', CLAIM_SCRIPT);
  }

  /** For each event, in order: whether the job `owner` is the one to deliver it. */
  claim(owner: string, events: readonly ClaimedEvent[]): Promise<boolean[]> {
    const keys = events.map((event) => claimKey(this.prefix, this.queue, event.id));
    const args: (string | number)[] = [owner, this.windows.dedupMs, this.windows.repeatMs];
    events.forEach((event, i) => {
      if (event.repeatKey === undefined) return;
      keys.push(repeatKeyName(this.prefix, this.queue, event.repeatKey));
      args.push(i + 1, event.id, event.receivedAt);
    });
    return this.run(keys, ...args);
  }
}
