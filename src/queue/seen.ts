import { seenKey } from './names.js';
import { perKeyFlagScript, type RedisClient } from './redis.js';

const MARK_SCRIPT = `
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('SET', key, '1', 'PX', ARGV[1], 'NX') and 1 or 0
end
return out
`;

/**
 * Which event ids some replica already landed inside `dedupWindow`. Only counting depends on it
 * (catch-up's `recovered`); delivery de-duplicates with its own claims (src/deliver/claims.ts).
 */
export class SeenMarkers {
  private readonly run: ReturnType<typeof perKeyFlagScript>;

  constructor(
    connection: RedisClient,
    private readonly prefix: string,
    private readonly windowMs: number,
  ) {
    this.run = perKeyFlagScript(connection, 'imkitBridgeMarkSeen', MARK_SCRIPT);
  }

  /**
   * For each id, in order: whether this call was the first to mark it. `slotOf`: on Cluster, the
   * tagged queue whose slot the markers share (src/queue/names.ts `seenKey`).
   */
  mark(eventIds: readonly string[], slotOf?: string): Promise<boolean[]> {
    return this.run(
      eventIds.map((id) => seenKey(this.prefix, id, slotOf)),
      this.windowMs,
    );
  }
}
