import type { DeliveryEvent } from '../queue/job.js';
import { claimKey, repeatKeyName } from '../queue/names.js';
import { perKeyFlagScript, type RedisClient } from '../queue/redis.js';

/**
 * KEYS: one claim key per event, then one repeat record per event that has a repeat key, in order.
 * ARGV: owner, dedupWindow, repeatWindow, then per event its id, receivedAt and 1 or 0 (has a
 * repeat record). Per event, one reply: 1 deliver, 0 skip.
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
local out, granted = {}, {}
local events = (#ARGV - 3) / 3
local record = events
for i = 1, events do
  local id, at, repeats = ARGV[i * 3 + 1], ARGV[i * 3 + 2], ARGV[i * 3 + 3] == '1'
  local key = KEYS[i]
  local repeatKey
  local copy = false
  if repeats then
    record = record + 1
    repeatKey = KEYS[record]
    local last = redis.call('GET', repeatKey)
    if last then
      local lastAt, lastId = string.match(last, '^(%S+) (.+)$')
      copy = lastId ~= id and math.abs(tonumber(at) - tonumber(lastAt)) < window
    end
  end
  if copy or granted[id] then
    out[i] = 0
  else
    local holder = redis.call('GET', key)
    if not holder then
      redis.call('SET', key, owner, 'PX', ttl)
      out[i] = 1
    elseif holder == owner then
      out[i] = 1
    else
      out[i] = 0
    end
    if out[i] == 1 then
      granted[id] = true
      if repeatKey then redis.call('SET', repeatKey, at .. ' ' .. id, 'PX', ttl) end
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
    for (const event of events) {
      args.push(event.id, event.receivedAt, event.repeatKey === undefined ? 0 : 1);
      if (event.repeatKey !== undefined) keys.push(repeatKeyName(this.prefix, this.queue, event.repeatKey));
    }
    return this.run(keys, ...args);
  }
}
