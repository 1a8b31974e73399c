import type { DeliveryEvent } from '../queue/job.js';

/** The placeholders a subject, routing key or stream name may use. */
export const TEMPLATE_PLACEHOLDERS = ['account', 'type', 'room'] as const;
type Placeholder = (typeof TEMPLATE_PLACEHOLDERS)[number];

const PLACEHOLDER = /\{([^{}]*)\}/g;

/** Why `template` is not a valid template (an unknown placeholder, a stray brace), or undefined. */
export function templateProblem(template: string): string | undefined {
  for (const [, name] of template.matchAll(PLACEHOLDER)) {
    if (!(TEMPLATE_PLACEHOLDERS as readonly string[]).includes(name!)) {
      return `unknown placeholder {${name}} (use ${TEMPLATE_PLACEHOLDERS.map((p) => `{${p}}`).join(', ')})`;
    }
  }
  if (/[{}]/.test(template.replace(PLACEHOLDER, ''))) return 'a "{" or "}" that is not part of a placeholder';
  return undefined;
}

/**
 * `{account}`, `{type}` and `{room}` replaced by the event's values, in which every character outside
 * `A-Za-z0-9_-` becomes `_` (`chat message` -> `chat_message`), so a value can never add a subject
 * token, a wildcard or a key separator. `{room}` is a chat message's room, else `none`.
 */
export function renderTemplate(template: string, event: DeliveryEvent): string {
  return template.replace(PLACEHOLDER, (_whole, name: Placeholder) => safeValue(valueOf(name, event)));
}

function valueOf(name: Placeholder, event: DeliveryEvent): string {
  if (name === 'account') return event.account;
  if (name === 'type') return event.type;
  return roomOf(event);
}

/** A chat message's room id, read at ingest (queue/enqueuer.ts); `none` for every other event. */
export function roomOf(event: DeliveryEvent): string {
  return event.room ?? 'none';
}

function safeValue(value: string): string {
  // Per code point, so an emoji is one `_`, not two.
  return value.replace(/[^A-Za-z0-9_-]/gu, '_') || '_';
}
