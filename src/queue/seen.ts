import type { Redis } from 'ioredis';
import { seenKey } from './names.js';

/** SET NX PX per key in one command; an ioredis pipeline would allocate far more per call. */
const MARK_SCRIPT = `
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('SET', key, '1', 'PX', ARGV[1], 'NX') and 1 or 0
end
return out
`;

const COMMAND = 'imkitBridgeMarkSeen';

interface MarkCommand {
  [COMMAND](numKeys: number, ...args: (string | number)[]): Promise<number[]>;
}

/**
 * Which event ids some replica already landed inside `dedupWindow`. Only counting depends on it
 * (catch-up's `recovered`); delivery de-duplicates with its own claims (src/deliver/claims.ts).
 */
export class SeenMarkers {
  constructor(
    private readonly connection: Redis,
    private readonly prefix: string,
    private readonly windowMs: number,
  ) {
    if (!(COMMAND in connection)) connection.defineCommand(COMMAND, { lua: MARK_SCRIPT });
  }

  /** For each id, in order: whether this call was the first to mark it. */
  async mark(eventIds: readonly string[]): Promise<boolean[]> {
    if (eventIds.length === 0) return [];
    const keys = eventIds.map((id) => seenKey(this.prefix, id));
    const replies = await (this.connection as unknown as MarkCommand)[COMMAND](
      keys.length,
      ...keys,
      this.windowMs,
    );
    return replies.map((reply) => reply === 1);
  }
}
