import type { LaneConfig } from '../config/schema.js';
import { BRIDGE_EVENT_PREFIX } from './event.js';

const WILDCARD = '*';
const BRIDGE_WILDCARD = `${BRIDGE_EVENT_PREFIX}*`;
// Event names come from the IMKIT server; bound the cache in case one invents names without end.
const MAX_CACHED = 10_000;

type Filters = Pick<LaneConfig, 'accounts' | 'events'>;

/** Which destinations want an event, by account and type. Answers are cached: this runs per event. */
export class Router<D extends Filters> {
  private readonly cache = new Map<string, readonly D[]>();

  constructor(private readonly destinations: readonly D[]) {}

  targets(account: string, type: string): readonly D[] {
    const key = `${account}\u0000${type}`;
    let hit = this.cache.get(key);
    if (!hit) {
      hit = Object.freeze(this.destinations.filter((d) => wantsAccount(d, account) && wantsType(d, type)));
      if (this.cache.size >= MAX_CACHED) this.cache.clear();
      this.cache.set(key, hit);
    }
    return hit;
  }
}

function wantsAccount(destination: Filters, account: string): boolean {
  return destination.accounts.includes(WILDCARD) || destination.accounts.includes(account);
}

/** `"*"` means every IMKIT event; lifecycle events must be named or matched by `bridge.*`. */
function wantsType(destination: Filters, type: string): boolean {
  if (destination.events.includes(type)) return true;
  if (type.startsWith(BRIDGE_EVENT_PREFIX)) return destination.events.includes(BRIDGE_WILDCARD);
  return destination.events.includes(WILDCARD);
}
