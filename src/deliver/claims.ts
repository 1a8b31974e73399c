import type { Redis } from 'ioredis';
import { claimKey } from '../queue/names.js';
import { perKeyFlagScript } from '../queue/redis.js';

/**
 * Per event key: free, or already ours (a job run again after a crash), means deliver; held by
 * another job means that job delivers it. One script, so two workers cannot both win.
 */
const CLAIM_SCRIPT = `
local owner, ttl = ARGV[1], ARGV[2]
local out = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if not holder then
    redis.call('SET', key, owner, 'PX', ttl)
    out[i] = 1
  elseif holder == owner then
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
`;

/**
 * De-duplication of one webhook's events, at delivery: the first job to reach an event inside
 * `dedupWindow` owns it. Ingest replicas may each queue the same event; only one job sends it
 * (docs/architecture.md, "De-duplication").
 */
export class DeliveryClaims {
  private readonly run: ReturnType<typeof perKeyFlagScript>;

  constructor(
    connection: Redis,
    private readonly prefix: string,
    private readonly webhookId: string,
    private readonly windowMs: number,
  ) {
    this.run = perKeyFlagScript(connection, 'imkitBridgeClaim', CLAIM_SCRIPT);
  }

  /** For each event id, in order: whether the job `owner` is the one to deliver it. */
  claim(owner: string, eventIds: readonly string[]): Promise<boolean[]> {
    return this.run(
      eventIds.map((id) => claimKey(this.prefix, this.webhookId, id)),
      owner,
      this.windowMs,
    );
  }
}
