import type { WebhookConfig } from '../config/schema.js';
import { BRIDGE_EVENT_PREFIX } from './event.js';

const WILDCARD = '*';
const BRIDGE_WILDCARD = `${BRIDGE_EVENT_PREFIX}*`;
// Event names come from the IMKIT server; bound the cache in case one invents names without end.
const MAX_CACHED = 10_000;

/** Which webhooks want an event, by account and type. Answers are cached: this runs per event. */
export class Router {
  private readonly cache = new Map<string, readonly WebhookConfig[]>();

  constructor(private readonly webhooks: readonly WebhookConfig[]) {}

  targets(account: string, type: string): readonly WebhookConfig[] {
    const key = `${account}\u0000${type}`;
    let hit = this.cache.get(key);
    if (!hit) {
      hit = Object.freeze(this.webhooks.filter((w) => wantsAccount(w, account) && wantsType(w, type)));
      if (this.cache.size >= MAX_CACHED) this.cache.clear();
      this.cache.set(key, hit);
    }
    return hit;
  }
}

function wantsAccount(webhook: WebhookConfig, account: string): boolean {
  return webhook.accounts.includes(WILDCARD) || webhook.accounts.includes(account);
}

/** `"*"` means every IMKIT event; lifecycle events must be named or matched by `bridge.*`. */
function wantsType(webhook: WebhookConfig, type: string): boolean {
  if (webhook.events.includes(type)) return true;
  if (type.startsWith(BRIDGE_EVENT_PREFIX)) return webhook.events.includes(BRIDGE_WILDCARD);
  return webhook.events.includes(WILDCARD);
}
